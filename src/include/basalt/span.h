/* Live spans and the span engine: opening Basalt roots (start_observe) and
 * child spans (observe), writing attributes, ending. Every function is a no-op
 * on NULL or on an ended span; all are thread-safe (one small lock per span). */
#ifndef BASALT_SPAN_H
#define BASALT_SPAN_H

#include "basalt/common.h"
#include "basalt/context.h"
#include "basalt/record.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Semantic kinds of Basalt spans (basalt.span.kind). */
typedef enum basalt_kind {
    BASALT_KIND_SPAN = 0,
    BASALT_KIND_GENERATION,
    BASALT_KIND_RETRIEVAL,
    BASALT_KIND_TOOL,
    BASALT_KIND_FUNCTION,
    BASALT_KIND_EVENT,
    BASALT_KIND_TRACE, /* basalt_trace: start_observe only */
    BASALT_KIND__COUNT
} basalt_kind;

/* "span", "generation", ...; NULL for an invalid kind. */
BASALT_API const char *basalt_kind_name(basalt_kind k);
/* Parses a kind name (case-insensitive); false when unknown. */
BASALT_API bool basalt_kind_parse(const char *s, size_t len, basalt_kind *out);

/* Error text of a failed start (validation), for the caller to raise. */
typedef struct basalt_error {
    char message[256];
} basalt_error;

/* Input of a sampling policy (borrowed views; valid during the call only). */
typedef struct basalt_policy_input {
    const char *trace_id_hex;
    const char *name;
    const char *feature_slug;
    const basalt_identity *identity;
    const basalt_experiment *experiment; /* NULL when none (then no policy runs) */
    const char *metadata_json;           /* NULL when none */
    const char *const *evaluators;
    size_t nevaluators;
    double sample_rate; /* the configured rate that applies without the policy */
} basalt_policy_input;

/* What a policy decided. */
typedef enum basalt_policy_result {
    BASALT_POLICY_DEFER = 0, /* nil / failure: the configured rate decides */
    BASALT_POLICY_TRUE,
    BASALT_POLICY_FALSE,
    BASALT_POLICY_RATE /* *rate holds a rate in [0,1], decided from the trace id */
} basalt_policy_result;

/* A sampling policy; must not fail loudly (return DEFER on any failure). */
typedef basalt_policy_result (*basalt_policy_fn)(void *ud, const basalt_policy_input *in,
                                                 double *rate);

/* Options of a Basalt root or nested trace span (start_observe). */
typedef struct basalt_trace_opts {
    const char *name;                    /* required, trimmed, non-blank */
    const char *feature_slug;            /* required, trimmed, non-blank */
    const basalt_identity *identity;     /* NULL: inherit */
    const basalt_experiment *experiment; /* NULL: inherit */
    const char *const *evaluators;       /* this span's own evaluators */
    size_t nevaluators;
    bool has_sample_rate; /* evaluation_config.sample_rate given */
    double sample_rate;
    const char *evaluation_config_json; /* written as basalt.span.evaluation.config */
    const basalt_ctx *parent;           /* NULL: the empty context */
    basalt_policy_fn policy;            /* overrides the configured policy when set */
    void *policy_ud;
} basalt_trace_opts;

/* Options of a child span (observe). */
typedef struct basalt_span_opts {
    const char *name;                /* required, trimmed, non-blank */
    basalt_kind kind;                /* not BASALT_KIND_TRACE */
    const basalt_identity *identity; /* applies to this span and its subtree */
    const char *const *evaluators;   /* this span's own evaluators */
    size_t nevaluators;
    const basalt_ctx *parent;
} basalt_span_opts;

/* Opens a Basalt root (or a nested trace span inside a trace). On success returns
 * the span and stores in *ctx_out the context to make current while it runs
 * (both are new references). Returns NULL with *ctx_out NULL when the runtime is
 * disabled or shut down (a no-op), and NULL with err filled on a validation
 * error (err->message non-empty). */
BASALT_API basalt_span *basalt_trace_start(const basalt_trace_opts *opts, basalt_ctx **ctx_out,
                                           basalt_error *err);
/* Opens a child span. Outside a Basalt trace returns NULL (no-op, one warning per
 * process); on a validation error returns NULL with err filled. */
BASALT_API basalt_span *basalt_span_start(const basalt_span_opts *opts, basalt_ctx **ctx_out,
                                          basalt_error *err);
/* Options of a plain OpenTelemetry span (the tracer API, for instrumentations
 * and hosts that build spans themselves). It gets no Basalt markers or kind;
 * the values propagated by its parent context (feature slug, identity,
 * experiment, evaluators, should_evaluate, basalt.in_trace inside a trace) and
 * global metadata are applied to it, as the Basalt span processors do for every
 * span. */
typedef struct basalt_raw_span_opts {
    const char *name;          /* required, non-empty */
    basalt_otel_kind kind;     /* BASALT_OTEL_UNSPECIFIED means INTERNAL */
    const char *scope_name;    /* NULL: basalt.observability */
    const char *scope_version; /* may be NULL */
    const basalt_kv *attrs;    /* set at start (copied) */
    size_t nattrs;
    const basalt_ctx *parent; /* NULL: a new trace */
    bool attrs_unique;        /* no key repeats in attrs (a Lua table's): skips that check */
    /* Optional, parallel to attrs: interned keys (basalt_key_intern) used
     * instead of the kv's key where not NULL. */
    const struct basalt_key *const *attr_keys;
} basalt_raw_span_opts;

/* Starts a plain span. Returns NULL when the runtime is disabled (a no-op) or
 * with err filled when the name is missing. *ctx_out (may be NULL) receives the
 * context with the span current. */
BASALT_API basalt_span *basalt_raw_span_start(const basalt_raw_span_opts *opts,
                                              basalt_ctx **ctx_out, basalt_error *err);
/* A process-lifetime copy of a scope name or version, the same pointer for the
 * same text (tracers pass it in basalt_raw_span_opts to skip a copy per span);
 * NULL when too many distinct values exist. */
BASALT_API const char *basalt_scope_intern(const char *s);
/* The context in which s is the current span (a new reference). */
BASALT_API basalt_ctx *basalt_span_context(basalt_span *s);

/* Ends the span (once; later calls are ignored) and hands its record to the
 * pipeline. end_ns = 0 means now. */
BASALT_API void basalt_span_end(basalt_span *s, uint64_t end_ns);

BASALT_API basalt_span *basalt_span_retain(basalt_span *s);
BASALT_API void basalt_span_release(basalt_span *s);

/* Reading */
BASALT_API void basalt_span_trace_id(const basalt_span *s, uint8_t out[16]);
BASALT_API void basalt_span_id(const basalt_span *s, uint8_t out[8]);
BASALT_API bool basalt_span_is_recording(const basalt_span *s);
BASALT_API basalt_kind basalt_span_kind(const basalt_span *s);
/* The trace id, span id and kind in one call (zeros and BASALT_KIND_SPAN for NULL). */
BASALT_API basalt_kind basalt_span_ids(const basalt_span *s, uint8_t trace_id[16],
                                       uint8_t span_id[8]);
/* True for start_observe spans (roots and nested traces). */
BASALT_API bool basalt_span_is_trace(const basalt_span *s);

/* Writing (copies key and value; later writes of a key replace earlier ones;
 * invalid UTF-8 is repaired). A NONE value writes nothing. */
BASALT_API void basalt_span_set_attr(basalt_span *s, const char *key, basalt_value v);
/* The same with the key's length known (key_len == strlen(key); bindings have it). */
BASALT_API void basalt_span_set_attr_n(basalt_span *s, const char *key, size_t key_len,
                                       basalt_value v);
/* An attribute key interned for the life of the process: setting it costs no
 * hashing or copying of the key, and the exporter writes it ready-encoded. */
typedef struct basalt_key basalt_key;
/* Interns key (cut at a NUL, invalid UTF-8 repaired; thread-safe). NULL when
 * the table is full (thousands of distinct keys) or the key is over 255 bytes:
 * then use basalt_span_set_attr_n. The same text gives the same pointer. */
BASALT_API const basalt_key *basalt_key_intern(const char *key, size_t len);
/* The interned key's text (as exported) and its length. */
BASALT_API const char *basalt_key_str(const basalt_key *k, size_t *len);
/* basalt_span_set_attr_n with an interned key. */
BASALT_API void basalt_span_set_attr_key(basalt_span *s, const basalt_key *key, basalt_value v);
/* Content-gated payloads (skipped when trace_content is off): input/output also
 * write basalt.tool.input/output on tool spans; the event payload also writes
 * basalt.span.input. */
BASALT_API void basalt_span_set_input(basalt_span *s, basalt_value v);
BASALT_API void basalt_span_set_output(basalt_span *s, basalt_value v);
BASALT_API void basalt_span_set_variables(basalt_span *s, const char *json_object);
BASALT_API void basalt_span_set_event_payload(basalt_span *s, basalt_value v);
/* The prompt text as input; on generation spans also (gated) gen_ai.input.messages. */
BASALT_API void basalt_span_set_prompt_text(basalt_span *s, const char *text, size_t len);
/* The completion as output; on generation spans also (gated) gen_ai.output.messages. */
BASALT_API void basalt_span_set_completion(basalt_span *s, const char *text, size_t len);
/* Writes a gated attribute (e.g. gen_ai.input.messages) only when content is on. */
BASALT_API void basalt_span_set_content_attr(basalt_span *s, const char *key, basalt_value v);
/* Merges one key into the span's basalt.metadata JSON object (value is JSON text). */
BASALT_API void basalt_span_set_metadata(basalt_span *s, const char *key, const char *json_value);
/* Span-only evaluator (trimmed; blank ignored; duplicates dropped). */
BASALT_API void basalt_span_add_evaluator(basalt_span *s, const char *slug);
/* Writes identity on this span only. */
BASALT_API void basalt_span_set_identity(basalt_span *s, const basalt_identity *id);
/* Writes basalt.span.evaluation.config (trace spans only; ignored elsewhere). */
BASALT_API void basalt_span_set_evaluation_config(basalt_span *s, const char *json);
/* Writes the experiment attributes (trace spans only; ignored elsewhere). */
BASALT_API void basalt_span_set_experiment(basalt_span *s, const basalt_experiment *e);
/* Writes basalt.prompt.* attributes. */
BASALT_API void basalt_span_set_prompt(basalt_span *s, const basalt_prompt_attrs *p);
/* Sets the status; OK is final, UNSET is ignored (OpenTelemetry rules). */
BASALT_API void basalt_span_set_status(basalt_span *s, basalt_status_code code,
                                       const char *message);
/* Adds an event (attributes copied). */
BASALT_API void basalt_span_add_event(basalt_span *s, const char *name, const basalt_kv *attrs,
                                      size_t n);
/* Records an exception event and sets status ERROR "<type>: <message>". */
BASALT_API void basalt_span_record_exception(basalt_span *s, const char *type, const char *message,
                                             const char *stacktrace);

/* basalt.set_identity: writes the context's current span and its trace's root,
 * and every span started later in that trace inherits it (unless an inner
 * start_observe sets its own). */
BASALT_API void basalt_set_dynamic_identity(const basalt_ctx *c, const basalt_identity *id);

/* Decides a rate from a trace id (TraceIdRatioBased: low 56 bits < rate * 2^56). */
BASALT_API bool basalt_sample_trace_id(const uint8_t trace_id[16], double rate);

#ifdef __cplusplus
}
#endif
#endif
