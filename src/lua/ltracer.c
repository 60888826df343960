/* The tracer API: plain OpenTelemetry spans for instrumentations (an HTTP
 * client, an LLM SDK wrapper) and hosts that manage span lifetimes themselves.
 * Such spans get no Basalt markers; the values of their parent context still
 * propagate onto them, as onto every span.
 *
 *   local tracer = basalt.tracer("my-instrumentation", "1.0.0")
 *   local span = tracer:start_span("http GET", { kind = "client", attributes = {...},
 *                                                parent = ctx })
 *   ... span:set_attribute(...) ... span:finish()
 *   local ctx = basalt.context_with(span:context(), { feature_slug =, identity = })
 */
#include "lbasalt.h"

#include <string.h>

#define LB_TRACER_MT "basalt.Tracer"

typedef struct lb_tracer {
    const char *name;    /* held by the uservalue table */
    const char *version; /* may be NULL */
    uint64_t magic;      /* lb_mark(LB_MARK_TRACER) */
} lb_tracer;

/* The mark and size identify a tracer (see lb_mark). */
static lb_tracer *check_tracer(lua_State *L) {
    lb_tracer *t = lua_touserdata(L, 1);
    if (t == NULL || lua_type(L, 1) != LUA_TUSERDATA || lua_rawlen(L, 1) != sizeof *t ||
        t->magic != lb_mark(LB_MARK_TRACER))
        luaL_typeerror(L, 1, LB_TRACER_MT);
    return t;
}

static int l_tracer(lua_State *L) {
    const char *name = luaL_optstring(L, 1, BASALT_SCOPE_DEFAULT);
    const char *version = luaL_optstring(L, 2, NULL);
    lb_tracer *t = lua_newuserdatauv(L, sizeof *t, 2);
    t->name = t->version = NULL;
    t->magic = lb_mark(LB_MARK_TRACER);
    lua_pushstring(L, name);
    t->name = lua_tostring(L, -1);
    lua_setiuservalue(L, -2, 1); /* keeps the strings alive */
    if (version) {
        lua_pushstring(L, version);
        t->version = lua_tostring(L, -1);
        lua_setiuservalue(L, -2, 2);
    }
    /* Interned copies (one per distinct value) spare spans a copy each. */
    const char *in = basalt_scope_intern(t->name);
    if (in) t->name = in;
    if (t->version && (in = basalt_scope_intern(t->version)) != NULL) t->version = in;
    luaL_setmetatable(L, LB_TRACER_MT);
    return 1;
}

static basalt_otel_kind otel_kind(lua_State *L, int idx) {
    if (lua_isnil(L, idx)) return BASALT_OTEL_INTERNAL;
    static const char *const names[] = {"internal", "server",   "client",
                                        "producer", "consumer", NULL};
    static const basalt_otel_kind kinds[] = {BASALT_OTEL_INTERNAL, BASALT_OTEL_SERVER,
                                             BASALT_OTEL_CLIENT, BASALT_OTEL_PRODUCER,
                                             BASALT_OTEL_CONSUMER};
    const char *s = lua_tostring(L, idx);
    for (int i = 0; s && names[i]; i++)
        if (strcmp(s, names[i]) == 0) return kinds[i];
    lb_argerror(L, 3, "start_span",
                lua_pushfstring(L, "unknown span kind '%s'", s ? s : luaL_typename(L, idx)));
    return BASALT_OTEL_INTERNAL;
}

#define MAX_START_ATTRS 64

/* tracer:start_span(name[, { kind =, attributes =, parent = }]) -> span handle */
static int tracer_start_span(lua_State *L) {
    lb_tracer *t = check_tracer(L);
    if (lua_type(L, 2) != LUA_TSTRING) lb_argerror(L, 2, "start_span", "name expected");
    if (!lua_isnoneornil(L, 3)) lb_checktype(L, 3, LUA_TTABLE, "start_span");
    lua_settop(L, 3);
    lb_key_cache *cache = lua_touserdata(L, lua_upvalueindex(1));
    basalt_raw_span_opts o = {0};
    o.name = lua_tostring(L, 2);
    o.scope_name = t->name;
    o.scope_version = t->version;
    o.parent = NULL;
    int parent_given = 0;
    basalt_kv kv[MAX_START_ATTRS];
    const basalt_key *keys[MAX_START_ATTRS];
    basalt_buf scratch[MAX_START_ATTRS];
    size_t n = 0, nscratch = 0;
    bool unique = true;
    int more = 0; /* lua_next stopped at MAX_START_ATTRS: the rest follow the start */
    if (lua_istable(L, 3)) {
        /* The keys are upvalues: lua_getfield would find each C string's Lua string first. */
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_gettable(L, 3); /* 4: kind */
        lua_pushvalue(L, lua_upvalueindex(3));
        lua_gettable(L, 3); /* 5: parent */
        lua_pushvalue(L, lua_upvalueindex(4));
        lua_gettable(L, 3); /* 6: attributes */
        o.kind = otel_kind(L, 4);
        if (!lua_isnil(L, 5)) {
            o.parent = lb_check_context(L, 5, 3, "start_span");
            parent_given = 1;
        }
        if (!lua_isnil(L, 6)) {
            if (!lua_istable(L, 6)) lb_argerror(L, 3, "start_span", "attributes must be a table");
            lua_pushnil(L);
            while (n < MAX_START_ATTRS && (more = lua_next(L, 6)) != 0) {
                if (lua_type(L, -2) == LUA_TSTRING) {
                    size_t klen;
                    kv[n].key = lua_tolstring(L, -2, &klen);
                    bool exact;
                    keys[n] =
                        lb_cached_key(L, lua_upvalueindex(1), cache, -2, kv[n].key, klen, &exact);
                    /* Keys are C strings: two keys equal up to a NUL are one,
                     * and repaired invalid UTF-8 can make two keys one too. */
                    if (!exact) unique = false;
                    size_t len;
                    switch (lua_type(L, -1)) { /* scalars inline: the usual case */
                    case LUA_TSTRING: {
                        const char *v = lua_tolstring(L, -1, &len); /* held by the table */
                        kv[n].value = basalt_v_strn(v, len);
                        break;
                    }
                    case LUA_TNUMBER:
                        kv[n].value = lua_isinteger(L, -1) ? basalt_v_int(lua_tointeger(L, -1))
                                                           : basalt_v_double(lua_tonumber(L, -1));
                        break;
                    case LUA_TBOOLEAN:
                        kv[n].value = basalt_v_bool(lua_toboolean(L, -1));
                        break;
                    default:
                        memset(&scratch[nscratch], 0, sizeof scratch[nscratch]);
                        kv[n].value = lb_to_value(L, -1, &scratch[nscratch++], 1);
                    }
                    n++;
                }
                lua_pop(L, 1);
            }
        }
    }
    if (!parent_given) o.parent = lb_flow_get(L)->cur; /* looked up only when needed */
    o.attrs = kv;
    o.nattrs = n;
    o.attrs_unique = unique; /* keys of one table */
    o.attr_keys = keys;
    basalt_error err;
    basalt_span *span = basalt_raw_span_start(&o, NULL, &err);
    for (size_t i = 0; i < nscratch; i++)
        basalt_buf_free(&scratch[i]);
    if (span == NULL && err.message[0]) return lb_argerror(L, 2, "start_span", err.message);
    if (more && n == MAX_START_ATTRS) { /* the iteration key is on top: go on from it */
        while (lua_next(L, 6)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                basalt_buf extra = {0};
                basalt_value v = lb_to_value(L, -1, &extra, 1);
                basalt_span_set_attr(span, lua_tostring(L, -2), v);
                basalt_buf_free(&extra);
            }
            lua_pop(L, 1);
        }
    }
    lb_push_span_in(L, lb_key_cache_refs(cache), span);
    return 1;
}

/* basalt.context_with(ctx_or_nil, { feature_slug =, identity = }) -> context */
static int l_context_with(lua_State *L) {
    basalt_ctx *parent =
        lua_isnil(L, 1) ? lb_flow_get(L)->cur : lb_check_context(L, 1, 1, "context_with");
    lb_checktype(L, 2, LUA_TTABLE, "context_with");
    lua_settop(L, 2);
    lua_getfield(L, 2, "feature_slug"); /* 3 */
    const char *slug = NULL;
    if (!lua_isnil(L, 3)) {
        if (lua_type(L, 3) != LUA_TSTRING)
            lb_argerror(L, 2, "context_with", "feature_slug must be a string");
        slug = lua_tostring(L, 3);
    }
    lua_getfield(L, 2, "identity"); /* 4 */
    basalt_identity id;
    int has_id = lb_parse_identity(L, 4, &id); /* strings stay on the stack */
    basalt_ctx *c = basalt_ctx_with_values(parent, slug, has_id ? &id : NULL);
    if (c == NULL) return luaL_error(L, "out of memory");
    lb_push_context(L, c);
    return 1;
}

void lb_open_tracer(lua_State *L) {
    static const luaL_Reg methods[] = {{"start_span", tracer_start_span}, {NULL, NULL}};
    luaL_newmetatable(L, LB_TRACER_MT);
    luaL_newlibtable(L, methods);
    lb_push_key_cache(L);
    lua_pushliteral(L, "kind");
    lua_pushliteral(L, "parent");
    lua_pushliteral(L, "attributes");
    luaL_setfuncs(L, methods, 4); /* upvalues: the key cache, the option names */
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_tracer);
    lua_setfield(L, -2, "tracer");
    lua_pushcfunction(L, l_context_with);
    lua_setfield(L, -2, "context_with");
}
