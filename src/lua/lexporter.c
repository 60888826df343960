/* Exporters seen from Lua: the memory exporter object (testing helper) with
 * finished records turned into plain tables, and the `exporters` list of init. */
#include "lbasalt.h"

#include <stdlib.h>
#include <string.h>

typedef struct lb_exporter {
    basalt_exporter *exp; /* owned reference */
    lb_refs *refs;        /* the state's */
    uint32_t ref;         /* refs slot of exp (0: none) */
} lb_exporter;

basalt_exporter *lb_test_exporter(lua_State *L, int idx) {
    lb_exporter *e = luaL_testudata(L, idx, LB_EXPORTER_MT);
    return e ? e->exp : NULL;
}

static basalt_exporter *check_exporter(lua_State *L) {
    lb_exporter *e = luaL_checkudata(L, 1, LB_EXPORTER_MT);
    return e->exp;
}

/* ---- records to tables ------------------------------------------------------------ */

static void push_value(lua_State *L, const basalt_value *v, int depth);

static void push_kvs(lua_State *L, const basalt_kv *kv, size_t n, int depth) {
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        push_value(L, &kv[i].value, depth + 1);
        lua_setfield(L, -2, kv[i].key);
    }
}

static void push_value(lua_State *L, const basalt_value *v, int depth) {
    luaL_checkstack(L, 4, "converting a span record");
    switch (v->type) {
    case BASALT_VAL_BOOL:
        lua_pushboolean(L, v->u.b);
        break;
    case BASALT_VAL_INT:
        lua_pushinteger(L, (lua_Integer)v->u.i);
        break;
    case BASALT_VAL_DOUBLE:
        lua_pushnumber(L, v->u.d);
        break;
    case BASALT_VAL_STRING:
        lua_pushlstring(L, v->u.s.ptr, v->u.s.len);
        break;
    case BASALT_VAL_ARRAY:
        lua_createtable(L, (int)v->u.arr.n, 0);
        for (size_t i = 0; depth < 64 && i < v->u.arr.n; i++) {
            push_value(L, &v->u.arr.items[i], depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case BASALT_VAL_KVLIST:
        if (depth < 64)
            push_kvs(L, v->u.kv.items, v->u.kv.n, depth);
        else
            lua_newtable(L);
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

static const char *otel_kind_name(basalt_otel_kind k) {
    static const char *const names[] = {"unspecified", "internal", "server",
                                        "client",      "producer", "consumer"};
    return (unsigned)k < 6 ? names[k] : "unspecified";
}

static const char *status_name(basalt_status_code c) {
    return c == BASALT_STATUS_OK ? "ok" : c == BASALT_STATUS_ERROR ? "error" : "unset";
}

static void push_hex(lua_State *L, const uint8_t *bytes, size_t n) {
    char hex[33];
    basalt_hex_encode(bytes, n, hex);
    lua_pushlstring(L, hex, n * 2);
}

/* Pushes the plain-table form of a record (lua-api.md, Testing helpers). */
void lb_push_record(lua_State *L, const basalt_span_record *r) {
    lua_createtable(L, 0, 12);
    lua_pushstring(L, r->name);
    lua_setfield(L, -2, "name");
    push_hex(L, r->trace_id, 16);
    lua_setfield(L, -2, "trace_id");
    push_hex(L, r->span_id, 8);
    lua_setfield(L, -2, "span_id");
    if (r->has_parent) {
        push_hex(L, r->parent_span_id, 8);
        lua_setfield(L, -2, "parent_span_id");
    }
    lua_pushstring(L, otel_kind_name(r->kind));
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, r->scope_name);
    lua_setfield(L, -2, "scope");
    push_kvs(L, r->attrs, r->nattrs, 0);
    lua_setfield(L, -2, "attributes");
    lua_createtable(L, 0, 2);
    lua_pushstring(L, status_name(r->status_code));
    lua_setfield(L, -2, "code");
    if (r->status_message) {
        lua_pushstring(L, r->status_message);
        lua_setfield(L, -2, "message");
    }
    lua_setfield(L, -2, "status");
    lua_createtable(L, (int)r->nevents, 0);
    for (uint32_t i = 0; i < r->nevents; i++) {
        const basalt_event *ev = &r->events[i];
        lua_createtable(L, 0, 3);
        lua_pushstring(L, ev->name);
        lua_setfield(L, -2, "name");
        lua_pushinteger(L, (lua_Integer)ev->time_ns);
        lua_setfield(L, -2, "time");
        push_kvs(L, ev->attrs, ev->nattrs, 0);
        lua_setfield(L, -2, "attributes");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "events");
    lua_pushinteger(L, (lua_Integer)r->start_ns);
    lua_setfield(L, -2, "start_time");
    lua_pushinteger(L, (lua_Integer)r->end_ns);
    lua_setfield(L, -2, "end_time");
}

/* ---- the memory exporter object ------------------------------------------------------ */

/* Retained snapshot of the records (caller frees the array and releases each). */
static const basalt_span_record **snapshot(basalt_exporter *e, size_t *n) {
    size_t cap = basalt_memory_exporter_count(e) + 16;
    const basalt_span_record **recs = malloc(sizeof *recs * cap);
    *n = recs ? basalt_memory_exporter_snapshot(e, recs, cap) : 0;
    return recs;
}

static void release_all(const basalt_span_record **recs, size_t n) {
    for (size_t i = 0; i < n; i++)
        basalt_record_release(recs[i]);
    free(recs);
}

static int mem_spans(lua_State *L) {
    basalt_exporter *e = check_exporter(L);
    size_t n;
    const basalt_span_record **recs = snapshot(e, &n);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lb_push_record(L, recs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    release_all(recs, n);
    return 1;
}

static int mem_find(lua_State *L) {
    basalt_exporter *e = check_exporter(L);
    const char *name = luaL_checkstring(L, 2);
    size_t n;
    const basalt_span_record **recs = snapshot(e, &n);
    lua_pushnil(L);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(recs[i]->name, name) == 0) {
            lua_pop(L, 1);
            lb_push_record(L, recs[i]);
            break;
        }
    }
    release_all(recs, n);
    return 1;
}

static int mem_clear(lua_State *L) {
    basalt_memory_exporter_clear(check_exporter(L));
    lua_settop(L, 1);
    return 1;
}

static int mem_count(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)basalt_memory_exporter_count(check_exporter(L)));
    return 1;
}

static int mem_gc(lua_State *L) {
    lb_exporter *e = luaL_checkudata(L, 1, LB_EXPORTER_MT);
    basalt_exporter_release(e->exp);
    e->exp = NULL;
    if (e->ref) lb_ref_free(e->refs, e->ref);
    e->ref = 0;
    return 0;
}

/* Pushes an exporter value owning e: init wraps each exporter it builds in one,
 * so that a later error in init cannot leak it. */
static void push_owned(lua_State *L, basalt_exporter *e) {
    lb_refs *refs = lb_flow_get(L)->refs;
    uint32_t ref = lb_ref_new(L, refs, LB_REF_EXPORTER, e);
    lb_exporter *h = lua_newuserdatauv(L, sizeof *h, 0); /* on failure, lua_close releases e */
    h->exp = e;
    h->refs = refs;
    h->ref = ref;
    luaL_setmetatable(L, LB_EXPORTER_MT);
}

static int l_memory_exporter(lua_State *L) {
    basalt_exporter *e = basalt_memory_exporter_new();
    if (e == NULL) return luaL_error(L, "out of memory");
    push_owned(L, e);
    return 1;
}

/* ---- init{ exporters = ... } -------------------------------------------------------------- */

/* Pushes the "name: value" lines of an exporter's headers table (at h): a
 * NULL-terminated array in a userdata, the strings anchored in a table above it
 * (any number of headers in constant stack space). Returns the array. */
static const char **header_lines(lua_State *L, int h) {
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, h)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad argument #1 to 'init' (exporter headers must map strings to "
                          "strings)");
        n++;
        lua_pop(L, 1);
    }
    const char **lines = lua_newuserdatauv(L, (n + 1) * sizeof *lines, 0);
    lua_createtable(L, (int)n, 0);
    int anchor = lua_gettop(L);
    size_t i = 0;
    lua_pushnil(L);
    while (i < n && lua_next(L, h)) {
        lines[i] = lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
        lua_rawseti(L, anchor, (lua_Integer)++i); /* the anchor keeps the string alive */
        lua_pop(L, 1);
    }
    lines[i] = NULL;
    return lines;
}

static basalt_exporter *otlp_from_table(lua_State *L, int t, const char *api_key) {
    basalt_otlp_config oc = {0};
    oc.api_key = api_key;
    int ty = lua_getfield(L, t, "endpoint");
    if (ty != LUA_TNIL) {
        if (ty != LUA_TSTRING)
            luaL_error(L, "bad argument #1 to 'init' (exporter endpoint must be a string, got %s)",
                       luaL_typename(L, -1));
        oc.endpoint = lua_tostring(L, -1);
    }
    lua_getfield(L, t, "timeout_ms");
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) <= 0 || lua_tointeger(L, -1) > 0x7fffffff)
            luaL_error(L, "bad argument #1 to 'init' (exporter timeout_ms must be a positive "
                          "integer)");
        oc.timeout_ms = (uint32_t)lua_tointeger(L, -1);
    }
    lua_getfield(L, t, "compression");
    if (!lua_isnil(L, -1)) {
        const char *c = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (c && strcmp(c, "gzip") == 0)
            oc.compression = 2;
        else if (c && strcmp(c, "none") == 0)
            oc.compression = 1;
        else
            luaL_error(L, "bad argument #1 to 'init' (compression must be \"gzip\" or \"none\")");
    }
    int h = lua_getfield(L, t, "headers");
    if (h != LUA_TNIL) {
        if (h != LUA_TTABLE)
            luaL_error(L, "bad argument #1 to 'init' (exporter headers must be a table, got %s)",
                       luaL_typename(L, -1));
        oc.headers = header_lines(L, lua_gettop(L));
    }
    return basalt_otlp_exporter_new(&oc);
}

/* One entry of the exporters list; NULL (logged) when it cannot be built. */
static basalt_exporter *exporter_entry(lua_State *L, int idx, const char *api_key) {
    int top = lua_gettop(L);
    luaL_checkstack(L, 12, "parsing an exporter"); /* fields, header lines, iteration */
    basalt_exporter *e = NULL;
    basalt_exporter *mem = lb_test_exporter(L, idx);
    if (mem) {
        basalt_exporter_retain(mem);
        return mem;
    }
    const char *type = NULL;
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING) {
        type = lua_tostring(L, idx);
    } else if (t == LUA_TTABLE) {
        lua_getfield(L, idx, "type");
        type = lua_tostring(L, -1);
    }
    if (type == NULL)
        luaL_error(L,
                   "bad argument #1 to 'init' (each exporter must be a string, a table with a "
                   "type, or a memory exporter; got %s)",
                   luaL_typename(L, idx));
    if (strcmp(type, "otlp") == 0) {
        if (t == LUA_TTABLE) {
            e = otlp_from_table(L, idx, api_key);
        } else {
            basalt_otlp_config oc = {0};
            oc.api_key = api_key;
            e = basalt_otlp_exporter_new(&oc);
        }
    } else if (strcmp(type, "console") == 0) {
        e = basalt_console_exporter_new(NULL);
    } else if (strncmp(type, "file:", 5) == 0 && type[5]) {
        e = basalt_file_exporter_new(type + 5);
    } else if (strcmp(type, "file") == 0 && t == LUA_TTABLE) {
        lua_getfield(L, idx, "path");
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad argument #1 to 'init' (file exporter needs a path)");
        e = basalt_file_exporter_new(lua_tostring(L, -1));
    } else {
        luaL_error(L, "bad argument #1 to 'init' (unknown exporter '%s')", type);
    }
    if (e == NULL)
        basalt_log(BASALT_LOG_ERROR, "exporter '%s' could not be created; skipped", type);
    lua_settop(L, top);
    return e;
}

size_t lb_parse_exporters(lua_State *L, int idx, const char *api_key, basalt_exporter **out,
                          size_t cap) {
    idx = lua_absindex(L, idx);
    lua_newtable(L); /* owns every exporter built here until init has taken its references */
    int owned = lua_gettop(L);
    size_t n = 0;
    int single = lb_test_exporter(L, idx) || lua_type(L, idx) == LUA_TSTRING ||
                 (lua_istable(L, idx) && lua_getfield(L, idx, "type") != LUA_TNIL);
    if (lua_gettop(L) > owned) lua_pop(L, 1);
    if (!single && !lua_istable(L, idx))
        luaL_error(L, "bad argument #1 to 'init' (field 'exporters' must be a list, got %s)",
                   luaL_typename(L, idx));
    lua_Integer len = single ? 1 : (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= len; i++) {
        if (single)
            lua_pushvalue(L, idx);
        else
            lua_rawgeti(L, idx, i);
        basalt_exporter *e = exporter_entry(L, lua_gettop(L), api_key);
        lua_pop(L, 1);
        if (e == NULL) continue;
        push_owned(L, e);
        lua_rawseti(L, owned, (lua_Integer)lua_rawlen(L, owned) + 1);
        if (n == cap) {
            basalt_log(BASALT_LOG_WARN, "at most %zu exporters are supported", cap);
            continue;
        }
        out[n++] = e;
    }
    return n;
}

void lb_open_exporter(lua_State *L) {
    static const luaL_Reg methods[] = {{"spans", mem_spans},
                                       {"find", mem_find},
                                       {"clear", mem_clear},
                                       {"count", mem_count},
                                       {NULL, NULL}};
    luaL_newmetatable(L, LB_EXPORTER_MT);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, mem_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_memory_exporter);
    lua_setfield(L, -2, "memory_exporter");
}
