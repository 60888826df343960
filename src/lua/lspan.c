/* Span handles: every method of lua-api.md "Span handle". Methods return the
 * handle so calls chain; all are no-ops on an ended span or a no-op handle. */
#include "lbasalt.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static lb_span *check_span(lua_State *L) {
    lb_span *h = lua_touserdata(L, 1);
    /* Only lb_push_span makes full userdata of this size with this mark (a
     * script cannot write userdata memory), so no metatable lookup is needed. */
    if (h == NULL || lua_rawlen(L, 1) != sizeof *h || h->magic != lb_mark(LB_MARK_SPAN))
        luaL_typeerror(L, 1, LB_SPAN_MT);
    lb_span_of(h); /* a block's span gone with its coroutine: h->span is NULL now */
    return h;
}

/* The handle metatables, under light keys: faster than by name. A block's
 * handle owns nothing, so its metatable has no finalizer. */
static const char SPAN_MT_KEY = 's';
static const char BLOCK_MT_KEY = 'b';

/* Fills the new userdata h (on top of the stack) and sets its metatable. */
static lb_span *init_handle(lua_State *L, lb_span *h, lb_refs *refs, basalt_span *span,
                            uint32_t ref, const void *mt_key) {
    h->span = span;
    h->flow = NULL;
    h->refs = refs;
    h->span_ref = ref;
    h->prev_ref = 0;
    h->gen = ref ? refs->slot[ref].gen : 0;
    h->block = mt_key == &BLOCK_MT_KEY;
    h->kind = (uint8_t)basalt_span_ids(span, h->trace_id, h->span_id);
    h->magic = lb_mark(LB_MARK_SPAN);
    lua_rawgetp(L, LUA_REGISTRYINDEX, mt_key);
    lua_setmetatable(L, -2);
    return h;
}

lb_span *lb_push_span_in(lua_State *L, lb_refs *refs, basalt_span *span) {
    uint32_t ref = span ? lb_ref_new(L, refs, LB_REF_SPAN, span) : 0;
    lb_span *h = lua_newuserdatauv(L, sizeof *h, 0); /* on failure, lua_close releases span */
    return init_handle(L, h, refs, span, ref, &SPAN_MT_KEY);
}

lb_span *lb_push_block_span(lua_State *L, lb_flow *flow, basalt_span *span) {
    lb_refs *r = flow->refs;
    uint32_t ref = lb_ref_new(L, r, LB_REF_BLOCK, span);
    lb_span *h = lua_newuserdatauv(L, sizeof *h, 0); /* on failure, lua_close ends the span */
    /* The previous context is noted twice until the block swaps it out, so
     * nothing may raise once it is noted: room first. */
    if (!r->free) lb_refs_grow(L, r);
    uint32_t prev = lb_ref_new(L, r, LB_REF_CTX, flow->cur);
    init_handle(L, h, r, span, ref, &BLOCK_MT_KEY);
    h->prev_ref = prev;
    h->flow = flow;
    return h;
}

lb_span *lb_push_span(lua_State *L, basalt_span *span) {
    return lb_push_span_in(L, lb_flow_get(L)->refs, span);
}

/* Methods return the handle so calls chain. */
static int self_ret(lua_State *L) {
    lua_settop(L, 1);
    lb_log_drain(L); /* a warning this call raised reaches the logger now */
    return 1;
}
#define RETURN_SELF return self_ret(L)

/* Semantics' texts for options of the wrong type, raised by the methods and,
 * before a span opens, by lb_check_payload_opts. */
static const char METADATA_NOT_MAP[] = "metadata must be a mapping";
static const char VARIABLES_NOT_MAP[] = "Span variables must be provided as a mapping.";

/* ---- generic writers ------------------------------------------------------------- */

/* ---- interned keys ---------------------------------------------------------------- */

/* A state's cache of interned keys (one state runs in one thread at a time,
 * so no lock), upvalue 1 of the span methods and of tracer:start_span. A
 * slot is chosen by the address of the Lua string, stable for a loop's literal
 * key. The cache's uservalue table holds each slot's Lua string, so that
 * string stays alive and no other string can take its address: the same
 * address is the same string. */
#define KEY_CACHE_BITS  8
#define KEY_CACHE_SLOTS (1 << KEY_CACHE_BITS)
struct lb_key_cache {
    lb_refs *refs; /* the state's, at hand for the functions that have the cache */
    struct {
        const char *lua; /* compared, never read */
        const basalt_key *key;
    } slot[KEY_CACHE_SLOTS];
};
static const char KEY_CACHE_KEY = 'k';

void lb_push_key_cache(lua_State *L) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &KEY_CACHE_KEY) != LUA_TNIL) return;
    lua_pop(L, 1);
    lb_refs *refs = lb_refs_lookup(L);
    lb_key_cache *c = lua_newuserdatauv(L, sizeof *c, 1);
    memset(c, 0, sizeof *c);
    c->refs = refs;
    lua_createtable(L, KEY_CACHE_SLOTS, 0);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &KEY_CACHE_KEY);
}

lb_refs *lb_key_cache_refs(const lb_key_cache *c) {
    return c->refs;
}

const basalt_key *lb_cached_key(lua_State *L, int cache_idx, lb_key_cache *c, int key_idx,
                                const char *k, size_t len, bool *exact) {
    /* Two ways per set, chosen by multiplicative hashing (string addresses
     * share their low bits): two keys a span sets together may share a set. */
    size_t i = (size_t)(((uint64_t)(uintptr_t)k * 0x9e3779b97f4a7c15ull) >> (64 - KEY_CACHE_BITS));
    i &= ~(size_t)1;
    *exact = true;
    if (c->slot[i].lua == k && c->slot[i].key) return c->slot[i].key; /* the anchored string */
    if (c->slot[i + 1].lua == k && c->slot[i + 1].key) return c->slot[i + 1].key;
    const basalt_key *key = basalt_key_intern(k, len);
    size_t klen;
    const char *text = key ? basalt_key_str(key, &klen) : NULL;
    if (text == NULL || klen != len || memcmp(text, k, len) != 0) {
        *exact = key ? false : memchr(k, '\0', len) == NULL; /* cut at a NUL or repaired */
        return key;
    }
    /* The newer entry goes first, the older one to the second way. */
    key_idx = lua_absindex(L, key_idx);
    lua_getiuservalue(L, cache_idx, 1);
    lua_rawgeti(L, -1, (lua_Integer)i + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 2);
    lua_pushvalue(L, key_idx);
    lua_rawseti(L, -2, (lua_Integer)i + 1); /* anchors k's string; the oldest goes */
    lua_pop(L, 1);
    c->slot[i + 1] = c->slot[i];
    c->slot[i].lua = k;
    c->slot[i].key = key;
    return key;
}

/* Sets key (the string at stack index key_idx, NUL-cut as a C string) to v,
 * through the key cache. */
static void set_attr(lua_State *L, basalt_span *span, int key_idx, const char *key, size_t klen,
                     basalt_value v) {
    bool exact;
    const basalt_key *k = lb_cached_key(
        L, lua_upvalueindex(1), lua_touserdata(L, lua_upvalueindex(1)), key_idx, key, klen, &exact);
    if (k) {
        basalt_span_set_attr_key(span, k, v);
        return;
    }
    if (memchr(key, '\0', klen)) klen = strlen(key); /* keys are C strings: cut at a NUL */
    basalt_span_set_attr_n(span, key, klen, v);
}

static int m_set_attribute(lua_State *L) {
    lb_span *h = check_span(L);
    size_t klen;
    const char *key = luaL_checklstring(L, 2, &klen);
    if (h->span) {
        size_t len;
        switch (lua_type(L, 3)) { /* scalars inline: the usual case */
        case LUA_TNONE:
        case LUA_TNIL:
            break;
        case LUA_TSTRING: {
            const char *s = lua_tolstring(L, 3, &len);
            set_attr(L, h->span, 2, key, klen, basalt_v_strn(s, len));
            break;
        }
        case LUA_TNUMBER:
            set_attr(L, h->span, 2, key, klen,
                     lua_isinteger(L, 3) ? basalt_v_int(lua_tointeger(L, 3))
                                         : basalt_v_double(lua_tonumber(L, 3)));
            break;
        case LUA_TBOOLEAN:
            set_attr(L, h->span, 2, key, klen, basalt_v_bool(lua_toboolean(L, 3)));
            break;
        default: {
            basalt_buf scratch = {0};
            basalt_value v = lb_to_value(L, 3, &scratch, 1);
            set_attr(L, h->span, 2, key, klen, v);
            basalt_buf_free(&scratch);
        }
        }
    }
    RETURN_SELF;
}

static int m_set_attributes(lua_State *L) {
    lb_span *h = check_span(L);
    if (lua_isnoneornil(L, 2)) RETURN_SELF;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (h->span) {
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                basalt_buf scratch = {0};
                basalt_value v = lb_to_value(L, -1, &scratch, 0); /* 11.2: serialised */
                size_t klen;
                const char *key = lua_tolstring(L, -2, &klen);
                set_attr(L, h->span, -2, key, klen, v);
                basalt_buf_free(&scratch);
            }
            lua_pop(L, 1);
        }
    }
    RETURN_SELF;
}

typedef void (*payload_fn)(basalt_span *, basalt_value);

static void payload(lua_State *L, basalt_span *s, int idx, payload_fn fn) {
    if (s == NULL || lua_isnoneornil(L, idx)) return;
    basalt_buf scratch = {0};
    basalt_value v = lb_to_payload(L, idx, &scratch);
    fn(s, v);
    basalt_buf_free(&scratch);
}

static int m_set_input(lua_State *L) {
    lb_span *h = check_span(L);
    payload(L, h->span, 2, basalt_span_set_input);
    RETURN_SELF;
}

static int m_set_output(lua_State *L) {
    lb_span *h = check_span(L);
    payload(L, h->span, 2, basalt_span_set_output);
    RETURN_SELF;
}

static void set_variables(lua_State *L, basalt_span *s, int idx) {
    if (s == NULL || lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx)) luaL_error(L, "%s", VARIABLES_NOT_MAP);
    basalt_buf b = {0};
    lb_json_append(L, idx, &b);
    basalt_span_set_variables(s, basalt_buf_cstr(&b));
    basalt_buf_free(&b);
}

static int m_set_io(lua_State *L) {
    lb_span *h = check_span(L);
    /* set_io(input, output, variables) or set_io{ input =, output =, variables = } */
    if (lua_istable(L, 2) && lua_gettop(L) == 2) {
        lua_getfield(L, 2, "input");
        lua_getfield(L, 2, "output");
        lua_getfield(L, 2, "variables");
        payload(L, h->span, 3, basalt_span_set_input);
        payload(L, h->span, 4, basalt_span_set_output);
        set_variables(L, h->span, 5);
    } else {
        payload(L, h->span, 2, basalt_span_set_input);
        payload(L, h->span, 3, basalt_span_set_output);
        set_variables(L, h->span, 4);
    }
    RETURN_SELF;
}

static void metadata_into(lua_State *L, basalt_span *s, int idx) {
    if (lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx)) luaL_error(L, "%s", METADATA_NOT_MAP);
    if (s == NULL) return;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING || lua_type(L, -2) == LUA_TNUMBER) {
            lua_pushvalue(L, -2);
            const char *k = lua_tostring(L, -1); /* a converted copy, not the key itself */
            basalt_buf b = {0};
            lb_json_append(L, -2, &b);
            basalt_span_set_metadata(s, k, basalt_buf_cstr(&b));
            basalt_buf_free(&b);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
}

static int m_set_metadata(lua_State *L) {
    lb_span *h = check_span(L);
    metadata_into(L, h->span, 2);
    RETURN_SELF;
}

static int m_set_identity(lua_State *L) {
    lb_span *h = check_span(L);
    basalt_identity id;
    if (lb_parse_identity(L, 2, &id)) basalt_span_set_identity(h->span, &id);
    RETURN_SELF;
}

static int m_add_evaluators(lua_State *L) {
    lb_span *h = check_span(L);
    int top = lua_gettop(L);
    for (int i = 2; i <= top; i++) {
        int n = lb_parse_evaluators(L, i);
        for (int j = 1; j <= n; j++) {
            lua_rawgeti(L, -1, j);
            basalt_span_add_evaluator(h->span, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    RETURN_SELF;
}

static int m_set_evaluation_config(lua_State *L) {
    lb_span *h = check_span(L);
    if (!lua_istable(L, 2))
        luaL_error(L, "Evaluator config must be an EvaluationConfig or a mapping.");
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2), "sample_rate") != 0)
            luaL_error(L, "unknown evaluation config field '%s'", luaL_tolstring(L, -2, NULL));
        lua_pop(L, 1);
    }
    lua_getfield(L, 2, "sample_rate");
    if (!lua_isnil(L, -1)) {
        lua_Number r = lua_tonumber(L, -1);
        if (!lua_isnumber(L, -1) || !(r >= 0.0 && r <= 1.0))
            luaL_error(L, "sample_rate must be within [0.0, 1.0].");
    }
    lua_pop(L, 1);
    basalt_buf b = {0};
    lb_json_append(L, 2, &b);
    basalt_span_set_evaluation_config(h->span, basalt_buf_cstr(&b));
    basalt_buf_free(&b);
    RETURN_SELF;
}

static int m_set_experiment(lua_State *L) {
    lb_span *h = check_span(L);
    basalt_experiment e;
    if (lb_parse_experiment(L, 2, &e)) basalt_span_set_experiment(h->span, &e);
    RETURN_SELF;
}

static void set_prompt(lua_State *L, basalt_span *s, int idx) {
    if (s == NULL || lua_isnoneornil(L, idx)) return;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) { /* generation: a prompt text */
        size_t len;
        const char *text = lua_tolstring(L, idx, &len);
        basalt_span_set_prompt_text(s, text, len);
        return;
    }
    basalt_prompt_attrs p;
    basalt_buf vars = {0};
    if (lb_parse_prompt(L, idx, &p, &vars)) {
        basalt_span_set_prompt(s, &p);
        if (basalt_span_kind(s) == BASALT_KIND_GENERATION) {
            lua_getfield(L, idx, "text");
            if (lua_type(L, -1) == LUA_TSTRING) {
                size_t len;
                const char *text = lua_tolstring(L, -1, &len);
                basalt_span_set_prompt_text(s, text, len);
            }
            lua_pop(L, 1);
        }
    }
    basalt_buf_free(&vars);
}

static int m_set_prompt(lua_State *L) {
    lb_span *h = check_span(L);
    set_prompt(L, h->span, 2);
    RETURN_SELF;
}

/* set_completion(text): the output, plus gen_ai.output.messages on generation
 * spans; a non-string value is written as set_output writes it. */
static int m_set_completion(lua_State *L) {
    lb_span *h = check_span(L);
    if (lua_type(L, 2) == LUA_TSTRING) {
        size_t len;
        const char *text = lua_tolstring(L, 2, &len);
        basalt_span_set_completion(h->span, text, len);
    } else {
        payload(L, h->span, 2, basalt_span_set_output);
    }
    RETURN_SELF;
}

static int m_set_status(lua_State *L) {
    lb_span *h = check_span(L);
    const char *code = luaL_checkstring(L, 2);
    const char *msg = luaL_optstring(L, 3, NULL);
    basalt_status_code c = BASALT_STATUS_UNSET;
    if (strcasecmp(code, "ok") == 0)
        c = BASALT_STATUS_OK;
    else if (strcasecmp(code, "error") == 0)
        c = BASALT_STATUS_ERROR;
    else if (strcasecmp(code, "unset") != 0)
        luaL_argerror(L, 2, lua_pushfstring(L, "unknown status '%s'", code));
    basalt_span_set_status(h->span, c, msg);
    RETURN_SELF;
}

typedef struct error_args {
    basalt_span *span;
    const char *traceback;
} error_args;

/* Under lua_pcall: the error value (1) read through its metamethods
 * (__index, __tostring), which may raise. */
static int record_error_protected(lua_State *L) {
    const error_args *a = lua_touserdata(L, 2);
    basalt_span *span = a->span;
    const char *traceback = a->traceback;
    int err_idx = 1;
    const char *type = "error";
    switch (lua_type(L, err_idx)) {
    case LUA_TSTRING:
        break;
    case LUA_TTABLE:
        lua_getfield(L, err_idx, "type");
        if (lua_type(L, -1) == LUA_TSTRING) {
            type = lua_tostring(L, -1);
        } else {
            lua_getfield(L, err_idx, "code");
            type = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "table";
        }
        break;
    default:
        type = luaL_typename(L, err_idx);
        break;
    }
    const char *msg;
    if (lua_type(L, err_idx) == LUA_TTABLE && !luaL_getmetafield(L, err_idx, "__tostring")) {
        lua_getfield(L, err_idx, "message");
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            basalt_buf b = {0};
            lb_json_append(L, err_idx, &b);
            lua_pushlstring(L, b.data, b.len);
            basalt_buf_free(&b);
        }
        msg = lua_tostring(L, -1);
    } else {
        if (lua_type(L, err_idx) == LUA_TTABLE) lua_pop(L, 1);
        msg = luaL_tolstring(L, err_idx, NULL);
    }
    basalt_span_record_exception(span, type, msg, traceback);
    return 0;
}

void lb_record_error(lua_State *L, int err_idx, basalt_span *span, const char *traceback) {
    err_idx = lua_absindex(L, err_idx);
    int top = lua_gettop(L);
    error_args a = {span, traceback};
    lua_pushcfunction(L, record_error_protected);
    lua_pushvalue(L, err_idx);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        /* A failing metamethod of the error value is a failing user callback:
         * the span still gets its exception, the block's error goes on. */
        basalt_log_once(BASALT_LOG_WARN,
                        "an error value's metamethods raised while it was recorded on a span");
        basalt_span_record_exception(span, luaL_typename(L, err_idx),
                                     "(an error value whose metamethods raised)", traceback);
    }
    lua_settop(L, top);
}

static int m_record_error(lua_State *L) {
    lb_span *h = check_span(L);
    luaL_checkany(L, 2);
    if (h->span) {
        int top = lua_gettop(L);
        lb_traceback(L, L, NULL, 1);
        lb_record_error(L, 2, h->span, lua_tostring(L, -1));
        lua_settop(L, top);
    }
    RETURN_SELF;
}

/* Event attributes: a stack array for the usual few, the heap beyond. */
#define EVENT_ATTRS_INLINE 32

static int m_add_event(lua_State *L) {
    lb_span *h = check_span(L);
    const char *name = luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    if (h->span == NULL) RETURN_SELF;
    size_t cap = 0;
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            cap += lua_type(L, -2) == LUA_TSTRING;
            lua_pop(L, 1);
        }
    }
    basalt_kv kv_inline[EVENT_ATTRS_INLINE];
    basalt_buf scratch_inline[EVENT_ATTRS_INLINE];
    basalt_kv *kv = kv_inline;
    basalt_buf *scratch = scratch_inline;
    if (cap > EVENT_ATTRS_INLINE) {
        kv = malloc(sizeof *kv * cap);
        scratch = calloc(cap, sizeof *scratch);
        if (kv == NULL || scratch == NULL) { /* keep what fits rather than fail */
            free(kv);
            free(scratch);
            kv = kv_inline;
            scratch = scratch_inline;
            cap = EVENT_ATTRS_INLINE;
        }
    }
    if (scratch == scratch_inline) memset(scratch_inline, 0, sizeof scratch_inline);
    size_t n = 0;
    if (cap) {
        lua_pushnil(L);
        while (n < cap && lua_next(L, 3)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                kv[n].key = lua_tostring(L, -2);
                kv[n].value = lb_to_value(L, -1, &scratch[n], 1);
                n++; /* key and value stay alive: the table holds them */
            }
            lua_pop(L, 1);
        }
    }
    basalt_span_add_event(h->span, name, kv, n);
    for (size_t i = 0; i < n; i++)
        basalt_buf_free(&scratch[i]);
    if (kv != kv_inline) {
        free(kv);
        free(scratch);
    }
    RETURN_SELF;
}

/* ---- kind helpers ------------------------------------------------------------------- */

static void attr_string(lua_State *L, const char *key) {
    lb_span *h = check_span(L);
    if (h->span && !lua_isnoneornil(L, 2))
        basalt_span_set_attr(h->span, key, basalt_v_str(luaL_checkstring(L, 2)));
}

static void attr_number(lua_State *L, const char *key, int as_int) {
    lb_span *h = check_span(L);
    if (h->span == NULL || lua_isnoneornil(L, 2)) return;
    lua_Number n = luaL_checknumber(L, 2);
    if (as_int)
        basalt_span_set_attr(h->span, key,
                             basalt_v_int(lua_isinteger(L, 2) ? lua_tointeger(L, 2) : (int64_t)n));
    else
        basalt_span_set_attr(h->span, key, basalt_v_double((double)n));
}

#define STRING_METHOD(fname, key)                                                                  \
    static int fname(lua_State *L) {                                                               \
        attr_string(L, key);                                                                       \
        RETURN_SELF;                                                                               \
    }
#define NUMBER_METHOD(fname, key, as_int)                                                          \
    static int fname(lua_State *L) {                                                               \
        attr_number(L, key, as_int);                                                               \
        RETURN_SELF;                                                                               \
    }

STRING_METHOD(m_set_model, BASALT_ATTR_GENAI_REQUEST_MODEL)
STRING_METHOD(m_set_response_model, BASALT_ATTR_GENAI_RESPONSE_MODEL)
STRING_METHOD(m_set_operation_name, BASALT_ATTR_GENAI_OPERATION_NAME)
STRING_METHOD(m_set_provider, BASALT_ATTR_GENAI_PROVIDER_NAME)
STRING_METHOD(m_set_response_id, BASALT_ATTR_GENAI_RESPONSE_ID)
STRING_METHOD(m_set_tool_name, BASALT_ATTR_TOOL_NAME)
STRING_METHOD(m_set_function_name, BASALT_ATTR_FUNCTION_NAME)
STRING_METHOD(m_set_stage, BASALT_ATTR_FUNCTION_STAGE)
STRING_METHOD(m_set_event_type, BASALT_ATTR_EVENT_TYPE)
NUMBER_METHOD(m_set_temperature, BASALT_ATTR_GENAI_TEMPERATURE, 0)
NUMBER_METHOD(m_set_top_p, BASALT_ATTR_GENAI_TOP_P, 0)
NUMBER_METHOD(m_set_max_tokens, BASALT_ATTR_GENAI_MAX_TOKENS, 1)
NUMBER_METHOD(m_set_latency, BASALT_ATTR_GENAI_LATENCY, 0)
NUMBER_METHOD(m_set_results_count, BASALT_ATTR_RETRIEVAL_RESULTS_COUNT, 1)

static int m_set_top_k(lua_State *L) {
    lb_span *h = check_span(L);
    if (h->span && basalt_span_kind(h->span) == BASALT_KIND_RETRIEVAL)
        attr_number(L, BASALT_ATTR_RETRIEVAL_TOP_K, 1);
    else
        attr_number(L, BASALT_ATTR_GENAI_TOP_K, 0);
    RETURN_SELF;
}

static int m_set_tokens(lua_State *L) {
    lb_span *h = check_span(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *keys[2] = {"input", "output"};
    const char *attrs[2] = {BASALT_ATTR_GENAI_INPUT_TOKENS, BASALT_ATTR_GENAI_OUTPUT_TOKENS};
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, 2, keys[i]);
        if (h->span && lua_isnumber(L, -1))
            basalt_span_set_attr(h->span, attrs[i],
                                 basalt_v_int(lua_isinteger(L, -1) ? lua_tointeger(L, -1)
                                                                   : (int64_t)lua_tonumber(L, -1)));
        lua_pop(L, 1);
    }
    RETURN_SELF;
}

static int m_set_finish_reasons(lua_State *L) {
    lb_span *h = check_span(L);
    if (h->span && !lua_isnoneornil(L, 2)) {
        basalt_buf scratch = {0};
        if (lua_type(L, 2) == LUA_TSTRING) { /* a single reason: a one-item array */
            lua_createtable(L, 1, 0);
            lua_pushvalue(L, 2);
            lua_rawseti(L, -2, 1);
            lua_replace(L, 2);
        }
        basalt_value v = lb_to_value(L, 2, &scratch, 1);
        basalt_span_set_attr(h->span, BASALT_ATTR_GENAI_FINISH_REASONS, v);
        basalt_buf_free(&scratch);
    }
    RETURN_SELF;
}

static int m_set_query(lua_State *L) {
    lb_span *h = check_span(L);
    if (h->span && !lua_isnoneornil(L, 2)) {
        payload(L, h->span, 2, basalt_span_set_input);
        basalt_span_set_attr(h->span, BASALT_ATTR_RETRIEVAL_QUERY,
                             basalt_v_str(luaL_tolstring(L, 2, NULL)));
    }
    RETURN_SELF;
}

static int m_add_metric(lua_State *L) {
    lb_span *h = check_span(L);
    const char *k = luaL_checkstring(L, 2);
    if (h->span && !lua_isnoneornil(L, 3)) {
        lua_pushfstring(L, "%s%s", BASALT_ATTR_FUNCTION_METRIC_PREFIX, k);
        basalt_buf scratch = {0};
        basalt_value v = lb_to_value(L, 3, &scratch, 1);
        basalt_span_set_attr(h->span, lua_tostring(L, -1), v);
        basalt_buf_free(&scratch);
    }
    RETURN_SELF;
}

static int m_set_payload(lua_State *L) {
    lb_span *h = check_span(L);
    payload(L, h->span, 2, basalt_span_set_event_payload);
    RETURN_SELF;
}

/* ---- reading ---------------------------------------------------------------------- */

static int m_trace_id(lua_State *L) {
    lb_span *h = check_span(L);
    char hex[33];
    basalt_hex_encode(h->trace_id, 16, hex);
    lua_pushstring(L, hex);
    return 1;
}

static int m_span_id(lua_State *L) {
    lb_span *h = check_span(L);
    char hex[17];
    basalt_hex_encode(h->span_id, 8, hex);
    lua_pushstring(L, hex);
    return 1;
}

static int m_is_recording(lua_State *L) {
    lb_span *h = check_span(L);
    lua_pushboolean(L, basalt_span_is_recording(h->span));
    return 1;
}

static bool has_ids(const lb_span *h) {
    static const uint8_t zero[16];
    return memcmp(h->trace_id, zero, 16) != 0;
}

/* span:context(): a context with this span current (parent for other spans).
 * Once a block ended its span is gone: the context then has its ids as the
 * parent, like an extracted one, without the values the span propagated. */
static int m_context(lua_State *L) {
    lb_span *h = check_span(L);
    basalt_ctx *ctx = h->span      ? basalt_span_context(h->span)
                      : has_ids(h) ? basalt_ctx_remote(h->trace_id, h->span_id, 0x01, NULL, NULL)
                                   : NULL;
    lb_push_context_in(L, h->refs, ctx);
    return 1;
}

static int m_end(lua_State *L) {
    lb_span *h = check_span(L);
    if (h->span && !h->prev_ref) basalt_span_end(h->span, 0); /* blocks end themselves */
    RETURN_SELF;
}

/* Only handles that own their span have this finalizer (block handles do not). */
static int span_gc(lua_State *L) {
    lb_span *h = lua_touserdata(L, 1);
    basalt_span_release(h->span);
    h->span = NULL;
    if (h->span_ref) lb_ref_free(h->refs, h->span_ref);
    h->span_ref = 0;
    return 0;
}

static int span_tostring(lua_State *L) {
    lb_span *h = check_span(L);
    if (!has_ids(h)) {
        lua_pushliteral(L, "basalt.Span(no-op)");
        return 1;
    }
    char hex[17];
    basalt_hex_encode(h->span_id, 8, hex);
    lua_pushfstring(L, "basalt.Span(%s %s)", basalt_kind_name((basalt_kind)h->kind), hex);
    return 1;
}

static bool absent_or_table(lua_State *L, int idx) {
    return idx == 0 || lua_isnoneornil(L, idx) || lua_istable(L, idx);
}

void lb_check_payload_opts(lua_State *L, int metadata, int variables, int prompt,
                           const char *fname) {
    if (!absent_or_table(L, metadata)) luaL_error(L, "%s", METADATA_NOT_MAP);
    if (!absent_or_table(L, variables)) luaL_error(L, "%s", VARIABLES_NOT_MAP);
    if (!absent_or_table(L, prompt))
        lb_argerror(L, 1, fname, "prompt must be a prompt table (from basalt.prompts.get)");
}

int lb_read_prompt_opt(lua_State *L, int prompt, basalt_prompt_attrs *out) {
    if (prompt == 0) return 0;
    basalt_buf vars = {0};
    int ok = lb_parse_prompt(L, prompt, out, &vars);
    if (ok && out->variables_json) { /* into a Lua string: nothing on the C heap */
        lua_pushlstring(L, vars.data, vars.len);
        out->variables_json = lua_tostring(L, -1);
    }
    basalt_buf_free(&vars);
    return ok;
}

void lb_apply_payload_opts(lua_State *L, int metadata, int input, int variables,
                           const basalt_prompt_attrs *prompt, basalt_span *span) {
    if (span == NULL || (!metadata && !input && !variables && !prompt)) return;
    int top = lua_gettop(L);
    if (metadata) metadata_into(L, span, metadata);
    if (input) payload(L, span, input, basalt_span_set_input);
    if (variables) set_variables(L, span, variables);
    if (prompt) basalt_span_set_prompt(span, prompt);
    lua_settop(L, top);
}

void lb_open_span(lua_State *L) {
    static const luaL_Reg methods[] = {{"set_attribute", m_set_attribute},
                                       {"set_attributes", m_set_attributes},
                                       {"set_input", m_set_input},
                                       {"set_output", m_set_output},
                                       {"set_io", m_set_io},
                                       {"set_metadata", m_set_metadata},
                                       {"set_identity", m_set_identity},
                                       {"add_evaluator", m_add_evaluators},
                                       {"add_evaluators", m_add_evaluators},
                                       {"set_evaluation_config", m_set_evaluation_config},
                                       {"set_experiment", m_set_experiment},
                                       {"set_prompt", m_set_prompt},
                                       {"set_completion", m_set_completion},
                                       {"set_status", m_set_status},
                                       {"record_error", m_record_error},
                                       {"add_event", m_add_event},
                                       {"set_model", m_set_model},
                                       {"set_response_model", m_set_response_model},
                                       {"set_operation_name", m_set_operation_name},
                                       {"set_provider", m_set_provider},
                                       {"set_tokens", m_set_tokens},
                                       {"set_temperature", m_set_temperature},
                                       {"set_top_p", m_set_top_p},
                                       {"set_top_k", m_set_top_k},
                                       {"set_max_tokens", m_set_max_tokens},
                                       {"set_response_id", m_set_response_id},
                                       {"set_finish_reasons", m_set_finish_reasons},
                                       {"set_latency", m_set_latency},
                                       {"set_query", m_set_query},
                                       {"set_results_count", m_set_results_count},
                                       {"set_tool_name", m_set_tool_name},
                                       {"set_function_name", m_set_function_name},
                                       {"set_stage", m_set_stage},
                                       {"add_metric", m_add_metric},
                                       {"set_event_type", m_set_event_type},
                                       {"set_payload", m_set_payload},
                                       {"trace_id", m_trace_id},
                                       {"span_id", m_span_id},
                                       {"is_recording", m_is_recording},
                                       {"finish", m_end},
                                       {"context", m_context},
                                       {NULL, NULL}};
    luaL_newmetatable(L, LB_SPAN_MT);
    lua_newtable(L); /* methods */
    lb_push_key_cache(L);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, span_tostring, 1);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, span_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, LB_SPAN_MT);
    lua_setfield(L, -2, "__name");
    /* The block handles' metatable: the same without __gc. */
    lua_createtable(L, 0, 3);
    for (int i = 0; i < 3; i++) {
        static const char *const shared[] = {"__index", "__tostring", "__name"};
        lua_getfield(L, -2, shared[i]);
        lua_setfield(L, -2, shared[i]);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &BLOCK_MT_KEY);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SPAN_MT_KEY);
}
