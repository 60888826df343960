---@meta basalt
-- Type stubs for lua-language-server (LuaLS): add this folder to
-- `workspace.library` and editors complete and check the basalt API.
-- Declarations only; the module itself is implemented in C (basalt.core).

---@class basalt.Identity
---@field user? { id: string, name?: string }
---@field organization? { id: string, name?: string }

---@class basalt.Experiment
---@field id string
---@field name? string
---@field feature_slug? string

---@alias basalt.Kind "generation"|"retrieval"|"tool"|"function"|"event"|"span"
---@alias basalt.Evaluators string|{ slug: string, metadata?: table }|(string|{ slug: string })[]
---@alias basalt.IdentityArg basalt.Identity|string|fun(...): basalt.Identity?

---@class basalt.TraceOpts
---@field name string                       required, non-blank
---@field feature_slug string               required, non-blank
---@field identity? basalt.IdentityArg
---@field metadata? table                   this span's basalt.metadata (JSON, merged)
---@field experiment? string|basalt.Experiment
---@field evaluators? basalt.Evaluators     this span only
---@field evaluation_config? { sample_rate: number }
---@field input? any
---@field parent? basalt.Context            from basalt.extract: continue a remote trace

---@class basalt.SpanOpts
---@field name string
---@field kind? basalt.Kind                 default "span"
---@field input? any
---@field metadata? table
---@field evaluators? basalt.Evaluators
---@field identity? basalt.IdentityArg      this span and its subtree
---@field variables? table
---@field prompt? basalt.Prompt|table

---@class basalt.Span
local Span = {}
---@return basalt.Span
function Span:set_attribute(key, value) end
---@param attrs table<string, any>
---@return basalt.Span
function Span:set_attributes(attrs) end
---@return basalt.Span
function Span:set_input(value) end
---@return basalt.Span
function Span:set_output(value) end
---@param variables? table
---@return basalt.Span
function Span:set_io(input, output, variables) end
---@param metadata table
---@return basalt.Span
function Span:set_metadata(metadata) end
---@param identity basalt.Identity
---@return basalt.Span
function Span:set_identity(identity) end
---@return basalt.Span
function Span:add_evaluator(slug) end
---@return basalt.Span
function Span:add_evaluators(...) end
---@param config { sample_rate: number }
---@return basalt.Span
function Span:set_evaluation_config(config) end
---@param experiment string|basalt.Experiment
---@return basalt.Span
function Span:set_experiment(experiment) end
---@param prompt string|table a prompt text, or a prompt object
---@return basalt.Span
function Span:set_prompt(prompt) end
---@param text string the completion: the output, and gen_ai.output.messages on generation spans
---@return basalt.Span
function Span:set_completion(text) end
---@param code "ok"|"error"|"unset"
---@param message? string
---@return basalt.Span
function Span:set_status(code, message) end
---@return basalt.Span
function Span:record_error(err) end
---@param attrs? table<string, any>
---@return basalt.Span
function Span:add_event(name, attrs) end
---@return basalt.Span
function Span:set_model(model) end
---@return basalt.Span
function Span:set_response_model(model) end
---@return basalt.Span
function Span:set_operation_name(name) end
---@return basalt.Span
function Span:set_provider(provider) end
---@param tokens { input?: integer, output?: integer }
---@return basalt.Span
function Span:set_tokens(tokens) end
---@return basalt.Span
function Span:set_temperature(t) end
---@return basalt.Span
function Span:set_top_p(p) end
---@return basalt.Span
function Span:set_top_k(k) end
---@return basalt.Span
function Span:set_max_tokens(n) end
---@return basalt.Span
function Span:set_response_id(id) end
---@param reasons string|string[]
---@return basalt.Span
function Span:set_finish_reasons(reasons) end
---@return basalt.Span
function Span:set_latency(ms) end
---@return basalt.Span
function Span:set_query(query) end
---@return basalt.Span
function Span:set_results_count(n) end
---@return basalt.Span
function Span:set_tool_name(name) end
---@return basalt.Span
function Span:set_function_name(name) end
---@return basalt.Span
function Span:set_stage(stage) end
---@return basalt.Span
function Span:add_metric(key, value) end
---@return basalt.Span
function Span:set_event_type(t) end
---@return basalt.Span
function Span:set_payload(payload) end
---@return string trace_id 32 lowercase hex
function Span:trace_id() end
---@return string span_id 16 lowercase hex
function Span:span_id() end
---@return boolean
function Span:is_recording() end
--- Ends a span started with tracer:start_span (blocks end their own span).
---@return basalt.Span
function Span:finish() end
--- A context with this span current, e.g. as `parent` of other spans. Once the
--- span's block has ended, the context has only the span's ids as its parent
--- (like an extracted one), without the values the span propagated.
---@return basalt.Context
function Span:context() end

---@class basalt.Context

---@class basalt.RecordedSpan
---@field name string
---@field trace_id string
---@field span_id string
---@field parent_span_id? string
---@field kind "internal"|"server"|"client"|"producer"|"consumer"
---@field scope string
---@field attributes table<string, any>
---@field status { code: "unset"|"ok"|"error", message?: string }
---@field events { name: string, time: integer, attributes: table }[]
---@field start_time integer ns since the epoch
---@field end_time integer

---@class basalt.MemoryExporter
local MemoryExporter = {}
---@return basalt.RecordedSpan[]
function MemoryExporter:spans() end
---@return basalt.RecordedSpan?
function MemoryExporter:find(name) end
---@return basalt.MemoryExporter
function MemoryExporter:clear() end
---@return integer
function MemoryExporter:count() end

---@class basalt.Tracer
local Tracer = {}
---@param name string
---@param opts? { kind?: "internal"|"server"|"client"|"producer"|"consumer", attributes?: table, parent?: basalt.Context }
---@return basalt.Span
function Tracer:start_span(name, opts) end

---@class basalt.Prompt
---@field slug string
---@field version string
---@field tag? string
---@field text string
---@field system_text string
---@field raw_text string
---@field raw_system_text string
---@field model { provider: string, model: string, version: string, parameters: table }
---@field variables? table
---@field tools table
---@field tool_choice? table
---@field from_cache boolean
local Prompt = {}
---@param variables table
---@return basalt.Prompt?, basalt.Error?
function Prompt:compile(variables) end

---@class basalt.Error
---@field code string  bad_request|unauthorized|forbidden|not_found|http_<status>|network|timeout|invalid_json|template_unsupported|template_syntax
---@field message string
---@field status? integer

---@class basalt.Stats
---@field spans_started integer
---@field spans_ended integer
---@field spans_exported integer
---@field spans_dropped integer
---@field export_failures integer
---@field export_retries integer
---@field queue_size integer
---@field exporters { type: string, spans_exported: integer, spans_failed: integer, spans_dropped: integer, export_failures: integer, export_retries: integer, queue_size: integer }[]

---@class basalt
---@field version string
---@field kind { GENERATION: "generation", RETRIEVAL: "retrieval", TOOL: "tool", FUNCTION: "function", EVENT: "event", SPAN: "span" }
local basalt = {}

---@param opts? table  see README, Configuration
---@return true
function basalt.init(opts) end
---@param timeout_ms? integer default 30000
---@return boolean ok, basalt.Stats stats
function basalt.shutdown(timeout_ms) end
---@param timeout_ms? integer
---@return boolean
function basalt.force_flush(timeout_ms) end
---@return basalt.Stats
function basalt.stats() end

---@generic R
---@param opts basalt.TraceOpts|string
---@param fn fun(span: basalt.Span, ...): R
---@return R
function basalt.start_observe(opts, fn, ...) end
---@generic R
---@param opts basalt.SpanOpts|string
---@param fn fun(span: basalt.Span, ...): R
---@return R
function basalt.observe(opts, fn, ...) end
---@param opts basalt.TraceOpts
---@param fn function
---@return function
function basalt.start_observe_wrap(opts, fn) end
---@param opts basalt.SpanOpts|string
---@param fn function
---@return function
function basalt.observe_wrap(opts, fn) end
---@param evaluators basalt.Evaluators
---@param fn function
function basalt.with_evaluators(evaluators, fn, ...) end

---@return basalt.Span
function basalt.current_span() end
---@return basalt.Span
function basalt.root_span() end
---@param identity basalt.Identity
function basalt.set_identity(identity) end
function basalt.set_input(value) end
function basalt.set_output(value) end
function basalt.add_evaluator(slug) end

---@return basalt.Context
function basalt.capture() end
---@param ctx basalt.Context?
---@param fn function
function basalt.with_context(ctx, fn, ...) end
---@param fn function
---@return function
function basalt.bind(fn) end
---@param headers? table<string, string>
---@return table<string, string>
function basalt.inject(headers) end
---@param headers table<string, string>
---@return basalt.Context?
function basalt.extract(headers) end
---@param parent basalt.Context?
---@param values { feature_slug?: string, identity?: basalt.Identity }
---@return basalt.Context
function basalt.context_with(parent, values) end
---@param name? string instrumentation scope name
---@param version? string
---@return basalt.Tracer
function basalt.tracer(name, version) end

---@return basalt.MemoryExporter
function basalt.memory_exporter() end

basalt.prompts = {}
---@param slug string
---@param opts? { version?: string, tag?: string, variables?: table, cache?: boolean }
---@param fn? fun(prompt: basalt.Prompt): any  block form: spans inside carry the prompt
---@return basalt.Prompt?, basalt.Error?
function basalt.prompts.get(slug, opts, fn) end
---@return table?, basalt.Error?
function basalt.prompts.describe(slug, opts) end
---@param opts? { feature_slug?: string }
---@return table[]?, basalt.Error?
function basalt.prompts.list(opts) end

return basalt
