/* basalt.prompts: get / describe / list and prompt:compile, a thin layer over
 * the C prompts client (basalt/prompts.h), which does the HTTP, caching,
 * rendering and tracing. This file only turns Lua values into C calls and C
 * results into Lua tables, and runs the block form inside the prompt context.
 *
 * A caller's mistake (wrong argument types) raises; an API or template failure
 * returns nil, err with err = { code =, message =, status = }. */
#include "basalt/prompts.h"
#include "lbasalt.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define LB_PROMPT_MT         "basalt.Prompt"
#define LB_PROMPTS_CLIENT_MT "basalt.PromptsClient"
#define LB_PROMPT_RESULT_MT  "basalt.PromptResult"
#define MAX_DEPTH            64

/* ---- the client: one per lua_State, freed with it ---------------------------------- */

typedef struct lb_client {
    basalt_prompts_client *c;
} lb_client;

static int client_gc(lua_State *L) {
    lb_client *u = luaL_checkudata(L, 1, LB_PROMPTS_CLIENT_MT);
    basalt_prompts_client_free(u->c);
    u->c = NULL;
    return 0;
}

static basalt_prompts_client *client_of(lua_State *L) {
    lb_client *u = luaL_checkudata(L, lua_upvalueindex(1), LB_PROMPTS_CLIENT_MT);
    if (u->c == NULL) luaL_error(L, "basalt.prompts: the client is closed");
    return u->c;
}

/* A get result owned by a userdata, so a memory error while the prompt table is
 * built (luaL_error longjmps) cannot leak it. */
static int result_gc(lua_State *L) {
    basalt_prompt_result *r = luaL_checkudata(L, 1, LB_PROMPT_RESULT_MT);
    basalt_prompt_result_free(r);
    return 0;
}

/* ---- Lua values -> template variables ------------------------------------------------- */

/* Conversion state: storage (userdata arrays, key strings) is anchored in a Lua
 * table so the collector frees it, even when an error unwinds. */
typedef struct conv {
    lua_State *L;
    int anchor; /* table: storage, then [table] = true while it is being visited */
    lua_Integer n;
} conv;

static void *conv_alloc(conv *c, size_t size) {
    void *p = lua_newuserdatauv(c->L, size ? size : 1, 0);
    memset(p, 0, size ? size : 1);
    lua_rawseti(c->L, c->anchor, ++c->n);
    return p;
}

static const char *conv_keep_string(conv *c, int idx) {
    lua_pushvalue(c->L, idx);
    const char *s = lua_tostring(c->L, -1); /* converts a number copy, not the key */
    lua_rawseti(c->L, c->anchor, ++c->n);
    return s;
}

static int kv_cmp(const void *a, const void *b) {
    return strcmp(((const basalt_kv *)a)->key, ((const basalt_kv *)b)->key);
}

static basalt_value placeholder(conv *c, const char *text) {
    lua_pushstring(c->L, text);
    const char *s = conv_keep_string(c, -1);
    lua_pop(c->L, 1);
    return basalt_v_str(s);
}

/* The value at idx as a basalt_value (Decision 8 shapes: 1..n tables are lists,
 * other tables maps with sorted string keys). Strings are borrowed: the
 * variables table stays on the stack while the value is used. */
static basalt_value to_value(conv *c, int idx, int depth) {
    lua_State *L = c->L;
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: {
        basalt_value v = {.type = BASALT_VAL_NONE};
        return v;
    }
    case LUA_TBOOLEAN:
        return basalt_v_bool(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) return basalt_v_int(lua_tointeger(L, idx));
        return basalt_v_double(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return basalt_v_strn(s, len);
    }
    case LUA_TTABLE:
        break;
    default:
        return placeholder(c, lua_type(L, idx) == LUA_TFUNCTION ? "<function>" : "<userdata>");
    }
    if (depth >= MAX_DEPTH) return placeholder(c, "<too deep>");
    lua_pushvalue(L, idx);
    if (lua_rawget(L, c->anchor) != LUA_TNIL) {
        lua_pop(L, 1);
        return placeholder(c, "<cycle>");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, c->anchor);
    luaL_checkstack(L, 8, "variables nested too deeply");

    size_t n = 0;
    bool is_array = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        n++;
        if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1) is_array = false;
        lua_pop(L, 1);
    }
    if (is_array && n > 0 && lua_rawlen(L, idx) != n) is_array = false;
    basalt_value v;
    if (is_array && n > 0) {
        basalt_value *items = conv_alloc(c, sizeof *items * n);
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i + 1);
            items[i] = to_value(c, -1, depth + 1);
            lua_pop(L, 1);
        }
        v = basalt_v_array(items, n);
    } else {
        basalt_kv *items = conv_alloc(c, sizeof *items * n);
        size_t k = 0;
        lua_pushnil(L);
        while (lua_next(L, idx) && k < n) {
            int t = lua_type(L, -2);
            if (t == LUA_TSTRING || t == LUA_TNUMBER) {
                items[k].key = conv_keep_string(c, -2);
                items[k].value = to_value(c, -1, depth + 1);
                k++;
            }
            lua_pop(L, 1);
        }
        qsort(items, k, sizeof *items, kv_cmp);
        v.type = BASALT_VAL_KVLIST;
        v.u.kv.items = items;
        v.u.kv.n = k;
    }
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, c->anchor); /* visited only while on the current path */
    return v;
}

/* Converts the variables table at idx; pushes one anchor value (keep it on the
 * stack while *out is used). */
static void push_variables(lua_State *L, int idx, basalt_value *out) {
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    conv c = {.L = L, .anchor = lua_gettop(L), .n = 0};
    *out = to_value(&c, idx, 0);
}

static bool table_nonempty(lua_State *L, int idx) {
    if (!lua_istable(L, idx)) return false;
    lua_pushnil(L);
    if (lua_next(L, idx)) {
        lua_pop(L, 2);
        return true;
    }
    return false;
}

/* ---- C results -> Lua values -------------------------------------------------------------- */

static void push_json_value(lua_State *L, const cJSON *v, int depth) {
    luaL_checkstack(L, 4, "JSON nested too deeply");
    if (depth > MAX_DEPTH) {
        lua_pushnil(L);
    } else if (cJSON_IsBool(v)) {
        lua_pushboolean(L, cJSON_IsTrue(v));
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == (double)(lua_Integer)d && d >= -9007199254740992.0 && d <= 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsString(v)) {
        lua_pushstring(L, v->valuestring);
    } else if (cJSON_IsArray(v)) {
        lua_createtable(L, cJSON_GetArraySize(v), 0);
        lua_Integer i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            push_json_value(L, it, depth + 1);
            lua_rawseti(L, -2, ++i);
        }
    } else if (cJSON_IsObject(v)) {
        lua_newtable(L);
        const cJSON *it;
        cJSON_ArrayForEach(it, v) {
            push_json_value(L, it, depth + 1);
            lua_setfield(L, -2, it->string);
        }
    } else {
        lua_pushnil(L);
    }
}

/* Pushes the Lua value of JSON text (nil when NULL or unparsable). */
static void push_json(lua_State *L, const char *json) {
    cJSON *v = json ? cJSON_Parse(json) : NULL;
    if (v == NULL) {
        lua_pushnil(L);
        return;
    }
    /* Only a Lua memory error could unwind past cJSON_Delete (and leak the tree). */
    push_json_value(L, v, 0);
    cJSON_Delete(v);
}

static int push_error(lua_State *L, const basalt_prompt_error *e) {
    lua_pushnil(L);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, e->code[0] ? e->code : BASALT_PERR_NETWORK);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, e->message);
    lua_setfield(L, -2, "message");
    if (e->status) {
        lua_pushinteger(L, e->status);
        lua_setfield(L, -2, "status");
    }
    if (e->line) {
        lua_pushinteger(L, e->line);
        lua_setfield(L, -2, "line");
        lua_pushinteger(L, e->column);
        lua_setfield(L, -2, "column");
    }
    return 2;
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (v == NULL) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, bool has, double v) {
    if (!has) return;
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* The prompt table of lua-api.md; vars_idx is the variables table or 0. */
static void push_prompt(lua_State *L, const basalt_prompt_result *r, int vars_idx) {
    const basalt_prompt *p = r->prompt;
    lua_createtable(L, 0, 14);
    set_str(L, "slug", p->slug);
    set_str(L, "version", p->version);
    set_str(L, "tag", p->tag);
    set_str(L, "text", r->text ? r->text : p->text);
    set_str(L, "system_text", r->system_text ? r->system_text : p->system_text);
    set_str(L, "raw_text", p->text);
    set_str(L, "raw_system_text", p->system_text);
    const basalt_prompt_model *m = &p->model;
    lua_createtable(L, 0, 4);
    set_str(L, "provider", m->provider);
    set_str(L, "model", m->model);
    set_str(L, "version", m->version);
    lua_createtable(L, 0, 8);
    set_num(L, "temperature", true, m->temperature);
    lua_pushinteger(L, m->max_length);
    lua_setfield(L, -2, "max_length");
    set_str(L, "response_format", m->response_format);
    set_num(L, "top_k", m->has_top_k, m->top_k);
    set_num(L, "top_p", m->has_top_p, m->top_p);
    set_num(L, "frequency_penalty", m->has_frequency_penalty, m->frequency_penalty);
    set_num(L, "presence_penalty", m->has_presence_penalty, m->presence_penalty);
    push_json(L, m->json_object_json);
    lua_setfield(L, -2, "json_object");
    lua_setfield(L, -2, "parameters");
    lua_setfield(L, -2, "model");
    if (vars_idx) {
        lua_pushvalue(L, vars_idx);
        lua_setfield(L, -2, "variables");
    }
    push_json(L, m->tools_json);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    lua_setfield(L, -2, "tools");
    push_json(L, m->tool_choice_json);
    lua_setfield(L, -2, "tool_choice");
    lua_pushboolean(L, r->from_cache);
    lua_setfield(L, -2, "from_cache");
    luaL_setmetatable(L, LB_PROMPT_MT);
}

/* ---- argument checking ---------------------------------------------------------------------- */

static const char *check_slug(lua_State *L, int arg) {
    const char *s = luaL_checkstring(L, arg);
    const char *p = s;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p == '\0') luaL_argerror(L, arg, "slug must not be blank");
    return s;
}

/* opts.<name>: a string (numbers accepted, as versions often are), or nil. */
static const char *opt_string(lua_State *L, int opts, int arg, const char *name) {
    if (opts == 0) return NULL;
    int t = lua_getfield(L, opts, name);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
        luaL_argerror(
            L, arg,
            lua_pushfstring(L, "'%s' must be a string, got %s", name, luaL_typename(L, -1)));
    /* Left on the stack: keeps the string alive. A number is converted in place. */
    return lua_tostring(L, -1);
}

static int check_opts(lua_State *L, int arg) {
    int t = lua_type(L, arg);
    if (t == LUA_TNIL || t == LUA_TNONE) return 0;
    luaL_argexpected(L, t == LUA_TTABLE, arg, "table");
    return arg;
}

/* ---- get ------------------------------------------------------------------------------------ */

/* get(slug, opts[, fn]) -> prompt | nil, err; with fn, fn's results. */
static int l_get(lua_State *L) {
    basalt_prompts_client *client = client_of(L);
    const char *slug = check_slug(L, 1);
    int fn = 0, opts = 0;
    if (lua_type(L, 2) == LUA_TFUNCTION) {
        fn = 2;
    } else {
        opts = check_opts(L, 2);
        if (!lua_isnoneornil(L, 3)) {
            luaL_checktype(L, 3, LUA_TFUNCTION);
            fn = 3;
        }
    }
    if (fn == 0) lua_settop(L, 2);
    const char *version = opt_string(L, opts, 2, "version");
    const char *tag = opt_string(L, opts, 2, "tag");
    bool no_cache = false;
    int vars_idx = 0;
    if (opts) {
        int t = lua_getfield(L, opts, "cache");
        if (t != LUA_TNIL && t != LUA_TBOOLEAN) luaL_argerror(L, 2, "'cache' must be a boolean");
        no_cache = t == LUA_TBOOLEAN && !lua_toboolean(L, -1);
        lua_pop(L, 1);
        t = lua_getfield(L, opts, "variables");
        if (t != LUA_TNIL && t != LUA_TTABLE)
            luaL_argerror(
                L, 2,
                lua_pushfstring(L, "'variables' must be a table, got %s", luaL_typename(L, -1)));
        if (t == LUA_TTABLE)
            vars_idx = lua_gettop(L);
        else
            lua_pop(L, 1);
    }
    basalt_value vars = {.type = BASALT_VAL_NONE};
    basalt_buf vars_json = {0};
    bool has_vars = vars_idx && table_nonempty(L, vars_idx);
    basalt_ctx *cur = lb_flow_get(L)->cur;
    if (has_vars) {
        push_variables(L, vars_idx, &vars);
        /* The JSON form is for spans only: a block or a trace needs it. */
        if (fn || basalt_ctx_in_trace(cur)) lb_json_append(L, vars_idx, &vars_json);
    }
    basalt_prompt_get_opts o = {.slug = slug,
                                .version = version,
                                .tag = tag,
                                .no_cache = no_cache,
                                .variables = has_vars ? &vars : NULL,
                                .variables_json =
                                    vars_json.len ? basalt_buf_cstr(&vars_json) : NULL,
                                .parent = cur};
    basalt_prompt_result *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    luaL_setmetatable(L, LB_PROMPT_RESULT_MT);
    basalt_prompt_error err;
    bool ok = basalt_prompts_get(client, &o, r, &err); /* no Lua runs inside: nothing unwinds */
    lb_log_drain(L);
    if (!ok) {
        basalt_buf_free(&vars_json);
        return push_error(L, &err);
    }
    push_prompt(L, r, vars_idx);
    int prompt_idx = lua_gettop(L);
    if (fn == 0) {
        basalt_buf_free(&vars_json);
        basalt_prompt_result_free(r);
        return 1;
    }
    /* Block form: every span opened inside carries the prompt (Decisions 11, 17). */
    const basalt_prompt *p = r->prompt;
    basalt_prompt_attrs attrs = {.slug = p->slug,
                                 .version = p->version,
                                 .tag = p->tag,
                                 .provider = p->model.provider,
                                 .model = p->model.model,
                                 .variables_json = vars_json.len ? vars_json.data : NULL,
                                 .from_cache = r->from_cache};
    basalt_ctx *ctx = basalt_ctx_with_prompt(lb_flow_get(L)->cur, &attrs);
    basalt_buf_free(&vars_json);
    basalt_prompt_result_free(r);
    if (ctx == NULL) return luaL_error(L, "basalt.prompts.get: out of memory");
    lua_pushvalue(L, fn);
    lua_pushvalue(L, prompt_idx);
    return lb_run_in_context(L, ctx, lua_gettop(L) - 1, 1);
}

/* ---- prompt:compile ------------------------------------------------------------------------ */

static bool render_field(lua_State *L, int self, const char *raw_field, const basalt_value *vars,
                         basalt_buf *out, basalt_prompt_error *err) {
    lua_getfield(L, self, raw_field);
    size_t len = 0;
    const char *src = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : "";
    bool ok = basalt_template_render_text(src, len, vars, out, err);
    lua_pop(L, 1);
    return ok;
}

static int l_compile(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    basalt_value vars = {.type = BASALT_VAL_NONE};
    if (lua_istable(L, 2)) push_variables(L, 2, &vars);
    basalt_buf text = {0}, sys = {0};
    basalt_prompt_error err;
    bool ok = render_field(L, 1, "raw_text", &vars, &text, &err) &&
              render_field(L, 1, "raw_system_text", &vars, &sys, &err);
    if (!ok) {
        basalt_buf_free(&text);
        basalt_buf_free(&sys);
        return push_error(L, &err);
    }
    /* The strings go to Lua before anything else can raise. */
    lua_pushlstring(L, text.data ? text.data : "", text.len);
    lua_pushlstring(L, sys.data ? sys.data : "", sys.len);
    basalt_buf_free(&text);
    basalt_buf_free(&sys);
    int t = lua_gettop(L) - 1;
    lua_newtable(L); /* a new prompt: the same fields, re-rendered */
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    lua_pushvalue(L, t);
    lua_setfield(L, -2, "text");
    lua_pushvalue(L, t + 1);
    lua_setfield(L, -2, "system_text");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "variables");
    luaL_setmetatable(L, LB_PROMPT_MT);
    return 1;
}

static int l_prompt_tostring(lua_State *L) {
    lua_getfield(L, 1, "slug");
    lua_getfield(L, 1, "version");
    lua_pushfstring(L, "basalt.Prompt(%s@%s)", luaL_optstring(L, -2, "?"),
                    luaL_optstring(L, -1, "?"));
    return 1;
}

/* ---- describe and list ---------------------------------------------------------------------- */

static int push_json_result(lua_State *L, basalt_buf *out, bool ok,
                            const basalt_prompt_error *err) {
    lb_log_drain(L);
    if (!ok) {
        basalt_buf_free(out);
        return push_error(L, err);
    }
    cJSON *v = cJSON_ParseWithLength(out->data, out->len);
    basalt_buf_free(out);
    if (v == NULL) {
        basalt_prompt_error e = {.code = BASALT_PERR_INVALID_JSON};
        snprintf(e.message, sizeof e.message, "Invalid JSON response");
        return push_error(L, &e);
    }
    push_json_value(L, v, 0);
    cJSON_Delete(v);
    return 1;
}

static int l_describe(lua_State *L) {
    basalt_prompts_client *client = client_of(L);
    const char *slug = check_slug(L, 1);
    int opts = check_opts(L, 2);
    lua_settop(L, 2);
    const char *version = opt_string(L, opts, 2, "version");
    const char *tag = opt_string(L, opts, 2, "tag");
    basalt_buf out = {0};
    basalt_prompt_error err;
    bool ok = basalt_prompts_describe(client, slug, version, tag, lb_flow_get(L)->cur, &out, &err);
    lb_log_drain(L);
    return push_json_result(L, &out, ok, &err);
}

static int l_list(lua_State *L) {
    basalt_prompts_client *client = client_of(L);
    int opts = check_opts(L, 1);
    lua_settop(L, 1);
    const char *feature_slug = opt_string(L, opts, 1, "feature_slug");
    basalt_buf out = {0};
    basalt_prompt_error err;
    bool ok = basalt_prompts_list(client, feature_slug, lb_flow_get(L)->cur, &out, &err);
    lb_log_drain(L);
    return push_json_result(L, &out, ok, &err);
}

/* ---- registration ------------------------------------------------------------------------- */

void lb_open_prompts(lua_State *L) {
    luaL_newmetatable(L, LB_PROMPT_MT);
    lua_newtable(L);
    lua_pushcfunction(L, l_compile);
    lua_setfield(L, -2, "compile");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_prompt_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, LB_PROMPT_MT);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);

    luaL_newmetatable(L, LB_PROMPT_RESULT_MT);
    lua_pushcfunction(L, result_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_createtable(L, 0, 3); /* basalt.prompts */
    lb_client *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->c = NULL; /* harmless until the client exists */
    if (luaL_newmetatable(L, LB_PROMPTS_CLIENT_MT)) {
        lua_pushcfunction(L, client_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    u->c = basalt_prompts_client_new(NULL);
    if (u->c == NULL) luaL_error(L, "basalt.prompts: out of memory");
    static const luaL_Reg fns[] = {
        {"get", l_get}, {"describe", l_describe}, {"list", l_list}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 1); /* upvalue: the client */
    lua_setfield(L, -2, "prompts");
}
