-- Lua 5.4 skips a finalizer due exactly at its C-stack limit (a collection
-- that starts 199 C calls deep): the value is freed without it. What basalt's
-- values own must still be released, at the latest when the state closes.
-- Under the sanitizer build, LeakSanitizer also checks that nothing leaks.
local T = require("testlib")
local basalt = require("basalt")

-- Drops, at each depth around the limit (one of them is exactly at it,
-- whatever the host's own nesting), a coroutine suspended inside a block and
-- a with_context block, a context value and an escaped span handle; then
-- collects at that depth. Returns how many depths it tried.
local ABANDON = [[
local basalt = require("basalt")
local function at_depth(n, f)
  if n == 0 then return f() end
  return select(2, pcall(at_depth, n - 1, f))
end
local first, last = 180, 205
for depth = first, last do
  basalt.start_observe({ name = "root", feature_slug = "gc" }, function()
    local co = coroutine.create(function()
      basalt.observe({ name = "abandoned" }, function()
        basalt.with_context(basalt.capture(), function() coroutine.yield() end)
      end)
    end)
    coroutine.resume(co)
    local kept = basalt.observe({ name = "finished" }, function(s) return s end)
    local ctx = kept:context()
    collectgarbage()
    co, kept, ctx = nil, nil, nil
    at_depth(depth, collectgarbage)
  end)
end
return last - first + 1
]]

local function count(records, name)
  local n = 0
  for _, r in ipairs(records) do
    if r.name == name then n = n + 1 end
  end
  return n
end

T.test("a block abandoned when its finalizer is skipped still ends when the state closes", function()
  local out, script = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(string.format("package.path = %q\npackage.cpath = %q\n", package.path, package.cpath))
  f:write(string.format("require('basalt').init { exporters = { { type = 'file', path = %q } } }\n", out))
  f:write(string.format("print('depths=' .. load(%q)())\n", ABANDON))
  f:close()
  local p = assert(io.popen("'" .. os.getenv("BASALT_HOST") .. "' " .. script .. " 2>&1"))
  local text = p:read("a")
  p:close()
  os.remove(script)
  local n = tonumber(text:match("depths=(%d+)"))
  T.truthy(n, "child output: " .. text)
  f = assert(io.open(out))
  local exported = f:read("a")
  f:close()
  os.remove(out)
  local _, finished = exported:gsub('"name":"finished"', "")
  local _, abandoned = exported:gsub('"name":"abandoned"', "")
  T.eq(finished, n, "finished blocks exported")
  -- Those whose finalizer ran end when collected, the others when the state closes.
  T.eq(abandoned, n, "abandoned blocks exported")
end)

T.test("finished blocks collected near the limit are all exported", function()
  local mem = basalt.memory_exporter()
  basalt.init { exporters = { mem } }
  local n = load(ABANDON)()
  collectgarbage()
  local records = mem:spans()
  T.eq(count(records, "finished"), n)
  T.eq(count(records, "root"), n)
  basalt.shutdown()
end)

T.run()
