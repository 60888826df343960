/* Lenient parsing of Basalt API prompt responses (section 14.2): wrong types
 * fall back to defaults instead of failing, so an API that adds or changes a
 * field never breaks a running application. cJSON parses; prompts are packed
 * into one immutable, reference-counted block shared with the caches. */
#include "basalt/prompts.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reference count sits before the public struct; strings follow it. */
typedef struct prompt_block {
    _Atomic int rc;
    basalt_prompt pub;
    _Alignas(8) char data[];
} prompt_block;

static void perr(basalt_prompt_error *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void perr(basalt_prompt_error *err, const char *code, const char *fmt, ...) {
    if (err == NULL) return;
    memset(err, 0, sizeof *err);
    snprintf(err->code, sizeof err->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static size_t slen(const char *s) {
    return s ? strlen(s) + 1 : 0;
}

/* Copies s into the block at *w; NULL stays NULL. */
static const char *pack(char **w, const char *s) {
    if (s == NULL) return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*w, s, n);
    const char *r = *w;
    *w += n;
    return r;
}

basalt_prompt *basalt_prompt_new(const basalt_prompt *t) {
    const basalt_prompt_model *m = &t->model;
    const char *def_empty = "";
    const char *slug = t->slug ? t->slug : def_empty;
    const char *version = t->version ? t->version : def_empty;
    const char *text = t->text ? t->text : def_empty;
    const char *sys = t->system_text ? t->system_text : def_empty;
    const char *provider = m->provider ? m->provider : def_empty;
    const char *model = m->model ? m->model : def_empty;
    const char *mversion = m->version ? m->version : def_empty;
    const char *rf = m->response_format ? m->response_format : "text";
    const char *tools = m->tools_json ? m->tools_json : "[]";
    size_t n = slen(slug) + slen(version) + slen(t->tag) + slen(text) + slen(sys) + slen(provider) +
               slen(model) + slen(mversion) + slen(rf) + slen(m->json_object_json) + slen(tools) +
               slen(m->tool_choice_json);
    prompt_block *b = malloc(sizeof *b + n);
    if (b == NULL) return NULL;
    atomic_init(&b->rc, 1);
    b->pub = *t;
    char *w = b->data;
    basalt_prompt *p = &b->pub;
    p->slug = pack(&w, slug);
    p->version = pack(&w, version);
    p->tag = pack(&w, t->tag);
    p->text = pack(&w, text);
    p->system_text = pack(&w, sys);
    p->model.provider = pack(&w, provider);
    p->model.model = pack(&w, model);
    p->model.version = pack(&w, mversion);
    p->model.response_format = pack(&w, rf);
    p->model.json_object_json = pack(&w, m->json_object_json);
    p->model.tools_json = pack(&w, tools);
    p->model.tool_choice_json = pack(&w, m->tool_choice_json);
    return p;
}

static prompt_block *block_of(const basalt_prompt *p) {
    return (prompt_block *)(void *)((char *)(uintptr_t)p - offsetof(prompt_block, pub));
}

const basalt_prompt *basalt_prompt_retain(const basalt_prompt *p) {
    if (p) atomic_fetch_add_explicit(&block_of(p)->rc, 1, memory_order_relaxed);
    return p;
}

void basalt_prompt_release(const basalt_prompt *p) {
    if (p == NULL) return;
    prompt_block *b = block_of(p);
    if (atomic_fetch_sub_explicit(&b->rc, 1, memory_order_acq_rel) == 1) free(b);
}

/* ---- lenient field access ------------------------------------------------------------ */

static const char *str_field(const cJSON *o, const char *k, const char *def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : def;
}

static bool num_field(const cJSON *o, const char *k, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return false;
    *out = v->valuedouble;
    return true;
}

/* JSON text of a field of the wanted kind (malloc'd), else NULL. */
static char *json_field(const cJSON *v, bool want_object, bool want_array) {
    if (v == NULL || cJSON_IsNull(v)) return NULL;
    if (want_object && !cJSON_IsObject(v)) return NULL;
    if (want_array && !cJSON_IsArray(v)) return NULL;
    return cJSON_PrintUnformatted(v);
}

/* Parses a body; distinguishes empty, not JSON, and JSON that is not an object. */
static cJSON *parse_body(const char *body, size_t len, const char *what, basalt_prompt_error *err) {
    if (body == NULL) len = 0;
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i == len) {
        perr(err, BASALT_PERR_INVALID_JSON, "Empty response from %s API", what);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (root == NULL) {
        perr(err, BASALT_PERR_INVALID_JSON, "Invalid JSON response");
        return NULL;
    }
    return root;
}

basalt_prompt *basalt_prompt_parse(const char *body, size_t len, const char *requested_slug,
                                   const char *requested_tag, basalt_prompt_error *err) {
    if (err) memset(err, 0, sizeof *err);
    cJSON *root = parse_body(body, len, "get prompt", err);
    if (root == NULL) return NULL;
    const cJSON *po = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!cJSON_IsObject(po)) {
        cJSON_Delete(root);
        perr(err, BASALT_PERR_INVALID_JSON, "Invalid prompt data in get prompt response");
        return NULL;
    }
    basalt_prompt t;
    memset(&t, 0, sizeof t);
    t.slug = str_field(po, "slug", "");
    if (t.slug[0] == '\0' && requested_slug) t.slug = requested_slug;
    t.tag = str_field(po, "tag", NULL);
    if ((t.tag == NULL || t.tag[0] == '\0') && requested_tag) t.tag = requested_tag;
    t.text = str_field(po, "text", "");
    t.system_text = str_field(po, "systemText", "");
    t.version = str_field(po, "version", "");
    char *json_object = NULL, *tools = NULL, *tool_choice = NULL;
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(po, "model");
    basalt_prompt_model *m = &t.model;
    m->response_format = "text";
    if (cJSON_IsObject(mo)) {
        m->provider = str_field(mo, "provider", "");
        m->model = str_field(mo, "model", "");
        m->version = str_field(mo, "version", "");
        const cJSON *pa = cJSON_GetObjectItemCaseSensitive(mo, "parameters");
        if (cJSON_IsObject(pa)) {
            double d;
            if (num_field(pa, "temperature", &d)) m->temperature = d;
            if (num_field(pa, "maxLength", &d)) m->max_length = (int64_t)d;
            m->response_format = str_field(pa, "responseFormat", "text");
            m->has_top_k = num_field(pa, "topK", &m->top_k);
            m->has_top_p = num_field(pa, "topP", &m->top_p);
            m->has_frequency_penalty = num_field(pa, "frequencyPenalty", &m->frequency_penalty);
            m->has_presence_penalty = num_field(pa, "presencePenalty", &m->presence_penalty);
            json_object =
                json_field(cJSON_GetObjectItemCaseSensitive(pa, "jsonObject"), true, false);
            /* tools: {tools: [...], toolChoice: ...}; a bare list is accepted too. */
            const cJSON *to = cJSON_GetObjectItemCaseSensitive(pa, "tools");
            if (cJSON_IsObject(to)) {
                tools = json_field(cJSON_GetObjectItemCaseSensitive(to, "tools"), false, true);
                tool_choice =
                    json_field(cJSON_GetObjectItemCaseSensitive(to, "toolChoice"), false, false);
            } else if (cJSON_IsArray(to)) {
                tools = json_field(to, false, true);
                tool_choice =
                    json_field(cJSON_GetObjectItemCaseSensitive(pa, "toolChoice"), false, false);
            }
        }
    }
    m->json_object_json = json_object;
    m->tools_json = tools;
    m->tool_choice_json = tool_choice;
    basalt_prompt *p = basalt_prompt_new(&t);
    cJSON_free(json_object);
    cJSON_free(tools);
    cJSON_free(tool_choice);
    cJSON_Delete(root);
    if (p == NULL) perr(err, BASALT_PERR_INVALID_JSON, "out of memory");
    return p;
}

/* ---- describe and list ------------------------------------------------------------------ */

static void add_str(cJSON *dst, const cJSON *src, const char *from, const char *to) {
    cJSON_AddStringToObject(dst, to, str_field(src, from, ""));
}

static void add_list(cJSON *dst, const cJSON *src, const char *from, const char *to) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, from);
    cJSON *copy = cJSON_IsArray(v) ? cJSON_Duplicate(v, true) : cJSON_CreateArray();
    if (copy) cJSON_AddItemToObject(dst, to, copy);
}

/* One describe/list item with the lua-api.md keys. */
static cJSON *describe_item(const cJSON *src, bool with_variables) {
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) return NULL;
    add_str(o, src, "slug", "slug");
    add_str(o, src, "status", "status");
    add_str(o, src, "name", "name");
    add_str(o, src, "description", "description");
    add_list(o, src, "availableVersions", "available_versions");
    add_list(o, src, "availableTags", "available_tags");
    if (with_variables) add_list(o, src, "variables", "variables");
    return o;
}

static bool print_into(cJSON *v, basalt_buf *out, basalt_prompt_error *err) {
    char *text = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    bool ok = text && basalt_buf_puts(out, text) && basalt_buf_cstr(out);
    cJSON_free(text);
    if (!ok) perr(err, BASALT_PERR_INVALID_JSON, "out of memory");
    return ok;
}

bool basalt_prompt_parse_describe(const char *body, size_t len, basalt_buf *out,
                                  basalt_prompt_error *err) {
    if (err) memset(err, 0, sizeof *err);
    cJSON *root = parse_body(body, len, "describe prompt", err);
    if (root == NULL) return false;
    const cJSON *po = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!cJSON_IsObject(po)) {
        cJSON_Delete(root);
        perr(err, BASALT_PERR_INVALID_JSON, "Invalid prompt data in describe response");
        return false;
    }
    cJSON *o = describe_item(po, true);
    cJSON_Delete(root);
    return print_into(o, out, err);
}

bool basalt_prompt_parse_list(const char *body, size_t len, basalt_buf *out,
                              basalt_prompt_error *err) {
    if (err) memset(err, 0, sizeof *err);
    cJSON *arr = cJSON_CreateArray();
    size_t i = 0;
    while (body && i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r'))
        i++;
    if (body == NULL || i == len) return print_into(arr, out, err); /* empty body: [] */
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (root == NULL) {
        cJSON_Delete(arr);
        perr(err, BASALT_PERR_INVALID_JSON, "Invalid JSON response");
        return false;
    }
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "prompts");
    const cJSON *it;
    if (cJSON_IsArray(list)) {
        cJSON_ArrayForEach(it, list) {
            if (!cJSON_IsObject(it)) continue;
            cJSON *o = describe_item(it, false);
            if (o) cJSON_AddItemToArray(arr, o);
        }
    }
    cJSON_Delete(root);
    return print_into(arr, out, err);
}
