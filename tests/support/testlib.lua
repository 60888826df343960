-- Minimal test harness for the Lua tiers: one behaviour per test, named for it.
--   local T = require("testlib")
--   T.test("feature_slug reaches every child", function() T.eq(a, b) end)
--   T.run()   -- prints "N passed, N failed" and exits non-zero on failure
local T = {}
local cases = {}

function T.test(name, fn)
  cases[#cases + 1] = { name = name, fn = fn }
end

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

local function deep_eq(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not deep_eq(v, b[k], seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function dump(v, depth)
  depth = depth or 0
  if type(v) ~= "table" or depth > 4 then return fmt(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. dump(v[k], depth + 1) end
  return "{" .. table.concat(parts, ", ") .. "}"
end
T.dump = dump

function T.eq(actual, expected, what)
  if not deep_eq(actual, expected) then
    fail(string.format("%sexpected %s, got %s", what and (what .. ": ") or "", dump(expected),
      dump(actual)))
  end
end

function T.neq(actual, unexpected, what)
  if deep_eq(actual, unexpected) then
    fail(string.format("%sdid not expect %s", what and (what .. ": ") or "", dump(unexpected)))
  end
end

function T.truthy(v, what)
  if not v then fail((what or "value") .. " is not truthy: " .. dump(v)) end
end

function T.falsy(v, what)
  if v then fail((what or "value") .. " is not falsy: " .. dump(v)) end
end

-- Asserts that fn raises and that the message contains `pattern` (plain text).
function T.raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then fail("expected an error containing " .. fmt(pattern)) end
  if pattern and not tostring(err):find(pattern, 1, true) then
    fail("error " .. fmt(tostring(err)) .. " does not contain " .. fmt(pattern))
  end
  return err
end

function T.near(actual, expected, tolerance, what)
  if type(actual) ~= "number" or math.abs(actual - expected) > tolerance then
    fail(string.format("%sexpected %s +- %s, got %s", what and (what .. ": ") or "",
      tostring(expected), tostring(tolerance), tostring(actual)))
  end
end

-- Runs fn with basalt exporting to a temporary OTLP JSON file, shuts the
-- runtime down, and returns the file's text (the exact bytes a collector would
-- get). basalt.init is left to the caller afterwards.
function T.otlp_text(basalt, fn)
  local path = os.tmpname()
  basalt.init { exporters = { { type = "file", path = path } } }
  fn()
  T.eq(basalt.shutdown(5000), true, "shutdown")
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  os.remove(path)
  return text
end

-- How many times the plain text needle occurs in text.
function T.count(text, needle)
  local n, at = 0, 1
  while true do
    local i = text:find(needle, at, true)
    if not i then return n end
    n, at = n + 1, i + #needle
  end
end

function T.run()
  local passed, failed = 0, 0
  local only = os.getenv("TEST_ONLY")
  for _, c in ipairs(cases) do
    if not only or c.name:find(only, 1, true) then
      local ok, err = xpcall(c.fn, debug.traceback)
      if ok then
        passed = passed + 1
        io.stderr:write("ok   ", c.name, "\n")
      else
        failed = failed + 1
        io.stderr:write("FAIL ", c.name, "\n  ", tostring(err):gsub("\n", "\n  "), "\n")
      end
    end
  end
  io.stdout:write(string.format("%d passed, %d failed\n", passed, failed))
  io.stdout:flush()
  if failed > 0 then error(string.format("%d test(s) failed", failed), 0) end
end

return T
