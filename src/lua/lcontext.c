/* Context across coroutines: one context slot per coroutine, basalt.Context
 * values (capture / with_context / bind), coroutine inheritance, and W3C
 * inject / extract. */
#include "lbasalt.h"

#include "basalt/propagation.h"

#include <stdatomic.h>
#include <string.h>
#include <strings.h>

/* Registry keys (addresses are unique per process; values per lua_State). */
static const char FLOWS_KEY = 'f';

/* ---- flows ------------------------------------------------------------------- */

static lb_flow *lb_flow_lookup(lua_State *L);

/* The last flow looked up, per OS thread (thread-local: no lock): most calls
 * come from the coroutine that made the previous one. An entry is valid while
 * no flow has been collected since it was filled (flow_gc bumps flow_epoch,
 * process-wide, atomic). A flow holds its coroutine (uservalue 1) until the
 * flow itself is finalized, so a cached coroutine address cannot be reused by
 * a new coroutine while its entry is still valid. Lua 5.4 can skip a finalizer
 * (one due exactly at its C-stack limit fails and is not retried), so the
 * patched coroutine.create/wrap bump the epoch too: a coroutine at a collected
 * one's address must never find that flow's freed memory in the cache. */
static _Atomic unsigned long flow_epoch = 1;
static _Thread_local struct {
    lua_State *L;
    lb_flow *flow;
    unsigned long epoch;
} flow_cache;

/* True while co executes: it is the running coroutine or one that resumed it. */
static bool executing(lua_State *L, lua_State *co) {
    lua_Debug ar;
    return co == L || (lua_status(co) == LUA_OK && lua_getstack(co, 0, &ar));
}

/* When the coroutine held as uservalue 1 of the userdata at index 1 is
 * executing, marks that userdata for finalization again and returns true. */
static bool defer_while_executing(lua_State *L) {
    lua_getiuservalue(L, 1, 1);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    if (co == NULL || !executing(L, co)) return false;
    lua_getmetatable(L, 1);
    lua_setmetatable(L, 1);
    return true;
}

static int flow_gc(lua_State *L) {
    lb_flow *f = lua_touserdata(L, 1);
    /* Another finalizer can resurrect the coroutine and resume it before this
     * one runs; while it executes, code of its own holds this flow and its
     * context. Then the flow is finalized in a later cycle instead: setting
     * the metatable again marks it anew (at lua_close Lua does not, and the
     * refs table releases what the flow holds). */
    if (defer_while_executing(L)) return 0;
    atomic_fetch_add_explicit(&flow_epoch, 1, memory_order_relaxed);
    basalt_ctx_release(f->cur);
    f->cur = NULL;
    if (f->cur_ref) lb_ref_free(f->refs, f->cur_ref);
    f->cur_ref = 0; /* marks it finalized: lb_flow_lookup then makes a fresh flow */
    /* Blocks abandoned mid-way (the coroutine was collected inside them): end
     * each once, innermost first; a handle kept elsewhere sees its slot's
     * generation change and stops using the span. */
    lb_refs *r = f->refs;
    while (f->open && f->open < r->cap) {
        uint32_t span_slot = f->open, prev_slot = r->slot[span_slot].link;
        f->open = r->slot[prev_slot].link;
        lb_ref_release(r, span_slot);
        lb_ref_release(r, prev_slot);
    }
    f->open = 0;
    return 0;
}

lb_flow *lb_flow_get(lua_State *L) {
    unsigned long epoch = atomic_load_explicit(&flow_epoch, memory_order_relaxed);
    if (flow_cache.L == L && flow_cache.epoch == epoch) return flow_cache.flow;
    lb_flow *f = lb_flow_lookup(L);
    flow_cache.L = L;
    flow_cache.flow = f;
    flow_cache.epoch = epoch;
    return f;
}

static lb_flow *lb_flow_lookup(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &FLOWS_KEY);
    lua_pushthread(L);
    if (lua_rawget(L, -2) == LUA_TUSERDATA) {
        lb_flow *f = lua_touserdata(L, -1);
        if (f->cur_ref) {
            lua_pop(L, 2);
            return f;
        }
        /* Finalized: another finalizer resumed its coroutine. What the
         * coroutine does now needs a flow that will be finalized again. */
    }
    lua_pop(L, 1);
    lb_refs *refs = lb_refs_lookup(L);
    uint32_t ref = lb_ref_new(L, refs, LB_REF_CTX, NULL);
    lb_flow *f = lua_newuserdatauv(L, sizeof *f, 1); /* uservalue: the coroutine (see cache) */
    f->cur = NULL;
    f->refs = refs;
    f->cur_ref = ref;
    f->open = 0;
    luaL_setmetatable(L, LB_FLOW_MT);
    lua_pushthread(L);
    lua_setiuservalue(L, -2, 1);
    lua_pushthread(L);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    lua_pop(L, 2);
    return f;
}

/* ---- basalt.Context values -------------------------------------------------------- */

typedef struct lb_context {
    lb_refs *refs;  /* the state's */
    uint32_t ref;   /* refs slot of the context (owned); 0 once finalized */
    uint64_t magic; /* lb_mark(LB_MARK_CONTEXT) */
} lb_context;

/* The metatable, also under a light key: faster than by name. */
static const char CONTEXT_MT_KEY = 'c';

void lb_push_context(lua_State *L, basalt_ctx *ctx) {
    lb_push_context_in(L, lb_flow_get(L)->refs, ctx);
}

void lb_push_context_in(lua_State *L, lb_refs *refs, basalt_ctx *ctx) {
    uint32_t ref = lb_ref_new(L, refs, LB_REF_CTX, ctx);
    lb_context *c = lua_newuserdatauv(L, sizeof *c, 0); /* on failure, lua_close releases ctx */
    c->refs = refs;
    c->ref = ref;
    c->magic = lb_mark(LB_MARK_CONTEXT);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &CONTEXT_MT_KEY);
    lua_setmetatable(L, -2);
}

basalt_ctx *lb_check_context(lua_State *L, int idx, int arg, const char *fname) {
    /* The mark and size identify a context value (see lb_mark). */
    lb_context *c = lua_touserdata(L, idx);
    if (c == NULL || lua_type(L, idx) != LUA_TUSERDATA || lua_rawlen(L, idx) != sizeof *c ||
        c->magic != lb_mark(LB_MARK_CONTEXT))
        lb_argerror(L, arg, fname,
                    lua_pushfstring(L, "basalt.Context expected, got %s", luaL_typename(L, idx)));
    return c->ref ? lb_ref_get(c->refs, c->ref) : NULL;
}

int lb_argerror(lua_State *L, int arg, const char *fname, const char *msg) {
    return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, fname, msg);
}

void lb_checktype(lua_State *L, int arg, int t, const char *fname) {
    if (lua_type(L, arg) != t)
        lb_argerror(
            L, arg, fname,
            lua_pushfstring(L, "%s expected, got %s", lua_typename(L, t), luaL_typename(L, arg)));
}

static int context_gc(lua_State *L) {
    lb_context *c = lua_touserdata(L, 1); /* only set on context values */
    if (c->ref) {
        basalt_ctx_release(lb_ref_get(c->refs, c->ref));
        lb_ref_free(c->refs, c->ref);
    }
    c->ref = 0;
    return 0;
}

static int context_tostring(lua_State *L) {
    basalt_ctx *ctx = lb_check_context(L, 1, 1, "tostring");
    basalt_span *s = basalt_ctx_span(ctx);
    if (s == NULL) {
        lua_pushliteral(L, "basalt.Context(empty)");
        return 1;
    }
    uint8_t tid[16], sid[8];
    char th[33], sh[17];
    basalt_span_trace_id(s, tid);
    basalt_span_id(s, sid);
    basalt_hex_encode(tid, 16, th);
    basalt_hex_encode(sid, 8, sh);
    lua_pushfstring(L, "basalt.Context(%s-%s)", th, sh);
    return 1;
}

/* ---- running inside a context ---------------------------------------------------- */

/* A guard restores the previous context when a block finishes, fails, or is
 * abandoned (a coroutine collected while suspended inside it). */
typedef struct lb_guard {
    lb_flow *flow;
    lb_refs *refs;
    uint32_t prev_ref; /* refs slot of the context to restore (owned), not 0
                          exactly while the block runs */
} lb_guard;

static void guard_restore(lb_guard *g) {
    if (!g->prev_ref) return;
    basalt_ctx_release(g->flow->cur);
    lb_flow_set(g->flow, lb_ref_get(g->refs, g->prev_ref));
    lb_ref_free(g->refs, g->prev_ref);
    g->prev_ref = 0;
}

static int guard_gc(lua_State *L) {
    lb_guard *g = lua_touserdata(L, 1);
    if (defer_while_executing(L)) return 0; /* resurrected and running: it restores itself */
    if (g->prev_ref) {                      /* the coroutine is gone: nothing to restore into */
        basalt_ctx_release(lb_ref_get(g->refs, g->prev_ref));
        lb_ref_free(g->refs, g->prev_ref);
        g->prev_ref = 0;
    }
    return 0;
}

static int finish_in_context(lua_State *L, int status, lua_KContext k) {
    int guard_idx = (int)k;
    lb_guard *g = lua_touserdata(L, guard_idx);
    guard_restore(g);
    if (status != LUA_OK && status != LUA_YIELD) return lua_error(L); /* same value */
    return lua_gettop(L) - guard_idx;
}

int lb_run_in_context(lua_State *L, basalt_ctx *ctx, int fn_idx, int nargs) {
    lb_flow *flow = lb_flow_get(L);
    lb_guard *g = lua_newuserdatauv(L, sizeof *g, 1); /* uservalue: the coroutine (guard_gc) */
    g->refs = flow->refs;
    g->prev_ref = 0;
    luaL_setmetatable(L, LB_GUARD_MT);
    lua_pushthread(L);
    lua_setiuservalue(L, -2, 1);
    g->prev_ref = lb_ref_new(L, g->refs, LB_REF_CTX, flow->cur);
    g->flow = flow;
    lb_flow_set(flow, ctx);
    int guard_idx = lua_gettop(L);
    lua_pushvalue(L, fn_idx);
    for (int i = 0; i < nargs; i++)
        lua_pushvalue(L, fn_idx + 1 + i);
    int status = lua_pcallk(L, nargs, LUA_MULTRET, 0, guard_idx, finish_in_context);
    return finish_in_context(L, status, guard_idx);
}

static int l_capture(lua_State *L) {
    lb_flow *f = lb_flow_get(L);
    lb_push_context_in(L, f->refs, basalt_ctx_retain(f->cur));
    return 1;
}

static int l_with_context(lua_State *L) {
    basalt_ctx *ctx = lua_isnil(L, 1) ? NULL : lb_check_context(L, 1, 1, "with_context");
    if (lua_isnone(L, 2)) lb_argerror(L, 2, "with_context", "function expected");
    return lb_run_in_context(L, basalt_ctx_retain(ctx), 2, lua_gettop(L) - 2);
}

/* bind(fn): upvalue 1 = fn, upvalue 2 = context. */
static int bound_call(lua_State *L) {
    int nargs = lua_gettop(L);
    basalt_ctx *ctx = lb_check_context(L, lua_upvalueindex(2), 1, "bind");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    return lb_run_in_context(L, basalt_ctx_retain(ctx), 1, nargs);
}

static int l_bind(lua_State *L) {
    if (lua_isnoneornil(L, 1)) lb_argerror(L, 1, "bind", "function expected");
    lua_settop(L, 1);
    lb_flow *f = lb_flow_get(L);
    lb_push_context_in(L, f->refs, basalt_ctx_retain(f->cur));
    lua_pushcclosure(L, bound_call, 2);
    return 1;
}

/* ---- coroutine inheritance -------------------------------------------------------- */

/* The body of a coroutine created inside a context: sets the coroutine's own
 * slot to the creator's context, then calls the real body. The coroutine ends
 * when the body returns, so nothing needs restoring. */
static int inherit_finish(lua_State *L, int status, lua_KContext k) {
    (void)status;
    return lua_gettop(L) - (int)k;
}

static int inherit_body(lua_State *L) {
    lb_flow *f = lb_flow_get(L);
    basalt_ctx *ctx = lb_check_context(L, lua_upvalueindex(2), 1, "coroutine");
    basalt_ctx_release(f->cur);
    lb_flow_set(f, basalt_ctx_retain(ctx));
    int nargs = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_callk(L, nargs, LUA_MULTRET, 0, inherit_finish);
    return inherit_finish(L, LUA_OK, 0);
}

/* Wraps fn so that it starts in the current context (when there is one). */
static void push_inheriting(lua_State *L, int fn_idx) {
    lb_flow *f = lb_flow_get(L);
    if (f->cur == NULL) {
        lua_pushvalue(L, fn_idx);
        return;
    }
    lua_pushvalue(L, fn_idx);
    lb_push_context_in(L, f->refs, basalt_ctx_retain(f->cur));
    lua_pushcclosure(L, inherit_body, 2);
}

/* coroutine.create / coroutine.wrap replacements: upvalue 1 = the original. */
static int co_create(lua_State *L) {
    if (lua_type(L, 1) != LUA_TFUNCTION) { /* let the original report the error */
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_insert(L, 1);
        lua_call(L, lua_gettop(L) - 1, 1);
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    push_inheriting(L, 1);
    lua_call(L, 1, 1);
    atomic_fetch_add_explicit(&flow_epoch, 1, memory_order_relaxed); /* see flow_cache */
    return 1;
}

static const char ORIG_KEY = 'o';

void lb_patch_coroutines(lua_State *L, int on) {
    int top = lua_gettop(L);
    lua_getglobal(L, "coroutine");
    if (!lua_istable(L, -1)) {
        lua_settop(L, top);
        return;
    }
    /* Originals are kept in the registry so patching is idempotent. */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ORIG_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_getfield(L, -2, "create");
        lua_setfield(L, -2, "create");
        lua_getfield(L, -2, "wrap");
        lua_setfield(L, -2, "wrap");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &ORIG_KEY);
    }
    const char *names[2] = {"create", "wrap"};
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, -1, names[i]);             /* original */
        if (on) lua_pushcclosure(L, co_create, 1); /* works for wrap too */
        lua_setfield(L, -3, names[i]);
    }
    lua_settop(L, top);
}

/* ---- W3C propagation ---------------------------------------------------------------- */

static void set_header(void *ud, const char *name, const char *value) {
    lua_State *L = ud;
    lua_pushstring(L, value);
    lua_setfield(L, 1, name);
}

static int l_inject(lua_State *L) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    lb_checktype(L, 1, LUA_TTABLE, "inject");
    basalt_ctx *ctx = lb_flow_get(L)->cur;
    if (!lua_isnoneornil(L, 2)) ctx = lb_check_context(L, 2, 2, "inject");
    lua_settop(L, 1);
    basalt_inject(ctx, set_header, L);
    return 1;
}

/* The header's value at the top of the stack as a C string; one with an
 * embedded NUL is malformed as a whole, so it reads as empty (invalid). */
static const char *header_text(lua_State *L) {
    size_t len;
    const char *v = lua_tolstring(L, -1, &len);
    return memchr(v, '\0', len) ? "" : v;
}

/* Case-insensitive header lookup in the table at idx. */

static const char *header(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    if (lua_type(L, -1) == LUA_TSTRING) return header_text(L); /* stays on the stack */
    lua_pop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING &&
            strcasecmp(lua_tostring(L, -2), name) == 0) {
            lua_remove(L, -2); /* keep the value on the stack */
            return header_text(L);
        }
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    return NULL;
}

static int l_extract(lua_State *L) {
    lb_checktype(L, 1, LUA_TTABLE, "extract");
    lua_settop(L, 1);
    const char *tp = header(L, 1, "traceparent");
    const char *ts = header(L, 1, "tracestate");
    const char *bg = header(L, 1, "baggage");
    basalt_ctx *ctx = basalt_extract(tp, ts, bg);
    if (ctx == NULL) {
        lua_pushnil(L);
        return 1;
    }
    lb_push_context(L, ctx);
    return 1;
}

void lb_open_context(lua_State *L) {
    luaL_newmetatable(L, LB_FLOW_MT);
    lua_pushcfunction(L, flow_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, LB_GUARD_MT);
    lua_pushcfunction(L, guard_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, LB_CONTEXT_MT);
    lua_pushcfunction(L, context_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, context_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &CONTEXT_MT_KEY);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &FLOWS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &FLOWS_KEY);
    } else {
        lua_pop(L, 1);
    }
    static const luaL_Reg fns[] = {{"capture", l_capture}, {"with_context", l_with_context},
                                   {"bind", l_bind},       {"inject", l_inject},
                                   {"extract", l_extract}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
