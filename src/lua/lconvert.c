/* Lua values into attribute values and JSON text (Decision 8), and the
 * parsing of identity, evaluator, experiment and prompt arguments. */
#include "lbasalt.h"

#include "basalt/otlp_json.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DEPTH 64

/* ---- JSON ------------------------------------------------------------------------ */

static void warn_placeholder(const char *what) {
    basalt_log_once(BASALT_LOG_WARN, "a %s value cannot be serialised; written as \"<%s>\"", what,
                    what);
}

static void json_number(lua_State *L, int idx, basalt_buf *out) {
    char tmp[64];
    if (lua_isinteger(L, idx)) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, idx));
    } else {
        double d = lua_tonumber(L, idx);
        if (!isfinite(d)) {
            basalt_buf_puts(out, "null");
            return;
        }
        /* Shortest round-trip form (11.1): 0.1 stays 0.1, 1/3 gets 16 digits.
         * A normal double whose shortest form has at most 15 digits prints as
         * that form at precision 15; subnormals carry fewer digits, so they
         * count up from 1. */
        for (int prec = fabs(d) < DBL_MIN && d != 0 ? 1 : 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof tmp, "%.*g", prec, d);
            if (strtod(tmp, NULL) == d) break;
        }
        /* Keep floats recognisable as floats: 1 -> 1.0. */
        if (!strpbrk(tmp, ".eEn")) strcat(tmp, ".0");
    }
    basalt_buf_puts(out, tmp);
}

typedef struct json_key {
    const char *s;
    size_t len;
} json_key;

static int key_cmp(const void *a, const void *b) {
    const json_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void json_value(lua_State *L, int idx, basalt_buf *out, int depth);

/* True when the table's keys are exactly 1..n with n >= 1. */
static int is_array(lua_State *L, int idx, lua_Integer *n_out) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n < 1) return 0;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1 || k > n) {
            lua_pop(L, 1);
            return 0;
        }
        count++;
    }
    *n_out = n;
    return count == n;
}

static void json_table(lua_State *L, int idx, basalt_buf *out, int depth) {
    lua_Integer n;
    if (is_array(L, idx, &n)) {
        basalt_buf_putc(out, '[');
        for (lua_Integer i = 1; i <= n; i++) {
            if (i > 1) basalt_buf_putc(out, ',');
            lua_rawgeti(L, idx, i);
            json_value(L, lua_gettop(L), out, depth + 1);
            lua_pop(L, 1);
        }
        basalt_buf_putc(out, ']');
        return;
    }
    /* Map every key to its text (strings as they are, numbers and booleans
     * converted, other key types dropped), then write the pairs sorted. */
    int base = lua_gettop(L);
    lua_newtable(L);
    int map = base + 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int t = lua_type(L, -2);
        char tmp[64];
        if (t == LUA_TSTRING) {
            lua_pushvalue(L, -2);
        } else if (t == LUA_TNUMBER || t == LUA_TBOOLEAN) {
            if (t == LUA_TBOOLEAN)
                snprintf(tmp, sizeof tmp, "%s", lua_toboolean(L, -2) ? "true" : "false");
            else if (lua_isinteger(L, -2))
                snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, -2));
            else
                snprintf(tmp, sizeof tmp, "%.15g", lua_tonumber(L, -2));
            lua_pushstring(L, tmp);
        } else {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -2);
        lua_rawset(L, map);
        lua_pop(L, 1);
    }
    size_t count = 0;
    lua_pushnil(L);
    while (lua_next(L, map)) {
        lua_pop(L, 1);
        count++;
    }
    json_key *keys = count ? malloc(sizeof *keys * count) : NULL;
    size_t nk = 0;
    lua_pushnil(L);
    while (keys && lua_next(L, map)) {
        lua_pop(L, 1);
        keys[nk].s = lua_tolstring(L, -1, &keys[nk].len); /* held by map */
        nk++;
    }
    if (keys) qsort(keys, nk, sizeof *keys, key_cmp);
    basalt_buf_putc(out, '{');
    for (size_t i = 0; i < nk; i++) {
        if (i) basalt_buf_putc(out, ',');
        basalt_json_write_string(out, keys[i].s, keys[i].len);
        basalt_buf_putc(out, ':');
        lua_pushlstring(L, keys[i].s, keys[i].len);
        lua_rawget(L, map);
        json_value(L, lua_gettop(L), out, depth + 1);
        lua_pop(L, 1);
    }
    basalt_buf_putc(out, '}');
    free(keys);
    lua_settop(L, base);
}

/* The set of tables being serialised (cycle detection) sits in upvalue-free
 * form: a table stored at registry key VISITING for the duration of a call. */
static const char VISITING_KEY = 'v';

static void json_value(lua_State *L, int idx, basalt_buf *out, int depth) {
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        basalt_buf_puts(out, "null");
        break;
    case LUA_TBOOLEAN:
        basalt_buf_puts(out, lua_toboolean(L, idx) ? "true" : "false");
        break;
    case LUA_TNUMBER:
        json_number(L, idx, out);
        break;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        basalt_json_write_string(out, s, len);
        break;
    }
    case LUA_TTABLE: {
        if (depth >= MAX_DEPTH) {
            basalt_buf_puts(out, "\"<too deep>\"");
            basalt_log_once(BASALT_LOG_WARN,
                            "a table nested deeper than %d levels was cut as "
                            "\"<too deep>\"",
                            MAX_DEPTH);
            break;
        }
        luaL_checkstack(L, 8, "serialising a table");
        lua_rawgetp(L, LUA_REGISTRYINDEX, &VISITING_KEY);
        int visiting = lua_gettop(L);
        lua_pushvalue(L, idx);
        if (lua_rawget(L, visiting) != LUA_TNIL) {
            lua_pop(L, 2);
            basalt_buf_puts(out, "\"<cycle>\"");
            warn_placeholder("cycle");
            break;
        }
        lua_pop(L, 1);
        lua_pushvalue(L, idx);
        lua_pushboolean(L, 1);
        lua_rawset(L, visiting);
        json_table(L, idx, out, depth);
        lua_pushvalue(L, idx);
        lua_pushnil(L);
        lua_rawset(L, visiting);
        lua_pop(L, 1);
        break;
    }
    case LUA_TFUNCTION:
        basalt_buf_puts(out, "\"<function>\"");
        warn_placeholder("function");
        break;
    case LUA_TTHREAD:
        basalt_buf_puts(out, "\"<thread>\"");
        warn_placeholder("thread");
        break;
    default:
        basalt_buf_puts(out, "\"<userdata>\"");
        warn_placeholder("userdata");
        break;
    }
}

void lb_json_append(lua_State *L, int idx, basalt_buf *out) {
    idx = lua_absindex(L, idx);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &VISITING_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &VISITING_KEY);
    }
    lua_pop(L, 1);
    json_value(L, idx, out, 0);
}

/* ---- attribute values --------------------------------------------------------------- */

/* The placeholder name of a value that has no JSON form, or NULL. */
static const char *top_level_placeholder(int type) {
    switch (type) {
    case LUA_TFUNCTION:
        return "function";
    case LUA_TTHREAD:
        return "thread";
    case LUA_TUSERDATA:
    case LUA_TLIGHTUSERDATA:
        return "userdata";
    default:
        return NULL;
    }
}

static basalt_value scalar(lua_State *L, int idx, int *ok) {
    *ok = 1;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return basalt_v_bool(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        return lua_isinteger(L, idx) ? basalt_v_int(lua_tointeger(L, idx))
                                     : basalt_v_double(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return basalt_v_strn(s, len);
    }
    default:
        *ok = 0;
        return basalt_v_bool(false);
    }
}

/* Same-typed scalar array -> array value stored in scratch (strings borrowed
 * from the table, which the caller keeps on the stack). */
static int try_array(lua_State *L, int idx, basalt_buf *scratch, basalt_value *out) {
    lua_Integer n;
    if (!is_array(L, idx, &n)) return 0;
    int t0 = LUA_TNONE, int0 = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, idx, i);
        int isint = t == LUA_TNUMBER && lua_isinteger(L, -1);
        lua_pop(L, 1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN) return 0;
        if (i == 1) {
            t0 = t;
            int0 = isint;
        } else if (t != t0 || (t == LUA_TNUMBER && isint != int0)) {
            return 0;
        }
    }
    size_t off = (scratch->len + 7) & ~(size_t)7;
    if (!basalt_buf_reserve(scratch, off - scratch->len + sizeof(basalt_value) * (size_t)n))
        return 0;
    scratch->len = off;
    basalt_value *items = (basalt_value *)(void *)(scratch->data + off);
    for (lua_Integer i = 1; i <= n; i++) {
        int ok;
        lua_rawgeti(L, idx, i);
        items[i - 1] = scalar(L, -1, &ok); /* strings stay valid: held by the table */
        lua_pop(L, 1);
    }
    scratch->len += sizeof(basalt_value) * (size_t)n;
    /* items pointer may move if scratch grows later: callers use one value each. */
    *out = basalt_v_array(items, (size_t)n);
    return 1;
}

basalt_value lb_to_value(lua_State *L, int idx, basalt_buf *scratch, int arrays_ok) {
    idx = lua_absindex(L, idx);
    int ok;
    basalt_value v = scalar(L, idx, &ok);
    if (ok) return v;
    if (lua_isnil(L, idx)) {
        basalt_value none = {0};
        return none;
    }
    const char *placeholder = top_level_placeholder(lua_type(L, idx));
    if (placeholder) { /* a placeholder string, unquoted like any string value */
        warn_placeholder(placeholder);
        size_t start = scratch->len;
        basalt_buf_putc(scratch, '<');
        basalt_buf_puts(scratch, placeholder);
        basalt_buf_putc(scratch, '>');
        return basalt_v_strn(scratch->data + start, scratch->len - start);
    }
    if (arrays_ok && lua_istable(L, idx) && try_array(L, idx, scratch, &v)) return v;
    size_t start = scratch->len;
    lb_json_append(L, idx, scratch);
    return basalt_v_strn(scratch->data + start, scratch->len - start);
}

basalt_value lb_to_payload(lua_State *L, int idx, basalt_buf *scratch) {
    return lb_to_value(L, idx, scratch, 0);
}

/* ---- identity (semantics 9.1-9.2) ------------------------------------------------------- */

/* Case-insensitive field lookup; pushes the value (nil when absent). */
static int field_ci(lua_State *L, int t, const char *name) {
    if (lua_getfield(L, t, name) != LUA_TNIL) return lua_type(L, -1); /* the usual spelling */
    lua_pop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) == LUA_TSTRING && strcasecmp(lua_tostring(L, -2), name) == 0 &&
            !lua_isnil(L, -1)) {
            lua_remove(L, -2);
            return lua_type(L, -1);
        }
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    return LUA_TNIL;
}

/* Normalises one identity part at idx into id/name (strings left on the stack). */
static int identity_part(lua_State *L, int idx, const char **id, const char **name) {
    idx = lua_absindex(L, idx);
    *id = *name = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return 0;
    case LUA_TSTRING:
    case LUA_TNUMBER: {
        lua_pushvalue(L, idx);
        const char *s = lua_tostring(L, -1);
        while (isspace((unsigned char)*s))
            s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1]))
            n--;
        if (n == 0) return 0;
        lua_pushlstring(L, s, n);
        *id = lua_tostring(L, -1);
        return 1;
    }
    case LUA_TTABLE: {
        int tid = field_ci(L, idx, "id");
        if (tid == LUA_TNUMBER) {
            lua_pushstring(L, lua_tostring(L, -1));
            tid = LUA_TSTRING;
        }
        if (tid != LUA_TSTRING || lua_rawlen(L, -1) == 0)
            luaL_error(L, "Trace identity mapping requires a non-empty 'id'.");
        *id = lua_tostring(L, -1);
        int tn = field_ci(L, idx, "name");
        if (tn != LUA_TNIL && tn != LUA_TSTRING)
            luaL_error(L, "Trace identity 'name' must be a string.");
        *name = tn == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        return 1;
    }
    default:
        return luaL_error(L, "Identity payload must be a mapping, TraceIdentity, or primitive "
                             "identifier.");
    }
}

int lb_parse_identity(lua_State *L, int idx, basalt_identity *out) {
    idx = lua_absindex(L, idx);
    memset(out, 0, sizeof *out);
    int t = lua_type(L, idx);
    if (t == LUA_TNIL) return 0;
    if (t != LUA_TTABLE) {
        identity_part(L, idx, &out->user_id, &out->user_name);
        return out->user_id != NULL;
    }
    if (lua_rawlen(L, idx) > 0) { /* a sequence: user, organization */
        lua_rawgeti(L, idx, 1);
        identity_part(L, -1, &out->user_id, &out->user_name);
        lua_rawgeti(L, idx, 2);
        identity_part(L, -1, &out->org_id, &out->org_name);
        return out->user_id || out->org_id;
    }
    int found = 0;
    if (field_ci(L, idx, "user") != LUA_TNIL) {
        identity_part(L, -1, &out->user_id, &out->user_name);
        found = 1;
    } else if (field_ci(L, idx, "user_id") != LUA_TNIL) {
        identity_part(L, -1, &out->user_id, &out->user_name);
        if (field_ci(L, idx, "user_name") == LUA_TSTRING) out->user_name = lua_tostring(L, -1);
        found = 1;
    } else if (field_ci(L, idx, "userid") != LUA_TNIL) {
        identity_part(L, -1, &out->user_id, &out->user_name);
        found = 1;
    }
    if (field_ci(L, idx, "organization") != LUA_TNIL || field_ci(L, idx, "org") != LUA_TNIL) {
        identity_part(L, -1, &out->org_id, &out->org_name);
        found = 1;
    } else if (field_ci(L, idx, "organization_id") != LUA_TNIL ||
               field_ci(L, idx, "org_id") != LUA_TNIL) {
        identity_part(L, -1, &out->org_id, &out->org_name);
        if (field_ci(L, idx, "organization_name") == LUA_TSTRING ||
            field_ci(L, idx, "org_name") == LUA_TSTRING)
            out->org_name = lua_tostring(L, -1);
        found = 1;
    }
    if (!found) identity_part(L, idx, &out->user_id, &out->user_name); /* the map is the user */
    return out->user_id || out->org_id;
}

/* ---- evaluators (semantics 10.1) ----------------------------------------------------- */

static void add_slug(lua_State *L, int list, const char *s, size_t len) {
    while (len && isspace((unsigned char)*s))
        s++, len--;
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len == 0) luaL_error(L, "Evaluator slug must be a non-empty string.");
    lua_pushlstring(L, s, len);
    lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

static void flatten_evaluators(lua_State *L, int idx, int list, int depth) {
    idx = lua_absindex(L, idx);
    if (depth > 16) luaL_error(L, "Evaluator specification nested too deeply.");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        add_slug(L, list, s, len);
        return;
    }
    case LUA_TTABLE: {
        lua_getfield(L, idx, "slug");
        if (!lua_isnil(L, -1)) {
            if (!lua_isstring(L, -1)) luaL_error(L, "Evaluator slug must be a non-empty string.");
            lua_getfield(L, idx, "metadata");
            if (!lua_isnil(L, -1) && !lua_istable(L, -1))
                luaL_error(L, "Evaluator metadata must be a mapping.");
            lua_pop(L, 1);
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            add_slug(L, list, s, len);
            lua_pop(L, 1);
            return;
        }
        lua_pop(L, 1);
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (n == 0) {
            lua_pushnil(L);
            if (lua_next(L, idx)) luaL_error(L, "Evaluator mapping must include a 'slug' key.");
            return; /* empty table: no evaluators */
        }
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            flatten_evaluators(L, -1, list, depth + 1);
            lua_pop(L, 1);
        }
        return;
    }
    default: {
        const char *repr = luaL_tolstring(L, idx, NULL);
        luaL_error(L, "Unsupported evaluator specification: %s", repr);
    }
    }
}

int lb_parse_evaluators(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    int list = lua_gettop(L);
    flatten_evaluators(L, idx, list, 0);
    return (int)lua_rawlen(L, list);
}

/* ---- experiments and prompts ----------------------------------------------------------- */

int lb_parse_experiment(lua_State *L, int idx, basalt_experiment *out) {
    idx = lua_absindex(L, idx);
    memset(out, 0, sizeof *out);
    if (lua_type(L, idx) == LUA_TSTRING) {
        out->id = lua_tostring(L, idx);
        return out->id[0] != '\0';
    }
    if (!lua_istable(L, idx)) return 0;
    lua_getfield(L, idx, "id");
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) return 0;
    out->id = lua_tostring(L, -1);
    lua_getfield(L, idx, "name");
    out->name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_getfield(L, idx, "feature_slug");
    out->feature_slug = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    return out->id[0] != '\0';
}

static const char *opt_string_field(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
        return lua_tostring(L, -1);
    return NULL;
}

int lb_parse_prompt(lua_State *L, int idx, basalt_prompt_attrs *out, basalt_buf *vars_json) {
    idx = lua_absindex(L, idx);
    memset(out, 0, sizeof *out);
    if (!lua_istable(L, idx)) return 0;
    out->slug = opt_string_field(L, idx, "slug");
    if (out->slug == NULL) return 0;
    out->version = opt_string_field(L, idx, "version");
    out->tag = opt_string_field(L, idx, "tag");
    lua_getfield(L, idx, "model");
    if (lua_istable(L, -1)) {
        int m = lua_gettop(L);
        out->provider = opt_string_field(L, m, "provider");
        out->model = opt_string_field(L, m, "model");
    }
    lua_getfield(L, idx, "from_cache");
    out->from_cache = lua_toboolean(L, -1);
    /* Last: the fields above may run __index (and raise); the serialiser does
     * not, so vars_json is never left filled by an error. */
    lua_getfield(L, idx, "variables");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        int nonempty = lua_next(L, -2);
        if (nonempty) lua_pop(L, 2);
        if (nonempty) {
            lb_json_append(L, -1, vars_json);
            out->variables_json = basalt_buf_cstr(vars_json);
        }
    }
    return 1;
}
