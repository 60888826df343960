/* Spans as block functions: start_observe / observe, their wrap forms,
 * with_evaluators, and the current-context helpers. */
#include "lbasalt.h"

#include <string.h>

static const char TRACEBACK_KEY = 't';
static const char NOOP_KEY = 'n';

/* ---- errors inside blocks ------------------------------------------------------------ */

/* Message handler: remembers the traceback of the deepest point an error passed
 * (per coroutine) and returns the error value unchanged, so the very same value
 * is re-raised. */
static int block_msgh(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TRACEBACK_KEY);
    lua_pushthread(L);
    if (lua_rawget(L, -2) == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        int same = lua_rawequal(L, -1, 1);
        lua_pop(L, 1);
        if (same) {
            lua_settop(L, 1);
            return 1;
        }
    }
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lb_traceback(L, L, NULL, 1);
    lua_rawseti(L, -2, 2);
    lua_pushthread(L);
    lua_insert(L, -2);
    lua_rawset(L, -3);
    lua_settop(L, 1);
    return 1;
}

/* Pushes the traceback recorded for the error value at err_idx (or a fresh one). */
static const char *push_traceback(lua_State *L, int err_idx) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &TRACEBACK_KEY);
    lua_pushthread(L);
    if (lua_rawget(L, -2) == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        if (lua_rawequal(L, -1, err_idx)) {
            lua_rawgeti(L, -2, 2);
            lua_replace(L, -4);
            lua_pop(L, 2);
            return lua_tostring(L, -1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    lb_traceback(L, L, NULL, 1);
    return lua_tostring(L, -1);
}

/* ---- the block runner ------------------------------------------------------------------ */

/* Ends the block's span, restores the context and closes the block's refs
 * slots; the handle keeps only the span's ids. */
static void end_block(lb_span *h) {
    if (!h->prev_ref) return;
    lb_refs *refs = h->refs;
    if (!lb_span_of(h)) { /* the flow's finalizer ended it: its coroutine was resurrected */
        h->prev_ref = 0;
        return;
    }
    lb_flow *flow = h->flow;
    basalt_span_end(h->span, 0);
    basalt_ctx_release(flow->cur);
    lb_flow_set(flow, lb_ref_get(refs, h->prev_ref)); /* the flow owns it again */
    flow->open = refs->slot[h->prev_ref].link;
    lb_ref_free(refs, h->prev_ref);
    h->prev_ref = 0;
    basalt_span_release(h->span);
    lb_ref_free(refs, h->span_ref);
    h->span = NULL;
}

static int finish_block(lua_State *L, int status, lua_KContext k) {
    int hidx = (int)k;
    lb_span *h = lua_touserdata(L, hidx);
    if (status != LUA_OK && status != LUA_YIELD) {
        int err = lua_gettop(L);
        if (h->prev_ref && lb_span_of(h)) {
            const char *tb = push_traceback(L, err);
            lb_record_error(L, err, h->span, tb);
        }
        end_block(h);
        lua_settop(L, err);
        return lua_error(L);
    }
    end_block(h);
    lb_log_drain(L);
    return lua_gettop(L) - (hidx + 1);
}

/* Runs fn (with the span handle first when pass_span) inside the span's context. */
static int run_block(lua_State *L, lb_flow *flow, basalt_span *span, basalt_ctx *ctx, int fn_idx,
                     int args, int nargs, int pass_span) {
    /* observe_impl reserved the nargs + 4 slots used here before the span opened. */
    lb_span *h = lb_push_block_span(L, flow, span); /* raises only before the swap */
    int hidx = lua_gettop(L);
    /* The block joins its coroutine's chain of open blocks (see lb_flow). */
    h->refs->slot[h->span_ref].link = h->prev_ref;
    h->refs->slot[h->prev_ref].link = flow->open;
    flow->open = h->span_ref;
    lb_flow_set(flow, ctx);
    lua_pushcfunction(L, block_msgh);
    lua_pushvalue(L, fn_idx);
    if (pass_span) lua_pushvalue(L, hidx);
    for (int i = 0; i < nargs; i++)
        lua_pushvalue(L, args + i);
    int status = lua_pcallk(L, nargs + pass_span, LUA_MULTRET, hidx + 1, hidx, finish_block);
    return finish_block(L, status, hidx);
}

static int finish_plain(lua_State *L, int status, lua_KContext k) {
    (void)status;
    return lua_gettop(L) - (int)k;
}

/* No span (outside a trace, or disabled): the block still runs, with a no-op handle. */
static int run_noop(lua_State *L, int fn_idx, int args, int nargs, int pass_span) {
    /* observe_impl reserved the nargs + 3 slots used here. */
    int base = lua_gettop(L);
    lua_pushvalue(L, fn_idx);
    if (pass_span) lua_rawgetp(L, LUA_REGISTRYINDEX, &NOOP_KEY);
    for (int i = 0; i < nargs; i++)
        lua_pushvalue(L, args + i);
    lua_callk(L, nargs + pass_span, LUA_MULTRET, base, finish_plain);
    return finish_plain(L, LUA_OK, base);
}

/* ---- option parsing ---------------------------------------------------------------------- */

/* Stack indices of the options a block uses (0 when absent). Gathered in one
 * pass over the opts table: cheaper than a lookup per possible field. */
typedef struct obs_fields {
    int name, kind, identity, evaluators, metadata, input, variables, prompt;
    int feature_slug, experiment, parent, evaluation_config;
} obs_fields;

static int *field_slot(obs_fields *f, const char *k, size_t len) {
#define KEY(lit, member)                                                                           \
    if (len == sizeof lit - 1 && memcmp(k, lit, len) == 0) return &f->member
    switch (len) {
    case 4:
        KEY("name", name);
        KEY("kind", kind);
        break;
    case 5:
        KEY("input", input);
        break;
    case 6:
        KEY("prompt", prompt);
        KEY("parent", parent);
        break;
    case 8:
        KEY("identity", identity);
        KEY("metadata", metadata);
        break;
    case 9:
        KEY("variables", variables);
        break;
    case 10:
        KEY("evaluators", evaluators);
        KEY("experiment", experiment);
        break;
    case 12:
        KEY("feature_slug", feature_slug);
        break;
    case 17:
        KEY("evaluation_config", evaluation_config);
        break;
    default:
        break;
    }
#undef KEY
    return NULL;
}

/* Pushes the values of the known fields of opts (a table or a name string). */
static void gather_fields(lua_State *L, int opts, obs_fields *f) {
    memset(f, 0, sizeof *f);
    if (lua_type(L, opts) == LUA_TSTRING) {
        f->name = opts;
        return;
    }
    luaL_checkstack(L, 16, "observe options");
    lua_pushnil(L);
    while (lua_next(L, opts)) {
        int *slot = NULL;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t len;
            const char *k = lua_tolstring(L, -2, &len);
            slot = field_slot(f, k, len);
        }
        if (slot) {
            lua_pushvalue(L, -2); /* the value stays, below a copy of the iteration key */
            *slot = lua_gettop(L) - 1;
        } else {
            lua_pop(L, 1);
        }
    }
}

static const char *opt_name(lua_State *L, const obs_fields *f) {
    return f->name && lua_type(L, f->name) == LUA_TSTRING ? lua_tostring(L, f->name) : NULL;
}

static void check_opts(lua_State *L, int opts, const char *fname) {
    int t = lua_type(L, opts);
    if (t != LUA_TTABLE && t != LUA_TSTRING)
        luaL_error(L, "bad argument #1 to '%s' (table or string expected, got %s)", fname,
                   luaL_typename(L, opts));
}

static basalt_kind parse_kind(lua_State *L, int kind_idx, const char *fname) {
    if (kind_idx == 0) return BASALT_KIND_SPAN;
    basalt_kind k = BASALT_KIND_SPAN;
    {
        size_t len = 0;
        /* Only a string is read: lua_tolstring would turn a number in place. */
        const char *s =
            lua_type(L, kind_idx) == LUA_TSTRING ? lua_tolstring(L, kind_idx, &len) : NULL;
        if (s == NULL || !basalt_kind_parse(s, len, &k)) {
            lua_pushvalue(L, kind_idx);
            const char *shown = lua_tostring(L, -1);
            luaL_error(L, "bad argument #1 to '%s' (unknown kind '%s')", fname,
                       shown ? shown : luaL_typename(L, kind_idx));
        }
        if (k == BASALT_KIND_TRACE)
            luaL_error(L,
                       "bad argument #1 to '%s' (Cannot use kind='basalt_trace' with observe. "
                       "Use start_observe for root spans.)",
                       fname);
    }
    return k;
}

static void check_callable(lua_State *L, int idx, const char *fname) {
    if (lua_type(L, idx) == LUA_TFUNCTION) return;
    if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    luaL_error(L, "bad argument #2 to '%s' (function expected, got %s)", fname,
               luaL_typename(L, idx));
}

/* Resolves opts.identity (table: validated, raises; function: a user callback,
 * called with the block's arguments, failures logged). Strings stay on the stack. */
static int parse_identity_protected(lua_State *L) {
    basalt_identity id;
    lb_parse_identity(L, 1, &id);
    lua_pushstring(L, id.user_id);
    lua_pushstring(L, id.user_name);
    lua_pushstring(L, id.org_id);
    lua_pushstring(L, id.org_name);
    return 4;
}

static int resolve_identity(lua_State *L, int ident_idx, int args, int nargs,
                            basalt_identity *out) {
    memset(out, 0, sizeof *out);
    if (ident_idx == 0) return 0;
    lua_pushvalue(L, ident_idx);
    if (lua_type(L, -1) != LUA_TFUNCTION) return lb_parse_identity(L, -1, out);
    luaL_checkstack(L, nargs + 4, "too many arguments");
    for (int i = 0; i < nargs; i++)
        lua_pushvalue(L, args + i);
    if (!lb_safe_call(L, nargs, 1, "identity function")) return 0;
    lua_pushcfunction(L, parse_identity_protected);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 4, 0) != LUA_OK) {
        lua_pushvalue(L, ident_idx);
        lb_callback_bad_result(L, lua_gettop(L), "identity function", lua_tostring(L, -2));
        lua_pop(L, 2);
        return 0;
    }
    out->user_id = lua_tostring(L, -4);
    out->user_name = lua_tostring(L, -3);
    out->org_id = lua_tostring(L, -2);
    out->org_name = lua_tostring(L, -1);
    return out->user_id || out->org_id;
}

/* opts.evaluators -> C array (strings held by the list left on the stack). */
static size_t resolve_evaluators(lua_State *L, int evals_idx, const char **out, size_t cap) {
    if (evals_idx == 0) return 0;
    int n = lb_parse_evaluators(L, evals_idx); /* raises the 10.1 errors */
    if ((size_t)n > cap)
        basalt_log_once(BASALT_LOG_WARN, "only the first %zu evaluators of a span are used", cap);
    size_t k = 0;
    for (int i = 1; i <= n && k < cap; i++) {
        lua_rawgeti(L, -1, i);
        out[k++] = lua_tostring(L, -1);
        lua_pop(L, 1); /* held by the list */
    }
    return k;
}

#define MAX_EVALS 64

/* The shared body of observe / observe_wrap / start_observe / start_observe_wrap. */
static int observe_impl(lua_State *L, int root, int opts, int fn_idx, int args, int nargs,
                        int pass_span) {
    const char *fname = root ? "start_observe" : "observe";
    check_opts(L, opts, fname);
    check_callable(L, fn_idx, fname);
    /* The room run_block (and run_noop) need, reserved before a span opens:
     * raising once it has opened would lose the span and its context. */
    luaL_checkstack(L, nargs + 4, "too many arguments");
    int top = lua_gettop(L);
    obs_fields f;
    gather_fields(L, opts, &f);
    basalt_kind kind = root ? BASALT_KIND_TRACE : parse_kind(L, f.kind, fname);
    lb_check_payload_opts(L, f.metadata, f.variables, f.prompt, fname);
    lb_log_drain(L);
    lb_flow *flow = lb_flow_get(L);
    const char *evals[MAX_EVALS];
    size_t nevals = resolve_evaluators(L, f.evaluators, evals, MAX_EVALS);
    basalt_identity id;
    int has_id = resolve_identity(L, f.identity, args, nargs, &id);
    basalt_span *span;
    basalt_ctx *ctx = NULL;
    basalt_error err;
    basalt_prompt_attrs prompt;
    int has_prompt = 0;
    if (root) {
        basalt_trace_opts o = {0};
        o.name = opt_name(L, &f);
        o.evaluators = evals;
        o.nevaluators = nevals;
        o.identity = has_id ? &id : NULL;
        o.parent = flow->cur;
        basalt_experiment exp;
        {
            if (f.feature_slug && lua_type(L, f.feature_slug) == LUA_TSTRING)
                o.feature_slug = lua_tostring(L, f.feature_slug);
            if (f.experiment && lb_parse_experiment(L, f.experiment, &exp)) o.experiment = &exp;
            if (f.parent) {
                if (!luaL_testudata(L, f.parent, LB_CONTEXT_MT))
                    lb_argerror(L, 1, "start_observe",
                                "parent must be a context from basalt.extract");
                o.parent = lb_check_context(L, f.parent, 1, "start_observe");
            }
            if (f.evaluation_config) {
                lua_pushvalue(L, f.evaluation_config);
                if (!lua_istable(L, -1))
                    luaL_error(L, "bad argument #1 to 'start_observe' (evaluation_config must be a "
                                  "table)");
                lua_getfield(L, -1, "sample_rate");
                if (!lua_isnil(L, -1)) {
                    lua_Number r = lua_tonumber(L, -1);
                    if (!lua_isnumber(L, -1) || !(r >= 0.0 && r <= 1.0))
                        luaL_error(L, "sample_rate must be within [0.0, 1.0].");
                    o.has_sample_rate = true;
                    o.sample_rate = r;
                }
                lua_pop(L, 1);
                basalt_buf b = {0};
                lb_json_append(L, -1, &b);
                lua_pushlstring(L, b.data, b.len);
                basalt_buf_free(&b);
                o.evaluation_config_json = lua_tostring(L, -1);
            }
        }
        has_prompt = lb_read_prompt_opt(L, f.prompt, &prompt);
        o.policy = lb_policy_for(L, &o.policy_ud);
        lb_policy_call pctx = {L, opts};
        if (o.policy) o.policy_ud = &pctx;
        span = basalt_trace_start(&o, &ctx, &err);
    } else {
        basalt_span_opts o = {0};
        o.name = opt_name(L, &f);
        o.kind = kind;
        o.identity = has_id ? &id : NULL;
        o.evaluators = evals;
        o.nevaluators = nevals;
        o.parent = flow->cur;
        has_prompt = lb_read_prompt_opt(L, f.prompt, &prompt);
        span = basalt_span_start(&o, &ctx, &err);
    }
    lb_log_drain(L); /* e.g. the outside-a-trace warning, before the block runs */
    if (span == NULL) {
        if (err.message[0]) luaL_error(L, "%s", err.message);
        lua_settop(L, top);
        return run_noop(L, fn_idx, args, nargs, pass_span);
    }
    lb_apply_payload_opts(L, f.metadata, f.input, f.variables, has_prompt ? &prompt : NULL, span);
    lua_settop(L, top);
    return run_block(L, flow, span, ctx, fn_idx, args, nargs, pass_span);
}

static int l_start_observe(lua_State *L) {
    if (lua_type(L, 1) == LUA_TNONE)
        luaL_error(L, "bad argument #1 to 'start_observe' (table expected)");
    return observe_impl(L, 1, 1, 2, 3, lua_gettop(L) - 2, 1);
}

static int l_observe(lua_State *L) {
    if (lua_type(L, 1) == LUA_TNONE) luaL_error(L, "bad argument #1 to 'observe' (table expected)");
    return observe_impl(L, 0, 1, 2, 3, lua_gettop(L) - 2, 1);
}

/* Wrapped functions: upvalue 1 = opts, 2 = fn, 3 = root flag. */
static int wrapped_call(lua_State *L) {
    int nargs = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, lua_upvalueindex(2));
    int root = lua_toboolean(L, lua_upvalueindex(3));
    return observe_impl(L, root, nargs + 1, nargs + 2, 1, nargs, 0);
}

static int make_wrap(lua_State *L, int root) {
    const char *fname = root ? "start_observe_wrap" : "observe_wrap";
    check_opts(L, 1, fname);
    check_callable(L, 2, fname);
    obs_fields f;
    gather_fields(L, 1, &f);
    if (!root) parse_kind(L, f.kind, fname); /* Decision 3: validated in every form */
    if (root && (f.feature_slug == 0 || lua_type(L, f.feature_slug) != LUA_TSTRING))
        luaL_error(L, "feature_slug is required and must be a non-empty string.");
    lua_settop(L, 2);
    lua_pushboolean(L, root);
    lua_pushcclosure(L, wrapped_call, 3);
    return 1;
}

static int l_start_observe_wrap(lua_State *L) {
    return make_wrap(L, 1);
}

static int l_observe_wrap(lua_State *L) {
    return make_wrap(L, 0);
}

/* ---- with_evaluators ----------------------------------------------------------------- */

static int l_with_evaluators(lua_State *L) {
    check_callable(L, 2, "with_evaluators");
    int nargs = lua_gettop(L) - 2;
    lb_flow *flow = lb_flow_get(L);
    int n = lb_parse_evaluators(L, 1);
    if (n > MAX_EVALS)
        basalt_log_once(BASALT_LOG_WARN, "with_evaluators: only the first %d evaluators are used",
                        MAX_EVALS);
    const char *slugs[MAX_EVALS];
    int k = 0;
    for (int i = 1; i <= n && k < MAX_EVALS; i++) {
        lua_rawgeti(L, -1, i);
        slugs[k++] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    basalt_ctx *ctx =
        n ? basalt_ctx_with_evaluators(flow->cur, slugs, (size_t)k) : basalt_ctx_retain(flow->cur);
    lua_pop(L, 1);
    return lb_run_in_context(L, ctx, 2, nargs);
}

/* ---- current-context helpers ----------------------------------------------------------- */

static int l_current_span(lua_State *L) {
    basalt_span *s = basalt_ctx_span(lb_flow_get(L)->cur);
    if (s && !basalt_span_is_recording(s)) s = NULL;
    lb_push_span(L, basalt_span_retain(s));
    return 1;
}

static int l_root_span(lua_State *L) {
    basalt_span *s = basalt_ctx_root_span(lb_flow_get(L)->cur);
    lb_push_span(L, s);
    return 1;
}

static int l_set_identity(lua_State *L) {
    basalt_identity id;
    if (lb_parse_identity(L, 1, &id)) basalt_set_dynamic_identity(lb_flow_get(L)->cur, &id);
    return 0;
}

/* set_input / set_output / add_evaluator on the current span: reuse the methods. */
static int current_method(lua_State *L, const char *method) {
    int nargs = lua_gettop(L);
    l_current_span(L);
    lua_getfield(L, -1, method);
    lua_insert(L, 1);
    lua_insert(L, 2);
    lua_call(L, nargs + 1, 0);
    return 0;
}

static int l_set_input(lua_State *L) {
    return current_method(L, "set_input");
}

static int l_set_output(lua_State *L) {
    return current_method(L, "set_output");
}

static int l_add_evaluator(lua_State *L) {
    return current_method(L, "add_evaluator");
}

void lb_open_observe(lua_State *L) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &TRACEBACK_KEY);
    lb_push_span(L, NULL);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NOOP_KEY);
    static const luaL_Reg fns[] = {{"start_observe", l_start_observe},
                                   {"observe", l_observe},
                                   {"start_observe_wrap", l_start_observe_wrap},
                                   {"observe_wrap", l_observe_wrap},
                                   {"with_evaluators", l_with_evaluators},
                                   {"current_span", l_current_span},
                                   {"root_span", l_root_span},
                                   {"set_identity", l_set_identity},
                                   {"set_input", l_set_input},
                                   {"set_output", l_set_output},
                                   {"add_evaluator", l_add_evaluator},
                                   {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
}
