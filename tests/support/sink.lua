-- Drives the shared OTLP sink (node <shared>/bench/otlp-sink/sink.js) from Lua
-- end-to-end tests, plus the few tools those tests need around it.
--   local S = require("sink")
--   if not S.available() then ... skip ... end
--   local s = S.start("--status 503 --retry-after 1")  -- always --strict --proto
--   s.url                -- "http://127.0.0.1:PORT/v1/traces"
--   local c = s:stop()   -- SIGTERM; the counters line (spans, requests, rejected, ...)
--   s:records()          -- the received spans, one decoded table per span
--   S.recorder()         -- a tiny server recording each request's headers
--   S.dead_url()         -- a loopback URL nobody listens on
--   S.now_ms(), S.sleep(s), S.decode(json), S.read_lines(path)
-- <shared> is $BASALT_SHARED_DIR, else $BASALT_SOURCE_DIR/../shared.
local S = {}

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
S.quote = q

function S.shared_dir()
  local d = os.getenv("BASALT_SHARED_DIR")
  if d and d ~= "" then return d end
  return (os.getenv("BASALT_SOURCE_DIR") or ".") .. "/../shared"
end

local function sink_dir() return S.shared_dir() .. "/bench/otlp-sink" end

-- True when node and the sink's --proto packages are installed; else false and why.
function S.available()
  local f = io.open(sink_dir() .. "/node_modules/protobufjs/package.json", "r")
  if not f then return false, "sink packages missing: run npm ci in " .. sink_dir() end
  f:close()
  if not os.execute("node --version >/dev/null 2>&1") then return false, "node not found" end
  return true
end

-- ---- a small JSON decoder (numbers without '.'/exponent become integers) ----------

local function decode_error(str, pos, msg)
  error(string.format("JSON: %s at byte %d near %q", msg, pos, str:sub(pos, pos + 20)), 0)
end

local escapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\",
  ["/"] = "/" }

local decode_value

local function skip(str, pos)
  return str:find("[^ \t\r\n]", pos) or #str + 1
end

local function decode_string(str, pos)
  local out, i = {}, pos + 1
  while true do
    local j = str:find('["\\]', i)
    if not j then decode_error(str, pos, "unterminated string") end
    out[#out + 1] = str:sub(i, j - 1)
    if str:sub(j, j) == '"' then return table.concat(out), j + 1 end
    local c = str:sub(j + 1, j + 1)
    if c == "u" then
      local cp = tonumber(str:sub(j + 2, j + 5), 16)
      if not cp then decode_error(str, j, "bad \\u escape") end
      local nexti = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF and str:sub(nexti, nexti + 1) == "\\u" then
        local lo = tonumber(str:sub(nexti + 2, nexti + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          nexti = nexti + 6
        end
      end
      out[#out + 1] = utf8.char(cp)
      i = nexti
    elseif escapes[c] then
      out[#out + 1] = escapes[c]
      i = j + 2
    else
      decode_error(str, j, "bad escape")
    end
  end
end

function decode_value(str, pos)
  pos = skip(str, pos)
  local c = str:sub(pos, pos)
  if c == "{" then
    local obj = {}
    pos = skip(str, pos + 1)
    if str:sub(pos, pos) == "}" then return obj, pos + 1 end
    while true do
      if str:sub(pos, pos) ~= '"' then decode_error(str, pos, "expected a key") end
      local k
      k, pos = decode_string(str, pos)
      pos = skip(str, pos)
      if str:sub(pos, pos) ~= ":" then decode_error(str, pos, "expected ':'") end
      obj[k], pos = decode_value(str, pos + 1)
      pos = skip(str, pos)
      local d = str:sub(pos, pos)
      if d == "}" then return obj, pos + 1 end
      if d ~= "," then decode_error(str, pos, "expected ',' or '}'") end
      pos = skip(str, pos + 1)
    end
  elseif c == "[" then
    local arr, n = {}, 0
    pos = skip(str, pos + 1)
    if str:sub(pos, pos) == "]" then return arr, pos + 1 end
    while true do
      n = n + 1
      arr[n], pos = decode_value(str, pos)
      pos = skip(str, pos)
      local d = str:sub(pos, pos)
      if d == "]" then return arr, pos + 1 end
      if d ~= "," then decode_error(str, pos, "expected ',' or ']'") end
    pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(str, pos)
  elseif str:find("^true", pos) then
    return true, pos + 4
  elseif str:find("^false", pos) then
    return false, pos + 5
  elseif str:find("^null", pos) then
    return S.null, pos + 4
  end
  local num = str:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if not num or num == "" or num == "-" then decode_error(str, pos, "unexpected character") end
  local v = (num:find("[.eE]") and tonumber(num)) or math.tointeger(tonumber(num)) or tonumber(num)
  return v, pos + #num
end

-- JSON null decodes to this sentinel (so arrays keep their length).
S.null = setmetatable({}, { __tostring = function() return "null" end })

function S.decode(str)
  local v, pos = decode_value(str, 1)
  pos = skip(str, pos)
  if pos <= #str then decode_error(str, pos, "trailing data") end
  return v
end

-- ---- small tools ----------------------------------------------------------------------------

function S.read_lines(path)
  local lines = {}
  local f = io.open(path, "r")
  if not f then return lines end
  for l in f:lines() do
    if l ~= "" then lines[#lines + 1] = l end
  end
  f:close()
  return lines
end

local function read_all(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end
S.read_all = read_all

-- Wall-clock milliseconds (os.clock is CPU time, os.time whole seconds).
function S.now_ms()
  local p = io.popen("date +%s%N", "r")
  local ns = p:read("l")
  p:close()
  return tonumber(ns) // 1000000
end

function S.sleep(seconds)
  os.execute("sleep " .. string.format("%.3f", seconds))
end

local seq = 0
function S.tmpname(suffix)
  seq = seq + 1
  local base = os.tmpname() -- created empty by Lua; removed, the name is reused with a suffix
  os.remove(base)
  return base .. "-" .. seq .. (suffix or "")
end

-- A loopback URL with nothing listening (a port bound, then released).
function S.dead_url()
  local p = io.popen("node -e " .. q("const s=require('net').createServer();" ..
    "s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close();})"), "r")
  local port = p:read("l")
  p:close()
  assert(port and port:match("^%d+$"), "could not find a free port")
  return "http://127.0.0.1:" .. port .. "/v1/traces", tonumber(port)
end

-- ---- processes started through sh, with their pid known ------------------------------------

local Proc = {}
Proc.__index = Proc

-- Runs `cmd` (a shell command line, exec'ed) with stderr to errfile; reads the
-- pid and the first stdout line (the port).
local function spawn(cmd, errfile)
  local p = assert(io.popen("sh -c " .. q("echo $$; exec " .. cmd .. " 2>" .. q(errfile)), "r"))
  local pid = p:read("l")
  local port = p:read("l")
  if not (pid and pid:match("^%d+$") and port and port:match("^%d+$")) then
    p:close()
    error("server did not start: " .. tostring(port) .. "\n" .. read_all(errfile), 2)
  end
  return p, tonumber(pid), tonumber(port)
end

-- SIGTERM, then wait for the process to end (its stdout reaches EOF).
function Proc:terminate()
  if not self.proc then return end
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  self.proc:read("a")
  self.proc:close()
  self.proc = nil
end
Proc.__gc = function(self) pcall(Proc.terminate, self) end

-- ---- the sink -----------------------------------------------------------------------------------

local Sink = setmetatable({}, { __index = Proc })
Sink.__index = Sink
Sink.__gc = Proc.__gc

-- Starts `node sink.js 0 --strict --proto --quiet --out FILE <args>` on a free port.
function S.start(args)
  local out, err, rej = S.tmpname(".jsonl"), S.tmpname(".err"), S.tmpname(".rejects")
  local cmd = "node " .. q(sink_dir() .. "/sink.js") .. " 0 --strict --proto --quiet --out " ..
      q(out) .. " --rejects " .. q(rej) .. " " .. (args or "")
  local p, pid, port = spawn(cmd, err)
  return setmetatable({ proc = p, pid = pid, port = port, out = out, errfile = err, rejfile = rej,
    base = "http://127.0.0.1:" .. port, url = "http://127.0.0.1:" .. port .. "/v1/traces" }, Sink)
end

-- Stops the sink (it flushes its output first) and returns its counters; the
-- first rejected request's reason, if any, is in counters.first_reject.
function Sink:stop()
  self:terminate()
  local rejects = S.read_lines(self.rejfile)
  os.remove(self.rejfile)
  local counters
  for line in read_all(self.errfile):gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" and line:find('"requests"', 1, true) then counters = S.decode(line) end
  end
  self.stderr = read_all(self.errfile)
  os.remove(self.errfile)
  assert(counters, "the sink printed no counters:\n" .. self.stderr)
  counters.first_reject = rejects[1] and rejects[1]:sub(1, 600)
  self.counters = counters
  return counters
end

-- The spans received (validate.js records: trace_id, span_id, name, attributes,
-- attr_types, resource, scope, req, ...). Call after stop.
function Sink:records()
  local recs = {}
  for _, line in ipairs(S.read_lines(self.out)) do recs[#recs + 1] = S.decode(line) end
  return recs
end

function Sink:remove() os.remove(self.out) end

-- ---- a header recorder -----------------------------------------------------------------------

-- Answers every POST with 200 {} and appends {path, headers} as one JSON line
-- per request to a file; :requests() reads them (after :stop()).
local RECORDER = [[
const fs = require('fs');
const out = process.argv[1];
const srv = require('http').createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    fs.appendFileSync(out, JSON.stringify({ method: req.method, path: req.url,
      headers: req.headers, bytes: Buffer.concat(chunks).length }) + '\n');
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 2 });
    res.end('{}');
  });
});
srv.keepAliveTimeout = 30000;
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
process.on('SIGTERM', () => process.exit(0));
]]

local Recorder = setmetatable({}, { __index = Proc })
Recorder.__index = Recorder
Recorder.__gc = Proc.__gc

function S.recorder()
  local out, err = S.tmpname(".jsonl"), S.tmpname(".err")
  local p, pid, port = spawn("node -e " .. q(RECORDER) .. " " .. q(out), err)
  return setmetatable({ proc = p, pid = pid, port = port, out = out, errfile = err,
    base = "http://127.0.0.1:" .. port }, Recorder)
end

function Recorder:stop()
  self:terminate()
  os.remove(self.errfile)
  local reqs = {}
  for _, line in ipairs(S.read_lines(self.out)) do reqs[#reqs + 1] = S.decode(line) end
  os.remove(self.out)
  return reqs
end

return S
