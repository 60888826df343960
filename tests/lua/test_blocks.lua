-- Spans as block functions: roots, children, markers, return values, errors.
local T = require("testlib")
local basalt = require("basalt")

local mem = basalt.memory_exporter()
basalt.init { exporters = { mem } }

local function reset() mem:clear() end

T.test("start_observe returns every value of the block and passes extra arguments", function()
  reset()
  local a, b, c = basalt.start_observe({ name = "r", feature_slug = "f" }, function(span, x, y)
    T.truthy(span:is_recording(), "span records while the block runs")
    return x + y, "two", nil
  end, 1, 2)
  T.eq({ a, b, c }, { 3, "two", nil })
  T.eq(#mem:spans(), 1)
end)

T.test("root span carries basalt.root, in_trace and kind basalt_trace", function()
  reset()
  basalt.start_observe({ name = "  root  ", feature_slug = " qa " }, function() end)
  local s = mem:find("root")
  T.truthy(s, "name is trimmed")
  T.eq(s.attributes["basalt.root"], true)
  T.eq(s.attributes["basalt.in_trace"], true)
  T.eq(s.attributes["basalt.span.kind"], "basalt_trace")
  T.eq(s.attributes["basalt.span.feature_slug"], "qa")
  T.eq(s.attributes["basalt.trace"], nil)
  T.eq(s.parent_span_id, nil)
  T.eq(s.kind, "internal")
end)

T.test("child spans carry basalt.trace, in_trace, kind and parent ids", function()
  reset()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(root)
    basalt.observe({ name = "g", kind = "generation" }, function(g)
      T.eq(g:trace_id(), root:trace_id())
    end)
  end)
  local r, g = mem:find("r"), mem:find("g")
  T.eq(g.parent_span_id, r.span_id)
  T.eq(g.trace_id, r.trace_id)
  T.eq(g.attributes["basalt.trace"], true)
  T.eq(g.attributes["basalt.in_trace"], true)
  T.eq(g.attributes["basalt.root"], nil)
  T.eq(g.attributes["basalt.span.kind"], "generation")
end)

T.test("ids are lowercase hex of 32 and 16 characters", function()
  reset()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(s)
    T.truthy(s:trace_id():match("^[0-9a-f]+$") and #s:trace_id() == 32, "trace id")
    T.truthy(s:span_id():match("^[0-9a-f]+$") and #s:span_id() == 16, "span id")
  end)
end)

T.test("a new top-level start_observe starts a new trace id", function()
  reset()
  local t1, t2
  basalt.start_observe({ name = "a", feature_slug = "f" }, function(s) t1 = s:trace_id() end)
  basalt.start_observe({ name = "b", feature_slug = "f" }, function(s) t2 = s:trace_id() end)
  T.neq(t1, t2)
end)

T.test("string opts are the name", function()
  reset()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function()
    basalt.observe("plain", function() end)
  end)
  T.eq(mem:find("plain").attributes["basalt.span.kind"], "span")
end)

T.test("every kind is accepted, case-insensitively, and basalt.kind constants exist", function()
  reset()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function()
    for _, k in ipairs({ "generation", "retrieval", "tool", "function", "event", "span" }) do
      basalt.observe({ name = "k-" .. k, kind = k:upper() }, function() end)
      T.eq(basalt.kind[k:upper()], k)
    end
  end)
  for _, k in ipairs({ "generation", "retrieval", "tool", "function", "event", "span" }) do
    T.eq(mem:find("k-" .. k).attributes["basalt.span.kind"], k)
  end
end)

T.test("unknown kind raises naming the argument, in every form and outside a trace", function()
  T.raises("bad argument #1 to 'observe' (unknown kind 'generaton')", basalt.observe,
    { name = "x", kind = "generaton" }, function() end)
  T.raises("unknown kind 'nope'", basalt.observe_wrap, { name = "x", kind = "nope" }, function() end)
  T.raises("basalt_trace", basalt.observe, { name = "x", kind = "basalt_trace" }, function() end)
end)

T.test("start_observe validates feature_slug first, then name, with the documented messages", function()
  T.raises("feature_slug is required and must be a non-empty string.", basalt.start_observe,
    { name = "n" }, function() end)
  T.raises("feature_slug is required and must be a non-empty string.", basalt.start_observe,
    { name = "n", feature_slug = "   " }, function() end)
  T.raises("feature_slug is required", basalt.start_observe, {}, function() end)
  T.raises("name is required and must be a non-empty string.", basalt.start_observe,
    { feature_slug = "f" }, function() end)
  T.raises("name is required and must be a non-empty string.", basalt.start_observe,
    { name = "", feature_slug = "f" }, function() end)
end)

T.test("wrong argument types raise naming the argument", function()
  T.raises("bad argument #1 to 'start_observe'", basalt.start_observe, 42, function() end)
  T.raises("bad argument #2 to 'observe'", basalt.observe, "x", nil)
  T.raises("bad argument #2 to 'start_observe'", basalt.start_observe,
    { name = "r", feature_slug = "f" }, "not a function")
  T.raises("bad argument #1 to 'observe'", basalt.observe)
end)

T.test("observe outside a trace runs the block with a no-op handle and records nothing", function()
  reset()
  local ran = false
  local v = basalt.observe({ name = "orphan", kind = "tool" }, function(s, x)
    ran = true
    T.falsy(s:is_recording())
    -- every handle method is accepted and chains
    s:set_attribute("a", 1):set_input("i"):set_output("o"):set_model("m"):set_tokens { input = 1 }
      :set_tool_name("t"):add_evaluator("e"):set_metadata { k = 1 }:set_identity { user = { id = "u" } }
    return x * 2
  end, 21)
  T.truthy(ran)
  T.eq(v, 42)
  T.eq(#mem:spans(), 0)
end)

T.test("a raising block: status error, exception event, same error value re-raised", function()
  reset()
  local err = { code = "boom" }
  local ok, got = pcall(basalt.start_observe, { name = "r", feature_slug = "f" }, function()
    basalt.observe("child", function() error(err) end)
  end)
  T.falsy(ok)
  T.truthy(rawequal(got, err), "the very same table is re-raised")
  for _, name in ipairs({ "r", "child" }) do
    local s = mem:find(name)
    T.eq(s.status.code, "error", name .. " status")
    T.eq(s.events[1].name, "exception")
    T.truthy(s.events[1].attributes["exception.type"], "exception.type")
    T.truthy(s.events[1].attributes["exception.message"], "exception.message")
    T.truthy(s.events[1].attributes["exception.stacktrace"], "exception.stacktrace")
  end
  T.eq(#mem:spans(), 2, "each span ends exactly once")
end)

T.test("an error value whose metamethods raise is still re-raised as is, and the context restored", function()
  local values = {
    setmetatable({}, { __tostring = function() error("tostring boom") end }),
    setmetatable({}, { __tostring = function() return {} end }),
    setmetatable({}, { __index = function() error("index boom") end }),
  }
  for i, bad in ipairs(values) do
    reset()
    local ok, got = pcall(basalt.start_observe, { name = "r", feature_slug = "f" }, function()
      error(bad)
    end)
    T.falsy(ok)
    T.truthy(rawequal(got, bad), "value " .. i .. " re-raised unchanged")
    local r = mem:find("r")
    T.truthy(r, "the span ended")
    T.eq(r.status.code, "error")
    T.eq(r.events[1].name, "exception")
    T.eq(basalt.current_span():is_recording(), false, "no span current after the block")
    basalt.start_observe({ name = "next", feature_slug = "f" }, function() end)
    T.eq(mem:find("next").parent_span_id, nil, "the next trace is a new trace")
  end
end)

T.test("a string error keeps its message and position; the stacktrace names the failing function", function()
  reset()
  local ok, msg = pcall(basalt.start_observe, { name = "r", feature_slug = "f" }, function()
    local function failing_here() error("kaput") end
    failing_here()
  end)
  T.falsy(ok)
  T.truthy(msg:find("kaput", 1, true) and msg:find("test_blocks.lua", 1, true), msg)
  local ev = mem:find("r").events[1]
  T.eq(ev.attributes["exception.message"], msg)
  T.eq(ev.attributes["exception.type"], "error")
  T.truthy(ev.attributes["exception.stacktrace"]:find("failing_here", 1, true),
    ev.attributes["exception.stacktrace"])
  T.truthy(mem:find("r").status.message:find("kaput", 1, true))
end)

T.test("non-string, non-table errors are re-raised unchanged", function()
  for _, v in ipairs({ 42, true, 1.5 }) do
    local ok, got = pcall(basalt.start_observe, { name = "r", feature_slug = "f" }, function() error(v) end)
    T.falsy(ok)
    T.eq(got, v)
  end
end)

T.test("the context is restored after a block returns or raises", function()
  reset()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(root)
    pcall(basalt.observe, "fails", function() error("x") end)
    T.eq(basalt.current_span():span_id(), root:span_id(), "current span after error")
    basalt.observe("ok", function() end)
    T.eq(basalt.current_span():span_id(), root:span_id(), "current span after return")
  end)
  T.falsy(basalt.current_span():is_recording(), "no current span outside")
  T.eq(mem:find("ok").parent_span_id, mem:find("r").span_id)
end)

T.test("wrap forms open a span per call and validate at wrap time", function()
  reset()
  local handler = basalt.start_observe_wrap({ name = "handler", feature_slug = "f" }, function(a, b)
    return basalt.observe_wrap({ name = "inner", kind = "tool" }, function(x) return x .. "!" end)(a .. b)
  end)
  T.eq(handler("a", "b"), "ab!")
  T.eq(handler("c", "d"), "cd!")
  local n = 0
  for _, s in ipairs(mem:spans()) do if s.name == "handler" then n = n + 1 end end
  T.eq(n, 2)
  T.eq(mem:find("inner").attributes["basalt.span.feature_slug"], "f")
  T.raises("feature_slug is required", basalt.start_observe_wrap, { name = "n" }, function() end)
  T.raises("bad argument #2 to 'observe_wrap'", basalt.observe_wrap, "x", 1)
end)

T.test("wrapped functions re-raise errors and end their span", function()
  reset()
  local f = basalt.start_observe_wrap({ name = "w", feature_slug = "f" }, function() error({ x = 1 }) end)
  local ok, e = pcall(f)
  T.falsy(ok)
  T.eq(e, { x = 1 })
  T.eq(mem:find("w").status.code, "error")
end)

T.test("a span handle used after its block is a no-op", function()
  reset()
  local kept
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(s) kept = s end)
  T.falsy(kept:is_recording())
  kept:set_attribute("late", 1):set_status("error"):finish()
  T.eq(mem:find("r").attributes.late, nil)
  T.eq(mem:find("r").status.code, "unset")
  T.eq(#mem:spans(), 1, "ended once")
end)

T.test("a block with more arguments than the Lua stack holds raises before its span opens", function()
  reset()
  local t = {}
  for i = 1, 600000 do t[i] = i end
  local started = basalt.stats().spans_started
  local ok, e = pcall(basalt.start_observe, { name = "many", feature_slug = "s" }, function() end,
    table.unpack(t))
  T.falsy(ok)
  T.truthy(tostring(e):find("too many arguments", 1, true), tostring(e))
  T.eq(basalt.stats().spans_started, started, "no span opened (so none is left open)")
  T.eq(mem:find("many"), nil)
end)

T.test("a handle kept after its block still reads its span's ids, kind and context", function()
  reset()
  local kept
  basalt.start_observe({ name = "r", feature_slug = "f" }, function()
    basalt.observe({ name = "c", kind = "tool" }, function(s) kept = s end)
  end)
  collectgarbage(); collectgarbage()
  local c = mem:find("c")
  T.eq(kept:trace_id(), c.trace_id)
  T.eq(kept:span_id(), c.span_id)
  T.eq(tostring(kept), "basalt.Span(tool " .. c.span_id .. ")")
  -- Its context parents a later trace on the span's ids.
  basalt.start_observe({ name = "later", feature_slug = "g", parent = kept:context() }, function() end)
  T.eq(mem:find("later").trace_id, c.trace_id)
  T.eq(mem:find("later").parent_span_id, c.span_id)
  T.eq(tostring(basalt.current_span()), "basalt.Span(no-op)")
end)

T.test("nested start_observe is a basalt_trace span of the same trace, not a root", function()
  reset()
  basalt.start_observe({ name = "outer", feature_slug = "a" }, function()
    basalt.start_observe({ name = "inner", feature_slug = "b" }, function()
      basalt.observe("leaf", function() end)
    end)
  end)
  local o, i, l = mem:find("outer"), mem:find("inner"), mem:find("leaf")
  T.eq(i.trace_id, o.trace_id)
  T.eq(i.parent_span_id, o.span_id)
  T.eq(i.attributes["basalt.root"], nil)
  T.eq(i.attributes["basalt.trace"], true)
  T.eq(i.attributes["basalt.span.kind"], "basalt_trace")
  T.eq(l.attributes["basalt.span.feature_slug"], "b")
end)

T.test("stats count started and ended spans", function()
  basalt.init { exporters = { mem } }
  reset()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function()
    basalt.observe("c", function() end)
  end)
  local st = basalt.stats()
  T.eq(st.spans_started, 2)
  T.eq(st.spans_ended, 2)
  T.eq(st.spans_exported, 2)
  T.eq(st.exporters[1].type, "memory")
end)

T.run()
