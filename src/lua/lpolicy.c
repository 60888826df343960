/* User callbacks run safely: sampling policies and identity functions run in a
 * coroutine of their own, protected, with an instruction budget and no yields; a
 * failure is logged once per distinct message (with its traceback) and the
 * traced program goes on. */
#include "lbasalt.h"

#include <string.h>

static const char POLICY_KEY = 'p';
static const char LIMIT_KEY = 'l';
static const char THREAD_KEY = 't'; /* an idle coroutine kept for the next callback */

#define DEFAULT_LIMIT 100000
/* The hook fires every BUDGET_STEP instructions (fewer when the limit is
 * smaller): a policy shorter than that never pays for a hook call. */
#define BUDGET_STEP 100

static lua_Integer budget_limit(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LIMIT_KEY);
    lua_Integer limit = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : DEFAULT_LIMIT;
    lua_pop(L, 1);
    return limit > 0 ? limit : DEFAULT_LIMIT;
}

/* The budget of the user callback running on this OS thread. A callback runs
 * synchronously on the thread that called into the binding, so a thread-local
 * pointer (saved and restored around nested calls) is all the hook needs; no
 * state is shared between threads. */
typedef struct budget {
    lua_Integer remaining; /* instructions left, counted in hook steps */
    int exceeded;
    struct budget *prev;
} budget;
static _Thread_local budget *cur_budget;

/* Count hook of the callback's coroutine and of every coroutine it creates
 * (lua_newthread copies the creator's hook), so one budget covers them all.
 * Once the budget is spent the hook runs at every instruction and ends the
 * callback: by yielding, which no pcall inside the callback can catch (it
 * unwinds to lb_safe_call's lua_resume, or to the callback's own resume of a
 * nested coroutine, whose thread then stops at its next check), or by raising
 * where a yield is impossible (inside a C call such as a table.sort comparator). */
static void budget_hook(lua_State *co, lua_Debug *ar) {
    (void)ar;
    budget *b = cur_budget;
    if (b == NULL) {
        /* A coroutine that outlived its callback: it runs unrestricted now. */
        lua_sethook(co, NULL, 0, 0);
        return;
    }
    if (!b->exceeded) {
        b->remaining -= lua_gethookcount(co);
        if (b->remaining > 0) return;
        b->exceeded = 1;
    }
    if (lua_gethookcount(co) != 1) lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
    if (lua_isyieldable(co)) {
        lua_yield(co, 0);
        return;
    }
    luaL_error(co, "instruction budget exceeded (policy_instruction_limit)");
}

/* A coroutine for one callback: the idle one kept by the last successful call
 * (taken out of the registry while in use, so a nested call makes its own), or
 * a new one. Either way it is pushed on L. */
static lua_State *take_thread(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &THREAD_KEY) == LUA_TTHREAD) {
        lua_State *co = lua_tothread(L, -1);
        lua_pushnil(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &THREAD_KEY);
        return co;
    }
    lua_pop(L, 1);
    return lua_newthread(L);
}

bool lb_in_callback(void) {
    return cur_budget != NULL;
}

int lb_safe_call(lua_State *L, int nargs, int nresults, const char *what) {
    luaL_checkstack(L, nresults + 4, "user callback");
    lua_State *co = take_thread(L);
    lua_insert(L, -(nargs + 2)); /* thread below the function */
    lua_xmove(L, co, nargs + 1);
    lua_Integer limit = budget_limit(L);
    budget b = {limit, 0, cur_budget};
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, limit < BUDGET_STEP ? (int)limit : BUDGET_STEP);
    cur_budget = &b;
    int nres = 0;
    int status = lua_resume(co, L, nargs, &nres);
    cur_budget = b.prev;
    if (status == LUA_OK && !b.exceeded) {
        if (nres > nresults) lua_pop(co, nres - nresults);
        for (int i = nres; i < nresults; i++)
            lua_pushnil(co);
        lua_xmove(co, L, nresults);
        lua_settop(co, 0);
        /* Finished cleanly: the coroutine is as good as new; keep it. */
        lua_pushvalue(L, -(nresults + 1));
        lua_rawsetp(L, LUA_REGISTRYINDEX, &THREAD_KEY);
        lua_remove(L, -(nresults + 1)); /* the thread */
        return 1;
    }
    const char *msg;
    if (b.exceeded) {
        msg = lua_pushfstring(co,
                              "ran past its instruction budget (policy_instruction_limit = "
                              "%I) and was cut off",
                              limit);
    } else if (status == LUA_YIELD) {
        msg = "attempted to yield; a user callback cannot yield";
    } else {
        msg = lua_tostring(co, -1);
        if (msg == NULL)
            msg = lua_pushfstring(co, "(error object is a %s value)", luaL_typename(co, -1));
    }
    lb_traceback(L, co, msg, 0);
    basalt_log_once(BASALT_LOG_WARN, "%s failed and was ignored: %s", what, lua_tostring(L, -1));
    lua_pop(L, 2); /* traceback, thread (dropped: it may be suspended or dead) */
    return 0;
}

void lb_callback_bad_result(lua_State *L, int fn_idx, const char *what, const char *problem) {
    lua_Debug ar;
    lua_pushvalue(L, fn_idx);
    const char *where = "?";
    if (lua_isfunction(L, -1) && lua_getinfo(L, ">S", &ar)) {
        where = lua_pushfstring(L, "%s:%d", ar.short_src, ar.linedefined);
    } else {
        lua_pop(L, 1);
        lua_pushliteral(L, "?");
    }
    lb_traceback(L, L, problem, 1);
    basalt_log_once(BASALT_LOG_WARN,
                    "%s (function at %s) returned an unusable value and was "
                    "ignored: %s",
                    what, where, lua_tostring(L, -1));
    lua_pop(L, 2);
}

/* ---- read-only views ------------------------------------------------------------------- */

/* A policy's argument is a read-only view: an empty-looking table whose one
 * raw entry (under a private key) is a plain data table, with one metatable
 * shared by every view. Reads go through __index, writes raise, pairs and #
 * see the data. The data are copies, so not even rawset or next reach the
 * trace. The top-level view is filled lazily from the C input while the call
 * runs: a policy that reads only feature_slug pays for feature_slug only. */
static const char VIEW_MT_KEY = 'v';
static const char VIEW_DATA = 'd'; /* view[&VIEW_DATA] = its data table */
static const char VIEW_SRC = 's';  /* top-level view[&VIEW_SRC] = policy_src, during the call */
static const char IDENT_SRC = 'i'; /* identity view[&IDENT_SRC] = policy_src, during the call */

typedef struct policy_src {
    const basalt_policy_input *in; /* the metadata table sits in the registry at &src */
} policy_src;

static int ro_newindex(lua_State *L) {
    return luaL_error(L, "the sampling policy's argument is read-only");
}

static int view_iter(lua_State *L) {
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

typedef int (*materialise_fn)(lua_State *L, const policy_src *src, const char *key);
static int materialise_top(lua_State *L, const policy_src *src, const char *key);
static int materialise_identity(lua_State *L, const policy_src *src, const char *key);
static const char *const top_fields[] = {"trace_id",   "name",        "feature_slug",
                                         "identity",   "experiment",  "metadata",
                                         "evaluators", "sample_rate", NULL};
static const char *const identity_fields[] = {"user", "organization", NULL};

/* The lazily filled views: which private key holds their source, how they
 * fill a field, and which fields they have. */
static const struct lazy_kind {
    const char *key;
    materialise_fn fill;
    const char *const *fields;
} lazy_kinds[] = {{&VIEW_SRC, materialise_top, top_fields},
                  {&IDENT_SRC, materialise_identity, identity_fields}};

/* The source of the lazy view at idx (pushes nothing), or NULL. */
static const policy_src *lazy_source(lua_State *L, int idx, const struct lazy_kind **kind) {
    for (size_t k = 0; k < sizeof lazy_kinds / sizeof lazy_kinds[0]; k++) {
        int t = lua_rawgetp(L, idx, lazy_kinds[k].key);
        const policy_src *src = t == LUA_TLIGHTUSERDATA ? lua_touserdata(L, -1) : NULL;
        lua_pop(L, 1);
        if (src) {
            *kind = &lazy_kinds[k];
            return src;
        }
    }
    return NULL;
}

static void fill_all(lua_State *L, int view, int data) {
    const struct lazy_kind *kind;
    const policy_src *src = lazy_source(L, view, &kind);
    for (int i = 0; src && kind->fields[i]; i++) {
        lua_pushstring(L, kind->fields[i]);
        if (lua_rawget(L, data) == LUA_TNIL && kind->fill(L, src, kind->fields[i]))
            lua_setfield(L, data, kind->fields[i]);
        lua_pop(L, 1);
    }
}

static int view_pairs(lua_State *L) {
    lua_rawgetp(L, 1, &VIEW_DATA);
    fill_all(L, 1, lua_gettop(L));
    lua_pushcclosure(L, view_iter, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static int view_len(lua_State *L) {
    lua_rawgetp(L, 1, &VIEW_DATA);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
    return 1;
}

static int view_index(lua_State *L) {
    lua_settop(L, 2);
    lua_rawgetp(L, 1, &VIEW_DATA); /* 3 */
    lua_pushvalue(L, 2);
    if (lua_rawget(L, 3) != LUA_TNIL) return 1;
    const struct lazy_kind *kind;
    const policy_src *src = lua_type(L, 2) == LUA_TSTRING ? lazy_source(L, 1, &kind) : NULL;
    if (src && kind->fill(L, src, lua_tostring(L, 2))) {
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 3); /* cached: the same sub-view every time */
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

/* Replaces the data table at the top with a view of it. */
static void make_view(lua_State *L) {
    lua_createtable(L, 0, 2);
    lua_insert(L, -2);
    lua_rawsetp(L, -2, &VIEW_DATA);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &VIEW_MT_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        static const luaL_Reg mt[] = {{"__index", view_index},
                                      {"__newindex", ro_newindex},
                                      {"__pairs", view_pairs},
                                      {"__len", view_len},
                                      {NULL, NULL}};
        luaL_newlib(L, mt);
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &VIEW_MT_KEY);
    }
    lua_setmetatable(L, -2);
}

/* Pushes a read-only deep copy of the value at idx (views for tables). */
static void push_view_copy(lua_State *L, int idx, int depth) {
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx) || depth > 16) {
        lua_pushvalue(L, idx);
        return;
    }
    luaL_checkstack(L, 6, "copying a policy's argument");
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        push_view_copy(L, -2, depth + 1);
        lua_rawset(L, -5);
        lua_pop(L, 1);
    }
    make_view(L);
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (v == NULL) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static int push_party(lua_State *L, const char *id, const char *name) {
    if (id == NULL) return 0;
    lua_createtable(L, 0, 2);
    set_str(L, "id", id);
    set_str(L, "name", name);
    make_view(L);
    return 1;
}

/* Fields of the identity view (user, organization). */
static int materialise_identity(lua_State *L, const policy_src *src, const char *key) {
    const basalt_identity *id = src->in->identity;
    if (id == NULL) return 0;
    luaL_checkstack(L, 8, "sampling policy");
    if (strcmp(key, "user") == 0) return push_party(L, id->user_id, id->user_name);
    if (strcmp(key, "organization") == 0) return push_party(L, id->org_id, id->org_name);
    return 0;
}

/* Pushes the value of top-level field `key` and returns 1, or pushes nothing
 * and returns 0 (unknown key, or no value). */
static int materialise_top(lua_State *L, const policy_src *src, const char *key) {
    const basalt_policy_input *in = src->in;
    luaL_checkstack(L, 8, "sampling policy");
    switch (key[0]) {
    case 't':
        if (strcmp(key, "trace_id") == 0 && in->trace_id_hex) {
            lua_pushstring(L, in->trace_id_hex);
            return 1;
        }
        return 0;
    case 'n':
        if (strcmp(key, "name") == 0 && in->name) {
            lua_pushstring(L, in->name);
            return 1;
        }
        return 0;
    case 'f':
        if (strcmp(key, "feature_slug") == 0 && in->feature_slug) {
            lua_pushstring(L, in->feature_slug);
            return 1;
        }
        return 0;
    case 's':
        if (strcmp(key, "sample_rate") == 0) {
            lua_pushnumber(L, in->sample_rate);
            return 1;
        }
        return 0;
    case 'i':
        if (strcmp(key, "identity") != 0) return 0;
        lua_createtable(L, 0, 2);
        make_view(L);
        lua_pushlightuserdata(L, (void *)src);
        lua_rawsetp(L, -2, &IDENT_SRC);
        return 1;
    case 'e':
        if (strcmp(key, "experiment") == 0) {
            if (in->experiment == NULL || in->experiment->id == NULL) return 0;
            lua_createtable(L, 0, 3);
            set_str(L, "id", in->experiment->id);
            set_str(L, "name", in->experiment->name);
            set_str(L, "feature_slug", in->experiment->feature_slug);
            make_view(L);
            return 1;
        }
        if (strcmp(key, "evaluators") == 0) {
            lua_createtable(L, (int)in->nevaluators, 0);
            for (size_t i = 0; i < in->nevaluators; i++) {
                lua_pushstring(L, in->evaluators[i]);
                lua_rawseti(L, -2, (lua_Integer)i + 1);
            }
            make_view(L);
            return 1;
        }
        return 0;
    case 'm':
        if (strcmp(key, "metadata") != 0) return 0;
        if (lua_rawgetp(L, LUA_REGISTRYINDEX, src) != LUA_TTABLE) {
            lua_pop(L, 1);
            return 0;
        }
        push_view_copy(L, -1, 0);
        lua_remove(L, -2);
        return 1;
    default:
        return 0;
    }
}

static basalt_policy_result policy_trampoline(void *ud, const basalt_policy_input *in,
                                              double *rate) {
    lb_policy_call *pc = ud;
    lua_State *L = pc->L;
    int top = lua_gettop(L);
    luaL_checkstack(L, 16, "sampling policy");
    policy_src src = {in};
    /* The caller's metadata table, for a copy on first access; out of the
     * policy's reach (only the view code knows this key). */
    if (lua_istable(L, pc->opts))
        lua_getfield(L, pc->opts, "metadata");
    else
        lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &src);
    lua_createtable(L, 0, 2); /* filled on demand: most policies read a field or two */
    make_view(L);
    int view = lua_gettop(L);
    lua_pushlightuserdata(L, &src);
    lua_rawsetp(L, view, &VIEW_SRC);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &POLICY_KEY);
    lua_pushvalue(L, view);
    basalt_policy_result r = BASALT_POLICY_DEFER;
    int ok = lb_safe_call(L, 1, 1, "sampling policy");
    /* The input is valid during the call only: a view kept by the policy
     * answers from what it already read, nothing more. */
    lua_pushnil(L);
    lua_rawsetp(L, view, &VIEW_SRC);
    lua_rawgetp(L, view, &VIEW_DATA);
    if (lua_getfield(L, -1, "identity") == LUA_TTABLE) {
        lua_pushnil(L);
        lua_rawsetp(L, -2, &IDENT_SRC);
    }
    lua_pop(L, 2);
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &src);
    if (ok) {
        int t = lua_type(L, -1);
        if (t == LUA_TBOOLEAN) {
            r = lua_toboolean(L, -1) ? BASALT_POLICY_TRUE : BASALT_POLICY_FALSE;
        } else if (t == LUA_TNUMBER && lua_tonumber(L, -1) >= 0.0 && lua_tonumber(L, -1) <= 1.0) {
            *rate = lua_tonumber(L, -1);
            r = BASALT_POLICY_RATE;
        } else if (t != LUA_TNIL) {
            const char *problem = lua_pushfstring(
                L,
                "returned %s%s; expected a boolean, a rate in [0, 1] or nil: the configured "
                "rate decides",
                t == LUA_TNUMBER ? "the out-of-range number " : "a ",
                t == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
            lua_rawgetp(L, LUA_REGISTRYINDEX, &POLICY_KEY);
            lb_callback_bad_result(L, lua_gettop(L), "sampling policy", problem);
        }
    }
    lua_settop(L, top);
    return r;
}

basalt_policy_fn lb_policy_for(lua_State *L, void **ud) {
    *ud = NULL;
    int t = lua_rawgetp(L, LUA_REGISTRYINDEX, &POLICY_KEY);
    lua_pop(L, 1);
    return t == LUA_TFUNCTION ? policy_trampoline : NULL;
}

void lb_policy_configure(lua_State *L, int opts) {
    lua_getfield(L, opts, "sampling_policy");
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
        luaL_error(L, "bad argument #1 to 'init' (sampling_policy must be a function)");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &POLICY_KEY);
    lua_getfield(L, opts, "policy_instruction_limit");
    if (!lua_isnil(L, -1) && (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0))
        luaL_error(L, "bad argument #1 to 'init' (policy_instruction_limit must be a positive "
                      "integer)");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LIMIT_KEY);
}
