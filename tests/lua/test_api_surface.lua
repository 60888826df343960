-- The public surface: every name of the Lua API contract exists, and the LuaLS
-- type stubs in docs/luals declare exactly what the module exports.
local T = require("testlib")
local basalt = require("basalt")

local src = assert(os.getenv("BASALT_SOURCE_DIR"))
local f = assert(io.open(src .. "/docs/luals/basalt.lua"))
local stubs = f:read("a")
f:close()

local module_functions = {
  "init", "shutdown", "force_flush", "stats", "start_observe", "observe", "start_observe_wrap",
  "observe_wrap", "with_evaluators", "current_span", "root_span", "set_identity", "set_input",
  "set_output", "add_evaluator", "capture", "with_context", "bind", "inject", "extract",
  "memory_exporter", "tracer", "context_with",
}
local span_methods = {
  "set_attribute", "set_attributes", "set_input", "set_output", "set_io", "set_metadata",
  "set_identity", "add_evaluator", "add_evaluators", "set_evaluation_config", "set_experiment",
  "set_prompt", "set_completion", "set_status", "record_error", "add_event", "set_model", "set_response_model",
  "set_operation_name", "set_provider", "set_tokens", "set_temperature", "set_top_p", "set_top_k",
  "set_max_tokens", "set_response_id", "set_finish_reasons", "set_latency", "set_query",
  "set_results_count", "set_tool_name", "set_function_name", "set_stage", "add_metric",
  "set_event_type", "set_payload", "trace_id", "span_id", "is_recording", "finish", "context",
}

T.test("every module function of the contract exists", function()
  for _, name in ipairs(module_functions) do T.eq(type(basalt[name]), "function", name) end
  T.eq(type(basalt.version), "string")
  T.eq(basalt.kind.GENERATION, "generation")
  for _, name in ipairs({ "get", "describe", "list" }) do T.eq(type(basalt.prompts[name]), "function", name) end
end)

T.test("every span handle method exists, on recording and no-op handles alike", function()
  basalt.init { exporters = { basalt.memory_exporter() } }
  local handles = { basalt.current_span() }
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(s) handles[2] = s end)
  for _, h in ipairs(handles) do
    for _, m in ipairs(span_methods) do T.eq(type(h[m]), "function", m) end
  end
end)

T.test("the type stubs declare every exported function and method", function()
  for name, v in pairs(basalt) do
    if type(v) == "function" and not name:match("^_") then
      T.truthy(stubs:find("function basalt." .. name .. "(", 1, true), "stub for basalt." .. name)
    end
  end
  for name in pairs(basalt.prompts) do
    T.truthy(stubs:find("function basalt.prompts." .. name .. "(", 1, true), "stub for prompts." .. name)
  end
  local index = getmetatable(basalt.current_span()).__index
  for name in pairs(index) do
    T.truthy(stubs:find("function Span:" .. name .. "(", 1, true), "stub for span:" .. name)
  end
end)

T.run()
