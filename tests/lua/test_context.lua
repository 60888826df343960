-- Context across coroutines and processes: inheritance, capture / with_context /
-- bind, W3C inject / extract.
local T = require("testlib")
local basalt = require("basalt")

local mem = basalt.memory_exporter()
basalt.init { exporters = { mem } }

local function root(fn) return basalt.start_observe({ name = "root", feature_slug = "ctx" }, fn) end

T.test("a coroutine inherits the context where it was created, not where it is resumed", function()
  mem:clear()
  local co
  root(function()
    basalt.observe("creator", function()
      co = coroutine.create(function() basalt.observe("in-co", function() end) end)
    end)
    basalt.observe("resumer", function() assert(coroutine.resume(co)) end)
  end)
  T.eq(mem:find("in-co").parent_span_id, mem:find("creator").span_id)
end)

T.test("a span left open across yield stays current for its coroutine only", function()
  mem:clear()
  root(function(r)
    local co = coroutine.wrap(function()
      basalt.observe("held", function(s)
        coroutine.yield(s:span_id())
        T.eq(basalt.current_span():span_id(), s:span_id(), "still current after resume")
      end)
    end)
    local held = co()
    T.eq(basalt.current_span():span_id(), r:span_id(), "the resumer keeps its own current span")
    basalt.observe("sibling", function() end)
    co()
    T.truthy(held)
  end)
  T.eq(mem:find("sibling").parent_span_id, mem:find("root").span_id)
  T.eq(mem:find("held").parent_span_id, mem:find("root").span_id)
end)

T.test("a coroutine collected while suspended inside a block ends that span once", function()
  mem:clear()
  root(function()
    local co = coroutine.create(function() basalt.observe("abandoned", function() coroutine.yield() end) end)
    coroutine.resume(co)
    co = nil
    collectgarbage(); collectgarbage()
  end)
  local n = 0
  for _, s in ipairs(mem:spans()) do if s.name == "abandoned" then n = n + 1 end end
  T.eq(n, 1)
end)

T.test("nested blocks of a collected coroutine end once each; a handle kept elsewhere goes inert", function()
  mem:clear()
  local kept
  root(function()
    local co = coroutine.create(function()
      basalt.observe("outer", function()
        basalt.observe("middle", function(s)
          kept = s
          basalt.observe("inner", function() coroutine.yield() end)
        end)
      end)
    end)
    coroutine.resume(co)
    T.truthy(kept:is_recording(), "open while the coroutine is suspended")
    co = nil
    collectgarbage(); collectgarbage()
    T.truthy(basalt.current_span():is_recording(), "the root is still current here")
  end)
  for _, name in ipairs({ "outer", "middle", "inner" }) do
    local n = 0
    for _, s in ipairs(mem:spans()) do if s.name == name then n = n + 1 end end
    T.eq(n, 1, name)
  end
  T.eq(mem:find("inner").parent_span_id, mem:find("middle").span_id)
  -- The kept handle outlived its coroutine: inert, its ids still readable.
  T.falsy(kept:is_recording())
  kept:set_attribute("late", 1):finish()
  T.eq(mem:find("middle").attributes.late, nil)
  T.eq(kept:span_id(), mem:find("middle").span_id)
  T.eq(#mem:spans(), 4)
end)

T.test("a coroutine a finalizer resumes after its flow ended its blocks finishes them as no-ops", function()
  mem:clear()
  local resumed, after
  root(function()
    -- Made before the coroutine's flow, so finalized after it (Lua runs
    -- finalizers in reverse order of marking): the flow has ended "open" by
    -- the time this resumes the coroutine inside that block.
    local f = setmetatable({}, { __gc = function(o) resumed = coroutine.resume(o.co) end })
    f.co = coroutine.create(function()
      basalt.observe("open", function(s)
        coroutine.yield()
        s:set_attribute("after", 1)
        after = s:is_recording()
      end)
      basalt.observe("later", function() end) -- the context the block restored is sound
    end)
    coroutine.resume(f.co)
    f = nil
    collectgarbage(); collectgarbage(); collectgarbage()
  end)
  T.eq(resumed, true)
  T.eq(after, false)
  local n = 0
  for _, s in ipairs(mem:spans()) do if s.name == "open" then n = n + 1 end end
  T.eq(n, 1)
  T.eq(mem:find("open").attributes.after, nil)
end)

T.test("a coroutine resumed after its flow was finalized gets a new one: its later blocks end too", function()
  mem:clear()
  root(function()
    local f = setmetatable({}, { __gc = function(o) coroutine.resume(o.co) end })
    f.co = coroutine.create(function()
      basalt.observe("first", function() coroutine.yield() end)
      -- Resumed by f's finalizer, after the flow's: a new trace, abandoned too.
      basalt.start_observe({ name = "again", feature_slug = "f" }, function() coroutine.yield() end)
    end)
    coroutine.resume(f.co)
    f = nil
    for _ = 1, 4 do collectgarbage() end
  end)
  for _, name in ipairs({ "first", "again" }) do
    local n = 0
    for _, s in ipairs(mem:spans()) do if s.name == name then n = n + 1 end end
    T.eq(n, 1, name)
  end
end)

-- Resurrection while finalizers are due: inside a root, body (a coroutine
-- body given GC steps as its argument) runs until it yields; the coroutine is
-- dropped and a finalizer newer than its flow (and guards) resurrects it, while
-- theirs are still pending. Then it is resumed, and those run, in incremental
-- steps, while it executes again. Leaves the collector's defaults restored.
local function resurrect_and_resume(body)
  local saved
  local function steps() for _ = 1, 30 do collectgarbage("step", 0) end end
  collectgarbage("incremental", 100, 1, 1)
  collectgarbage("stop")
  root(function()
    local co = coroutine.create(body)
    assert(coroutine.resume(co, steps))
    for _ = 1, 40 do setmetatable({}, { __gc = function() end }) end
    setmetatable({ co = co }, { __gc = function(o) saved = o.co end })
    co = nil
  end)
  local n = 0
  while not saved and n < 100000 do collectgarbage("step", 0); n = n + 1 end
  T.truthy(saved, "the coroutine was resurrected")
  T.truthy(coroutine.resume(saved))
  collectgarbage("restart")
  collectgarbage("incremental", 200, 100, 13) -- Lua 5.4's defaults again
  saved = nil
  collectgarbage(); collectgarbage()
end

T.test("a resurrected coroutine running again keeps its flow while the flow's finalizer is due", function()
  mem:clear()
  resurrect_and_resume(function(steps)
    basalt.observe("open", function()
      coroutine.yield()
      -- The options' metamethods allocate: the flow's finalizer falls due here.
      basalt.observe({ name = "child", prompt = setmetatable({}, { __index = function() steps() end }) },
        function() end)
    end)
  end)
  T.eq(mem:find("child").parent_span_id, mem:find("open").span_id)
end)

T.test("with_context in a resurrected coroutine restores its context though its guard's finalizer was due", function()
  mem:clear()
  local after, open_id
  local outer = basalt.start_observe({ name = "other", feature_slug = "ctx" }, basalt.capture)
  resurrect_and_resume(function(steps)
    basalt.observe("open", function(s)
      open_id = s:span_id()
      basalt.with_context(outer, function()
        coroutine.yield()
        steps() -- the guard's and the flow's finalizers fall due here
      end)
      after = basalt.current_span():span_id()
    end)
  end)
  T.eq(after, open_id, "the block's span is current again after with_context")
end)

T.test("errors inside a coroutine block propagate through resume and restore the coroutine's context", function()
  mem:clear()
  root(function()
    local co = coroutine.create(function()
      pcall(basalt.observe, "fails", function() error("x") end)
      return basalt.current_span():span_id()
    end)
    local ok, id = coroutine.resume(co)
    T.truthy(ok)
    T.eq(id, mem:find("fails") and basalt.current_span():span_id())
  end)
end)

T.test("capture and with_context run a function inside a saved context", function()
  mem:clear()
  local saved
  root(function() basalt.observe("saver", function() saved = basalt.capture() end) end)
  T.falsy(basalt.current_span():is_recording())
  local v = basalt.with_context(saved, function(x)
    basalt.observe("late", function() end)
    return x + 1
  end, 1)
  T.eq(v, 2)
  T.eq(mem:find("late").parent_span_id, mem:find("saver").span_id)
  T.eq(mem:find("late").attributes["basalt.span.feature_slug"], "ctx")
  T.falsy(basalt.current_span():is_recording(), "restored after with_context")
  T.raises("bad argument", basalt.with_context, "not a context", function() end)
end)

T.test("bind returns a function that runs inside the context current at bind time", function()
  mem:clear()
  local bound
  root(function() bound = basalt.bind(function() basalt.observe("bound", function() end) end) end)
  bound()
  T.eq(mem:find("bound").parent_span_id, mem:find("root").span_id)
end)

T.test("bound functions used as coroutine bodies created from C keep the context", function()
  mem:clear()
  local co
  root(function()
    -- coroutine.create is bypassed, as a scheduler in C would: use the original.
    co = basalt.bind(function() basalt.observe("sched", function() coroutine.yield() end) end)
  end)
  local thread = coroutine.create(co)
  coroutine.resume(thread); coroutine.resume(thread)
  T.eq(mem:find("sched").parent_span_id, mem:find("root").span_id)
end)

T.test("patch_coroutines = false leaves coroutine.create alone", function()
  basalt.init { exporters = { mem }, patch_coroutines = false }
  mem:clear()
  local co
  root(function() co = coroutine.create(function() basalt.observe("unpatched", function() end) end) end)
  coroutine.resume(co)
  T.eq(mem:find("unpatched"), nil, "outside the trace: nothing recorded")
  basalt.init { exporters = { mem } }
  mem:clear()
  root(function() co = coroutine.create(function() basalt.observe("patched", function() end) end) end)
  coroutine.resume(co)
  T.truthy(mem:find("patched"))
end)

T.test("inject writes traceparent with flags 01 for the current span", function()
  root(function(r)
    local h = basalt.inject({})
    T.eq(h.traceparent, "00-" .. r:trace_id() .. "-" .. r:span_id() .. "-01")
  end)
  T.eq(basalt.inject({}).traceparent, nil, "nothing outside a span")
end)

T.test("extract continues a remote trace: trace id and parent span id", function()
  mem:clear()
  local tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
  local ctx = basalt.extract { traceparent = "00-" .. tid .. "-" .. sid .. "-01" }
  T.truthy(ctx, "a context")
  basalt.start_observe({ name = "continued", feature_slug = "f", parent = ctx }, function(s)
    T.eq(s:trace_id(), tid)
  end)
  local s = mem:find("continued")
  T.eq(s.trace_id, tid)
  T.eq(s.parent_span_id, sid)
  T.eq(s.attributes["basalt.root"], true, "still a Basalt root")
end)

T.test("extract is case-insensitive on header names and keeps tracestate and baggage", function()
  local ctx = basalt.extract {
    Traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    TraceState = "vendor=abc", Baggage = "user=alice",
  }
  T.truthy(ctx)
  basalt.start_observe({ name = "c", feature_slug = "f", parent = ctx }, function()
    local h = basalt.inject({})
    T.eq(h.tracestate, "vendor=abc")
    T.eq(h.baggage, "user=alice")
  end)
end)

T.test("an invalid traceparent is ignored and a new trace starts", function()
  for _, bad in ipairs({
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",          -- no flags
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",       -- zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",       -- zero span id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       -- version ff
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",       -- uppercase
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",        -- short
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", -- v00 with extra field
    "garbage",
  }) do
    T.eq(basalt.extract { traceparent = bad }, nil, bad)
  end
  T.eq(basalt.extract {}, nil)
  -- A header is a C string on the wire: one with an embedded NUL is malformed.
  T.eq(basalt.extract { traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\0junk" }, nil)
  local ctx = basalt.extract { traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    tracestate = "a=1\0\xff", baggage = "k=v\0,,," }
  basalt.start_observe({ name = "c", feature_slug = "f", parent = ctx }, function()
    local h = basalt.inject({})
    T.eq(h.tracestate, nil, "tracestate with a NUL dropped")
    T.eq(h.baggage, nil, "baggage with a NUL dropped")
  end)
  mem:clear()
  basalt.start_observe({ name = "fresh", feature_slug = "f", parent = basalt.extract { traceparent = "x" } },
    function() end)
  T.eq(mem:find("fresh").parent_span_id, nil)
end)

T.test("inject round-trips through extract across a simulated process boundary", function()
  mem:clear()
  local headers
  root(function() basalt.observe({ name = "client", kind = "tool" }, function() headers = basalt.inject({}) end) end)
  basalt.start_observe({ name = "server", feature_slug = "down", parent = basalt.extract(headers) }, function() end)
  T.eq(mem:find("server").trace_id, mem:find("root").trace_id)
  T.eq(mem:find("server").parent_span_id, mem:find("client").span_id)
end)

T.run()
