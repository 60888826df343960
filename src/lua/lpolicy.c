/* User callbacks run safely: sampling policies and identity functions run in a
 * fresh coroutine, protected, with an instruction budget and no yields; a
 * failure is logged once per distinct message (with its traceback) and the
 * traced program goes on. */
#include "lbasalt.h"

#include <string.h>

static const char POLICY_KEY = 'p';
static const char LIMIT_KEY = 'l';

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

int lb_safe_call(lua_State *L, int nargs, int nresults, const char *what) {
    luaL_checkstack(L, 4, "user callback");
    lua_State *co = lua_newthread(L);
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
        if (!lua_checkstack(L, nresults + 1)) {
            status = LUA_ERRMEM;
            lua_pushliteral(co, "stack overflow (too many results)");
        } else {
            if (nres > nresults) lua_pop(co, nres - nresults);
            for (int i = nres; i < nresults; i++) lua_pushnil(co);
            lua_xmove(co, L, nresults);
            lua_remove(L, -(nresults + 1)); /* the thread */
            return 1;
        }
    }
    const char *msg;
    if (b.exceeded) {
        msg = lua_pushfstring(co, "ran past its instruction budget (policy_instruction_limit = "
                                  "%I) and was cut off",
                              limit);
    } else if (status == LUA_YIELD) {
        msg = "attempted to yield; a user callback cannot yield";
    } else {
        msg = lua_tostring(co, -1);
        if (msg == NULL)
            msg = lua_pushfstring(co, "(error object is a %s value)", luaL_typename(co, -1));
    }
    luaL_traceback(L, co, msg, 0);
    basalt_log_once(BASALT_LOG_WARN, "%s failed and was ignored: %s", what, lua_tostring(L, -1));
    lua_pop(L, 2); /* traceback, thread */
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
    luaL_traceback(L, L, problem, 1);
    basalt_log_once(BASALT_LOG_WARN, "%s (function at %s) returned an unusable value and was "
                                     "ignored: %s",
                    what, where, lua_tostring(L, -1));
    lua_pop(L, 2);
}

/* ---- read-only views ------------------------------------------------------------------- */

static int ro_newindex(lua_State *L) {
    return luaL_error(L, "the sampling policy's argument is read-only");
}

static int ro_next(lua_State *L) {
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

static int ro_len(lua_State *L) {
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
    return 1;
}

static int ro_pairs_impl(lua_State *L) {
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushcclosure(L, ro_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Wraps the table at the top in a read-only proxy (recursively for subtables). */
static void make_readonly(lua_State *L, int depth) {
    int data = lua_gettop(L);
    if (depth < 8) {
        lua_pushnil(L);
        while (lua_next(L, data)) {
            if (lua_istable(L, -1)) {
                make_readonly(L, depth + 1);
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, data);
            } else {
                lua_pop(L, 1);
            }
        }
    }
    lua_newtable(L); /* proxy */
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, data);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ro_pairs_impl);
    lua_setfield(L, -2, "__pairs");
    lua_pushcfunction(L, ro_len);
    lua_setfield(L, -2, "__len");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_replace(L, data);
}

/* Deep copy of the value at idx (tables only; depth-limited). */
static void push_copy(lua_State *L, int idx, int depth) {
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx) || depth > 16) {
        lua_pushvalue(L, idx);
        return;
    }
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        push_copy(L, -2, depth + 1);
        lua_rawset(L, -5);
        lua_pop(L, 1);
    }
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (v == NULL) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static basalt_policy_result policy_trampoline(void *ud, const basalt_policy_input *in,
                                              double *rate) {
    lb_policy_call *pc = ud;
    lua_State *L = pc->L;
    int top = lua_gettop(L);
    luaL_checkstack(L, 16, "sampling policy");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &POLICY_KEY);
    lua_createtable(L, 0, 8);
    set_str(L, "trace_id", in->trace_id_hex);
    set_str(L, "name", in->name);
    set_str(L, "feature_slug", in->feature_slug);
    lua_newtable(L);
    if (in->identity && in->identity->user_id) {
        lua_newtable(L);
        set_str(L, "id", in->identity->user_id);
        set_str(L, "name", in->identity->user_name);
        lua_setfield(L, -2, "user");
    }
    if (in->identity && in->identity->org_id) {
        lua_newtable(L);
        set_str(L, "id", in->identity->org_id);
        set_str(L, "name", in->identity->org_name);
        lua_setfield(L, -2, "organization");
    }
    lua_setfield(L, -2, "identity");
    if (in->experiment) {
        lua_newtable(L);
        set_str(L, "id", in->experiment->id);
        set_str(L, "name", in->experiment->name);
        set_str(L, "feature_slug", in->experiment->feature_slug);
        lua_setfield(L, -2, "experiment");
    }
    if (lua_istable(L, pc->opts)) {
        lua_getfield(L, pc->opts, "metadata");
        if (lua_istable(L, -1)) {
            push_copy(L, -1, 0);
            lua_setfield(L, -3, "metadata");
        }
        lua_pop(L, 1);
    }
    lua_createtable(L, (int)in->nevaluators, 0);
    for (size_t i = 0; i < in->nevaluators; i++) {
        lua_pushstring(L, in->evaluators[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "evaluators");
    lua_pushnumber(L, in->sample_rate);
    lua_setfield(L, -2, "sample_rate");
    make_readonly(L, 0);
    basalt_policy_result r = BASALT_POLICY_DEFER;
    if (lb_safe_call(L, 1, 1, "sampling policy")) {
        int t = lua_type(L, -1);
        if (t == LUA_TBOOLEAN) {
            r = lua_toboolean(L, -1) ? BASALT_POLICY_TRUE : BASALT_POLICY_FALSE;
        } else if (t == LUA_TNUMBER && lua_tonumber(L, -1) >= 0.0 && lua_tonumber(L, -1) <= 1.0) {
            *rate = lua_tonumber(L, -1);
            r = BASALT_POLICY_RATE;
        } else if (t != LUA_TNIL) {
            const char *problem = lua_pushfstring(
                L, "returned %s%s; expected a boolean, a rate in [0, 1] or nil: the configured "
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
