/* Contexts, propagated values (props) and trace scopes. */
#include "engine.h"

#include "basalt/ids.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- prop storage --------------------------------------------------------- */

typedef struct pchunk {
    struct pchunk *next;
    size_t used, cap;
    char data[];
} pchunk;

static char *prop_alloc(prop *p, size_t n) {
    if (sizeof p->inline_buf - p->inline_used >= n) {
        char *out = p->inline_buf + p->inline_used;
        p->inline_used += n;
        return out;
    }
    pchunk *c = p->chunks;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 256 ? n : 256;
        c = malloc(sizeof *c + cap);
        if (c == NULL) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = p->chunks;
        p->chunks = c;
    }
    char *out = c->data + c->used;
    c->used += n;
    return out;
}

const char *prop_intern(prop *p, const char *s, bool trim) {
    if (s == NULL) return NULL;
    size_t len = strlen(s);
    if (trim) {
        while (len && isspace((unsigned char)*s))
            s++, len--;
        while (len && isspace((unsigned char)s[len - 1]))
            len--;
    }
    size_t i = 0; /* ASCII, the usual case, needs no repair: eight bytes at a time */
    for (uint64_t w; i + 8 <= len; i += 8) {
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
    }
    while (i < len && (unsigned char)s[i] < 0x80)
        i++;
    basalt_buf fixed = {0};
    if (i < len && !basalt_utf8_repair(s, len, &fixed)) {
        s = fixed.data;
        len = fixed.len;
    }
    char *out = prop_alloc(p, len + 1);
    if (out) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    basalt_buf_free(&fixed);
    return out;
}

/* ---- props ---------------------------------------------------------------- */

prop *prop_retain(prop *p) {
    if (p) atomic_fetch_add_explicit(&p->rc, 1, memory_order_relaxed);
    return p;
}

void prop_release(prop *p) {
    while (p && atomic_fetch_sub_explicit(&p->rc, 1, memory_order_acq_rel) == 1) {
        prop *base = p->base;
        scope_release(p->scope);
        for (pchunk *c = p->chunks, *next; c; c = next) {
            next = c->next;
            free(c);
        }
        free(p->evaluators);
        free(p);
        p = base; /* iterative: long chains must not recurse */
    }
}

prop *prop_derive(prop *base) {
    prop *p = malloc(sizeof *p);
    if (p == NULL) return NULL;
    memset(p, 0, offsetof(prop, inline_buf)); /* the buffer needs no clearing */
    atomic_init(&p->rc, 1);
    p->should_evaluate = -1;
    if (base) {
        p->base = prop_retain(base);
        p->scope = base->scope;
        if (p->scope) atomic_fetch_add_explicit(&p->scope->rc, 1, memory_order_relaxed);
        p->in_trace = base->in_trace;
        p->feature_slug = base->feature_slug;
        p->id = base->id;
        p->identity_from_observe = base->identity_from_observe;
        p->has_experiment = base->has_experiment;
        p->exp = base->exp;
        if (base->nevaluators) {
            p->evaluators = malloc(sizeof *p->evaluators * base->nevaluators);
            if (p->evaluators == NULL) {
                prop_release(p);
                return NULL;
            }
            memcpy(p->evaluators, base->evaluators, sizeof *p->evaluators * base->nevaluators);
            p->nevaluators = base->nevaluators;
        }
        p->should_evaluate = base->should_evaluate;
        p->has_prompt = base->has_prompt;
        p->prompt = base->prompt;
        p->tracestate = base->tracestate;
        p->baggage = base->baggage;
    }
    return p;
}

/* ---- trace scopes ----------------------------------------------------------- */

typedef struct dyn_ident {
    ident id;
    char *storage;
} dyn_ident;

trace_scope *scope_new(trace_scope *parent) {
    trace_scope *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    atomic_init(&s->rc, 1);
    atomic_init(&s->has_dyn, false);
    pthread_mutex_init(&s->lock, NULL);
    if (parent) {
        atomic_fetch_add_explicit(&parent->rc, 1, memory_order_relaxed);
        s->parent = parent;
    }
    return s;
}

static void dyn_free(dyn_ident *d) {
    if (d) {
        free(d->storage);
        free(d);
    }
}

void scope_release(trace_scope *s) {
    while (s && atomic_fetch_sub_explicit(&s->rc, 1, memory_order_acq_rel) == 1) {
        trace_scope *parent = s->parent;
        dyn_free(s->dyn);
        pthread_mutex_destroy(&s->lock);
        free(s);
        s = parent;
    }
}

static const char *copy_field(record_impl *rec, const char *s) {
    if (s == NULL || rec == NULL) return s;
    return record_strdup(rec, s, strlen(s));
}

void prop_identity(const prop *p, ident *out, record_impl *rec) {
    memset(out, 0, sizeof *out);
    if (p == NULL) return;
    *out = p->id;
    bool want_user = true, want_org = true;
    if (!p->identity_from_observe) {
        for (trace_scope *s = p->scope; s && (want_user || want_org); s = s->parent) {
            if (atomic_load_explicit(&s->has_dyn, memory_order_acquire)) {
                pthread_mutex_lock(&s->lock);
                dyn_ident *d = s->dyn;
                if (d && want_user && d->id.user_id) {
                    out->user_id = copy_field(rec, d->id.user_id);
                    out->user_name = copy_field(rec, d->id.user_name);
                    want_user = false;
                }
                if (d && want_org && d->id.org_id) {
                    out->org_id = copy_field(rec, d->id.org_id);
                    out->org_name = copy_field(rec, d->id.org_name);
                    want_org = false;
                }
                pthread_mutex_unlock(&s->lock);
            }
            /* An inner start_observe with its own identity shields its subtree. */
            if (s->own_user) want_user = false;
            if (s->own_org) want_org = false;
        }
    }
}

/* Builds a dynamic identity (strings copied into one allocation). */
static dyn_ident *dyn_new(const basalt_identity *id) {
    const char *f[4] = {id->user_id, id->user_id ? id->user_name : NULL, id->org_id,
                        id->org_id ? id->org_name : NULL};
    size_t total = 0;
    for (int i = 0; i < 4; i++)
        total += f[i] ? strlen(f[i]) + 1 : 0;
    dyn_ident *d = calloc(1, sizeof *d);
    if (d == NULL) return NULL;
    d->storage = malloc(total ? total : 1);
    if (d->storage == NULL) {
        free(d);
        return NULL;
    }
    char *w = d->storage;
    const char **dst[4] = {&d->id.user_id, &d->id.user_name, &d->id.org_id, &d->id.org_name};
    for (int i = 0; i < 4; i++) {
        if (f[i] == NULL) continue;
        size_t n = strlen(f[i]) + 1;
        memcpy(w, f[i], n);
        *dst[i] = w;
        w += n;
    }
    return d;
}

void basalt_set_dynamic_identity(const basalt_ctx *c, const basalt_identity *id) {
    if (c == NULL || id == NULL || c->p == NULL || c->p->scope == NULL) return;
    trace_scope *s = c->p->scope;
    /* Current span and root span get it now; later spans through the scope. */
    basalt_span_set_identity(c->span, id);
    pthread_mutex_lock(&s->lock);
    dyn_ident *d = dyn_new(id);
    if (d) {
        /* Merge: a part not given keeps the earlier dynamic value. */
        if (s->dyn && id->user_id == NULL && s->dyn->id.user_id) {
            basalt_identity merged = {s->dyn->id.user_id, s->dyn->id.user_name, id->org_id,
                                      id->org_name};
            dyn_free(d);
            d = dyn_new(&merged);
        } else if (s->dyn && id->org_id == NULL && s->dyn->id.org_id) {
            basalt_identity merged = {id->user_id, id->user_name, s->dyn->id.org_id,
                                      s->dyn->id.org_name};
            dyn_free(d);
            d = dyn_new(&merged);
        }
        dyn_free(s->dyn);
        s->dyn = d;
        atomic_store_explicit(&s->has_dyn, d != NULL, memory_order_release);
    }
    pthread_mutex_unlock(&s->lock);
    trace_scope *outer = s;
    while (outer->parent)
        outer = outer->parent;
    pthread_mutex_lock(&outer->lock);
    basalt_span *root = outer->root != c->span ? span_retain_if_alive(outer->root) : NULL;
    pthread_mutex_unlock(&outer->lock);
    if (root) {
        basalt_span_set_identity(root, id);
        basalt_span_release(root);
    }
}

/* ---- contexts ----------------------------------------------------------------- */

void ctx_init_embedded(basalt_span *s, prop *p) {
    atomic_init(&s->ctx.rc, 0);
    s->ctx.owner = s;
    s->ctx.span = s;
    s->ctx.p = p;
}

static basalt_ctx *ctx_new(basalt_span *span, prop *p) {
    basalt_ctx *c = malloc(sizeof *c);
    if (c == NULL) return NULL;
    atomic_init(&c->rc, 1);
    c->owner = NULL;
    c->span = span ? basalt_span_retain(span) : NULL;
    c->p = p;
    return c;
}

basalt_ctx *basalt_ctx_retain(basalt_ctx *c) {
    if (c == NULL) return NULL;
    if (c->owner)
        basalt_span_retain(c->owner);
    else
        atomic_fetch_add_explicit(&c->rc, 1, memory_order_relaxed);
    return c;
}

void basalt_ctx_release(basalt_ctx *c) {
    if (c == NULL) return;
    if (c->owner) {
        basalt_span_release(c->owner);
        return;
    }
    if (atomic_fetch_sub_explicit(&c->rc, 1, memory_order_acq_rel) != 1) return;
    basalt_span_release(c->span);
    prop_release(c->p);
    free(c);
}

basalt_span *basalt_ctx_span(const basalt_ctx *c) {
    return c ? c->span : NULL;
}

basalt_span *basalt_ctx_root_span(const basalt_ctx *c) {
    if (c == NULL || c->p == NULL || c->p->scope == NULL) return NULL;
    /* The root is the outermost scope's root. */
    trace_scope *s = c->p->scope;
    while (s->parent)
        s = s->parent;
    pthread_mutex_lock(&s->lock);
    basalt_span *r = span_retain_if_alive(s->root);
    pthread_mutex_unlock(&s->lock);
    return r;
}

bool basalt_ctx_in_trace(const basalt_ctx *c) {
    return c && c->p && c->p->in_trace;
}

const char *basalt_ctx_feature_slug(const basalt_ctx *c) {
    return c && c->p ? c->p->feature_slug : NULL;
}

int basalt_ctx_should_evaluate(const basalt_ctx *c) {
    return c && c->p ? c->p->should_evaluate : -1;
}

void basalt_ctx_identity(const basalt_ctx *c, basalt_identity *out) {
    ident id;
    prop_identity(c ? c->p : NULL, &id, NULL);
    out->user_id = id.user_id;
    out->user_name = id.user_name;
    out->org_id = id.org_id;
    out->org_name = id.org_name;
}

const char *const *basalt_ctx_evaluators(const basalt_ctx *c, size_t *n) {
    if (c == NULL || c->p == NULL) {
        *n = 0;
        return NULL;
    }
    *n = c->p->nevaluators;
    return c->p->evaluators;
}

const basalt_experiment *basalt_ctx_experiment(const basalt_ctx *c) {
    return c && c->p && c->p->has_experiment ? &c->p->exp : NULL;
}

const basalt_prompt_attrs *basalt_ctx_prompt(const basalt_ctx *c) {
    return c && c->p && c->p->has_prompt ? &c->p->prompt : NULL;
}

/* Trimmed, non-blank, not already in list[0..n). */
static bool eval_is_new(const char *const *list, size_t n, const char *s, size_t len) {
    if (len == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len && memcmp(list[i], s, len) == 0) return false;
    return true;
}

basalt_ctx *basalt_ctx_with_evaluators(const basalt_ctx *parent, const char *const *slugs,
                                       size_t n) {
    prop *p = prop_derive(parent ? parent->p : NULL);
    if (p == NULL) return NULL;
    const char **list = realloc(p->evaluators, sizeof *list * (p->nevaluators + n + 1));
    if (list == NULL) {
        prop_release(p);
        return NULL;
    }
    p->evaluators = list;
    for (size_t i = 0; i < n; i++) {
        const char *s = slugs[i];
        if (s == NULL) continue;
        size_t len = strlen(s);
        while (len && isspace((unsigned char)*s))
            s++, len--;
        while (len && isspace((unsigned char)s[len - 1]))
            len--;
        if (!eval_is_new(list, p->nevaluators, s, len)) continue;
        char tmp[256];
        if (len >= sizeof tmp) len = sizeof tmp - 1;
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        const char *v = prop_intern(p, tmp, false);
        if (v) list[p->nevaluators++] = v;
    }
    return ctx_new(parent ? parent->span : NULL, p);
}

basalt_ctx *basalt_ctx_with_values(const basalt_ctx *parent, const char *feature_slug,
                                   const basalt_identity *identity) {
    prop *p = prop_derive(parent ? parent->p : NULL);
    if (p == NULL) return NULL;
    if (feature_slug && *feature_slug) p->feature_slug = prop_intern(p, feature_slug, true);
    if (identity && identity->user_id) {
        p->id.user_id = prop_intern(p, identity->user_id, false);
        p->id.user_name = prop_intern(p, identity->user_name, false);
    }
    if (identity && identity->org_id) {
        p->id.org_id = prop_intern(p, identity->org_id, false);
        p->id.org_name = prop_intern(p, identity->org_name, false);
    }
    if (identity && (identity->user_id || identity->org_id)) p->identity_from_observe = true;
    basalt_ctx *c = ctx_new(parent ? parent->span : NULL, p);
    if (c == NULL) prop_release(p);
    return c;
}

basalt_ctx *basalt_ctx_with_prompt(const basalt_ctx *parent, const basalt_prompt_attrs *pr) {
    prop *p = prop_derive(parent ? parent->p : NULL);
    if (p == NULL) return NULL;
    p->has_prompt = true;
    p->prompt.slug = prop_intern(p, pr->slug ? pr->slug : "", false);
    p->prompt.version = prop_intern(p, pr->version, false);
    p->prompt.tag = prop_intern(p, pr->tag, false);
    p->prompt.provider = prop_intern(p, pr->provider, false);
    p->prompt.model = prop_intern(p, pr->model, false);
    p->prompt.variables_json = prop_intern(p, pr->variables_json, false);
    p->prompt.from_cache = pr->from_cache;
    return ctx_new(parent ? parent->span : NULL, p);
}

/* A non-recording stub standing for a remote parent span. */
static basalt_span *remote_span_new(const uint8_t trace_id[16], const uint8_t span_id[8]) {
    basalt_span *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    atomic_init(&s->rc, 1);
    atomic_flag_clear(&s->lock.f);
    s->ended = true;
    s->remote = true;
    memcpy(s->trace_id, trace_id, 16);
    memcpy(s->span_id, span_id, 8);
    ctx_init_embedded(s, NULL);
    return s;
}

basalt_ctx *basalt_ctx_remote(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                              const char *tracestate, const char *baggage) {
    (void)flags; /* every span this runtime records is sampled */
    basalt_span *stub = remote_span_new(trace_id, span_id);
    if (stub == NULL) return NULL;
    prop *p = NULL;
    if ((tracestate && *tracestate) || (baggage && *baggage)) {
        p = prop_derive(NULL);
        if (p) {
            p->tracestate = tracestate && *tracestate ? prop_intern(p, tracestate, false) : NULL;
            p->baggage = baggage && *baggage ? prop_intern(p, baggage, false) : NULL;
        }
    }
    basalt_ctx *c = ctx_new(stub, p);
    basalt_span_release(stub);
    if (c == NULL) prop_release(p);
    return c;
}

bool basalt_ctx_w3c(const basalt_ctx *c, uint8_t trace_id[16], uint8_t span_id[8], uint8_t *flags,
                    const char **tracestate, const char **baggage) {
    if (c == NULL || c->span == NULL) return false;
    memcpy(trace_id, c->span->trace_id, 16);
    memcpy(span_id, c->span->span_id, 8);
    *flags = 0x01;
    *tracestate = c->p ? c->p->tracestate : NULL;
    *baggage = c->p ? c->p->baggage : NULL;
    return true;
}

/* ---- thread-local current context (C hosts) ------------------------------------ */

/* Each thread's current context (thread-local: no lock needed). */
static _Thread_local basalt_ctx *tls_current = NULL;

basalt_ctx *basalt_ctx_current(void) {
    return tls_current;
}

basalt_ctx *basalt_ctx_attach(basalt_ctx *c) {
    basalt_ctx *prev = tls_current;
    tls_current = basalt_ctx_retain(c);
    return prev;
}

void basalt_ctx_detach(basalt_ctx *previous) {
    basalt_ctx_release(tls_current);
    tls_current = previous;
}
