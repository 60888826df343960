/* Contexts: immutable, reference-counted values saying what is current (the
 * span, the Basalt trace it belongs to, and the propagated values: feature
 * slug, identity, experiment, evaluators, should_evaluate, prompt). A context
 * is never changed; "entering" a scope makes a new one and makes it current. A
 * NULL context is the empty context. Thread-safe reference counting: a context
 * may be handed to other threads and coroutines. */
#ifndef BASALT_CONTEXT_H
#define BASALT_CONTEXT_H

#include "basalt/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct basalt_ctx basalt_ctx;
typedef struct basalt_span basalt_span;

/* An identity part is present when its id is non-NULL. */
typedef struct basalt_identity {
    const char *user_id;
    const char *user_name; /* may be NULL */
    const char *org_id;
    const char *org_name; /* may be NULL */
} basalt_identity;

/* An experiment: id required; name and feature_slug optional. */
typedef struct basalt_experiment {
    const char *id;
    const char *name;
    const char *feature_slug;
} basalt_experiment;

/* The prompt context set by a prompt block: copied into every span opened in it. */
typedef struct basalt_prompt_attrs {
    const char *slug;
    const char *version;        /* may be NULL */
    const char *tag;            /* may be NULL */
    const char *provider;       /* may be NULL */
    const char *model;          /* may be NULL */
    const char *variables_json; /* JSON object text, NULL when none */
    bool from_cache;
} basalt_prompt_attrs;

/* Reference counting; both accept NULL. */
BASALT_API basalt_ctx *basalt_ctx_retain(basalt_ctx *c);
BASALT_API void basalt_ctx_release(basalt_ctx *c);

/* The current span of a context (borrowed), or NULL. */
BASALT_API basalt_span *basalt_ctx_span(const basalt_ctx *c);
/* The Basalt root span of the trace the context is in (a new reference: release
 * it), or NULL when outside a trace or once the root has been freed. */
BASALT_API basalt_span *basalt_ctx_root_span(const basalt_ctx *c);
/* True inside a Basalt trace (a start_observe is open in this context). */
BASALT_API bool basalt_ctx_in_trace(const basalt_ctx *c);
/* The propagated feature slug, or NULL. */
BASALT_API const char *basalt_ctx_feature_slug(const basalt_ctx *c);
/* The propagated should_evaluate decision: -1 undecided, 0 false, 1 true. */
BASALT_API int basalt_ctx_should_evaluate(const basalt_ctx *c);
/* The propagated identity (fields NULL when absent); dynamic identity included. */
BASALT_API void basalt_ctx_identity(const basalt_ctx *c, basalt_identity *out);
/* The propagated evaluators (global defaults excluded), borrowed; *n receives the count. */
BASALT_API const char *const *basalt_ctx_evaluators(const basalt_ctx *c, size_t *n);
/* The propagated experiment, or NULL. */
BASALT_API const basalt_experiment *basalt_ctx_experiment(const basalt_ctx *c);
/* The active prompt context, or NULL. */
BASALT_API const basalt_prompt_attrs *basalt_ctx_prompt(const basalt_ctx *c);

/* Derived contexts (new reference; NULL only when out of memory).
 * with_evaluators: union in order, trimmed, blanks and duplicates dropped. */
BASALT_API basalt_ctx *basalt_ctx_with_evaluators(const basalt_ctx *parent,
                                                  const char *const *slugs, size_t n);
/* A context carrying a feature slug and/or an identity for what is started in
 * it (either may be NULL), without opening a Basalt trace: for hosts that build
 * their spans with the tracer API. */
BASALT_API basalt_ctx *basalt_ctx_with_values(const basalt_ctx *parent, const char *feature_slug,
                                              const basalt_identity *identity);
/* The prompt context for a prompt block. */
BASALT_API basalt_ctx *basalt_ctx_with_prompt(const basalt_ctx *parent,
                                              const basalt_prompt_attrs *prompt);
/* A context whose parent is a remote span (from a W3C traceparent): the next
 * start_observe continues its trace id and parent span id. baggage and
 * tracestate are kept verbatim for inject (either may be NULL). */
BASALT_API basalt_ctx *basalt_ctx_remote(const uint8_t trace_id[16], const uint8_t span_id[8],
                                         uint8_t flags, const char *tracestate,
                                         const char *baggage);
/* The W3C fields a context propagates (for inject). Returns false when the
 * context has no valid span. tracestate/baggage are borrowed, may be NULL. */
BASALT_API bool basalt_ctx_w3c(const basalt_ctx *c, uint8_t trace_id[16], uint8_t span_id[8],
                               uint8_t *flags, const char **tracestate, const char **baggage);

/* Thread-local current context for C hosts (the Lua binding keeps one per
 * coroutine instead). attach makes c current and returns the previous one
 * (the caller now owns that reference: pass it to detach). */
BASALT_API basalt_ctx *basalt_ctx_current(void);
BASALT_API basalt_ctx *basalt_ctx_attach(basalt_ctx *c);
BASALT_API void basalt_ctx_detach(basalt_ctx *previous);

#ifdef __cplusplus
}
#endif
#endif
