-- Every span handle method, and the serialisation rules of Decision 8.
local T = require("testlib")
local basalt = require("basalt")

local mem = basalt.memory_exporter()
local logs = {}
basalt.init { exporters = { mem }, logger = function(level, msg) logs[#logs + 1] = level .. ":" .. msg end }

-- Runs fn(span) on a child span of the given kind and returns its attributes.
local function on_span(kind, fn)
  mem:clear()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function()
    basalt.observe({ name = "s", kind = kind }, fn)
  end)
  return mem:find("s").attributes, mem:find("s")
end

T.test("set_attribute keeps scalar types and writes same-typed arrays natively", function()
  local a = on_span("span", function(s)
    s:set_attribute("i", 42):set_attribute("d", 1.5):set_attribute("b", false):set_attribute("s", "x")
    s:set_attribute("arr", { "a", "b" }):set_attribute("ints", { 1, 2, 3 })
    s:set_attribute("mixed", { 1, "a" }):set_attribute("map", { k = "v" }):set_attribute("nilv", nil)
  end)
  T.eq(a.i, 42); T.eq(math.type(a.i), "integer")
  T.eq(a.d, 1.5); T.eq(math.type(a.d), "float")
  T.eq(a.b, false); T.eq(a.s, "x")
  T.eq(a.arr, { "a", "b" }); T.eq(a.ints, { 1, 2, 3 })
  T.eq(a.mixed, '[1,"a"]'); T.eq(a.map, '{"k":"v"}')
  T.eq(a.nilv, nil)
end)

T.test("set_attributes writes each entry; later writes of a key win", function()
  local a = on_span("span", function(s)
    s:set_attributes { x = 1, y = { z = true } }
    s:set_attribute("x", 2)
  end)
  T.eq(a.x, 2); T.eq(a.y, '{"z":true}')
end)

T.test("set_attribute keys stay exact across many keys, collected key strings and NUL cuts", function()
  -- Keys are interned through a per-state cache indexed by the Lua string's
  -- address: a key string collected and its memory reused by another key must
  -- still write its own key.
  local a = on_span("span", function(s)
    for i = 1, 100 do
      s:set_attribute(string.format("dyn.%d", i), i)
      if i % 10 == 0 then collectgarbage() end
    end
    s:set_attribute(string.format("dyn.%d", 7), "again") -- a new string object, the same key
    s:set_attribute("cut\0tail", "c")
    s:set_attribute("cut", "d")
  end)
  for i = 1, 100 do
    if i ~= 7 then T.eq(a["dyn." .. i], i) end
  end
  T.eq(a["dyn.7"], "again")
  T.eq(a.cut, "d"); T.eq(a["cut\0tail"], nil)
  local n = 0
  for _ in pairs(a) do n = n + 1 end
  local b = on_span("span", function(s) s:set_attribute("x", 1) end)
  local base = -1 -- the attributes every span has, plus x
  for _ in pairs(b) do base = base + 1 end
  T.eq(n - base, 101)
end)

T.test("keys stay exact when the key cache evicts and collected strings' memory is reused", function()
  -- The cache holds (anchors) the Lua strings of its entries and evicts them
  -- as keys come and go: thousands of fresh key strings across collections,
  -- through all three ways of setting start and later attributes.
  local tracer = basalt.tracer("keys")
  for round = 1, 30 do
    local keys = {}
    for i = 1, 40 do keys[i] = string.format("r%d.k%d", round, i) end
    local start = {}
    for i = 1, 10 do start[string.format("s%d.k%d", round, i)] = i end
    local t = tracer:start_span("t", { attributes = start })
    local a = on_span("span", function(s)
      for i = 1, 20 do s:set_attribute(keys[i], i) end
      local more = {}
      for i = 21, 40 do more[keys[i]] = i end
      s:set_attributes(more)
    end)
    t:finish()
    for i = 1, 40 do T.eq(a[keys[i]], i, keys[i]) end
    local r = mem:find("t")
    for i = 1, 10 do T.eq(r.attributes[string.format("s%d.k%d", round, i)], i) end
    mem:clear()
    keys, start = nil, nil
    collectgarbage()
  end
end)

T.test("JSON: sorted keys, compact, arrays for 1..n, {} for empty, null for non-finite", function()
  local a = on_span("span", function(s)
    s:set_input { b = 1, a = { 3, 2 }, c = {}, n = 0 / 0, inf = math.huge, f = 2.0, [5] = "five", t = true }
  end)
  T.eq(a["basalt.span.input"], '{"5":"five","a":[3,2],"b":1,"c":{},"f":2.0,"inf":null,"n":null,"t":true}')
end)

T.test("JSON: UTF-8 kept, control characters escaped, invalid UTF-8 repaired", function()
  local a = on_span("span", function(s)
    s:set_output { text = "héllo\n\"q\"", bad = "a\xffb" }
    s:set_attribute("raw", "x\xc3")
  end)
  T.eq(a["basalt.span.output"], '{"bad":"a\u{FFFD}b","text":"héllo\\n\\"q\\""}')
  T.eq(a.raw, "x\u{FFFD}")
end)

T.test("cycles, functions, userdata and threads become placeholders with a warning", function()
  local t = { name = "loop" }
  t.self = t
  local a = on_span("span", function(s)
    s:set_input { t = t, f = print, co = coroutine.create(print), u = io.stdout }
  end)
  T.eq(a["basalt.span.input"], '{"co":"<thread>","f":"<function>","t":{"name":"loop","self":"<cycle>"},"u":"<userdata>"}')
  basalt.stats() -- delivers queued log messages
  local found = false
  for _, l in ipairs(logs) do if l:find("cycle", 1, true) then found = true end end
  T.truthy(found, "a warning about the cycle was logged")
end)

T.test("a function, userdata or thread value itself is the placeholder string, unquoted", function()
  local a = on_span("span", function(s)
    s:set_input(print)
    s:set_output(io.stdout)
    s:set_attribute("co", coroutine.create(print))
    s:set_attributes { fa = print }
  end)
  T.eq(a["basalt.span.input"], "<function>")
  T.eq(a["basalt.span.output"], "<userdata>")
  T.eq(a.co, "<thread>")
  T.eq(a.fa, "<function>")
end)

T.test("set_attributes serialises tables (arrays too); set_attribute keeps scalar arrays", function()
  local a = on_span("span", function(s)
    s:set_attributes { sb = { 1, 2 }, names = { "a" } }
    s:set_attribute("native", { 1, 2 })
  end)
  T.eq(a.sb, "[1,2]"); T.eq(a.names, '["a"]')
  T.eq(a.native, { 1, 2 })
end)

T.test("JSON floats are written in their shortest round-trip form", function()
  local a = on_span("span", function(s)
    s:set_input { third = 1 / 3, big = 2 ^ 63, tenth = 0.1, one = 1.0, tiny = 5e-324 }
  end)
  T.eq(a["basalt.span.input"],
    '{"big":9.223372036854776e+18,"one":1.0,"tenth":0.1,"third":0.3333333333333333,"tiny":5e-324}')
end)

T.test("tables nested deeper than 64 levels are cut as <too deep>", function()
  local deep = {}
  local cur = deep
  for _ = 1, 70 do cur.next = {}; cur = cur.next end
  local a = on_span("span", function(s) s:set_input(deep) end)
  T.truthy(a["basalt.span.input"]:find('"<too deep>"', 1, true))
  local depth = select(2, a["basalt.span.input"]:gsub("{", ""))
  T.eq(depth, 64)
end)

T.test("set_input / set_output keep scalars typed and strings unquoted", function()
  local a = on_span("span", function(s) s:set_input(7):set_output("plain text") end)
  T.eq(a["basalt.span.input"], 7); T.eq(a["basalt.span.output"], "plain text")
end)

T.test("set_io writes input, output and variables (variables on this span only)", function()
  mem:clear()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function()
    basalt.observe("s", function(s) s:set_io("in", "out", { topic = "x" }) end)
  end)
  local a = mem:find("s").attributes
  T.eq(a["basalt.span.input"], "in"); T.eq(a["basalt.span.output"], "out")
  T.eq(a["basalt.span.variables"], '{"topic":"x"}')
  T.eq(mem:find("r").attributes["basalt.span.variables"], nil, "Decision 10: no copy to the parent")
  T.raises("Span variables must be provided as a mapping.", function()
    basalt.start_observe({ name = "r", feature_slug = "f" }, function(s) s:set_io(nil, nil, "bad") end)
  end)
end)

T.test("observe options input, metadata, variables are applied", function()
  mem:clear()
  basalt.start_observe({ name = "r", feature_slug = "f", input = { q = 1 } }, function()
    basalt.observe({ name = "s", input = "question", metadata = { k = "v" }, variables = { a = 1 } },
      function() end)
  end)
  local a = mem:find("s").attributes
  T.eq(a["basalt.span.input"], "question")
  T.eq(a["basalt.metadata"], '{"k":"v"}')
  T.eq(a["basalt.span.variables"], '{"a":1}')
  T.eq(mem:find("r").attributes["basalt.span.input"], '{"q":1}')
end)

T.test("a wrong metadata, variables or prompt option raises before the span opens", function()
  mem:clear()
  local before = basalt.stats()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function()
    T.raises("metadata must be a mapping", basalt.observe, { name = "a", metadata = 5 }, function() end)
    T.raises("Span variables must be provided as a mapping.", basalt.observe,
      { name = "b", variables = "x" }, function() end)
    T.raises("bad argument #1 to 'observe' (prompt must be a prompt table", basalt.observe,
      { name = "c", prompt = 5 }, function() end)
  end)
  T.raises("metadata must be a mapping", basalt.start_observe,
    { name = "r2", feature_slug = "f", metadata = "x" }, function() end)
  local after = basalt.stats()
  T.eq(after.spans_started - before.spans_started, 1, "only the root opened")
  T.eq(after.spans_ended - before.spans_ended, 1, "and it ended")
end)

T.test("set_metadata rejects non-tables", function()
  T.raises("metadata must be a mapping", function()
    basalt.start_observe({ name = "r", feature_slug = "f" }, function(s) s:set_metadata("x") end)
  end)
end)

T.test("generation helpers write the GenAI attributes", function()
  local a = on_span("generation", function(s)
    s:set_model("gpt-4o"):set_response_model("gpt-4o-2024"):set_operation_name("chat"):set_provider("openai")
    s:set_tokens { input = 120, output = 48 }:set_temperature(0.2):set_top_p(0.9):set_top_k(40)
    s:set_max_tokens(256):set_response_id("resp-1"):set_finish_reasons { "stop", "length" }:set_latency(12.5)
  end)
  T.eq(a["gen_ai.request.model"], "gpt-4o"); T.eq(a["gen_ai.response.model"], "gpt-4o-2024")
  T.eq(a["gen_ai.operation.name"], "chat"); T.eq(a["gen_ai.provider.name"], "openai")
  T.eq(a["gen_ai.usage.input_tokens"], 120); T.eq(a["gen_ai.usage.output_tokens"], 48)
  T.eq(a["gen_ai.request.temperature"], 0.2); T.eq(a["gen_ai.request.top_p"], 0.9)
  T.eq(a["gen_ai.request.top_k"], 40.0); T.eq(a["gen_ai.request.max_tokens"], 256)
  T.eq(a["gen_ai.response.id"], "resp-1")
  T.eq(a["gen_ai.response.finish_reasons"], { "stop", "length" }, "a string array (fixes 22.6)")
  T.eq(a["gen_ai.latency"], 12.5)
end)

T.test("retrieval helpers: query (input + ungated query), results count, top_k as int", function()
  local a = on_span("retrieval", function(s) s:set_query("what is basalt?"):set_results_count(5):set_top_k(3.9) end)
  T.eq(a["basalt.retrieval.query"], "what is basalt?")
  T.eq(a["basalt.span.input"], "what is basalt?")
  T.eq(a["basalt.retrieval.results.count"], 5)
  T.eq(a["basalt.retrieval.top_k"], 3)
end)

T.test("tool, function and event helpers", function()
  local a = on_span("tool", function(s) s:set_tool_name("search"):set_input("q"):set_output({ n = 1 }) end)
  T.eq(a["basalt.tool.name"], "search"); T.eq(a["basalt.tool.input"], "q"); T.eq(a["basalt.tool.output"], '{"n":1}')
  a = on_span("function", function(s) s:set_function_name("fn"):set_stage("parse"):add_metric("rows", 10) end)
  T.eq(a["basalt.function.name"], "fn"); T.eq(a["basalt.function.stage"], "parse")
  T.eq(a["basalt.function.metric.rows"], 10)
  a = on_span("event", function(s) s:set_event_type("click"):set_payload({ x = 1 }) end)
  T.eq(a["basalt.event.type"], "click"); T.eq(a["basalt.event.payload"], '{"x":1}')
  T.eq(a["basalt.span.input"], '{"x":1}')
end)

T.test("set_status: ok is final, unset ignored, unknown raises", function()
  local _, s = on_span("span", function(h) h:set_status("error", "bad"):set_status("unset") end)
  T.eq(s.status, { code = "error", message = "bad" })
  _, s = on_span("span", function(h) h:set_status("ok"):set_status("error", "late") end)
  T.eq(s.status.code, "ok")
  T.raises("unknown status", function()
    basalt.start_observe({ name = "r", feature_slug = "f" }, function(h) h:set_status("weird") end)
  end)
end)

T.test("add_event keeps every attribute, past the first 32 too, and rejects a non-table", function()
  local attrs = {}
  for i = 1, 50 do attrs["a" .. i] = i end
  local _, rec = on_span("span", function(s)
    s:add_event("wide", attrs)
    T.raises("bad argument #2 to 'add_event' (table expected, got number)", function() s:add_event("x", 5) end)
  end)
  local ev = rec.events[1]
  T.eq(ev.name, "wide")
  T.eq(ev.attributes, attrs)
end)

T.test("record_error and add_event add events", function()
  local _, s = on_span("span", function(h)
    h:add_event("cache.miss", { key = "k", n = 2 })
    h:record_error({ type = "ValueError", message = "bad value" })
  end)
  T.eq(s.events[1].name, "cache.miss")
  T.eq(s.events[1].attributes, { key = "k", n = 2 })
  T.eq(s.events[2].name, "exception")
  T.eq(s.events[2].attributes["exception.type"], "ValueError")
  T.eq(s.events[2].attributes["exception.message"], "bad value")
  T.eq(s.status, { code = "error", message = "ValueError: bad value" })
end)

T.test("set_evaluation_config and set_experiment act on trace spans only", function()
  mem:clear()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(root)
    root:set_evaluation_config { sample_rate = 0.5 }:set_experiment { id = "e1", name = "E" }
    basalt.observe("c", function(s) s:set_evaluation_config { sample_rate = 0.1 }:set_experiment("e2") end)
  end)
  local r, c = mem:find("r").attributes, mem:find("c").attributes
  T.eq(r["basalt.span.evaluation.config"], '{"sample_rate":0.5}')
  T.eq(r["basalt.experiment.id"], "e1"); T.eq(r["basalt.experiment.name"], "E")
  T.eq(c["basalt.span.evaluation.config"], nil); T.eq(c["basalt.experiment.id"], nil)
  T.raises("sample_rate must be within [0.0, 1.0].", function()
    basalt.start_observe({ name = "r", feature_slug = "f" }, function(s) s:set_evaluation_config { sample_rate = 2 } end)
  end)
end)

T.test("evaluation_config option is written on the root as JSON", function()
  mem:clear()
  basalt.start_observe({ name = "r", feature_slug = "f", evaluation_config = { sample_rate = 1 } }, function() end)
  T.eq(mem:find("r").attributes["basalt.span.evaluation.config"], '{"sample_rate":1}')
  T.eq(mem:find("r").attributes["basalt.span.should_evaluate"], true)
  T.raises("sample_rate must be within [0.0, 1.0].", basalt.start_observe,
    { name = "r", feature_slug = "f", evaluation_config = { sample_rate = -0.1 } }, function() end)
end)

T.test("set_prompt writes the prompt attributes", function()
  local a = on_span("generation", function(s)
    s:set_prompt { slug = "qa", version = "1.2.0", model = { provider = "openai", model = "gpt-4o" },
      variables = { q = "x" }, text = "Answer x" }
  end)
  T.eq(a["basalt.prompt.slug"], "qa"); T.eq(a["basalt.prompt.version"], "1.2.0")
  T.eq(a["basalt.prompt.model.provider"], "openai"); T.eq(a["basalt.prompt.model.model"], "gpt-4o")
  T.eq(a["basalt.prompt.variables"], '{"q":"x"}')
  T.eq(a["basalt.span.input"], "Answer x")
end)

T.test("a generation's prompt text and completion also write the GenAI messages", function()
  local a = on_span("generation", function(s)
    s:set_prompt('Say "hi"'):set_completion("hi\n")
  end)
  T.eq(a["basalt.span.input"], 'Say "hi"'); T.eq(a["basalt.span.output"], "hi\n")
  T.eq(a["gen_ai.input.messages"], '[{"role":"user","parts":[{"type":"text","content":"Say \\"hi\\""}]}]')
  T.eq(a["gen_ai.output.messages"],
    '[{"role":"assistant","parts":[{"type":"text","content":"hi\\n"}],"finish_reason":"stop"}]')
  local p = on_span("generation", function(s) s:set_prompt { slug = "qa", text = "Answer x" } end)
  T.eq(p["gen_ai.input.messages"], '[{"role":"user","parts":[{"type":"text","content":"Answer x"}]}]')
  local t = on_span("tool", function(s) s:set_prompt("p"):set_completion("c") end)
  T.eq(t["basalt.span.input"], "p"); T.eq(t["basalt.span.output"], "c")
  T.eq(t["gen_ai.input.messages"], nil, "messages on generation spans only")
  T.eq(t["gen_ai.output.messages"], nil)
end)

T.test("current-context helpers act on the current span", function()
  mem:clear()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(root)
    basalt.observe("c", function(s)
      T.eq(basalt.current_span():span_id(), s:span_id())
      T.eq(basalt.root_span():span_id(), root:span_id())
      basalt.set_input("in"); basalt.set_output("out"); basalt.add_evaluator("ev")
    end)
  end)
  local a = mem:find("c").attributes
  T.eq(a["basalt.span.input"], "in"); T.eq(a["basalt.span.output"], "out")
  T.eq(a["basalt.span.evaluators"], { "ev" })
  T.falsy(basalt.current_span():is_recording())
  T.falsy(basalt.root_span():is_recording())
end)

T.test("trace_content = false leaves content out but keeps the rest", function()
  basalt.init { exporters = { mem }, trace_content = false }
  local a = on_span("tool", function(s)
    s:set_input("secret"):set_output("secret"):set_io(nil, nil, { v = 1 }):set_query("q"):set_tool_name("t")
    s:set_payload("p"):set_metadata { m = 1 }
  end)
  for _, k in ipairs({ "basalt.span.input", "basalt.span.output", "basalt.span.variables", "basalt.tool.input",
    "basalt.tool.output", "basalt.event.payload" }) do
    T.eq(a[k], nil, k)
  end
  local g = on_span("generation", function(s) s:set_prompt("secret"):set_completion("secret") end)
  T.eq(g["gen_ai.input.messages"], nil); T.eq(g["gen_ai.output.messages"], nil)
  T.eq(g["basalt.span.input"], nil)
  T.eq(a["basalt.retrieval.query"], "q"); T.eq(a["basalt.tool.name"], "t"); T.eq(a["basalt.metadata"], '{"m":1}')
  basalt.init { exporters = { mem } }
end)

T.test("keys are unique as exported: invalid UTF-8 keys that repair alike are one key", function()
  local text = T.otlp_text(basalt, function()
    basalt.start_observe({ name = "r", feature_slug = "f" }, function(s)
      s:set_attribute("k\xff", 1):set_attribute("k\xff", 2):set_attribute("k\xfe", 3)
      s:set_attributes { ["m\xff"] = 1, ["m\xfe"] = 2 }
      s:add_event("e", { ["a\0x"] = 1, ["a\0y"] = 2, ["b\xff"] = 1, ["b\xfe"] = 2 })
    end)
    basalt.tracer("t"):start_span("plain", { attributes = { ["p\xff"] = 1, ["p\xfe"] = 2 } }):finish()
  end)
  T.eq(T.count(text, '"key":"k\u{FFFD}"'), 1, "one k")
  T.truthy(text:find('"key":"k\u{FFFD}","value":{"intValue":"3"}', 1, true), "the last write wins")
  T.eq(T.count(text, '"key":"m\u{FFFD}"'), 1, "one m")
  T.eq(T.count(text, '"key":"a"'), 1, "one event attribute a")
  T.eq(T.count(text, '"key":"b\u{FFFD}"'), 1, "one event attribute b")
  T.eq(T.count(text, '"key":"p\u{FFFD}"'), 1, "one start attribute p")
  basalt.init { exporters = { mem } }
end)

T.test("a prompt option whose fields raise fails before the span opens", function()
  local before = basalt.stats()
  basalt.start_observe({ name = "r", feature_slug = "f" }, function()
    local bad = setmetatable({}, { __index = function() error("no field") end })
    T.raises("no field", basalt.observe, { name = "p", prompt = bad }, function() end)
  end)
  local after = basalt.stats()
  T.eq(after.spans_started - before.spans_started, 1, "only the root opened")
  T.eq(after.spans_ended - before.spans_ended, 1)
end)

T.test("set_attribute: a key is cut at an embedded NUL, so writing it again replaces it", function()
  -- Read in the OTLP output: two attributes named "k" would make a collector
  -- reject the whole batch.
  local text = T.otlp_text(basalt, function()
    basalt.start_observe({ name = "r", feature_slug = "f" }, function()
      basalt.observe({ name = "s" }, function(s)
        s:set_attribute("k\0ignored", 1)
        s:set_attribute("k", 2)
      end)
    end)
  end)
  T.eq(T.count(text, '"key":"k"'), 1, "one attribute named k")
  T.truthy(text:find('"key":"k","value":{"intValue":"2"}', 1, true), text)
  basalt.init { exporters = { mem } }
end)

T.test("a marker written by hand is written once, with that value", function()
  local text = T.otlp_text(basalt, function()
    basalt.start_observe({ name = "r", feature_slug = "f" }, function()
      basalt.observe({ name = "s", kind = "tool" }, function(s)
        s:set_attribute("basalt.span.kind", "custom"):set_attribute("basalt.in_trace", false)
      end)
      basalt.observe({ name = "plain", kind = "tool" }, function() end)
    end)
  end)
  -- Over the three spans: "s" writes both by hand, "plain" and the root get the markers.
  T.eq(T.count(text, '"key":"basalt.span.kind"'), 3)
  T.eq(T.count(text, '"key":"basalt.in_trace"'), 3)
  T.truthy(text:find('"key":"basalt.span.kind","value":{"stringValue":"custom"}', 1, true))
  T.truthy(text:find('"key":"basalt.in_trace","value":{"boolValue":false}', 1, true))
  T.truthy(text:find('"key":"basalt.span.kind","value":{"stringValue":"tool"}', 1, true))
  T.eq(T.count(text, '"key":"basalt.trace"'), 2, "both children")
  T.eq(T.count(text, '"key":"basalt.root"'), 1)
  basalt.init { exporters = { mem } }
end)

T.run()
