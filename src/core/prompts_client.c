/* The Basalt prompts REST client (sections 14-16 with Decisions 11, 12, 17):
 * requests with retries and status mapping, the caching and fallback flow, and
 * the spans that trace it. Transport is basalt/http.h; parsing prompt_parse.c;
 * caches prompt_cache.c; rendering prompt_template.c.
 *
 * The API key goes into one header line and nowhere else: not into URLs, logs,
 * error messages (any echo of it in a server's error text is redacted) or spans. */
#include "basalt/attrs.h"
#include "basalt/http.h"
#include "basalt/otlp_json.h"
#include "basalt/prompts.h"
#include "basalt/runtime.h"
#include "basalt/span.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX              4
#define DEFAULT_ATTEMPTS      3
#define DEFAULT_RETRY_BASE_MS 500

struct basalt_prompts_client {
    char *api_key, *api_url; /* overrides, NULL = runtime settings */
    uint32_t timeout_ms;
    double cache_ttl_s, fallback_ttl_s;
    uint32_t retry_base_ms;
    unsigned max_attempts;
    basalt_prompt_cache *cache, *fallback;
    pthread_mutex_t lock; /* guards pool and fingerprint: callers may be several threads */
    basalt_http_client *pool[POOL_MAX];
    size_t npool;
    uint64_t fingerprint; /* (url, key) the caches were filled from */
};

/* The effective settings of one call. */
typedef struct settings {
    char key[512];
    char url[512];
    uint32_t timeout_ms;
    double ttl_s, fallback_ttl_s;
} settings;

/* One API call: what the spans need to know about it. */
typedef struct call {
    char url[1536];  /* without the query: what spans show */
    char full[3072]; /* with the query */
    bool made;       /* a request went out */
    long status;     /* 0 when no response */
    double duration_ms;
    basalt_buf body;
    char content_type[128];
} call;

static void perr(basalt_prompt_error *err, const char *code, long status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void perr(basalt_prompt_error *err, const char *code, long status, const char *fmt, ...) {
    if (err == NULL) return;
    memset(err, 0, sizeof *err);
    snprintf(err->code, sizeof err->code, "%s", code);
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

/* Replaces every occurrence of the key in s with "[redacted]" (a server may echo
 * request headers in its error text). */
static void redact(char *s, size_t cap, const char *key) {
    size_t kl = strlen(key);
    if (kl == 0 || strstr(s, key) == NULL) return;
    static const char mark[] = "[redacted]";
    char tmp[2 * sizeof((basalt_prompt_error *)0)->message];
    size_t n = 0;
    for (const char *p = s; *p && n + sizeof mark < sizeof tmp;) {
        if (strncmp(p, key, kl) == 0) {
            memcpy(tmp + n, mark, sizeof mark - 1);
            n += sizeof mark - 1;
            p += kl;
        } else {
            tmp[n++] = *p++;
        }
    }
    if (n >= cap) n = cap - 1;
    memcpy(s, tmp, n);
    s[n] = '\0';
}

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}

basalt_prompts_client *basalt_prompts_client_new(const basalt_prompts_client_opts *o) {
    basalt_prompts_client_opts none = {0};
    if (o == NULL) o = &none;
    basalt_prompts_client *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->api_key = dup_or_null(o->api_key);
    c->api_url = dup_or_null(o->api_url);
    c->timeout_ms = o->timeout_ms;
    c->cache_ttl_s = o->cache_ttl_s;
    c->fallback_ttl_s = o->fallback_ttl_s;
    c->retry_base_ms = o->retry_base_ms;
    if (c->retry_base_ms == 0) {
        const char *e = getenv("BASALT_API_RETRY_BASE_MS");
        long v = e && *e ? strtol(e, NULL, 10) : -1;
        c->retry_base_ms = v >= 0 ? (uint32_t)v : DEFAULT_RETRY_BASE_MS;
    }
    c->max_attempts = o->max_attempts ? o->max_attempts : DEFAULT_ATTEMPTS;
    c->cache = basalt_prompt_cache_new(o->max_cache_entries);
    c->fallback = basalt_prompt_cache_new(o->max_cache_entries);
    pthread_mutex_init(&c->lock, NULL);
    if (c->cache == NULL || c->fallback == NULL || (o->api_key && !c->api_key) ||
        (o->api_url && !c->api_url)) {
        basalt_prompts_client_free(c);
        return NULL;
    }
    return c;
}

void basalt_prompts_client_free(basalt_prompts_client *c) {
    if (c == NULL) return;
    for (size_t i = 0; i < c->npool; i++)
        basalt_http_client_free(c->pool[i]);
    basalt_prompt_cache_free(c->cache);
    basalt_prompt_cache_free(c->fallback);
    pthread_mutex_destroy(&c->lock);
    free(c->api_key);
    free(c->api_url);
    free(c);
}

static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull;
}

/* Resolves the call's settings. Caches belong to one API (url, key): when init
 * switches to another, both are emptied. */
static void resolve(basalt_prompts_client *c, settings *s) {
    basalt_api_settings a;
    basalt_get_api_settings(&a);
    snprintf(s->key, sizeof s->key, "%s", c->api_key ? c->api_key : a.api_key);
    snprintf(s->url, sizeof s->url, "%s", c->api_url ? c->api_url : a.api_url);
    s->timeout_ms = c->timeout_ms ? c->timeout_ms : a.timeout_ms ? a.timeout_ms : 30000;
    s->ttl_s = c->cache_ttl_s > 0 ? c->cache_ttl_s : a.prompt_cache_ttl_s;
    s->fallback_ttl_s = c->fallback_ttl_s > 0 ? c->fallback_ttl_s : a.prompt_fallback_ttl_s;
    memset(&a, 0, sizeof a); /* the key does not linger on the stack */
    uint64_t fp = fnv(fnv(1469598103934665603ull, s->url), s->key);
    pthread_mutex_lock(&c->lock);
    bool changed = c->fingerprint != fp;
    c->fingerprint = fp;
    pthread_mutex_unlock(&c->lock);
    if (changed) {
        basalt_prompt_cache_clear(c->cache);
        basalt_prompt_cache_clear(c->fallback);
    }
}

static basalt_http_client *pool_take(basalt_prompts_client *c) {
    basalt_http_client *h = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->npool) h = c->pool[--c->npool];
    pthread_mutex_unlock(&c->lock);
    return h ? h : basalt_http_client_new();
}

static void pool_put(basalt_prompts_client *c, basalt_http_client *h) {
    pthread_mutex_lock(&c->lock);
    if (c->npool < POOL_MAX) {
        c->pool[c->npool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    basalt_http_client_free(h);
}

/* ---- URLs ------------------------------------------------------------------------------ */

static bool unreserved(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* Appends "&name=value" (or "?name=value" first), the value percent-encoded. */
static void add_query(char *url, size_t cap, const char *name, const char *value) {
    if (value == NULL || value[0] == '\0') return; /* only truthy parameters go out */
    size_t n = strlen(url);
    n += (size_t)snprintf(url + n, n < cap ? cap - n : 0, "%c%s=", strchr(url, '?') ? '&' : '?',
                          name);
    for (const unsigned char *p = (const unsigned char *)value; *p && n + 4 < cap; p++) {
        if (unreserved(*p))
            url[n++] = (char)*p;
        else
            n += (size_t)snprintf(url + n, cap - n, "%%%02X", *p);
    }
    if (n < cap) url[n] = '\0';
}

/* ---- requests ------------------------------------------------------------------------------ */

/* The API's error text: `error`, else `errors`, else the raw body (JSON only
 * parsed when the content type says so), else the default. */
static void error_message(const call *cl, const char *def, char *out, size_t cap) {
    snprintf(out, cap, "%s", def);
    if (cl->body.len == 0) return;
    if (strstr(cl->content_type, "json")) {
        cJSON *root = cJSON_ParseWithLength(cl->body.data, cl->body.len);
        if (root) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
            if (e == NULL || cJSON_IsNull(e)) e = cJSON_GetObjectItemCaseSensitive(root, "errors");
            bool done = false;
            if (cJSON_IsString(e) && e->valuestring) {
                snprintf(out, cap, "%s", e->valuestring);
                done = true;
            } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) > 0) {
                /* errors: ["a", "b"] reads best as "a; b" (other items as JSON) */
                size_t n = 0;
                const cJSON *it;
                out[0] = '\0';
                cJSON_ArrayForEach(it, e) {
                    char *t = cJSON_IsString(it) ? NULL : cJSON_PrintUnformatted(it);
                    const char *piece = t ? t : it->valuestring ? it->valuestring : "";
                    n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", n ? "; " : "",
                                          piece);
                    cJSON_free(t);
                    if (n >= cap) break;
                }
                done = true;
            } else if (e && !cJSON_IsNull(e)) {
                char *t = cJSON_PrintUnformatted(e);
                if (t) snprintf(out, cap, "%s", t);
                cJSON_free(t);
                done = t != NULL;
            }
            cJSON_Delete(root);
            if (done) return;
        }
    }
    size_t n = cl->body.len < cap - 1 ? cl->body.len : cap - 1;
    memcpy(out, cl->body.data, n);
    out[n] = '\0';
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    if (n == 0) snprintf(out, cap, "%s", def);
}

/* Performs cl->full: up to max_attempts on transport errors (sleeping base, then
 * 2 x base, ...), then maps the status (16). True with the body on success. */
static bool perform(basalt_prompts_client *c, const settings *s, call *cl,
                    basalt_prompt_error *err) {
    char auth[600];
    const char *headers[5];
    size_t nh = 0;
    char version_h[64];
    if (s->key[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", s->key);
        if (basalt_http_header_valid(auth)) headers[nh++] = auth;
    }
    headers[nh++] = "Content-Type: application/json";
    snprintf(version_h, sizeof version_h, "X-BASALT-SDK-VERSION: %s", basalt_version());
    headers[nh++] = version_h;
    headers[nh++] = "X-BASALT-SDK-TYPE: " BASALT_SDK_TYPE;
    headers[nh] = NULL;

    basalt_http_request req = {.method = "GET",
                               .url = cl->full,
                               .headers = headers,
                               .timeout_ms = s->timeout_ms,
                               .connect_timeout_ms = s->timeout_ms < 10000 ? s->timeout_ms : 0};
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    cl->made = true;
    uint64_t start = basalt_monotonic_ns();
    bool got = false, timed_out = false;
    char cause[256] = "";
    unsigned attempt = 0;
    for (; attempt < c->max_attempts; attempt++) {
        if (attempt) {
            uint64_t ms = (uint64_t)c->retry_base_ms << (attempt - 1);
            basalt_http_sleep(ms, 0, NULL);
        }
        basalt_http_client *h = pool_take(c);
        if (h == NULL) {
            snprintf(cause, sizeof cause, "out of memory");
            continue;
        }
        got = basalt_http_perform(h, &req, &resp) && !resp.transport_error;
        pool_put(c, h);
        if (got) break;
        timed_out = resp.timed_out;
        snprintf(cause, sizeof cause, "%s", resp.error[0] ? resp.error : "transport error");
    }
    memset(auth, 0, sizeof auth);
    cl->duration_ms = round((double)(basalt_monotonic_ns() - start) / 1e4) / 100.0;
    if (!got) {
        basalt_http_response_free(&resp);
        perr(err, timed_out ? BASALT_PERR_TIMEOUT : BASALT_PERR_NETWORK, 0,
             "Request failed after %u attempts: %s", c->max_attempts, cause);
        redact(err->message, sizeof err->message, s->key);
        return false;
    }
    cl->status = resp.status;
    cl->body = resp.body; /* moved */
    resp.body = (basalt_buf){0};
    snprintf(cl->content_type, sizeof cl->content_type, "%s", resp.content_type);
    basalt_http_response_free(&resp);

    long st = cl->status;
    if (st >= 400) {
        const char *code = NULL, *def = NULL;
        char buf[32], defbuf[32];
        switch (st) {
        case 400:
            code = BASALT_PERR_BAD_REQUEST, def = "Bad Request";
            break;
        case 401:
            code = BASALT_PERR_UNAUTHORIZED, def = "Unauthorized";
            break;
        case 403:
            code = BASALT_PERR_FORBIDDEN, def = "Forbidden";
            break;
        case 404:
            code = BASALT_PERR_NOT_FOUND, def = "Not Found";
            break;
        default:
            snprintf(buf, sizeof buf, "http_%ld", st);
            snprintf(defbuf, sizeof defbuf, "HTTP %ld", st);
            code = buf;
            def = defbuf;
        }
        perr(err, code, st, "%s", "");
        error_message(cl, def, err->message, sizeof err->message);
        redact(err->message, sizeof err->message, s->key);
        return false;
    }
    bool empty_ok = st == 202 || st == 204;
    if (st != 200 && st != 201 && !empty_ok && cl->body.len &&
        strstr(cl->content_type, "json") == NULL) {
        perr(err, BASALT_PERR_INVALID_JSON, st, "Expected JSON response");
        return false;
    }
    return true;
}

/* ---- spans ----------------------------------------------------------------------------------- */

/* A child span of parent, only inside a Basalt trace (Decision 1: nothing outside). */
static basalt_span *open_span(const basalt_ctx *parent, const char *name) {
    if (parent == NULL || !basalt_ctx_in_trace(parent)) return NULL;
    basalt_span_opts so = {.name = name, .kind = BASALT_KIND_SPAN, .parent = parent};
    basalt_ctx *ctx = NULL;
    basalt_span *s = basalt_span_start(&so, &ctx, NULL);
    basalt_ctx_release(ctx); /* nothing runs inside these spans */
    return s;
}

/* Status and timing of a request that was made. The prompt.get span also gets
 * http.method and http.url at top level (Decision 11); section 15's request
 * spans keep those inside basalt.metadata only (6.7). */
static void request_attrs(basalt_span *s, const call *cl, bool ok, bool with_method_url) {
    if (s == NULL || !cl->made) return;
    if (with_method_url) {
        basalt_span_set_attr(s, BASALT_ATTR_HTTP_METHOD, basalt_v_str("GET"));
        basalt_span_set_attr(s, BASALT_ATTR_HTTP_URL, basalt_v_str(cl->url));
    }
    if (cl->status > 0)
        basalt_span_set_attr(s, BASALT_ATTR_HTTP_STATUS_CODE, basalt_v_int(cl->status));
    basalt_span_set_attr(s, BASALT_ATTR_REQUEST_DURATION_MS, basalt_v_double(cl->duration_ms));
    basalt_span_set_attr(s, BASALT_ATTR_REQUEST_SUCCESS,
                         basalt_v_bool(ok && (cl->status == 0 || cl->status < 400)));
}

static void fail_span(basalt_span *s, const basalt_prompt_error *err) {
    if (s) basalt_span_record_exception(s, err->code, err->message, NULL);
}

static void json_str(basalt_buf *b, const char *s) {
    basalt_json_write_string(b, s, strlen(s));
}

/* Section 15's descriptors in basalt.metadata, input {"method","url"}. */
static void request_span_start(basalt_span *s, const char *op, const call *cl,
                               const char *const *extra_kv) {
    if (s == NULL) return;
    basalt_buf b = {0};
    json_str(&b, BASALT_API_CLIENT_PROMPTS);
    basalt_span_set_metadata(s, BASALT_META_API_CLIENT, basalt_buf_cstr(&b));
    basalt_buf_clear(&b);
    json_str(&b, op);
    basalt_span_set_metadata(s, BASALT_META_API_OPERATION, basalt_buf_cstr(&b));
    basalt_span_set_metadata(s, BASALT_META_INTERNAL_API, "true");
    basalt_buf_clear(&b);
    json_str(&b, "GET");
    basalt_span_set_metadata(s, BASALT_ATTR_HTTP_METHOD, basalt_buf_cstr(&b));
    basalt_buf_clear(&b);
    json_str(&b, cl->url);
    basalt_span_set_metadata(s, BASALT_ATTR_HTTP_URL, basalt_buf_cstr(&b));
    for (size_t i = 0; extra_kv && extra_kv[i]; i += 2) {
        if (extra_kv[i + 1] == NULL) continue;
        basalt_buf_clear(&b);
        json_str(&b, extra_kv[i + 1]);
        basalt_span_set_metadata(s, extra_kv[i], basalt_buf_cstr(&b));
    }
    basalt_buf_clear(&b);
    basalt_buf_puts(&b, "{\"method\":\"GET\",\"url\":");
    json_str(&b, cl->url);
    basalt_buf_putc(&b, '}');
    basalt_span_set_input(s, basalt_v_strn(b.data, b.len));
    basalt_buf_free(&b);
}

/* Output, timing and status of a request span. */
static void request_span_end(basalt_span *s, const call *cl, bool ok,
                             const basalt_prompt_error *err) {
    if (s == NULL) return;
    basalt_buf b = {0};
    char st[32] = "null";
    if (cl->status > 0) snprintf(st, sizeof st, "%ld", cl->status);
    if (ok) {
        basalt_buf_puts(&b, "{\"status_code\":");
        basalt_buf_puts(&b, st);
        basalt_buf_putc(&b, '}');
    } else {
        basalt_buf_puts(&b, "{\"error\":");
        json_str(&b, err->message);
        basalt_buf_puts(&b, ",\"status_code\":");
        basalt_buf_puts(&b, st);
        basalt_buf_putc(&b, '}');
    }
    basalt_span_set_output(s, basalt_v_strn(b.data, b.len));
    basalt_buf_free(&b);
    request_attrs(s, cl, ok, false);
    if (cl->made)
        basalt_span_set_attr(s, BASALT_ATTR_HTTP_RESPONSE_TIME_MS,
                             basalt_v_double(cl->duration_ms));
    if (!ok) fail_span(s, err);
    basalt_span_end(s, 0);
    basalt_span_release(s);
}

/* ---- get ---------------------------------------------------------------------------------------
 */

static bool has_variables(const basalt_value *v) {
    return v && v->type == BASALT_VAL_KVLIST && v->u.kv.n > 0;
}

static bool render(const char *tmpl, const basalt_value *vars, char **out,
                   basalt_prompt_error *err) {
    basalt_buf b = {0};
    if (!basalt_template_render_text(tmpl, strlen(tmpl), vars, &b, err)) {
        basalt_buf_free(&b);
        return false;
    }
    if (basalt_buf_cstr(&b) == NULL) {
        basalt_buf_free(&b);
        perr(err, BASALT_PERR_TEMPLATE_UNSUPPORTED, 0, "out of memory");
        return false;
    }
    *out = b.data;
    return true;
}

void basalt_prompt_result_free(basalt_prompt_result *r) {
    if (r == NULL) return;
    basalt_prompt_release(r->prompt);
    free(r->text);
    free(r->system_text);
    memset(r, 0, sizeof *r);
}

bool basalt_prompts_get(basalt_prompts_client *c, const basalt_prompt_get_opts *o,
                        basalt_prompt_result *out, basalt_prompt_error *err) {
    memset(out, 0, sizeof *out);
    if (err) memset(err, 0, sizeof *err);
    if (c == NULL || o == NULL || o->slug == NULL || o->slug[0] == '\0') {
        perr(err, BASALT_PERR_BAD_REQUEST, 0, "a prompt slug is required");
        return false;
    }
    settings s;
    resolve(c, &s);
    basalt_span *span = open_span(o->parent, BASALT_SPAN_PROMPT_GET);
    call cl;
    memset(&cl, 0, sizeof cl);
    basalt_prompt_error e;
    memset(&e, 0, sizeof e);
    const basalt_prompt *p = NULL;
    bool from_cache = false, fetched = false;
    if (!o->no_cache)
        p = basalt_prompt_cache_get(c->cache, o->slug, o->version, o->tag, basalt_monotonic_ns());
    if (p) {
        from_cache = true;
    } else {
        snprintf(cl.url, sizeof cl.url, "%s/prompts/%s", s.url, o->slug);
        snprintf(cl.full, sizeof cl.full, "%s", cl.url);
        add_query(cl.full, sizeof cl.full, "version", o->version);
        add_query(cl.full, sizeof cl.full, "tag", o->tag);
        if (perform(c, &s, &cl, &e))
            p = basalt_prompt_parse(cl.body.data, cl.body.len, o->slug, o->tag, &e);
        fetched = p != NULL;
        if (fetched && !o->no_cache) {
            uint64_t now = basalt_monotonic_ns();
            basalt_prompt_cache_put(c->cache, o->slug, o->version, o->tag, p, s.ttl_s, now);
            basalt_prompt_cache_put(c->fallback, o->slug, o->version, o->tag, p, s.fallback_ttl_s,
                                    now);
        } else if (!fetched && !o->no_cache) {
            /* Decision 12: the last good copy serves for every failure. */
            p = basalt_prompt_cache_get(c->fallback, o->slug, o->version, o->tag,
                                        basalt_monotonic_ns());
            if (p) {
                from_cache = true;
                basalt_log_once(BASALT_LOG_WARN,
                                "prompt '%s': the API failed (%s: %s); using the last good copy "
                                "from the fallback cache",
                                o->slug, e.code, e.message);
            }
        }
    }
    memset(s.key, 0, sizeof s.key);
    basalt_buf_free(&cl.body);
    bool ok = p != NULL;
    char *text = NULL, *sys = NULL;
    if (ok && has_variables(o->variables)) {
        ok = render(p->text, o->variables, &text, &e) &&
             (p->system_text[0] == '\0' || render(p->system_text, o->variables, &sys, &e));
    }
    if (span) {
        basalt_prompt_attrs pa = {.slug = p ? p->slug : o->slug,
                                  .version = p ? p->version : o->version,
                                  .tag = p ? p->tag : o->tag,
                                  .provider = p ? p->model.provider : NULL,
                                  .model = p ? p->model.model : NULL,
                                  .variables_json = o->variables_json,
                                  .from_cache = from_cache};
        basalt_span_set_prompt(span, &pa);
        basalt_span_set_attr(span, BASALT_ATTR_PROMPT_FROM_CACHE, basalt_v_bool(from_cache));
        request_attrs(span, &cl, fetched, true);
        if (!ok) fail_span(span, &e);
        basalt_span_end(span, 0);
        basalt_span_release(span);
    }
    if (!ok) {
        free(text);
        free(sys);
        basalt_prompt_release(p);
        if (err) *err = e;
        return false;
    }
    out->prompt = p;
    out->from_cache = from_cache;
    out->text = text;
    out->system_text = sys;
    return true;
}

/* ---- describe and list ----------------------------------------------------------------------- */

/* describe and list: one traced request whose JSON answer a parser turns into
 * out; the key copy is wiped and the request span ended whatever happens. */
typedef bool (*json_parser)(const char *body, size_t len, basalt_buf *out,
                            basalt_prompt_error *err);

static bool traced_json_call(basalt_prompts_client *c, settings *s, call *cl, basalt_span *span,
                             const char *operation, const char *const *extra, json_parser parse,
                             basalt_buf *out, basalt_prompt_error *err) {
    request_span_start(span, operation, cl, extra);
    basalt_prompt_error e;
    memset(&e, 0, sizeof e);
    bool ok = perform(c, s, cl, &e) && parse(cl->body.data, cl->body.len, out, &e);
    memset(s->key, 0, sizeof s->key);
    request_span_end(span, cl, ok, &e);
    basalt_buf_free(&cl->body);
    if (!ok && err) *err = e;
    return ok;
}

bool basalt_prompts_describe(basalt_prompts_client *c, const char *slug, const char *version,
                             const char *tag, const basalt_ctx *parent, basalt_buf *out,
                             basalt_prompt_error *err) {
    if (err) memset(err, 0, sizeof *err);
    if (c == NULL || slug == NULL || slug[0] == '\0') {
        perr(err, BASALT_PERR_BAD_REQUEST, 0, "a prompt slug is required");
        return false;
    }
    settings s;
    resolve(c, &s);
    call cl;
    memset(&cl, 0, sizeof cl);
    snprintf(cl.url, sizeof cl.url, "%s/prompts/%s/describe", s.url, slug);
    snprintf(cl.full, sizeof cl.full, "%s", cl.url);
    add_query(cl.full, sizeof cl.full, "version", version);
    add_query(cl.full, sizeof cl.full, "tag", tag);
    basalt_span *span = open_span(parent, BASALT_SPAN_PROMPTS_DESCRIBE);
    const char *extra[] = {BASALT_ATTR_PROMPT_SLUG,
                           slug,
                           BASALT_ATTR_PROMPT_VERSION,
                           version,
                           BASALT_ATTR_PROMPT_TAG,
                           tag,
                           NULL};
    return traced_json_call(c, &s, &cl, span, "describe", extra, basalt_prompt_parse_describe, out,
                            err);
}

bool basalt_prompts_list(basalt_prompts_client *c, const char *feature_slug,
                         const basalt_ctx *parent, basalt_buf *out, basalt_prompt_error *err) {
    if (err) memset(err, 0, sizeof *err);
    if (c == NULL) {
        perr(err, BASALT_PERR_BAD_REQUEST, 0, "no client");
        return false;
    }
    settings s;
    resolve(c, &s);
    call cl;
    memset(&cl, 0, sizeof cl);
    snprintf(cl.url, sizeof cl.url, "%s/prompts", s.url);
    snprintf(cl.full, sizeof cl.full, "%s", cl.url);
    add_query(cl.full, sizeof cl.full, "featureSlug", feature_slug);
    basalt_span *span = open_span(parent, BASALT_SPAN_PROMPTS_LIST);
    const char *extra[] = {BASALT_META_PROMPT_FEATURE_SLUG, feature_slug, NULL};
    return traced_json_call(c, &s, &cl, span, "list", extra, basalt_prompt_parse_list, out, err);
}
