-- Starts and drives tests/support/mock_basalt_api.js from Lua tests and examples.
--   local mock = require("mock_api").start()      -- a free 127.0.0.1 port
--   mock.url                                     -- "http://127.0.0.1:PORT"
--   mock:control{ mode = "500" }                 -- switches (see the server's header)
--   mock:stats().requests                        -- request counter
--   mock:stop()
-- Control calls go through a one-line Node client (Node runs the server anyway),
-- so the tests need no HTTP client of their own.
local M = {}
local Mock = {}
Mock.__index = Mock

local function here()
  local src = debug.getinfo(1, "S").source:sub(2)
  return src:match("(.*/)") or "./"
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Minimal JSON writer for control bodies (sequences become arrays, other tables
-- objects).
local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function to_json(v)
  local t = type(v)
  if t == "table" and #v > 0 then
    local parts = {}
    for i = 1, #v do parts[i] = to_json(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  elseif t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = json_string(tostring(k)) .. ":" .. to_json(x) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return json_string(v)
  elseif v == nil then
    return "null"
  end
  return tostring(v)
end

local CLIENT = [[
const [url, method, body] = process.argv.slice(1);
fetch(url, { method, body: method === 'GET' ? undefined : body })
  .then((r) => r.text()).then((t) => process.stdout.write(t))
  .catch((e) => { process.stderr.write(String(e)); process.exit(1); });
]]

local function http(url, method, body)
  local cmd = "node -e " .. shell_quote(CLIENT) .. " " .. shell_quote(url) .. " " .. method ..
      " " .. shell_quote(body or "")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

function M.start(args)
  local script = os.getenv("BASALT_SOURCE_DIR") and
      (os.getenv("BASALT_SOURCE_DIR") .. "/tests/support/mock_basalt_api.js") or
      (here() .. "mock_basalt_api.js")
  local cmd = "exec node " .. shell_quote(script) .. " --port 0 " .. (args or "")
  local proc = assert(io.popen(cmd, "r"))
  local port = proc:read("l")
  assert(port and port:match("^%d+$"), "mock Basalt API did not start: " .. tostring(port))
  return setmetatable({ proc = proc, port = tonumber(port),
    url = "http://127.0.0.1:" .. port }, Mock)
end

function Mock:control(t)
  return http(self.url .. "/_control", "POST", to_json(t))
end

function Mock:reset()
  return http(self.url .. "/_reset", "POST", "{}")
end

function Mock:add_prompts(t)
  return http(self.url .. "/_prompts", "POST", to_json(t))
end

function Mock:stats()
  local text = http(self.url .. "/_stats?format=lua", "GET")
  return assert(load(text, "=stats", "t", {}))()
end

-- Stops the server also when a test script dies before calling stop (an open
-- io.popen handle would otherwise wait for the server forever at exit).
Mock.__gc = function(self) self:stop() end
Mock.__close = Mock.__gc

function Mock:stop()
  if self.proc then
    http(self.url .. "/_shutdown", "POST", "{}")
    self.proc:close()
    self.proc = nil
  end
end

return M
