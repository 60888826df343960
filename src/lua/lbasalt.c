/* The `basalt.core` module: init / shutdown / force_flush / stats, the Lua
 * logger, and the assembly of the per-area parts of the binding. */
#include "lbasalt.h"

#include "basalt/ids.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char LOGGER_KEY = 'L';

/* ---- the Lua logger ------------------------------------------------------------------ */

/* Log messages bound for a Lua logger. The C log sink is called from any
 * thread (the export workers included) while Lua may only run on the thread
 * that owns the state, so messages are queued and delivered by lb_log_drain on
 * the owner's next call into the binding. Process-wide like the C sink itself:
 * guarded by q.lock; `pending` is read without the lock as a fast check. */
#define LOGQ_CAP 256
static struct {
    pthread_mutex_t lock;
    lua_State *owner; /* main thread of the state whose logger is installed */
    struct {
        basalt_log_level level;
        char *msg;
    } items[LOGQ_CAP];
    size_t head, n;
    unsigned long lost;
    _Atomic int pending;
} q = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void logq_sink(void *ud, basalt_log_level level, const char *msg) {
    (void)ud;
    char *copy = strdup(msg);
    if (copy == NULL) return;
    pthread_mutex_lock(&q.lock);
    if (q.owner == NULL || q.n == LOGQ_CAP) {
        q.lost++;
        free(copy);
    } else {
        size_t i = (q.head + q.n) % LOGQ_CAP;
        q.items[i].level = level;
        q.items[i].msg = copy;
        q.n++;
        atomic_store_explicit(&q.pending, 1, memory_order_release);
    }
    pthread_mutex_unlock(&q.lock);
}

static void logq_clear_locked(void) {
    for (size_t k = 0; k < q.n; k++)
        free(q.items[(q.head + k) % LOGQ_CAP].msg);
    q.head = q.n = 0;
    atomic_store_explicit(&q.pending, 0, memory_order_relaxed);
}

static lua_State *main_thread(lua_State *L) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    lua_State *m = lua_tothread(L, -1);
    lua_pop(L, 1);
    return m;
}

/* Loggers running on this thread (thread-local: each OS thread drains its own
 * states' queue), so init/shutdown can refuse to run inside one. */
static _Thread_local int logger_depth;

void lb_log_drain(lua_State *L) {
    if (!atomic_load_explicit(&q.pending, memory_order_acquire)) return;
    lua_State *m = main_thread(L);
    for (;;) {
        pthread_mutex_lock(&q.lock);
        if (q.owner != m || q.n == 0) {
            if (q.n == 0) atomic_store_explicit(&q.pending, 0, memory_order_relaxed);
            pthread_mutex_unlock(&q.lock);
            return;
        }
        basalt_log_level level = q.items[q.head].level;
        char *msg = q.items[q.head].msg;
        q.head = (q.head + 1) % LOGQ_CAP;
        q.n--;
        pthread_mutex_unlock(&q.lock);
        int top = lua_gettop(L);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &LOGGER_KEY);
        lua_pushstring(L, basalt_log_level_name(level));
        lua_pushstring(L, msg);
        free(msg);
        /* A failing logger must not break the program: report on stderr, go on. */
        logger_depth++;
        int st = lua_pcall(L, 2, 0, 0);
        logger_depth--;
        if (st != LUA_OK) {
            const char *why = lua_tostring(L, -1);
            fprintf(stderr, "basalt [error] the logger raised: %s\n",
                    why ? why : luaL_typename(L, -1)); /* error({}) carries no text */
        }
        lua_settop(L, top);
    }
}

/* Installs (fn at idx) or removes (nil) this state's logger. */
static void set_logger(lua_State *L, int idx) {
    lua_State *m = main_thread(L);
    lua_pushvalue(L, idx);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOGGER_KEY);
    pthread_mutex_lock(&q.lock);
    logq_clear_locked();
    q.owner = lua_isnil(L, idx) ? NULL : m;
    pthread_mutex_unlock(&q.lock);
    if (lua_isnil(L, idx))
        basalt_set_logger(NULL, NULL);
    else
        basalt_set_logger(logq_sink, NULL);
}

/* ---- init ------------------------------------------------------------------------------ */

#define MAX_CFG_EXPORTERS BASALT_MAX_EXPORTERS

static int field(lua_State *L, int opts, const char *name) {
    return lua_getfield(L, opts, name);
}

static void bad_field(lua_State *L, const char *name, const char *expected) {
    luaL_error(L, "bad argument #1 to 'init' (field '%s' must be %s, got %s)", name, expected,
               luaL_typename(L, -1));
}

static const char *opt_str(lua_State *L, int opts, const char *name) {
    int t = field(L, opts, name);
    if (t == LUA_TNIL) return NULL;
    if (t != LUA_TSTRING) bad_field(L, name, "a string");
    return lua_tostring(L, -1); /* stays alive in opts */
}

static int opt_bool(lua_State *L, int opts, const char *name) {
    int t = field(L, opts, name);
    if (t == LUA_TNIL) return 0;
    if (t != LUA_TBOOLEAN) bad_field(L, name, "a boolean");
    return lua_toboolean(L, -1) ? 1 : 2;
}

static uint32_t opt_ms(lua_State *L, int t, const char *name, uint32_t dflt) {
    int ty = field(L, t, name);
    uint32_t v = dflt;
    if (ty != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 0x7fffffff)
            bad_field(L, name, "a non-negative integer");
        v = (uint32_t)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static double opt_seconds(lua_State *L, int opts, const char *name) {
    int t = field(L, opts, name);
    double v = 0;
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER || lua_tonumber(L, -1) <= 0) bad_field(L, name, "a positive number");
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static void parse_batch(lua_State *L, int opts, basalt_config *cfg) {
    if (field(L, opts, "batch") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, -1)) bad_field(L, "batch", "a table");
    int b = lua_gettop(L);
    basalt_batch_config_defaults(&cfg->batch);
    basalt_batch_config *bc = &cfg->batch;
    bc->max_queue_size = opt_ms(L, b, "max_queue_size", bc->max_queue_size);
    bc->max_export_batch_size = opt_ms(L, b, "max_export_batch_size", bc->max_export_batch_size);
    bc->schedule_delay_ms = opt_ms(L, b, "schedule_delay_ms", bc->schedule_delay_ms);
    bc->export_timeout_ms = opt_ms(L, b, "export_timeout_ms", bc->export_timeout_ms);
    if (field(L, b, "blocking") != LUA_TNIL) {
        if (!lua_isboolean(L, -1)) bad_field(L, "batch.blocking", "a boolean");
        bc->blocking = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    if (bc->max_queue_size == 0 || bc->max_export_batch_size == 0)
        luaL_error(L, "bad argument #1 to 'init' (batch sizes must be positive)");
    if (bc->max_export_batch_size > bc->max_queue_size)
        bc->max_export_batch_size = bc->max_queue_size; /* as the OpenTelemetry SDKs do */
    cfg->batch_set = true;
    lua_pop(L, 1);
}

/* init{ metadata = } -> kv pairs; strings kept alive in the table at `keep`. */
static size_t parse_metadata(lua_State *L, int opts, int keep, basalt_kv *out, size_t cap) {
    if (field(L, opts, "metadata") == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) bad_field(L, "metadata", "a table");
    int m = lua_gettop(L);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, m)) {
        if (n == cap) {
            basalt_log_once(BASALT_LOG_WARN, "init: only the first %zu metadata entries are used",
                            cap);
            lua_pop(L, 2);
            break;
        }
        if (lua_type(L, -2) == LUA_TSTRING) {
            out[n].key = lua_tostring(L, -2);
            int t = lua_type(L, -1);
            if (t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING) {
                basalt_buf none = {0};
                out[n].value = lb_to_payload(L, -1, &none); /* scalars borrow nothing new */
            } else {
                basalt_buf b = {0};
                lb_json_append(L, -1, &b);
                lua_pushlstring(L, b.data ? b.data : "", b.len);
                basalt_buf_free(&b);
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                out[n].value = basalt_v_strn(s, len);
                lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
            }
            n++;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the metadata table stays referenced by opts */
    return n;
}

static const char *const known_fields[] = {"api_key",
                                           "api_url",
                                           "api_timeout_ms",
                                           "service_name",
                                           "service_version",
                                           "environment",
                                           "enabled",
                                           "exporters",
                                           "batch",
                                           "evaluators",
                                           "metadata",
                                           "sample_rate",
                                           "sampling_policy",
                                           "policy_instruction_limit",
                                           "prompt_cache_ttl",
                                           "prompt_fallback_ttl",
                                           "trace_content",
                                           "logger",
                                           "patch_coroutines",
                                           NULL};

static void warn_unknown_fields(lua_State *L, int opts) {
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int known = 0;
        for (int i = 0; k && !known && known_fields[i]; i++)
            known = strcmp(k, known_fields[i]) == 0;
        if (!known)
            basalt_log_once(BASALT_LOG_WARN, "init: unknown option '%s' ignored",
                            k ? k : luaL_typename(L, -1));
    }
}

/* init and shutdown from inside a sampling policy, identity function or the
 * logger would replace the pipeline under the trace being started or logged
 * about (its spans lost). */
static void not_in_callback(lua_State *L, const char *fname) {
    if (lb_in_callback() || logger_depth)
        luaL_error(L,
                   "basalt.%s cannot be called from a sampling policy, identity function or "
                   "logger",
                   fname);
}

static int l_init(lua_State *L) {
    not_in_callback(L, "init");
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    lb_checktype(L, 1, LUA_TTABLE, "init");
    lua_settop(L, 1);
    const int opts = 1;
    lua_newtable(L); /* 2: keeps converted strings alive until basalt_init returns */
    const int keep = 2;
    basalt_config cfg = {0};

    /* Validate the Lua-only options first, so a bad value changes nothing. */
    if (field(L, opts, "logger") != LUA_TNIL && !lua_isfunction(L, -1))
        bad_field(L, "logger", "a function");
    int logger_idx = lua_gettop(L);
    if (field(L, opts, "patch_coroutines") != LUA_TNIL && !lua_isboolean(L, -1))
        bad_field(L, "patch_coroutines", "a boolean");
    int patch = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
    lua_pop(L, 1);

    cfg.api_key = opt_str(L, opts, "api_key");
    cfg.api_url = opt_str(L, opts, "api_url");
    cfg.api_timeout_ms = opt_ms(L, opts, "api_timeout_ms", 0);
    cfg.service_name = opt_str(L, opts, "service_name");
    cfg.service_version = opt_str(L, opts, "service_version");
    cfg.environment = opt_str(L, opts, "environment");
    cfg.enabled = opt_bool(L, opts, "enabled");
    cfg.trace_content = opt_bool(L, opts, "trace_content");
    cfg.prompt_cache_ttl_s = opt_seconds(L, opts, "prompt_cache_ttl");
    cfg.prompt_fallback_ttl_s = opt_seconds(L, opts, "prompt_fallback_ttl");
    if (field(L, opts, "sample_rate") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER) bad_field(L, "sample_rate", "a number");
        cfg.has_sample_rate = true;
        cfg.sample_rate = lua_tonumber(L, -1);
        if (!(cfg.sample_rate >= 0.0 && cfg.sample_rate <= 1.0))
            luaL_error(L, "sample_rate must be within [0.0, 1.0].");
    }
    lua_pop(L, 1);
    parse_batch(L, opts, &cfg);

    const char *evals[64];
    field(L, opts, "evaluators");
    int ne = lb_parse_evaluators(L, -1);
    lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1); /* keep the slug list */
    lua_pop(L, 1);
    lua_rawgeti(L, keep, (lua_Integer)lua_rawlen(L, keep));
    for (int i = 1; i <= ne && i <= 64; i++) {
        lua_rawgeti(L, -1, i);
        evals[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    cfg.evaluators = evals;
    cfg.nevaluators = (size_t)(ne < 64 ? ne : 64);
    if (ne > 64)
        basalt_log_once(BASALT_LOG_WARN, "init: only the first 64 global evaluators are used");

    basalt_kv meta[128];
    cfg.metadata = meta;
    cfg.nmetadata = parse_metadata(L, opts, keep, meta, 128);

    basalt_exporter *exps[MAX_CFG_EXPORTERS];
    if (field(L, opts, "exporters") != LUA_TNIL) {
        const char *key = cfg.api_key ? cfg.api_key : getenv("BASALT_API_KEY");
        cfg.nexporters = lb_parse_exporters(L, -1, key, exps, MAX_CFG_EXPORTERS);
        cfg.exporters = exps;
        cfg.exporters_set = true; /* the owning table stays on the stack */
        if (cfg.nexporters == 0)
            basalt_log_once(BASALT_LOG_WARN, "init: the exporters list is empty: spans are "
                                             "recorded and discarded");
    }
    warn_unknown_fields(L, opts);
    /* Last of the checks, because it also installs the policy for this state. */
    lb_policy_configure(L, opts);

    lb_log_drain(L); /* what the old logger still has to say goes to it */
    set_logger(L, logger_idx);
    basalt_error err;
    bool ok = basalt_init(&cfg, &err);
    lb_patch_coroutines(L, patch);
    lb_log_drain(L);
    if (!ok) return luaL_error(L, "%s", err.message);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- lifecycle and counters ------------------------------------------------------------- */

static uint32_t timeout_arg(lua_State *L, int idx, const char *fname) {
    if (lua_isnoneornil(L, idx)) return 30000;
    if (!lua_isinteger(L, idx) || lua_tointeger(L, idx) < 0)
        lb_argerror(L, idx, fname, "timeout must be a non-negative integer (milliseconds)");
    lua_Integer t = lua_tointeger(L, idx);
    return t > 0x7fffffff ? 0x7fffffff : (uint32_t)t;
}

static void set_u64(lua_State *L, const char *k, uint64_t v) {
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void push_stats(lua_State *L) {
    basalt_stats st;
    basalt_get_stats(&st);
    lua_createtable(L, 0, 8);
    set_u64(L, "spans_started", st.spans_started);
    set_u64(L, "spans_ended", st.spans_ended);
    set_u64(L, "spans_exported", st.spans_exported);
    set_u64(L, "spans_dropped", st.spans_dropped);
    set_u64(L, "export_failures", st.export_failures);
    set_u64(L, "export_retries", st.export_retries);
    set_u64(L, "queue_size", st.queue_size);
    lua_createtable(L, (int)st.nexporters, 0);
    for (size_t i = 0; i < st.nexporters; i++) {
        const basalt_exporter_stats *x = &st.exporters[i];
        lua_createtable(L, 0, 7);
        lua_pushstring(L, x->type);
        lua_setfield(L, -2, "type");
        set_u64(L, "spans_exported", x->spans_exported);
        set_u64(L, "spans_failed", x->spans_failed);
        set_u64(L, "spans_dropped", x->spans_dropped);
        set_u64(L, "export_failures", x->export_failures);
        set_u64(L, "export_retries", x->export_retries);
        set_u64(L, "queue_size", x->queue_size);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "exporters");
}

static int l_stats(lua_State *L) {
    lb_log_drain(L);
    push_stats(L);
    return 1;
}

static int l_force_flush(lua_State *L) {
    uint32_t t = timeout_arg(L, 1, "force_flush");
    bool ok = basalt_force_flush(t);
    lb_log_drain(L);
    lua_pushboolean(L, ok);
    return 1;
}

static int l_shutdown(lua_State *L) {
    not_in_callback(L, "shutdown");
    uint32_t t = timeout_arg(L, 1, "shutdown");
    bool ok = basalt_shutdown(t);
    lb_log_drain(L);
    lua_pushboolean(L, ok);
    push_stats(L);
    return 2;
}

/* Bounded so that a program whose collector is down still exits promptly. */
#define CLOSE_FLUSH_MS 2000

/* Closing the state flushes what it produced (the runtime itself is
 * process-wide and may serve other states, so it is not shut down here). The
 * sentinel is marked for finalization before any other userdata of the
 * module, so it is finalized after all of them: the references still noted
 * then were held by userdata Lua freed without their finalizer (see
 * lbasalt.h). They are released first, so a block abandoned that way is
 * ended and flushed with the rest. */
static int sentinel_gc(lua_State *L) {
    size_t n = lb_refs_close(lb_refs_lookup(L));
    if (n)
        basalt_log(BASALT_LOG_DEBUG,
                   "released %zu references of values whose finalizer Lua skipped", n);
    if (basalt_is_enabled()) basalt_force_flush(CLOSE_FLUSH_MS);
    lua_State *m = main_thread(L);
    pthread_mutex_lock(&q.lock);
    int mine = q.owner == m;
    if (mine) {
        logq_clear_locked();
        q.owner = NULL;
    }
    pthread_mutex_unlock(&q.lock);
    if (mine) basalt_set_logger(NULL, NULL);
    return 0;
}

uint64_t lb_secret; /* see lbasalt.h: written once under secret_once */
static pthread_once_t secret_once = PTHREAD_ONCE_INIT;

static void make_secret(void) {
    uint8_t r[8];
    basalt_new_span_id(r); /* 64 bits from the OS-seeded generator, never zero */
    memcpy(&lb_secret, r, sizeof lb_secret);
}

void lb_init_secret(void) {
    pthread_once(&secret_once, make_secret);
}

/* The module's only exported symbol (everything else is hidden). */
__attribute__((visibility("default"))) int luaopen_basalt_core(lua_State *L);

int luaopen_basalt_core(lua_State *L) {
    luaL_checkversion(L);
    lb_init_secret();
    /* The sentinel lives as long as the state: its __gc runs at lua_close,
     * after every other finalizer of the module (see sentinel_gc), so it is
     * made first, and once per state. */
    if (lua_getfield(L, LUA_REGISTRYINDEX, "basalt.sentinel") == LUA_TNIL) {
        lb_refs_lookup(L);
        lua_newuserdatauv(L, 1, 0);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, sentinel_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, "basalt.sentinel");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushstring(L, basalt_version());
    lua_setfield(L, -2, "version");
    static const char *const kinds[][2] = {
        {"GENERATION", "generation"}, {"RETRIEVAL", "retrieval"}, {"TOOL", "tool"},
        {"FUNCTION", "function"},     {"EVENT", "event"},         {"SPAN", "span"}};
    lua_createtable(L, 0, 6);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        lua_pushstring(L, kinds[i][1]);
        lua_setfield(L, -2, kinds[i][0]);
    }
    lua_setfield(L, -2, "kind");
    static const luaL_Reg fns[] = {{"init", l_init},
                                   {"shutdown", l_shutdown},
                                   {"force_flush", l_force_flush},
                                   {"stats", l_stats},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lb_open_context(L);
    lb_open_span(L);
    lb_open_observe(L);
    lb_open_exporter(L);
    lb_open_tracer(L);
    lb_open_prompts(L);
    lb_patch_coroutines(L, 1);
    return 1;
}
