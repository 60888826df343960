-- The tracer API: plain OpenTelemetry spans (instrumentations, hosts), which
-- still receive every value their context propagates.
local T = require("testlib")
local basalt = require("basalt")

local mem = basalt.memory_exporter()
basalt.init { exporters = { mem } }
local tracer = basalt.tracer("my-instrumentation", "2.1.0")

T.test("a plain span has its scope, kind and attributes and no Basalt markers", function()
  mem:clear()
  local s = tracer:start_span("GET /users", { kind = "client", attributes = { ["http.method"] = "GET", n = 2 } })
  T.truthy(s:is_recording())
  s:set_attribute("http.status_code", 200):finish()
  T.falsy(s:is_recording())
  local r = mem:find("GET /users")
  T.eq(r.kind, "client")
  T.eq(r.scope, "my-instrumentation")
  T.eq(r.attributes, { ["http.method"] = "GET", n = 2, ["http.status_code"] = 200 })
  T.eq(r.parent_span_id, nil)
end)

T.test("every start attribute is kept, past the first 64 too", function()
  mem:clear()
  local attrs, want = {}, {}
  for i = 1, 100 do attrs["k" .. i] = i; want["k" .. i] = i end
  attrs.list = { 1, 2 }; want.list = { 1, 2 }
  attrs[1] = "positional keys are not attributes"
  tracer:start_span("wide", { attributes = attrs }):finish()
  T.eq(mem:find("wide").attributes, want)
  T.raises("bad argument #3 to 'start_span' (attributes must be a table)", tracer.start_span, tracer, "x",
    { attributes = 5 })
end)

T.test("inside a Basalt trace a plain span gets in_trace and every propagated value", function()
  mem:clear()
  basalt.init { exporters = { mem }, sample_rate = 1.0 }
  basalt.start_observe({ name = "root", feature_slug = "chat", identity = { user = { id = "u1" } },
    experiment = "exp-9" }, function()
    basalt.with_evaluators({ "quality" }, function()
      tracer:start_span("openai.chat"):finish()
    end)
  end)
  local a = mem:find("openai.chat").attributes
  T.eq(a["basalt.in_trace"], true)
  T.eq(a["basalt.span.feature_slug"], "chat")
  T.eq(a["basalt.user.id"], "u1")
  T.eq(a["basalt.experiment.id"], "exp-9")
  T.eq(a["basalt.span.evaluators"], { "quality" })
  T.eq(a["basalt.span.should_evaluate"], true)
  T.eq(a["basalt.span.kind"], nil, "no Basalt kind on a plain span")
  T.eq(mem:find("openai.chat").parent_span_id, mem:find("root").span_id)
  basalt.init { exporters = { mem } }
end)

T.test("context_with carries feature slug and identity to spans started in it, without a trace", function()
  mem:clear()
  local root = tracer:start_span("QA System")
  local ctx = basalt.context_with(root:context(), { feature_slug = "qa",
    identity = { user = { id = "user-1", name = "Alice" }, organization = { id = "org-1" } } })
  tracer:start_span("child", { parent = ctx }):finish()
  basalt.with_context(ctx, function() tracer:start_span("via-with-context"):finish() end)
  root:finish()
  for _, name in ipairs({ "child", "via-with-context" }) do
    local s = mem:find(name)
    T.eq(s.parent_span_id, mem:find("QA System").span_id, name)
    T.eq(s.attributes, { ["basalt.span.feature_slug"] = "qa", ["basalt.user.id"] = "user-1",
      ["basalt.user.name"] = "Alice", ["basalt.organization.id"] = "org-1" }, name)
  end
  T.eq(mem:find("QA System").attributes, {})
end)

T.test("start_observe under a plain recording span is a root and backfills the parent", function()
  mem:clear()
  local server = tracer:start_span("HTTP POST /chat", { kind = "server" })
  basalt.with_context(server:context(), function()
    basalt.start_observe({ name = "chat", feature_slug = "support", experiment = { id = "e1", name = "E" } },
      function() end)
  end)
  server:finish()
  local chat, srv = mem:find("chat"), mem:find("HTTP POST /chat")
  T.eq(chat.attributes["basalt.root"], true)
  T.eq(chat.parent_span_id, srv.span_id)
  T.eq(chat.trace_id, srv.trace_id)
  T.eq(srv.attributes["basalt.in_trace"], true)
  T.eq(srv.attributes["basalt.span.kind"], "span")
  T.eq(srv.attributes["basalt.span.feature_slug"], "support")
  T.eq(srv.attributes["basalt.experiment.id"], "e1")
  T.eq(srv.attributes["basalt.user.id"], nil, "no identity on the backfilled parent")
end)

T.test("observe inside a plain span's context outside any trace is still a no-op", function()
  mem:clear()
  local s = tracer:start_span("outer")
  basalt.with_context(s:context(), function() basalt.observe("nothing", function() end) end)
  s:finish()
  T.eq(mem:find("nothing"), nil)
end)

T.test("wrong arguments raise naming them", function()
  T.raises("bad argument #3 to 'start_span' (unknown span kind 'sideways')", tracer.start_span, tracer, "x",
    { kind = "sideways" })
  T.raises("bad argument #2 to 'start_span'", tracer.start_span, tracer, nil)
  T.raises("bad argument #1 to 'context_with'", basalt.context_with, 42, {})
end)

T.test("start attributes: keys equal up to an embedded NUL are one attribute", function()
  -- Read in the OTLP output: two attributes named "k" would make a collector
  -- reject the whole batch.
  local text = T.otlp_text(basalt, function()
    tracer:start_span("s", { attributes = { ["k\0a"] = 1, ["k\0b"] = 2, other = 3 } }):finish()
  end)
  T.eq(T.count(text, '"key":"k"'), 1, "one attribute named k: " .. text)
  T.truthy(text:find('"key":"other"', 1, true))
  basalt.init { exporters = { mem } }
end)

T.run()
