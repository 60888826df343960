/* The span engine: opening Basalt roots and child spans, writing attributes,
 * ending, and materialising propagated values into the finished record. */
#include "engine.h"

#include "attr_keys.h"

#include "basalt/attrs.h"
#include "basalt/ids.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- kinds ------------------------------------------------------------------ */

static const char *const kind_names[BASALT_KIND__COUNT] = {
    "span", "generation", "retrieval", "tool", "function", "event", "basalt_trace"};

/* Instrumentation scope per kind (semantics 3.2). */
static const char *const kind_scopes[BASALT_KIND__COUNT] = {BASALT_SCOPE_DEFAULT,
                                                            BASALT_SCOPE_DEFAULT ".generation",
                                                            BASALT_SCOPE_DEFAULT ".retrieval",
                                                            BASALT_SCOPE_DEFAULT ".tool",
                                                            BASALT_SCOPE_DEFAULT ".function",
                                                            BASALT_SCOPE_DEFAULT ".event",
                                                            BASALT_SCOPE_DEFAULT};

const char *basalt_kind_name(basalt_kind k) {
    return (unsigned)k < BASALT_KIND__COUNT ? kind_names[k] : NULL;
}

bool basalt_kind_parse(const char *s, size_t len, basalt_kind *out) {
    /* The usual spelling, exact: the length picks the one candidate. */
    static const signed char by_len[13] = {-1,
                                           -1,
                                           -1,
                                           -1,
                                           -2,
                                           BASALT_KIND_EVENT,
                                           -1,
                                           -1,
                                           BASALT_KIND_FUNCTION,
                                           BASALT_KIND_RETRIEVAL,
                                           BASALT_KIND_GENERATION,
                                           -1,
                                           BASALT_KIND_TRACE};
    int c = len < sizeof by_len ? by_len[len] : -1;
    if (c == -2) c = s[0] == 's' ? BASALT_KIND_SPAN : BASALT_KIND_TOOL; /* both have 4 letters */
    if (c >= 0 && memcmp(kind_names[c], s, len) == 0) {
        *out = (basalt_kind)c;
        return true;
    }
    /* Names differ in length or first letter, so one comparison decides. */
    for (int k = 0; k < BASALT_KIND__COUNT; k++) {
        const char *n = kind_names[k];
        if ((n[0] | 0x20) == (s[0] | 0x20) && strlen(n) == len && strncasecmp(n, s, len) == 0) {
            *out = (basalt_kind)k;
            return true;
        }
    }
    return false;
}

/* ---- precomputed key hashes ---------------------------------------------------- */

/* Hashes of materialised keys; written once under pthread_once, then read-only. */
static struct {
    uint32_t root, trace, in_trace, kind, feature_slug, user_id, user_name, org_id, org_name;
    uint32_t exp_id, exp_name, exp_slug, should_eval, evaluators, metadata;
    uint32_t p_slug, p_version, p_tag, p_provider, p_model, p_vars, p_cache;
} H;
/* The same keys interned (attr_keys.c), so records need no lookup for them. */
static struct {
    const char *root, *trace, *in_trace, *kind, *feature_slug, *user_id, *user_name, *org_id,
        *org_name, *exp_id, *exp_name, *exp_slug, *should_eval, *evaluators, *metadata, *p_slug,
        *p_version, *p_tag, *p_provider, *p_model, *p_vars, *p_cache;
} K;
/* The three markers of a Basalt span, by root-ness and kind, ready to append
 * in one copy; known: their bits in record_impl.known_set. Built with K. */
typedef struct marker_set {
    basalt_kv kv[3];
    uint32_t hash[3];
    uint64_t known[2];
} marker_set;
static marker_set markers[2][BASALT_KIND__COUNT];
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void keys_init_once(void) {
    H.root = record_key_hash(BASALT_ATTR_ROOT);
    H.trace = record_key_hash(BASALT_ATTR_TRACE);
    H.in_trace = record_key_hash(BASALT_ATTR_IN_TRACE);
    H.kind = record_key_hash(BASALT_ATTR_SPAN_KIND);
    H.feature_slug = record_key_hash(BASALT_ATTR_FEATURE_SLUG);
    H.user_id = record_key_hash(BASALT_ATTR_USER_ID);
    H.user_name = record_key_hash(BASALT_ATTR_USER_NAME);
    H.org_id = record_key_hash(BASALT_ATTR_ORG_ID);
    H.org_name = record_key_hash(BASALT_ATTR_ORG_NAME);
    H.exp_id = record_key_hash(BASALT_ATTR_EXPERIMENT_ID);
    H.exp_name = record_key_hash(BASALT_ATTR_EXPERIMENT_NAME);
    H.exp_slug = record_key_hash(BASALT_ATTR_EXPERIMENT_FEATURE_SLUG);
    H.should_eval = record_key_hash(BASALT_ATTR_SHOULD_EVALUATE);
    H.evaluators = record_key_hash(BASALT_ATTR_EVALUATORS);
    H.metadata = record_key_hash(BASALT_ATTR_METADATA);
    H.p_slug = record_key_hash(BASALT_ATTR_PROMPT_SLUG);
    H.p_version = record_key_hash(BASALT_ATTR_PROMPT_VERSION);
    H.p_tag = record_key_hash(BASALT_ATTR_PROMPT_TAG);
    H.p_provider = record_key_hash(BASALT_ATTR_PROMPT_MODEL_PROVIDER);
    H.p_model = record_key_hash(BASALT_ATTR_PROMPT_MODEL_MODEL);
    H.p_vars = record_key_hash(BASALT_ATTR_PROMPT_VARIABLES);
    H.p_cache = record_key_hash(BASALT_ATTR_PROMPT_FROM_CACHE);
    K.root = attr_key_intern(BASALT_ATTR_ROOT, H.root);
    K.trace = attr_key_intern(BASALT_ATTR_TRACE, H.trace);
    K.in_trace = attr_key_intern(BASALT_ATTR_IN_TRACE, H.in_trace);
    K.kind = attr_key_intern(BASALT_ATTR_SPAN_KIND, H.kind);
    K.feature_slug = attr_key_intern(BASALT_ATTR_FEATURE_SLUG, H.feature_slug);
    K.user_id = attr_key_intern(BASALT_ATTR_USER_ID, H.user_id);
    K.user_name = attr_key_intern(BASALT_ATTR_USER_NAME, H.user_name);
    K.org_id = attr_key_intern(BASALT_ATTR_ORG_ID, H.org_id);
    K.org_name = attr_key_intern(BASALT_ATTR_ORG_NAME, H.org_name);
    K.exp_id = attr_key_intern(BASALT_ATTR_EXPERIMENT_ID, H.exp_id);
    K.exp_name = attr_key_intern(BASALT_ATTR_EXPERIMENT_NAME, H.exp_name);
    K.exp_slug = attr_key_intern(BASALT_ATTR_EXPERIMENT_FEATURE_SLUG, H.exp_slug);
    K.should_eval = attr_key_intern(BASALT_ATTR_SHOULD_EVALUATE, H.should_eval);
    K.evaluators = attr_key_intern(BASALT_ATTR_EVALUATORS, H.evaluators);
    K.metadata = attr_key_intern(BASALT_ATTR_METADATA, H.metadata);
    K.p_slug = attr_key_intern(BASALT_ATTR_PROMPT_SLUG, H.p_slug);
    K.p_version = attr_key_intern(BASALT_ATTR_PROMPT_VERSION, H.p_version);
    K.p_tag = attr_key_intern(BASALT_ATTR_PROMPT_TAG, H.p_tag);
    K.p_provider = attr_key_intern(BASALT_ATTR_PROMPT_MODEL_PROVIDER, H.p_provider);
    K.p_model = attr_key_intern(BASALT_ATTR_PROMPT_MODEL_MODEL, H.p_model);
    K.p_vars = attr_key_intern(BASALT_ATTR_PROMPT_VARIABLES, H.p_vars);
    K.p_cache = attr_key_intern(BASALT_ATTR_PROMPT_FROM_CACHE, H.p_cache);
    for (int root = 0; root < 2; root++) {
        for (int k = 0; k < BASALT_KIND__COUNT; k++) {
            marker_set *m = &markers[root][k];
            m->kv[0].key = root ? K.root : K.trace;
            m->hash[0] = root ? H.root : H.trace;
            m->kv[0].value = basalt_v_bool(true);
            m->kv[1].key = K.in_trace;
            m->hash[1] = H.in_trace;
            m->kv[1].value = basalt_v_bool(true);
            m->kv[2].key = K.kind;
            m->hash[2] = H.kind;
            m->kv[2].value = basalt_v_strn(kind_names[k], strlen(kind_names[k]));
            for (int i = 0; i < 3; i++) {
                int idx = attr_key_index(m->kv[i].key);
                m->known[idx >> 6] |= 1ull << (idx & 63);
            }
        }
    }
}

void span_keys_init(void) {
    attr_keys_init();
    pthread_once(&keys_once, keys_init_once);
}

/* ---- lifetime ----------------------------------------------------------------- */

basalt_span *basalt_span_retain(basalt_span *s) {
    if (s) atomic_fetch_add_explicit(&s->rc, 1, memory_order_relaxed);
    return s;
}

basalt_span *span_retain_if_alive(basalt_span *s) {
    if (s == NULL) return NULL;
    int n = atomic_load_explicit(&s->rc, memory_order_relaxed);
    while (n > 0) {
        if (atomic_compare_exchange_weak_explicit(&s->rc, &n, n + 1, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return s;
    }
    return NULL;
}

void basalt_span_release(basalt_span *s) {
    if (s == NULL) return;
    if (atomic_fetch_sub_explicit(&s->rc, 1, memory_order_acq_rel) != 1) return;
    if (s->root_of) {
        pthread_mutex_lock(&s->root_of->lock);
        if (s->root_of->root == s) s->root_of->root = NULL;
        pthread_mutex_unlock(&s->root_of->lock);
        scope_release(s->root_of);
    }
    if (s->rec) basalt_record_release(&s->rec->pub); /* never ended: nothing exported */
    prop_release(s->ctx.p);
    pipeline_release(s->pl);
    block_free(BLOCK_SPAN, s);
}

/* ---- helpers -------------------------------------------------------------------- */

/* Trims s in place into [*start, *len]; true when non-blank. */
static bool trimmed(const char *s, const char **start, size_t *len) {
    if (s == NULL) return false;
    size_t n = strlen(s);
    if (n && !isspace((unsigned char)s[0]) && !isspace((unsigned char)s[n - 1])) {
        *start = s; /* nothing to trim: the usual case */
        *len = n;
        return true;
    }
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    *start = s;
    *len = n;
    return n > 0;
}

static void set_error(basalt_error *err, const char *msg) {
    if (err) snprintf(err->message, sizeof err->message, "%s", msg);
}

static basalt_span *span_alloc(pipeline *pl, basalt_kind kind, const char *name, size_t name_len) {
    basalt_span *s = block_alloc(BLOCK_SPAN, sizeof *s);
    if (s == NULL) return NULL;
    record_impl *rec = record_new();
    if (rec == NULL) {
        block_free(BLOCK_SPAN, s);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    atomic_init(&s->rc, 1);
    atomic_flag_clear(&s->lock.f);
    s->kind = kind;
    s->rec = rec;
    s->pl = pl;
    rec->pub.name = record_strdup(rec, name, name_len);
    rec->pub.kind = BASALT_OTEL_INTERNAL;
    rec->pub.scope_name = kind_scopes[kind];
    rec->pub.scope_version = BASALT_VERSION;
    rec->pub.trace_flags = 0x01;
    rec->pub.start_ns = basalt_wall_ns();
    return s;
}

/* Parent span usable for OpenTelemetry parenting (local or remote). */
static void link_parent(basalt_span *s, const basalt_span *parent) {
    record_impl *rec = s->rec;
    if (parent) {
        memcpy(s->trace_id, parent->trace_id, 16);
        memcpy(rec->pub.parent_span_id, parent->span_id, 8);
        rec->pub.has_parent = true;
        rec->pub.parent_is_remote = parent->remote;
    } else {
        basalt_new_trace_id(s->trace_id);
    }
    basalt_new_span_id(s->span_id);
    memcpy(rec->pub.trace_id, s->trace_id, 16);
    memcpy(rec->pub.span_id, s->span_id, 8);
}

/* Captures the identity at start; dynamic identity strings are copied into the
 * record because another thread may replace them. */
static void capture_identity(basalt_span *s) {
    prop_identity(s->ctx.p, &s->id, s->rec);
}

/* Evaluator union: global, context, own (in that order, deduplicated). */
static size_t eval_union(const char **out, size_t cap, const char *const *a, size_t na,
                         const char *const *b, size_t nb, const char *const *c, size_t nc) {
    size_t n = 0;
    const char *const *lists[3] = {a, b, c};
    size_t counts[3] = {na, nb, nc};
    for (int l = 0; l < 3; l++) {
        for (size_t i = 0; i < counts[l]; i++) {
            const char *v = lists[l][i];
            bool dup = false;
            for (size_t j = 0; j < n && !dup; j++)
                dup = strcmp(out[j], v) == 0;
            if (!dup && n < cap) out[n++] = v;
        }
    }
    return n;
}

/* Adds a span-only evaluator (caller holds the lock; rec non-NULL). */
static void add_own_evaluator(basalt_span *s, const char *slug) {
    const char *t;
    size_t len;
    if (!trimmed(slug, &t, &len)) return;
    for (uint32_t i = 0; i < s->n_own_evals; i++)
        if (strlen(s->own_evals[i]) == len && memcmp(s->own_evals[i], t, len) == 0) return;
    if (s->n_own_evals == s->cap_own_evals) {
        uint32_t cap = s->cap_own_evals ? s->cap_own_evals * 2 : 4;
        const char **list = record_alloc(s->rec, sizeof *list * cap);
        if (list == NULL) return;
        if (s->n_own_evals) memcpy(list, s->own_evals, sizeof *list * s->n_own_evals);
        s->own_evals = list;
        s->cap_own_evals = cap;
    }
    const char *v = record_strdup(s->rec, t, len);
    if (v) s->own_evals[s->n_own_evals++] = v;
}

/* ---- starting spans ------------------------------------------------------------- */

static basalt_policy_result run_policy(basalt_policy_fn fn, void *ud, basalt_span *s,
                                       const basalt_trace_opts *o, const prop *p, pipeline *pl,
                                       double rate, double *out_rate) {
    char hex[33];
    basalt_hex_encode(s->trace_id, 16, hex);
    basalt_identity id = {s->id.user_id, s->id.user_name, s->id.org_id, s->id.org_name};
    const char *evals[64];
    size_t ng = 0;
    const char *const *g = pipeline_evaluators(pl, &ng);
    size_t ne =
        eval_union(evals, 64, g, ng, p->evaluators, p->nevaluators, s->own_evals, s->n_own_evals);
    basalt_policy_input in = {
        .trace_id_hex = hex,
        .name = s->rec->pub.name,
        .feature_slug = p->feature_slug,
        .identity = &id,
        .experiment = p->has_experiment ? &p->exp : NULL,
        .metadata_json = NULL,
        .evaluators = evals,
        .nevaluators = ne,
        .sample_rate = rate,
    };
    (void)o;
    return fn(ud, &in, out_rate);
}

/* A Basalt root opened under a plain (foreign) recording span marks that
 * parent as part of the trace (semantics 3.5 BACKFILL). */
static void backfill(basalt_span *parent, const char *slug, size_t slug_len,
                     const basalt_trace_opts *o) {
    basalt_span_set_attr(parent, BASALT_ATTR_IN_TRACE, basalt_v_bool(true));
    basalt_span_set_attr(parent, BASALT_ATTR_SPAN_KIND, basalt_v_str("span"));
    basalt_span_set_attr(parent, BASALT_ATTR_FEATURE_SLUG, basalt_v_strn(slug, slug_len));
    const basalt_experiment *e = o->experiment;
    if (e && e->id && e->id[0]) {
        basalt_span_set_attr(parent, BASALT_ATTR_EXPERIMENT_ID, basalt_v_str(e->id));
        if (e->name && e->name[0])
            basalt_span_set_attr(parent, BASALT_ATTR_EXPERIMENT_NAME, basalt_v_str(e->name));
        if (e->feature_slug && e->feature_slug[0])
            basalt_span_set_attr(parent, BASALT_ATTR_EXPERIMENT_FEATURE_SLUG,
                                 basalt_v_str(e->feature_slug));
    }
}

basalt_span *basalt_trace_start(const basalt_trace_opts *o, basalt_ctx **ctx_out,
                                basalt_error *err) {
    *ctx_out = NULL;
    if (err) err->message[0] = '\0';
    const char *slug, *name;
    size_t slug_len, name_len;
    if (!trimmed(o->feature_slug, &slug, &slug_len)) {
        set_error(err, "feature_slug is required and must be a non-empty string. "
                       "Example: start_observe{ name = \"handle_request\", feature_slug = "
                       "\"support-chat\" }");
        return NULL;
    }
    if (!trimmed(o->name, &name, &name_len)) {
        set_error(err, "name is required and must be a non-empty string. "
                       "Example: start_observe{ name = \"handle_request\", feature_slug = "
                       "\"support-chat\" }");
        return NULL;
    }
    const basalt_ctx *parent_ctx = o->parent;
    basalt_span *parent = parent_ctx ? parent_ctx->span : NULL;
    bool parent_recording = parent && !parent->remote && !parent->ended;
    bool nested = parent_recording && parent_ctx->p && parent_ctx->p->in_trace;

    pipeline *pl =
        parent_recording && parent->pl ? pipeline_retain(parent->pl) : pipeline_acquire();
    if (pl == NULL) return NULL; /* disabled or shut down: a no-op */

    basalt_span *s = span_alloc(pl, BASALT_KIND_TRACE, name, name_len);
    if (s == NULL) {
        pipeline_release(pl);
        return NULL;
    }
    s->is_trace = true;
    s->is_root = !nested;
    link_parent(s, parent);
    if (!nested && parent_recording && parent->raw) backfill(parent, slug, slug_len, o);

    prop *p = prop_derive(parent_ctx ? parent_ctx->p : NULL);
    trace_scope *scope = p ? scope_new(nested ? p->scope : NULL) : NULL;
    if (p == NULL || scope == NULL) {
        prop_release(p);
        basalt_span_release(s);
        return NULL;
    }
    scope_release(p->scope);
    p->scope = scope;
    p->in_trace = true;
    char tmp_slug[512];
    snprintf(tmp_slug, sizeof tmp_slug, "%.*s", (int)slug_len, slug);
    p->feature_slug = prop_intern(p, tmp_slug, false);
    if (o->identity) {
        if (o->identity->user_id) {
            p->id.user_id = prop_intern(p, o->identity->user_id, false);
            p->id.user_name = prop_intern(p, o->identity->user_name, false);
            scope->own_user = true;
        }
        if (o->identity->org_id) {
            p->id.org_id = prop_intern(p, o->identity->org_id, false);
            p->id.org_name = prop_intern(p, o->identity->org_name, false);
            scope->own_org = true;
        }
        p->identity_from_observe = false;
    }
    if (o->experiment && o->experiment->id && o->experiment->id[0]) {
        p->has_experiment = true;
        p->exp.id = prop_intern(p, o->experiment->id, false);
        p->exp.name = prop_intern(p, o->experiment->name, false);
        p->exp.feature_slug = prop_intern(p, o->experiment->feature_slug, false);
    }
    ctx_init_embedded(s, p);
    capture_identity(s);
    for (size_t i = 0; i < o->nevaluators; i++)
        add_own_evaluator(s, o->evaluators[i]);

    if (!nested) {
        /* Decisions 5: decided once, at the root. */
        double rate = o->has_sample_rate ? o->sample_rate : pipeline_sample_rate(pl);
        int decision;
        if (p->has_experiment) {
            decision = 1;
        } else {
            void *ud = o->policy_ud;
            basalt_policy_fn fn = o->policy;
            if (fn == NULL) fn = pipeline_policy(pl, &ud);
            double prate = rate;
            basalt_policy_result r =
                fn ? run_policy(fn, ud, s, o, p, pl, rate, &prate) : BASALT_POLICY_DEFER;
            if (r == BASALT_POLICY_TRUE)
                decision = 1;
            else if (r == BASALT_POLICY_FALSE)
                decision = 0;
            else if (r == BASALT_POLICY_RATE && prate >= 0.0 && prate <= 1.0)
                decision = basalt_sample_trace_id(s->trace_id, prate);
            else
                decision = basalt_sample_trace_id(s->trace_id, rate);
        }
        p->should_evaluate = decision;
        pthread_mutex_lock(&scope->lock);
        scope->root = s; /* weak */
        pthread_mutex_unlock(&scope->lock);
        atomic_fetch_add_explicit(&scope->rc, 1, memory_order_relaxed);
        s->root_of = scope;
    }
    if (o->evaluation_config_json)
        record_set_attr(s->rec, BASALT_ATTR_EVALUATION_CONFIG, true,
                        basalt_v_str(o->evaluation_config_json));
    pipeline_on_start(pl);
    *ctx_out = basalt_ctx_retain(&s->ctx);
    return s;
}

basalt_span *basalt_span_start(const basalt_span_opts *o, basalt_ctx **ctx_out, basalt_error *err) {
    *ctx_out = NULL;
    if (err) err->message[0] = '\0';
    if ((unsigned)o->kind >= BASALT_KIND__COUNT) {
        set_error(err, "unknown kind");
        return NULL;
    }
    if (o->kind == BASALT_KIND_TRACE) {
        set_error(err, "Cannot use kind='basalt_trace' with observe. Use start_observe for root "
                       "spans.");
        return NULL;
    }
    const char *name;
    size_t name_len;
    if (!trimmed(o->name, &name, &name_len)) {
        set_error(err, "name is required and must be a non-empty string.");
        return NULL;
    }
    const basalt_ctx *parent_ctx = o->parent;
    if (!basalt_ctx_in_trace(parent_ctx) || parent_ctx->span == NULL) {
        basalt_log_once(BASALT_LOG_WARN, "observe() was called outside a Basalt trace (no "
                                         "start_observe around it): the block runs, nothing is "
                                         "recorded");
        return NULL;
    }
    basalt_span *parent = parent_ctx->span;
    pipeline *pl = parent->pl ? pipeline_retain(parent->pl) : pipeline_acquire();
    if (pl == NULL) return NULL;
    basalt_span *s = span_alloc(pl, o->kind, name, name_len);
    if (s == NULL) {
        pipeline_release(pl);
        return NULL;
    }
    link_parent(s, parent);
    prop *p;
    if (o->identity && (o->identity->user_id || o->identity->org_id)) {
        p = prop_derive(parent_ctx->p);
        if (p == NULL) {
            basalt_span_release(s);
            return NULL;
        }
        if (o->identity->user_id) {
            p->id.user_id = prop_intern(p, o->identity->user_id, false);
            p->id.user_name = prop_intern(p, o->identity->user_name, false);
        }
        if (o->identity->org_id) {
            p->id.org_id = prop_intern(p, o->identity->org_id, false);
            p->id.org_name = prop_intern(p, o->identity->org_name, false);
        }
        p->identity_from_observe = true;
    } else {
        p = prop_retain(parent_ctx->p);
    }
    ctx_init_embedded(s, p);
    capture_identity(s);
    for (size_t i = 0; i < o->nevaluators; i++)
        add_own_evaluator(s, o->evaluators[i]);
    pipeline_on_start(pl);
    *ctx_out = basalt_ctx_retain(&s->ctx);
    return s;
}

basalt_span *basalt_raw_span_start(const basalt_raw_span_opts *o, basalt_ctx **ctx_out,
                                   basalt_error *err) {
    if (ctx_out) *ctx_out = NULL;
    if (err) err->message[0] = '\0';
    if (o->name == NULL || o->name[0] == '\0') {
        set_error(err, "name is required and must be a non-empty string.");
        return NULL;
    }
    const basalt_ctx *parent_ctx = o->parent;
    basalt_span *parent = parent_ctx ? parent_ctx->span : NULL;
    pipeline *pl = parent && parent->pl ? pipeline_retain(parent->pl) : pipeline_acquire();
    if (pl == NULL) return NULL;
    basalt_span *s = span_alloc(pl, BASALT_KIND_SPAN, o->name, strlen(o->name));
    if (s == NULL) {
        pipeline_release(pl);
        return NULL;
    }
    s->raw = true;
    record_impl *rec = s->rec;
    rec->pub.kind = o->kind == BASALT_OTEL_UNSPECIFIED ? BASALT_OTEL_INTERNAL : o->kind;
    if (o->scope_name) {
        const char *name = attr_intern_scope(o->scope_name);
        const char *ver = o->scope_version ? attr_intern_scope(o->scope_version) : NULL;
        rec->pub.scope_name =
            name ? name : record_strdup(rec, o->scope_name, strlen(o->scope_name));
        rec->pub.scope_version = ver || !o->scope_version ? ver
                                                          : record_strdup(rec, o->scope_version,
                                                                          strlen(o->scope_version));
    }
    link_parent(s, parent);
    ctx_init_embedded(s, prop_retain(parent_ctx ? parent_ctx->p : NULL));
    capture_identity(s);
    for (size_t i = 0; i < o->nattrs; i++) {
        const char *k = o->attrs[i].key;
        if (o->attr_keys && o->attr_keys[i])
            record_set_attr_key(rec, o->attr_keys[i], o->attrs_unique, o->attrs[i].value);
        else if (k)
            record_set_attr_n(rec, k, strlen(k), false, o->attrs_unique, o->attrs[i].value);
    }
    pipeline_on_start(pl);
    if (ctx_out) *ctx_out = basalt_ctx_retain(&s->ctx);
    return s;
}

const char *basalt_scope_intern(const char *s) {
    return attr_intern_scope(s);
}

basalt_ctx *basalt_span_context(basalt_span *s) {
    return s ? basalt_ctx_retain(&s->ctx) : NULL;
}

/* ---- ending ------------------------------------------------------------------------ */

/* Pushes a propagated attribute unless the span wrote that key itself. */
static void push_prop(record_impl *rec, uint32_t own, const char *key, uint32_t h, basalt_value v) {
    int k = attr_key_index(key); /* the engine's keys are interned: one bit test */
    if (k >= 0) {
        if (rec->known_set[k >> 6] & (1ull << (k & 63))) return;
        record_push_interned(rec, key, h, v);
        return;
    }
    for (uint32_t i = 0; i < own; i++)
        if (rec->attr_hashes[i] == h && strcmp(rec->attrs[i].key, key) == 0) return;
    record_push_borrowed(rec, key, h, v);
}

/* Propagated strings are copied into the record: a record that borrowed them
 * would keep the context's values (and the pipeline's) alive from the export
 * thread, with their reference counts bouncing between threads. */
static void push_str(record_impl *rec, uint32_t own, const char *key, uint32_t h, const char *s) {
    if (s == NULL) return;
    int k = attr_key_index(key);
    if (k >= 0 && (rec->known_set[k >> 6] & (1ull << (k & 63)))) return; /* before copying */
    size_t n = strlen(s);
    char *c = record_alloc(rec, n + 1);
    if (c == NULL) return;
    memcpy(c, s, n + 1); /* already valid UTF-8 */
    push_prop(rec, own, key, h, basalt_v_strn(c, n));
}

static int meta_cmp(const void *a, const void *b) {
    return strcmp(((const meta_entry *)a)->key, ((const meta_entry *)b)->key);
}

/* basalt.metadata: the span's own keys as one JSON object, sorted for determinism. */
static void write_metadata(basalt_span *s, record_impl *rec) {
    if (s->n_meta == 0) return;
    qsort(s->meta, s->n_meta, sizeof *s->meta, meta_cmp);
    basalt_buf b = {0};
    basalt_buf_putc(&b, '{');
    for (uint32_t i = 0; i < s->n_meta; i++) {
        if (i) basalt_buf_putc(&b, ',');
        basalt_buf_putc(&b, '"');
        for (const char *k = s->meta[i].key; *k; k++) {
            unsigned char c = (unsigned char)*k;
            if (c == '"' || c == '\\') {
                basalt_buf_putc(&b, '\\');
                basalt_buf_putc(&b, (char)c);
            } else if (c < 0x20) {
                char esc[8];
                snprintf(esc, sizeof esc, "\\u%04x", c);
                basalt_buf_puts(&b, esc);
            } else {
                basalt_buf_putc(&b, (char)c);
            }
        }
        basalt_buf_puts(&b, "\":");
        basalt_buf_puts(&b, s->meta[i].json);
    }
    basalt_buf_putc(&b, '}');
    record_set_attr(rec, BASALT_ATTR_METADATA, true, basalt_v_strn(b.data, b.len));
    basalt_buf_free(&b);
}

static void materialise(basalt_span *s, record_impl *rec) {
    pipeline *pl = s->pl;
    prop *p = s->ctx.p;
    write_metadata(s, rec);
    uint32_t own = rec->pub.nattrs;

    /* Global metadata: keys and values copied (the record outlives nothing). */
    size_t nmeta = 0;
    const basalt_kv *meta = pipeline_metadata(pl, &nmeta);
    for (size_t i = 0; i < nmeta; i++) {
        uint32_t h = record_key_hash(meta[i].key);
        bool mine = false;
        for (uint32_t j = 0; j < own && !mine; j++)
            mine = rec->attr_hashes[j] == h && strcmp(rec->attrs[j].key, meta[i].key) == 0;
        if (!mine) record_set_attr(rec, meta[i].key, false, meta[i].value);
    }

    if (p) {
        push_str(rec, own, K.feature_slug, H.feature_slug, p->feature_slug);
        push_str(rec, own, K.user_id, H.user_id, s->id.user_id);
        if (s->id.user_id && s->id.user_name && s->id.user_name[0])
            push_str(rec, own, K.user_name, H.user_name, s->id.user_name);
        push_str(rec, own, K.org_id, H.org_id, s->id.org_id);
        if (s->id.org_id && s->id.org_name && s->id.org_name[0])
            push_str(rec, own, K.org_name, H.org_name, s->id.org_name);
        if (p->has_experiment) {
            push_str(rec, own, K.exp_id, H.exp_id, p->exp.id);
            if (p->exp.name && p->exp.name[0])
                push_str(rec, own, K.exp_name, H.exp_name, p->exp.name);
            if (p->exp.feature_slug && p->exp.feature_slug[0])
                push_str(rec, own, K.exp_slug, H.exp_slug, p->exp.feature_slug);
        }
        if (p->should_evaluate >= 0)
            push_prop(rec, own, K.should_eval, H.should_eval,
                      basalt_v_bool(p->should_evaluate == 1));
        if (p->has_prompt) {
            const basalt_prompt_attrs *pr = &p->prompt;
            push_str(rec, own, K.p_slug, H.p_slug, pr->slug);
            if (pr->version && pr->version[0])
                push_str(rec, own, K.p_version, H.p_version, pr->version);
            if (pr->tag && pr->tag[0]) push_str(rec, own, K.p_tag, H.p_tag, pr->tag);
            push_str(rec, own, K.p_provider, H.p_provider, pr->provider);
            push_str(rec, own, K.p_model, H.p_model, pr->model);
            if (pr->variables_json && strcmp(pr->variables_json, "{}") != 0)
                push_str(rec, own, K.p_vars, H.p_vars, pr->variables_json);
            push_prop(rec, own, K.p_cache, H.p_cache, basalt_v_bool(pr->from_cache));
        }
    }
    /* Evaluators: global, then propagated, then the span's own. */
    size_t ng = 0;
    const char *const *g = pipeline_evaluators(pl, &ng);
    size_t total = ng + (p ? p->nevaluators : 0) + s->n_own_evals;
    if (total) {
        const char **u = record_alloc(rec, sizeof *u * total);
        basalt_value *vals = record_alloc(rec, sizeof *vals * total);
        if (u && vals) {
            size_t n = eval_union(u, total, g, ng, p ? p->evaluators : NULL, p ? p->nevaluators : 0,
                                  s->own_evals, s->n_own_evals);
            for (size_t i = 0; i < n; i++) {
                const char *c = record_strdup(rec, u[i], strlen(u[i])); /* copied: see push_str */
                vals[i] = basalt_v_strn(c ? c : "", c ? strlen(c) : 0);
            }
            push_prop(rec, own, K.evaluators, H.evaluators, basalt_v_array(vals, n));
        }
    }
    /* Markers. A plain span is marked only as being inside a Basalt trace
     * (semantics 5.4 A), and carries no Basalt kind. */
    if (s->raw) {
        if (p && p->in_trace) push_prop(rec, own, K.in_trace, H.in_trace, basalt_v_bool(true));
        return;
    }
    const marker_set *m = &markers[s->is_root][s->kind];
    if (!(rec->known_set[0] & m->known[0]) && !(rec->known_set[1] & m->known[1]) &&
        record_push_interned_n(rec, m->kv, m->hash, 3))
        return; /* the usual case: no marker written by hand, room for all three */
    for (int i = 0; i < 3; i++)
        push_prop(rec, own, m->kv[i].key, m->hash[i], m->kv[i].value);
}

void basalt_span_end(basalt_span *s, uint64_t end_ns) {
    if (s == NULL) return;
    spin_lock(&s->lock);
    record_impl *rec = s->ended ? NULL : s->rec;
    s->ended = true;
    s->rec = NULL;
    spin_unlock(&s->lock);
    if (rec == NULL) return;
    rec->pub.end_ns = end_ns ? end_ns : basalt_wall_ns();
    if (rec->pub.end_ns < rec->pub.start_ns) rec->pub.end_ns = rec->pub.start_ns;
    materialise(s, rec);
    pipeline_on_end(s->pl, rec);
}

/* ---- reading ---------------------------------------------------------------------- */

void basalt_span_trace_id(const basalt_span *s, uint8_t out[16]) {
    if (s)
        memcpy(out, s->trace_id, 16);
    else
        memset(out, 0, 16);
}

void basalt_span_id(const basalt_span *s, uint8_t out[8]) {
    if (s)
        memcpy(out, s->span_id, 8);
    else
        memset(out, 0, 8);
}

bool basalt_span_is_recording(const basalt_span *s) {
    if (s == NULL || s->remote) return false;
    spin_lock((spin *)&s->lock);
    bool r = !s->ended;
    spin_unlock((spin *)&s->lock);
    return r;
}

basalt_kind basalt_span_kind(const basalt_span *s) {
    return s ? s->kind : BASALT_KIND_SPAN;
}

basalt_kind basalt_span_ids(const basalt_span *s, uint8_t trace_id[16], uint8_t span_id[8]) {
    basalt_span_trace_id(s, trace_id);
    basalt_span_id(s, span_id);
    return basalt_span_kind(s);
}

bool basalt_span_is_trace(const basalt_span *s) {
    return s && s->is_trace;
}

/* ---- writing ----------------------------------------------------------------------- */

/* Locks s and returns its live record, or NULL (then nothing is locked). */
static record_impl *lock_live(basalt_span *s) {
    if (s == NULL || s->remote) return NULL;
    spin_lock(&s->lock);
    if (s->rec == NULL) {
        spin_unlock(&s->lock);
        return NULL;
    }
    return s->rec;
}

void basalt_span_set_attr(basalt_span *s, const char *key, basalt_value v) {
    if (key) basalt_span_set_attr_n(s, key, strlen(key), v);
}

void basalt_span_set_attr_n(basalt_span *s, const char *key, size_t key_len, basalt_value v) {
    if (key == NULL || v.type == BASALT_VAL_NONE) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    record_set_attr_n(rec, key, key_len, false, false, v);
    spin_unlock(&s->lock);
}

void basalt_span_set_attr_key(basalt_span *s, const basalt_key *key, basalt_value v) {
    if (key == NULL || v.type == BASALT_VAL_NONE) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    record_set_attr_key(rec, key, false, v);
    spin_unlock(&s->lock);
}

static bool content_on(basalt_span *s) {
    return s && s->pl && pipeline_trace_content(s->pl);
}

void basalt_span_set_content_attr(basalt_span *s, const char *key, basalt_value v) {
    if (content_on(s)) basalt_span_set_attr(s, key, v);
}

void basalt_span_set_input(basalt_span *s, basalt_value v) {
    if (!content_on(s) || v.type == BASALT_VAL_NONE) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    record_set_attr(rec, BASALT_ATTR_INPUT, true, v);
    if (s->kind == BASALT_KIND_TOOL) record_set_attr(rec, BASALT_ATTR_TOOL_INPUT, true, v);
    spin_unlock(&s->lock);
}

void basalt_span_set_output(basalt_span *s, basalt_value v) {
    if (!content_on(s) || v.type == BASALT_VAL_NONE) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    record_set_attr(rec, BASALT_ATTR_OUTPUT, true, v);
    if (s->kind == BASALT_KIND_TOOL) record_set_attr(rec, BASALT_ATTR_TOOL_OUTPUT, true, v);
    spin_unlock(&s->lock);
}

void basalt_span_set_variables(basalt_span *s, const char *json_object) {
    if (json_object && content_on(s))
        basalt_span_set_attr(s, BASALT_ATTR_VARIABLES, basalt_v_str(json_object));
}

void basalt_span_set_event_payload(basalt_span *s, basalt_value v) {
    if (!content_on(s) || v.type == BASALT_VAL_NONE) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    record_set_attr(rec, BASALT_ATTR_EVENT_PAYLOAD, true, v);
    record_set_attr(rec, BASALT_ATTR_INPUT, true, v);
    spin_unlock(&s->lock);
}

void basalt_span_set_metadata(basalt_span *s, const char *key, const char *json_value) {
    if (key == NULL || json_value == NULL) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    const char *k = record_strdup(rec, key, strlen(key));
    const char *v = record_strdup(rec, json_value, strlen(json_value));
    if (k && v) {
        for (uint32_t i = 0; i < s->n_meta; i++) {
            if (strcmp(s->meta[i].key, k) == 0) {
                s->meta[i].json = v; /* incoming keys win */
                spin_unlock(&s->lock);
                return;
            }
        }
        if (s->n_meta == s->cap_meta) {
            uint32_t cap = s->cap_meta ? s->cap_meta * 2 : 8;
            meta_entry *m = record_alloc(rec, sizeof *m * cap);
            if (m == NULL) {
                spin_unlock(&s->lock);
                return;
            }
            if (s->n_meta) memcpy(m, s->meta, sizeof *m * s->n_meta);
            s->meta = m;
            s->cap_meta = cap;
        }
        s->meta[s->n_meta].key = k;
        s->meta[s->n_meta].json = v;
        s->n_meta++;
    }
    spin_unlock(&s->lock);
}

void basalt_span_add_evaluator(basalt_span *s, const char *slug) {
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    add_own_evaluator(s, slug);
    spin_unlock(&s->lock);
}

void basalt_span_set_identity(basalt_span *s, const basalt_identity *id) {
    if (id == NULL) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    if (id->user_id) {
        record_set_attr(rec, BASALT_ATTR_USER_ID, true, basalt_v_str(id->user_id));
        if (id->user_name && id->user_name[0])
            record_set_attr(rec, BASALT_ATTR_USER_NAME, true, basalt_v_str(id->user_name));
    }
    if (id->org_id) {
        record_set_attr(rec, BASALT_ATTR_ORG_ID, true, basalt_v_str(id->org_id));
        if (id->org_name && id->org_name[0])
            record_set_attr(rec, BASALT_ATTR_ORG_NAME, true, basalt_v_str(id->org_name));
    }
    spin_unlock(&s->lock);
}

void basalt_span_set_evaluation_config(basalt_span *s, const char *json) {
    if (s == NULL || !s->is_trace || json == NULL) return;
    basalt_span_set_attr(s, BASALT_ATTR_EVALUATION_CONFIG, basalt_v_str(json));
}

void basalt_span_set_experiment(basalt_span *s, const basalt_experiment *e) {
    if (s == NULL || !s->is_trace || e == NULL || e->id == NULL || e->id[0] == '\0') return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    record_set_attr(rec, BASALT_ATTR_EXPERIMENT_ID, true, basalt_v_str(e->id));
    if (e->name && e->name[0])
        record_set_attr(rec, BASALT_ATTR_EXPERIMENT_NAME, true, basalt_v_str(e->name));
    if (e->feature_slug && e->feature_slug[0])
        record_set_attr(rec, BASALT_ATTR_EXPERIMENT_FEATURE_SLUG, true,
                        basalt_v_str(e->feature_slug));
    spin_unlock(&s->lock);
}

void basalt_span_set_prompt(basalt_span *s, const basalt_prompt_attrs *p) {
    if (p == NULL) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    if (p->slug) record_set_attr(rec, BASALT_ATTR_PROMPT_SLUG, true, basalt_v_str(p->slug));
    if (p->version && p->version[0])
        record_set_attr(rec, BASALT_ATTR_PROMPT_VERSION, true, basalt_v_str(p->version));
    if (p->tag && p->tag[0])
        record_set_attr(rec, BASALT_ATTR_PROMPT_TAG, true, basalt_v_str(p->tag));
    if (p->provider)
        record_set_attr(rec, BASALT_ATTR_PROMPT_MODEL_PROVIDER, true, basalt_v_str(p->provider));
    if (p->model)
        record_set_attr(rec, BASALT_ATTR_PROMPT_MODEL_MODEL, true, basalt_v_str(p->model));
    if (p->variables_json && strcmp(p->variables_json, "{}") != 0)
        record_set_attr(rec, BASALT_ATTR_PROMPT_VARIABLES, true, basalt_v_str(p->variables_json));
    spin_unlock(&s->lock);
}

void basalt_span_set_status(basalt_span *s, basalt_status_code code, const char *message) {
    if (code == BASALT_STATUS_UNSET) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    if (rec->pub.status_code != BASALT_STATUS_OK) {
        rec->pub.status_code = code;
        rec->pub.status_message = code == BASALT_STATUS_ERROR && message
                                      ? record_strdup(rec, message, strlen(message))
                                      : NULL;
    }
    spin_unlock(&s->lock);
}

void basalt_span_add_event(basalt_span *s, const char *name, const basalt_kv *attrs, size_t n) {
    if (name == NULL) return;
    record_impl *rec = lock_live(s);
    if (rec == NULL) return;
    record_add_event(rec, name, basalt_wall_ns(), attrs, n);
    spin_unlock(&s->lock);
}

void basalt_span_record_exception(basalt_span *s, const char *type, const char *message,
                                  const char *stacktrace) {
    if (type == NULL) type = "error";
    if (message == NULL) message = "";
    basalt_kv attrs[3] = {
        {BASALT_ATTR_EXCEPTION_TYPE, basalt_v_str(type)},
        {BASALT_ATTR_EXCEPTION_MESSAGE, basalt_v_str(message)},
        {BASALT_ATTR_EXCEPTION_STACKTRACE, basalt_v_str(stacktrace ? stacktrace : "")},
    };
    basalt_span_add_event(s, BASALT_EVENT_EXCEPTION, attrs, stacktrace ? 3 : 2);
    size_t n = strlen(type) + strlen(message) + 3;
    char *desc = malloc(n);
    if (desc == NULL) return;
    snprintf(desc, n, "%s: %s", type, message);
    basalt_span_set_status(s, BASALT_STATUS_ERROR, desc);
    free(desc);
}

/* ---- sampling ---------------------------------------------------------------------- */

bool basalt_sample_trace_id(const uint8_t trace_id[16], double rate) {
    if (!(rate > 0.0)) return false; /* NaN and <= 0 */
    if (rate >= 1.0) return true;
    uint64_t low = 0;
    for (int i = 9; i < 16; i++)
        low = (low << 8) | trace_id[i];
    return low < (uint64_t)(rate * 72057594037927936.0); /* 2^56 */
}
