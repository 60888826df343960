/* Attribute keys and fixed values: the one place these strings are typed. */
#ifndef BASALT_ATTRS_H
#define BASALT_ATTRS_H

/* Markers and classification */
#define BASALT_ATTR_ROOT      "basalt.root"
#define BASALT_ATTR_TRACE     "basalt.trace"
#define BASALT_ATTR_IN_TRACE  "basalt.in_trace"
#define BASALT_ATTR_SPAN_KIND "basalt.span.kind"

/* Propagated trace-level values */
#define BASALT_ATTR_FEATURE_SLUG            "basalt.span.feature_slug"
#define BASALT_ATTR_USER_ID                 "basalt.user.id"
#define BASALT_ATTR_USER_NAME               "basalt.user.name"
#define BASALT_ATTR_ORG_ID                  "basalt.organization.id"
#define BASALT_ATTR_ORG_NAME                "basalt.organization.name"
#define BASALT_ATTR_EXPERIMENT_ID           "basalt.experiment.id"
#define BASALT_ATTR_EXPERIMENT_NAME         "basalt.experiment.name"
#define BASALT_ATTR_EXPERIMENT_FEATURE_SLUG "basalt.experiment.feature_slug"
#define BASALT_ATTR_SHOULD_EVALUATE         "basalt.span.should_evaluate"
#define BASALT_ATTR_EVALUATORS              "basalt.span.evaluators"
#define BASALT_ATTR_EVALUATION_CONFIG       "basalt.span.evaluation.config"
#define BASALT_ATTR_META_PREFIX             "basalt.meta."

/* Payloads */
#define BASALT_ATTR_INPUT     "basalt.span.input"
#define BASALT_ATTR_OUTPUT    "basalt.span.output"
#define BASALT_ATTR_VARIABLES "basalt.span.variables"
#define BASALT_ATTR_METADATA  "basalt.metadata"

/* GenAI */
#define BASALT_ATTR_GENAI_REQUEST_MODEL   "gen_ai.request.model"
#define BASALT_ATTR_GENAI_RESPONSE_MODEL  "gen_ai.response.model"
#define BASALT_ATTR_GENAI_OPERATION_NAME  "gen_ai.operation.name"
#define BASALT_ATTR_GENAI_PROVIDER_NAME   "gen_ai.provider.name"
#define BASALT_ATTR_GENAI_INPUT_TOKENS    "gen_ai.usage.input_tokens"
#define BASALT_ATTR_GENAI_OUTPUT_TOKENS   "gen_ai.usage.output_tokens"
#define BASALT_ATTR_GENAI_TEMPERATURE     "gen_ai.request.temperature"
#define BASALT_ATTR_GENAI_TOP_P           "gen_ai.request.top_p"
#define BASALT_ATTR_GENAI_TOP_K           "gen_ai.request.top_k"
#define BASALT_ATTR_GENAI_MAX_TOKENS      "gen_ai.request.max_tokens"
#define BASALT_ATTR_GENAI_RESPONSE_ID     "gen_ai.response.id"
#define BASALT_ATTR_GENAI_FINISH_REASONS  "gen_ai.response.finish_reasons"
#define BASALT_ATTR_GENAI_LATENCY         "gen_ai.latency"
#define BASALT_ATTR_GENAI_INPUT_MESSAGES  "gen_ai.input.messages"
#define BASALT_ATTR_GENAI_OUTPUT_MESSAGES "gen_ai.output.messages"

/* Kind-specific */
#define BASALT_ATTR_RETRIEVAL_QUERY         "basalt.retrieval.query"
#define BASALT_ATTR_RETRIEVAL_RESULTS_COUNT "basalt.retrieval.results.count"
#define BASALT_ATTR_RETRIEVAL_TOP_K         "basalt.retrieval.top_k"
#define BASALT_ATTR_TOOL_NAME               "basalt.tool.name"
#define BASALT_ATTR_TOOL_INPUT              "basalt.tool.input"
#define BASALT_ATTR_TOOL_OUTPUT             "basalt.tool.output"
#define BASALT_ATTR_FUNCTION_NAME           "basalt.function.name"
#define BASALT_ATTR_FUNCTION_STAGE          "basalt.function.stage"
#define BASALT_ATTR_FUNCTION_METRIC_PREFIX  "basalt.function.metric."
#define BASALT_ATTR_EVENT_TYPE              "basalt.event.type"
#define BASALT_ATTR_EVENT_PAYLOAD           "basalt.event.payload"

/* Prompts */
#define BASALT_ATTR_PROMPT_SLUG           "basalt.prompt.slug"
#define BASALT_ATTR_PROMPT_VERSION        "basalt.prompt.version"
#define BASALT_ATTR_PROMPT_TAG            "basalt.prompt.tag"
#define BASALT_ATTR_PROMPT_MODEL_PROVIDER "basalt.prompt.model.provider"
#define BASALT_ATTR_PROMPT_MODEL_MODEL    "basalt.prompt.model.model"
#define BASALT_ATTR_PROMPT_VARIABLES      "basalt.prompt.variables"
#define BASALT_ATTR_PROMPT_FROM_CACHE     "basalt.prompt.from_cache"

/* Request spans */
#define BASALT_ATTR_REQUEST_DURATION_MS   "basalt.request.duration_ms"
#define BASALT_ATTR_REQUEST_SUCCESS       "basalt.request.success"
#define BASALT_ATTR_HTTP_RESPONSE_TIME_MS "http.response_time_ms"
#define BASALT_ATTR_HTTP_STATUS_CODE      "http.status_code"
#define BASALT_ATTR_HTTP_METHOD           "http.method"
#define BASALT_ATTR_HTTP_URL              "http.url"

/* Exception events */
#define BASALT_EVENT_EXCEPTION           "exception"
#define BASALT_ATTR_EXCEPTION_TYPE       "exception.type"
#define BASALT_ATTR_EXCEPTION_MESSAGE    "exception.message"
#define BASALT_ATTR_EXCEPTION_STACKTRACE "exception.stacktrace"

/* Resource */
#define BASALT_RES_SERVICE_NAME           "service.name"
#define BASALT_RES_SERVICE_VERSION        "service.version"
#define BASALT_RES_DEPLOYMENT_ENVIRONMENT "deployment.environment"
#define BASALT_RES_SDK_NAME               "telemetry.sdk.name"
#define BASALT_RES_SDK_LANGUAGE           "telemetry.sdk.language"
#define BASALT_RES_SDK_VERSION            "telemetry.sdk.version"
#define BASALT_RES_BASALT_SDK_TYPE        "basalt.sdk.type"
#define BASALT_RES_BASALT_SDK_VERSION     "basalt.sdk.version"

/* Fixed values */
#define BASALT_SDK_NAME      "basalt-lua"
#define BASALT_SDK_TYPE      "lua"
#define BASALT_SDK_LANGUAGE  "lua"
#define BASALT_SCOPE_DEFAULT "basalt.observability"

/* Prompts client: span names and section 15's request-span metadata keys */
#define BASALT_SPAN_PROMPT_GET          "prompt.get"
#define BASALT_SPAN_PROMPTS_DESCRIBE    "basalt.sdk.prompts.describe"
#define BASALT_SPAN_PROMPTS_LIST        "basalt.sdk.prompts.list"
#define BASALT_META_API_CLIENT          "basalt.api.client"
#define BASALT_META_API_OPERATION       "basalt.api.operation"
#define BASALT_META_INTERNAL_API        "basalt.internal.api"
#define BASALT_META_PROMPT_FEATURE_SLUG "basalt.prompt.feature_slug"
#define BASALT_API_CLIENT_PROMPTS       "prompts"

#endif
