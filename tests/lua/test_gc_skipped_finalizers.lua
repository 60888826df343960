-- Lua 5.4 runs a __gc finalizer one C call deeper than the code that triggered
-- the collection; a collection that runs exactly 199 C calls deep gets
-- "C stack overflow" from every finalizer it calls, and Lua skips them (a
-- warning, no retry). Whatever a basalt value owned (span, context) must still
-- be released. Each case below drops one kind of binding value and collects
-- at every pcall depth 185..205 (one of them is the limit, whatever the host's
-- own nesting), in a child process: in the sanitizer build LeakSanitizer runs
-- at the child's exit and the test fails naming the kind whose finalizer
-- leaked. Without sanitizers, the Lua-visible checks still run.
local T = require("testlib")
local basalt = require("basalt")

local FIRST, LAST = 185, 205
local DEPTHS = LAST - FIRST + 1

-- The child: for each depth, root > child block makes the value under test;
-- everything else is collected normally, then only that value is dropped and
-- collected at the depth.
local CHILD = [=[
local basalt = require("basalt")
warn("@on") -- Lua's "error in __gc" warnings go to stderr: the parent counts them
local case, first, last = ...
first, last = tonumber(first), tonumber(last)
-- No exporter: a queue or exporter keeping a stale pointer to an ended span
-- would hide its leak from LeakSanitizer (which scans memory conservatively).
basalt.init { exporters = {} }
local function at_depth(n, f, ...)
  if n <= 0 then return f(...) end
  return select(2, pcall(at_depth, n - 1, f, ...))
end
local tracer = basalt.tracer("gc-test")
-- make(span) -> value dropped before the deep collection, [value kept until after]
local make = {
  span = function(s) return s end,                                 -- escaped handle
  tracer_span = function() return tracer:start_span("plain") end,  -- never finished
  flow = function()                                                -- finished coroutine
    local co = coroutine.create(function() end)
    assert(coroutine.resume(co))
    return co
  end,
  flow_suspended = function()                                      -- suspended coroutine
    local co = coroutine.create(function() coroutine.yield() end)
    assert(coroutine.resume(co))
    return co
  end,
  -- A guard only owns something while its block runs: a coroutine suspended in
  -- with_context(nil) leaves an active guard (it holds the creator's context)
  -- and a flow that holds nothing.
  guard = function()
    local co = coroutine.create(function() basalt.with_context(nil, coroutine.yield) end)
    assert(coroutine.resume(co))
    return co
  end,
  with_evaluators_suspended = function()
    local co = coroutine.create(function() basalt.with_evaluators({ "e" }, coroutine.yield) end)
    assert(coroutine.resume(co))
    return co
  end,
  abandoned = function()                     -- coroutine suspended inside a block
    local co = coroutine.create(function()
      basalt.observe("abandoned", function()
        basalt.with_context(basalt.capture(), coroutine.yield)
      end)
    end)
    assert(coroutine.resume(co))
    return co
  end,
  capture = function() return basalt.capture() end,
  span_context = function(s) return s:context() end,
  with_context = function() return nil, basalt.capture() end,
  with_evaluators = function() return nil, true end,
  all = function(s)
    local co = coroutine.create(function() end)
    assert(coroutine.resume(co))
    local t = tracer:start_span("plain")
    t:finish()
    return { s, co, basalt.capture(), s:context(), t }, basalt.capture()
  end,
}
-- A finished guard is garbage as soon as its block returns; its block cannot
-- run at the limit itself (its pcall would overflow), so the collection goes
-- one pcall deeper than the block.
local function deep_with_context(ctx)
  basalt.with_context(ctx, function() end)
  pcall(collectgarbage)
end
local function deep_with_evaluators()
  basalt.with_evaluators({ "e" }, function() end)
  pcall(collectgarbage)
end
for depth = first, last do
  local held, kept
  basalt.start_observe({ name = "root", feature_slug = "x" }, function()
    basalt.observe({ name = "child" }, function(s) held, kept = make[case](s) end)
  end)
  collectgarbage(); collectgarbage() -- the blocks' own garbage, finalized normally
  held = nil
  if case == "with_context" or case == "all" then
    at_depth(depth, deep_with_context, kept)
  elseif case == "with_evaluators" then
    at_depth(depth, deep_with_evaluators)
  else
    at_depth(depth, collectgarbage)
  end
  if case == "all" then at_depth(depth, deep_with_evaluators) end
  kept = nil
  collectgarbage(); collectgarbage()
end
local st = basalt.stats()
print(string.format("started=%d ended=%d", st.spans_started, st.spans_ended))
]=]

local host = os.getenv("BASALT_HOST") or arg[-1]

local function run_case(case)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(string.format("package.path = %q\npackage.cpath = %q\n", package.path, package.cpath), CHILD)
  f:close()
  local p = assert(io.popen(string.format("'%s' %s %s %d %d 2>&1", host, script, case, FIRST, LAST)))
  local text = p:read("a")
  local ok = p:close()
  os.remove(script)
  return text, ok
end

local function check(case, want)
  local text, ok = run_case(case)
  local started, ended = text:match("started=(%d+) ended=(%d+)")
  T.truthy(started, case .. ": child did not finish: " .. text)
  local skipped = T.count(text, "error in __gc")
  io.stderr:write(string.format("     %s: %d finalizer(s) skipped at the limit\n", case, skipped))
  local leak = text:match("SUMMARY: AddressSanitizer: [^\n]*")
  T.falsy(leak, case .. ": LeakSanitizer after values dropped at the C-stack limit")
  T.truthy(ok, case .. ": child exit status: " .. text)
  if want.balanced then T.eq(tonumber(ended), tonumber(started), case .. ": spans ended") end
end

local finished = { balanced = true } -- every span ended before the child exits
T.test("an escaped span handle", function() check("span", finished) end)
T.test("a tracer span never finished", function() check("tracer_span", {}) end)
T.test("a finished coroutine created in a block (its flow)", function() check("flow", finished) end)
T.test("a coroutine suspended by a plain yield (its flow)", function() check("flow_suspended", finished) end)
T.test("a coroutine suspended in with_context(nil) (an active guard)", function() check("guard", finished) end)
T.test("a coroutine suspended in with_evaluators (flow and guard)", function()
  check("with_evaluators_suspended", finished)
end)
T.test("a coroutine abandoned inside a block and a with_context block", function() check("abandoned", {}) end)
T.test("a context from basalt.capture()", function() check("capture", finished) end)
T.test("a context from span:context()", function() check("span_context", finished) end)
T.test("a finished with_context guard", function() check("with_context", finished) end)
T.test("a finished with_evaluators guard", function() check("with_evaluators", finished) end)
T.test("all of them at once", function() check("all", finished) end)

T.run()
