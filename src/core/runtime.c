/* The process-wide runtime: configuration, the pipeline of processors, init /
 * flush / shutdown, counters, fork and exit handling. */
#include "engine.h"

#include "basalt/attrs.h"
#include "text.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_PROCS BASALT_MAX_EXPORTERS

struct pipeline {
    _Atomic int rc;
    _Atomic bool shut;
    bool trace_content;
    double sample_rate;
    basalt_policy_fn policy;
    void *policy_ud;
    const char **evaluators;
    size_t nevaluators;
    basalt_kv *metadata; /* keys are "basalt.meta.<key>" */
    size_t nmetadata;
    basalt_kv *res_attrs;
    basalt_resource res;
    basalt_processor *procs[MAX_PROCS];
    size_t nprocs;
    /* Exporter counters when this pipeline took the exporter: an exporter
     * object may outlive several inits, and stats() counts since init. */
    uint64_t base_exported[MAX_PROCS], base_failed[MAX_PROCS], base_failures[MAX_PROCS];
    uint64_t base_retries[MAX_PROCS], base_dropped[MAX_PROCS];
    uint32_t shutdown_timeout_ms;
    _Atomic uint64_t started, ended;
    basalt_api_settings api;
    record_impl *arena; /* owns every string above */
};

/* Process-wide runtime state, guarded by rt_lock. */
static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;
static pipeline *g_pl = NULL;
enum { RT_NEVER = 0, RT_ACTIVE, RT_SHUT };
static int g_state = RT_NEVER;
/* Counters of the last pipeline, kept after its shutdown for stats(). */
static basalt_stats g_last_stats;
/* Serialises init/shutdown against each other (held across slow flushes,
 * never taken by span paths). */
static pthread_mutex_t lifecycle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

/* ---- environment helpers --------------------------------------------------------- */

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* 1 true, 0 false, -1 unset/unknown. */
static int env_bool(const char *name) {
    const char *v = env(name);
    if (v == NULL) return -1;
    char buf[16];
    size_t n = 0;
    while (*v && isspace((unsigned char)*v))
        v++;
    while (*v && n < sizeof buf - 1)
        buf[n++] = (char)tolower((unsigned char)*v++);
    while (n && isspace((unsigned char)buf[n - 1]))
        n--;
    buf[n] = '\0';
    if (!strcmp(buf, "1") || !strcmp(buf, "true") || !strcmp(buf, "yes") || !strcmp(buf, "on"))
        return 1;
    if (!strcmp(buf, "0") || !strcmp(buf, "false") || !strcmp(buf, "no") || !strcmp(buf, "off"))
        return 0;
    return -1;
}

/* ---- pipeline lifetime ------------------------------------------------------------- */

pipeline *pipeline_retain(pipeline *pl) {
    if (pl) atomic_fetch_add_explicit(&pl->rc, 1, memory_order_relaxed);
    return pl;
}

void pipeline_release(pipeline *pl) {
    if (pl == NULL || atomic_fetch_sub_explicit(&pl->rc, 1, memory_order_acq_rel) != 1) return;
    for (size_t i = 0; i < pl->nprocs; i++)
        basalt_processor_free(pl->procs[i]);
    free(pl->evaluators);
    free(pl->metadata);
    free(pl->res_attrs);
    basalt_record_release(&pl->arena->pub);
    free(pl);
}

pipeline *pipeline_acquire(void) {
    pthread_mutex_lock(&rt_lock);
    int state = g_state;
    pthread_mutex_unlock(&rt_lock);
    if (state == RT_NEVER) basalt_ensure_init();
    pthread_mutex_lock(&rt_lock);
    pipeline *pl = g_state == RT_ACTIVE ? pipeline_retain(g_pl) : NULL;
    pthread_mutex_unlock(&rt_lock);
    return pl;
}

void pipeline_on_start(pipeline *pl) {
    atomic_fetch_add_explicit(&pl->started, 1, memory_order_relaxed);
}

void pipeline_on_end(pipeline *pl, record_impl *rec) {
    atomic_fetch_add_explicit(&pl->ended, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&pl->shut, memory_order_acquire)) {
        for (size_t i = 0; i < pl->nprocs; i++)
            basalt_processor_on_end(pl->procs[i], &rec->pub);
    } else {
        /* Its pipeline was shut down (shutdown, or init again) while it ran:
         * the exporters are gone, so say so rather than lose it silently. */
        basalt_log_once(BASALT_LOG_WARN,
                        "spans still open at basalt.shutdown or at a new basalt.init are "
                        "dropped when they end (end them first)");
    }
    basalt_record_release(&rec->pub);
}

bool pipeline_trace_content(const pipeline *pl) {
    return pl->trace_content;
}

double pipeline_sample_rate(const pipeline *pl) {
    return pl->sample_rate;
}

basalt_policy_fn pipeline_policy(const pipeline *pl, void **ud) {
    *ud = pl->policy_ud;
    return pl->policy;
}

const char *const *pipeline_evaluators(const pipeline *pl, size_t *n) {
    *n = pl->nevaluators;
    return pl->evaluators;
}

const basalt_kv *pipeline_metadata(const pipeline *pl, size_t *n) {
    *n = pl->nmetadata;
    return pl->metadata;
}

/* ---- building a pipeline ----------------------------------------------------------- */

static const char *arena_str(pipeline *pl, const char *s) {
    return s ? record_strdup(pl->arena, s, strlen(s)) : NULL;
}

/* Sets key in the resource list (later calls win). */
static void res_set(pipeline *pl, size_t *n, const char *key, basalt_value v) {
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(pl->res_attrs[i].key, key) == 0) {
            record_copy_value(pl->arena, v, &pl->res_attrs[i].value);
            return;
        }
    }
    pl->res_attrs[*n].key = arena_str(pl, key);
    record_copy_value(pl->arena, v, &pl->res_attrs[*n].value);
    (*n)++;
}

static bool build_resource(pipeline *pl, const basalt_config *cfg) {
    size_t cap = 16 + cfg->nresource_attrs;
    const char *ra = env("OTEL_RESOURCE_ATTRIBUTES");
    if (ra)
        for (const char *c = ra; *c; c++)
            cap += *c == ',';
    pl->res_attrs = calloc(cap, sizeof *pl->res_attrs);
    if (pl->res_attrs == NULL) return false;
    size_t n = 0;
    if (ra) {
        char *copy = strdup(ra), *save = NULL;
        for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; item;
             item = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(item, '=');
            if (eq == NULL) continue;
            *eq = '\0';
            char *k = item, *v = eq + 1;
            k = text_trim(k);
            v = text_trim(v);
            text_percent_decode(v);
            if (*k) res_set(pl, &n, k, basalt_v_str(v));
        }
        free(copy);
    }
    const char *service = cfg->service_name ? cfg->service_name : env("BASALT_SERVICE_NAME");
    if (service == NULL) service = env("OTEL_SERVICE_NAME");
    bool have_service = false;
    for (size_t i = 0; i < n; i++)
        have_service |= !strcmp(pl->res_attrs[i].key, BASALT_RES_SERVICE_NAME);
    if (service || !have_service)
        res_set(pl, &n, BASALT_RES_SERVICE_NAME, basalt_v_str(service ? service : "basalt-sdk"));
    res_set(pl, &n, BASALT_RES_SERVICE_VERSION,
            basalt_v_str(cfg->service_version && *cfg->service_version ? cfg->service_version
                                                                       : BASALT_VERSION));
    const char *envname = cfg->environment ? cfg->environment : env("BASALT_ENVIRONMENT");
    if (envname) res_set(pl, &n, BASALT_RES_DEPLOYMENT_ENVIRONMENT, basalt_v_str(envname));
    res_set(pl, &n, BASALT_RES_SDK_NAME, basalt_v_str(BASALT_SDK_NAME));
    res_set(pl, &n, BASALT_RES_SDK_LANGUAGE, basalt_v_str(BASALT_SDK_LANGUAGE));
    res_set(pl, &n, BASALT_RES_SDK_VERSION, basalt_v_str(BASALT_VERSION));
    res_set(pl, &n, BASALT_RES_BASALT_SDK_TYPE, basalt_v_str(BASALT_SDK_TYPE));
    res_set(pl, &n, BASALT_RES_BASALT_SDK_VERSION, basalt_v_str(BASALT_VERSION));
    for (size_t i = 0; i < cfg->nresource_attrs; i++)
        res_set(pl, &n, cfg->resource_attrs[i].key, cfg->resource_attrs[i].value);
    pl->res.attrs = pl->res_attrs;
    pl->res.nattrs = n;
    return true;
}

static bool add_processor(pipeline *pl, basalt_exporter *e, const basalt_batch_config *batch) {
    if (e == NULL) return false;
    if (pl->nprocs == MAX_PROCS) {
        basalt_log(BASALT_LOG_WARN, "at most %d exporters are supported; extra ones are ignored",
                   MAX_PROCS);
        return false;
    }
    basalt_processor *p = e->synchronous ? basalt_sync_processor_new(e, &pl->res)
                                         : basalt_batch_processor_new(e, &pl->res, batch);
    if (p == NULL) return false;
    size_t i = pl->nprocs++;
    pl->procs[i] = p;
    pl->base_exported[i] = atomic_load_explicit(&e->counters.exported, memory_order_relaxed);
    pl->base_failed[i] = atomic_load_explicit(&e->counters.failed, memory_order_relaxed);
    pl->base_failures[i] = atomic_load_explicit(&e->counters.failures, memory_order_relaxed);
    pl->base_retries[i] = atomic_load_explicit(&e->counters.retries, memory_order_relaxed);
    pl->base_dropped[i] = atomic_load_explicit(&e->counters.dropped, memory_order_relaxed);
    return true;
}

static pipeline *pipeline_build(const basalt_config *cfg, basalt_error *err) {
    double rate = 0.0;
    if (cfg->has_sample_rate) {
        rate = cfg->sample_rate;
        if (!(rate >= 0.0 && rate <= 1.0)) {
            snprintf(err->message, sizeof err->message, "sample_rate must be within [0.0, 1.0].");
            return NULL;
        }
    } else if (env("BASALT_SAMPLE_RATE")) {
        char *end = NULL;
        double r = strtod(env("BASALT_SAMPLE_RATE"), &end);
        if (end && *end == '\0' && r >= 0.0 && r <= 1.0) rate = r; /* else silently ignored */
    }
    pipeline *pl = calloc(1, sizeof *pl);
    if (pl == NULL) return NULL;
    atomic_init(&pl->rc, 1);
    atomic_init(&pl->shut, false);
    pl->arena = record_new();
    if (pl->arena == NULL) {
        free(pl);
        return NULL;
    }
    pl->sample_rate = rate;
    pl->policy = cfg->policy;
    pl->policy_ud = cfg->policy_ud;
    int tc = cfg->trace_content;
    if (tc == 1)
        pl->trace_content = true;
    else if (tc == 2)
        pl->trace_content = false;
    else {
        int e = env_bool("BASALT_TRACE_CONTENT");
        if (e < 0) e = env_bool("TRACELOOP_TRACE_CONTENT");
        pl->trace_content = e != 0;
    }
    /* Global evaluators: trimmed, blanks and duplicates dropped. */
    if (cfg->nevaluators) {
        pl->evaluators = calloc(cfg->nevaluators, sizeof *pl->evaluators);
        for (size_t i = 0; pl->evaluators && i < cfg->nevaluators; i++) {
            const char *s = cfg->evaluators[i];
            if (s == NULL) continue;
            size_t len = strlen(s);
            while (len && isspace((unsigned char)*s))
                s++, len--;
            while (len && isspace((unsigned char)s[len - 1]))
                len--;
            bool dup = len == 0;
            for (size_t j = 0; j < pl->nevaluators && !dup; j++)
                dup = strlen(pl->evaluators[j]) == len && !memcmp(pl->evaluators[j], s, len);
            if (!dup) pl->evaluators[pl->nevaluators++] = record_strdup(pl->arena, s, len);
        }
    }
    if (cfg->nmetadata) {
        pl->metadata = calloc(cfg->nmetadata, sizeof *pl->metadata);
        for (size_t i = 0; pl->metadata && i < cfg->nmetadata; i++) {
            const char *k = cfg->metadata[i].key;
            if (k == NULL || cfg->metadata[i].value.type == BASALT_VAL_NONE) continue;
            size_t klen = strlen(BASALT_ATTR_META_PREFIX) + strlen(k) + 1;
            char *full = record_alloc(pl->arena, klen);
            if (full == NULL) continue;
            snprintf(full, klen, "%s%s", BASALT_ATTR_META_PREFIX, k);
            pl->metadata[pl->nmetadata].key = full;
            record_copy_value(pl->arena, cfg->metadata[i].value,
                              &pl->metadata[pl->nmetadata].value);
            pl->nmetadata++;
        }
    }
    /* API settings. */
    const char *key = cfg->api_key ? cfg->api_key : env("BASALT_API_KEY");
    const char *url = cfg->api_url ? cfg->api_url : env("BASALT_API_URL");
    snprintf(pl->api.api_key, sizeof pl->api.api_key, "%s", key ? key : "");
    snprintf(pl->api.api_url, sizeof pl->api.api_url, "%s", url ? url : "https://api.getbasalt.ai");
    pl->api.timeout_ms = cfg->api_timeout_ms ? cfg->api_timeout_ms : 30000;
    pl->api.prompt_cache_ttl_s = cfg->prompt_cache_ttl_s > 0 ? cfg->prompt_cache_ttl_s : 300;
    pl->api.prompt_fallback_ttl_s =
        cfg->prompt_fallback_ttl_s > 0 ? cfg->prompt_fallback_ttl_s : 86400;

    if (!build_resource(pl, cfg)) {
        pipeline_release(pl);
        return NULL;
    }
    basalt_batch_config batch;
    if (cfg->batch_set)
        batch = cfg->batch;
    else
        basalt_batch_config_defaults(&batch);
    pl->shutdown_timeout_ms = batch.export_timeout_ms ? batch.export_timeout_ms : 30000;
    if (cfg->exporters_set) {
        for (size_t i = 0; i < cfg->nexporters; i++)
            add_processor(pl, cfg->exporters[i], &batch);
    } else {
        basalt_exporter *e = NULL;
        if (basalt_otlp_endpoint_known(key)) {
            basalt_otlp_config oc = {0};
            oc.api_key = key;
            e = basalt_otlp_exporter_new(&oc);
        }
        if (e == NULL) e = basalt_console_exporter_new(NULL);
        add_processor(pl, e, &batch);
        basalt_exporter_release(e); /* the processor holds it */
    }
    return pl;
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static void collect(pipeline *pl, basalt_stats *out);

/* Shuts pl's processors down within timeout_ms, keeps its final counters as the
 * ones stats() reports until the next init, and drops the reference. */
static void stop_pipeline(pipeline *pl, uint32_t timeout_ms, bool *ok) {
    if (pl == NULL) return;
    atomic_store_explicit(&pl->shut, true, memory_order_release);
    uint64_t deadline = basalt_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
    for (size_t i = 0; i < pl->nprocs; i++) {
        uint64_t now = basalt_monotonic_ns();
        uint32_t left = now < deadline ? (uint32_t)((deadline - now) / 1000000u) : 0;
        if (!basalt_processor_shutdown(pl->procs[i], left) && ok) *ok = false;
    }
    basalt_stats last;
    collect(pl, &last);
    pthread_mutex_lock(&rt_lock);
    if (g_pl == NULL) g_last_stats = last;
    pthread_mutex_unlock(&rt_lock);
    pipeline_release(pl);
}

static void atfork_prepare(void) {
    pthread_mutex_lock(&rt_lock);
    for (size_t i = 0; g_pl && i < g_pl->nprocs; i++)
        basalt_processor_atfork_prepare(g_pl->procs[i]);
}

static void atfork_parent(void) {
    for (size_t i = 0; g_pl && i < g_pl->nprocs; i++)
        basalt_processor_atfork_parent(g_pl->procs[i]);
    pthread_mutex_unlock(&rt_lock);
}

static void atfork_child(void) {
    for (size_t i = 0; g_pl && i < g_pl->nprocs; i++)
        basalt_processor_atfork_child(g_pl->procs[i]);
    pthread_mutex_unlock(&rt_lock);
}

/* The spans-ended count at the last flush that ran out of time, plus one (0:
 * none did). Process-wide, atomic: any thread may flush. */
static _Atomic uint64_t stuck_at_ended;

/* Normal process exit flushes, bounded so that a dead collector cannot hold
 * the exit for long. When a flush (a Lua state closing, say) has just timed
 * out with nothing ended since, waiting the full bound again would only
 * double the delay: the exit then grants a short grace. */
static void at_exit(void) {
    uint32_t timeout = 2000;
    uint64_t stuck = atomic_load_explicit(&stuck_at_ended, memory_order_relaxed);
    pthread_mutex_lock(&rt_lock);
    if (stuck && g_pl && atomic_load_explicit(&g_pl->ended, memory_order_relaxed) + 1 == stuck)
        timeout = 200;
    pthread_mutex_unlock(&rt_lock);
    basalt_shutdown(timeout);
}

static void install_hooks(void) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    atexit(at_exit);
}

bool basalt_init(const basalt_config *cfg, basalt_error *err) {
    basalt_config empty = {0};
    basalt_error local;
    if (err == NULL) err = &local;
    err->message[0] = '\0';
    if (cfg == NULL) cfg = &empty;
    span_keys_init();
    pthread_once(&hooks_once, install_hooks);
    int enabled = cfg->enabled;
    if (enabled != 1 && enabled != 2) enabled = env_bool("BASALT_TELEMETRY_ENABLED") == 0 ? 2 : 1;
    pipeline *pl = NULL;
    if (enabled == 1) {
        pl = pipeline_build(cfg, err);
        if (pl == NULL) {
            if (err->message[0] == '\0')
                snprintf(err->message, sizeof err->message, "out of memory");
            return false;
        }
    }
    pthread_mutex_lock(&lifecycle_lock);
    pthread_mutex_lock(&rt_lock);
    pipeline *old = g_pl;
    g_pl = pl;
    g_state = pl ? RT_ACTIVE : RT_SHUT;
    pthread_mutex_unlock(&rt_lock);
    if (old) stop_pipeline(old, old->shutdown_timeout_ms, NULL);
    if (pl == NULL) { /* disabled: stats() counts from this init, so nothing */
        pthread_mutex_lock(&rt_lock);
        memset(&g_last_stats, 0, sizeof g_last_stats);
        pthread_mutex_unlock(&rt_lock);
    }
    pthread_mutex_unlock(&lifecycle_lock);
    return true;
}

void basalt_ensure_init(void) {
    pthread_mutex_lock(&rt_lock);
    bool need = g_state == RT_NEVER;
    pthread_mutex_unlock(&rt_lock);
    if (!need) return;
    basalt_config cfg = {0};
    pipeline *pl;
    basalt_error err;
    span_keys_init();
    pthread_once(&hooks_once, install_hooks);
    if (env_bool("BASALT_TELEMETRY_ENABLED") == 0) {
        pl = NULL;
    } else {
        pl = pipeline_build(&cfg, &err);
    }
    pthread_mutex_lock(&rt_lock);
    if (g_state == RT_NEVER) {
        g_pl = pl;
        g_state = pl ? RT_ACTIVE : RT_SHUT;
        pl = NULL;
    }
    pthread_mutex_unlock(&rt_lock);
    if (pl) stop_pipeline(pl, 0, NULL); /* another thread won the race */
}

bool basalt_force_flush(uint32_t timeout_ms) {
    pthread_mutex_lock(&rt_lock);
    pipeline *pl = pipeline_retain(g_pl);
    pthread_mutex_unlock(&rt_lock);
    if (pl == NULL) return true;
    bool ok = true;
    uint64_t deadline = basalt_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
    for (size_t i = 0; i < pl->nprocs; i++) {
        uint64_t now = basalt_monotonic_ns();
        uint32_t left = now < deadline ? (uint32_t)((deadline - now) / 1000000u) : 0;
        if (!basalt_processor_flush(pl->procs[i], left)) ok = false;
    }
    uint64_t ended = atomic_load_explicit(&pl->ended, memory_order_relaxed);
    atomic_store_explicit(&stuck_at_ended, ok ? 0 : ended + 1, memory_order_relaxed);
    pipeline_release(pl);
    return ok;
}

bool basalt_shutdown(uint32_t timeout_ms) {
    pthread_mutex_lock(&lifecycle_lock);
    pthread_mutex_lock(&rt_lock);
    pipeline *pl = g_pl;
    g_pl = NULL;
    g_state = RT_SHUT;
    pthread_mutex_unlock(&rt_lock);
    bool ok = true;
    stop_pipeline(pl, timeout_ms, &ok);
    pthread_mutex_unlock(&lifecycle_lock);
    return ok;
}

bool basalt_is_enabled(void) {
    pthread_mutex_lock(&rt_lock);
    bool on = g_state == RT_ACTIVE;
    pthread_mutex_unlock(&rt_lock);
    return on;
}

static void collect(pipeline *pl, basalt_stats *out) {
    memset(out, 0, sizeof *out);
    out->spans_started = atomic_load_explicit(&pl->started, memory_order_relaxed);
    out->spans_ended = atomic_load_explicit(&pl->ended, memory_order_relaxed);
    out->nexporters = pl->nprocs;
    for (size_t i = 0; i < pl->nprocs; i++) {
        basalt_exporter *e = basalt_processor_exporter(pl->procs[i]);
        basalt_exporter_stats *x = &out->exporters[i];
        x->type = e->ops->type;
        x->spans_exported = atomic_load_explicit(&e->counters.exported, memory_order_relaxed) -
                            pl->base_exported[i];
        x->spans_failed =
            atomic_load_explicit(&e->counters.failed, memory_order_relaxed) - pl->base_failed[i];
        x->spans_dropped =
            atomic_load_explicit(&e->counters.dropped, memory_order_relaxed) - pl->base_dropped[i];
        x->export_failures = atomic_load_explicit(&e->counters.failures, memory_order_relaxed) -
                             pl->base_failures[i];
        x->export_retries =
            atomic_load_explicit(&e->counters.retries, memory_order_relaxed) - pl->base_retries[i];
        x->queue_size = basalt_processor_queue_size(pl->procs[i]);
        out->spans_exported += x->spans_exported;
        out->spans_dropped += x->spans_dropped;
        out->export_failures += x->export_failures;
        out->export_retries += x->export_retries;
        out->queue_size += x->queue_size;
    }
}

void basalt_get_stats(basalt_stats *out) {
    pthread_mutex_lock(&rt_lock);
    pipeline *pl = pipeline_retain(g_pl);
    if (pl == NULL) *out = g_last_stats;
    pthread_mutex_unlock(&rt_lock);
    if (pl == NULL) return;
    collect(pl, out);
    pipeline_release(pl);
}

void basalt_get_api_settings(basalt_api_settings *out) {
    pthread_mutex_lock(&rt_lock);
    if (g_pl) {
        *out = g_pl->api;
        pthread_mutex_unlock(&rt_lock);
        return;
    }
    pthread_mutex_unlock(&rt_lock);
    memset(out, 0, sizeof *out);
    const char *key = env("BASALT_API_KEY"), *url = env("BASALT_API_URL");
    snprintf(out->api_key, sizeof out->api_key, "%s", key ? key : "");
    snprintf(out->api_url, sizeof out->api_url, "%s", url ? url : "https://api.getbasalt.ai");
    out->timeout_ms = 30000;
    out->prompt_cache_ttl_s = 300;
    out->prompt_fallback_ttl_s = 86400;
}

bool basalt_config_trace_content(void) {
    pthread_mutex_lock(&rt_lock);
    bool on = g_pl ? g_pl->trace_content : true;
    pthread_mutex_unlock(&rt_lock);
    return on;
}
