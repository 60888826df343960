/* Internal: the structures shared by contexts, spans and the runtime.
 *
 * Ownership in one picture:
 *   basalt_span --embeds--> basalt_ctx (the context current while it runs)
 *   basalt_ctx  --ref-->    prop (immutable propagated values)
 *   prop        --ref-->    base prop (strings shared with it), trace_scope
 *   trace_scope --weak-->   root span (cleared when the root is freed; no cycle)
 *   basalt_span --ref-->    pipeline (config + processors) it reports to
 */
#ifndef BASALT_ENGINE_H
#define BASALT_ENGINE_H

#include "basalt/context.h"
#include "basalt/processor.h"
#include "basalt/runtime.h"
#include "basalt/span.h"
#include "record_impl.h"

#include <pthread.h>
#include <stdatomic.h>

/* A tiny spinlock: critical sections here are a handful of stores. */
typedef struct spin {
    atomic_flag f;
} spin;
static inline void spin_lock(spin *s) {
    while (atomic_flag_test_and_set_explicit(&s->f, memory_order_acquire)) {
    }
}
static inline void spin_unlock(spin *s) {
    atomic_flag_clear_explicit(&s->f, memory_order_release);
}

/* Identity snapshot (immutable once built). */
typedef struct ident {
    const char *user_id, *user_name, *org_id, *org_name;
} ident;

/* One start_observe scope: holds the trace's dynamic identity. Mutable, so
 * guarded by `lock`. */
typedef struct trace_scope {
    _Atomic int rc;
    pthread_mutex_t lock;       /* guards root and dyn */
    basalt_span *root;          /* weak: cleared when that span is freed */
    struct dyn_ident *dyn;      /* owned; NULL when set_identity never ran */
    _Atomic bool has_dyn;       /* fast check without the lock */
    bool own_user, own_org;     /* this scope's start_observe set its own identity */
    struct trace_scope *parent; /* enclosing scope (ref), NULL at the root */
} trace_scope;

/* Propagated values: immutable, shared by every context that does not change
 * them. Strings point into this prop's storage or a base prop's. */
typedef struct prop {
    _Atomic int rc;
    struct prop *base;  /* keeps borrowed strings alive (ref) */
    trace_scope *scope; /* ref; NULL outside a Basalt trace */
    bool in_trace;
    const char *feature_slug;
    ident id;
    bool identity_from_observe; /* an observe{identity=} beats dynamic identity */
    bool has_experiment;
    basalt_experiment exp;
    const char **evaluators; /* context evaluators (with_evaluators) */
    size_t nevaluators;
    int should_evaluate; /* -1 undecided, 0, 1 */
    bool has_prompt;
    basalt_prompt_attrs prompt;
    const char *tracestate, *baggage; /* remote W3C state, carried for inject */
    struct pchunk *chunks;            /* owned storage for this prop's strings */
    size_t inline_used;
    char inline_buf[128]; /* the first strings (an identity and a slug fit): no malloc */
} prop;

struct basalt_ctx {
    _Atomic int rc;     /* standalone contexts only */
    basalt_span *owner; /* non-NULL: embedded in this span, which owns the refcount */
    basalt_span *span;  /* current span (== owner when embedded; else a ref or NULL) */
    prop *p;            /* ref or NULL */
};

/* The process-wide pipeline of one init: immutable config plus processors. */
typedef struct pipeline pipeline;

/* Evaluator and metadata entries a span collects before it ends (arena-backed). */
typedef struct meta_entry {
    const char *key, *json;
} meta_entry;

struct basalt_span {
    _Atomic int rc;
    spin lock; /* guards rec, ended and the pending lists below */
    bool ended, remote, is_trace, is_root;
    bool raw; /* a plain OpenTelemetry span (tracer API): no Basalt markers */
    basalt_kind kind;
    uint8_t trace_id[16], span_id[8];
    record_impl *rec;     /* NULL for remote stubs and after end */
    pipeline *pl;         /* ref; NULL for remote stubs */
    basalt_ctx ctx;       /* the context current while this span runs */
    trace_scope *root_of; /* this span is the (weak) root of that scope */
    const char **own_evals;
    uint32_t n_own_evals, cap_own_evals;
    meta_entry *meta;
    uint32_t n_meta, cap_meta;
    ident id; /* identity captured at start (dynamic identity applied) */
};

/* ---- props and scopes (context.c) ---- */
prop *prop_retain(prop *p);
void prop_release(prop *p);
void scope_release(trace_scope *s);
/* A new prop copying `base`'s values (base may be NULL); strings of the
 * caller's must be interned with prop_intern before assignment. */
prop *prop_derive(prop *base);
/* Copies a string into the prop's storage (UTF-8 repaired, trimmed if asked). */
const char *prop_intern(prop *p, const char *s, bool trim);
trace_scope *scope_new(trace_scope *parent);
/* The effective identity of a prop (dynamic identity applied). Strings are
 * copied into rec when rec is non-NULL (they may be freed by another thread). */
void prop_identity(const prop *p, ident *out, record_impl *rec);
/* Initialises the embedded context of a span. */
void ctx_init_embedded(basalt_span *s, prop *p);

/* ---- pipeline (runtime.c) ---- */
/* The current pipeline with a reference, or NULL when disabled/shut down. */
pipeline *pipeline_acquire(void);
pipeline *pipeline_retain(pipeline *pl);
void pipeline_release(pipeline *pl);
/* Counts a start; ends hand the record to every processor. */
void pipeline_on_start(pipeline *pl);
void pipeline_on_end(pipeline *pl, record_impl *rec);
bool pipeline_trace_content(const pipeline *pl);
double pipeline_sample_rate(const pipeline *pl);
basalt_policy_fn pipeline_policy(const pipeline *pl, void **ud);
const char *const *pipeline_evaluators(const pipeline *pl, size_t *n);
const basalt_kv *pipeline_metadata(const pipeline *pl, size_t *n);

/* Retains a span unless its last reference is already gone (weak pointers held
 * under a scope lock). */
basalt_span *span_retain_if_alive(basalt_span *s);

/* Precomputed hashes of the keys materialised at span end (span.c). */
void span_keys_init(void);

#endif
