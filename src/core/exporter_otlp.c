/* The OTLP/HTTP JSON exporter: endpoint and header resolution (Decisions 14 and
 * 16 of the spec), then per export: encode, POST, retry 429/502/503/504 and
 * transport errors with backoff honouring Retry-After, all within the export
 * deadline. Used by one worker thread at a time (its processor), so its state
 * needs no lock. The API key is only ever put in the authorization header: log
 * lines are scrubbed of it. */
#include "basalt/exporter.h"
#include "text.h"
#include "basalt/http.h"
#include "basalt/otlp_json.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_BASALT_ENDPOINT "https://otel.getbasalt.ai/v1/traces"
#define DEFAULT_TIMEOUT_MS      10000u
#define BACKOFF_BASE_MS         1000u
#define BACKOFF_MAX_MS          5000u
#define MAX_ATTEMPTS            8
#define MAX_HEADERS             64

/* Where the endpoint came from: decides which headers it gets. */
typedef enum endpoint_source { EP_EXPLICIT, EP_BASALT, EP_OTEL } endpoint_source;

typedef struct otlp_exporter {
    basalt_exporter base;
    char *url;
    char *log_url;  /* url without credentials or query, for log lines */
    char *api_key;  /* only for scrubbing log lines; NULL when not sent */
    char **headers; /* NULL-terminated "Name: value" */
    size_t nheaders;
    uint32_t timeout_ms;
    bool gzip;
    basalt_http_client *http;
    basalt_buf body;
    bool failure_logged; /* the first failure is logged, later ones only counted */
    bool partial_logged;
} otlp_exporter;

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static const char *basalt_env_endpoint(void) {
    const char *v = env("BASALT_OTEL_EXPORTER_OTLP_ENDPOINT");
    return v ? v : env("BASALT_OTEL_ENDPOINT");
}

bool basalt_otlp_endpoint_known(const char *api_key) {
    return (api_key && *api_key) || basalt_env_endpoint() ||
           env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || env("OTEL_EXPORTER_OTLP_ENDPOINT");
}

/* ---- small string helpers ------------------------------------------------------ */

static char *str_printf(const char *fmt, const char *a, const char *b) {
    size_t n = strlen(fmt) + strlen(a) + (b ? strlen(b) : 0) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, fmt, a, b ? b : "");
    return s;
}

/* scheme://host[:port]/path of url: no user:password@, no ?query or #fragment. */
static char *redacted_url(const char *url) {
    const char *sep = strstr(url, "://");
    const char *host = sep ? sep + 3 : url;
    const char *path = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t)(path - host));
    size_t prefix = (size_t)(host - url);
    if (at) host = at + 1;
    size_t hlen = (size_t)(path - host), plen = strcspn(path, "?#");
    char *out = malloc(prefix + hlen + plen + 1);
    if (out == NULL) return NULL;
    memcpy(out, url, prefix);
    memcpy(out + prefix, host, hlen);
    memcpy(out + prefix + hlen, path, plen);
    out[prefix + hlen + plen] = '\0';
    return out;
}

/* Logs msg with every occurrence of the API key replaced. */
static void log_scrubbed(const otlp_exporter *o, basalt_log_level level, const char *msg) {
    char out[1024];
    size_t n = 0;
    size_t klen = o->api_key ? strlen(o->api_key) : 0;
    for (const char *p = msg; *p && n < sizeof out - 4;) {
        if (klen && strncmp(p, o->api_key, klen) == 0) {
            memcpy(out + n, "***", 3);
            n += 3;
            p += klen;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    basalt_log(level, "%s", out);
}

/* ---- headers -------------------------------------------------------------------- */

typedef struct header_list {
    char *items[MAX_HEADERS + 1];
    size_t n;
} header_list;

static bool has_header(const header_list *h, const char *name, size_t nlen) {
    for (size_t i = 0; i < h->n; i++)
        if (strncasecmp(h->items[i], name, nlen) == 0 && h->items[i][nlen] == ':') return true;
    return false;
}

/* Adds "name: value" unless a header of that name is there already (earlier
 * sources win). False (logged, the value never shown) when it cannot be sent. */
static bool add_header(header_list *h, const char *name, size_t nlen, const char *value,
                       const char *source) {
    if (has_header(h, name, nlen)) return true;
    if (h->n == MAX_HEADERS) {
        basalt_log(BASALT_LOG_ERROR, "OTLP exporter: too many headers (at most %d)", MAX_HEADERS);
        return false;
    }
    size_t len = nlen + 2 + strlen(value) + 1;
    char *line = malloc(len);
    if (line == NULL) return false;
    snprintf(line, len, "%.*s: %s", (int)nlen, name, value);
    if (!basalt_http_header_valid(line)) {
        basalt_log(BASALT_LOG_ERROR,
                   "OTLP exporter not created: header '%.*s' from %s is invalid (CR/LF or a bad "
                   "name)",
                   (int)(nlen > 64 ? 64 : nlen), name, source);
        free(line);
        return false;
    }
    h->items[h->n++] = line;
    return true;
}

/* Adds "name: value" lines given by the configuration. */
static bool add_config_headers(header_list *h, const char *const *lines) {
    for (const char *const *p = lines; p && *p; p++) {
        const char *colon = strchr(*p, ':');
        size_t nlen = colon ? (size_t)(colon - *p) : strlen(*p);
        const char *value = colon ? colon + 1 : "";
        while (*value == ' ' || *value == '\t')
            value++;
        if (colon == NULL || nlen == 0 || !add_header(h, *p, nlen, value, "the exporter config")) {
            if (colon == NULL || nlen == 0)
                basalt_log(BASALT_LOG_ERROR,
                           "OTLP exporter not created: a configured header has no name");
            return false;
        }
    }
    return true;
}

/* Adds the k=v,k=v pairs of an OTEL_EXPORTER_OTLP_*HEADERS variable. */
static bool add_env_headers(header_list *h, const char *var) {
    const char *v = env(var);
    if (v == NULL) return true;
    char *copy = strdup(v);
    if (copy == NULL) return false;
    bool ok = true;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item && ok; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (eq == NULL) continue; /* not a pair: ignored, as the OTel SDKs do */
        *eq = '\0';
        char *name = text_trim(item), *value = text_trim(eq + 1);
        text_percent_decode(value);
        if (*name == '\0') continue;
        ok = add_header(h, name, strlen(name), value, var);
    }
    free(copy);
    return ok;
}

static void free_headers(header_list *h) {
    for (size_t i = 0; i < h->n; i++)
        free(h->items[i]);
    h->n = 0;
}

/* ---- export ---------------------------------------------------------------------- */

static void log_failure(otlp_exporter *o, const char *what) {
    if (o->failure_logged) return;
    o->failure_logged = true;
    char msg[900];
    snprintf(msg, sizeof msg,
             "OTLP export to %s failed: %s (further failures are counted in stats())", o->log_url,
             what);
    log_scrubbed(o, BASALT_LOG_WARN, msg);
}

/* Reads an ExportTraceServiceResponse: logs a partial success once (not retried). */
static void check_partial_success(otlp_exporter *o, const basalt_http_response *r) {
    if (r->body.len == 0 || o->partial_logged) return;
    cJSON *j = cJSON_ParseWithLength(r->body.data, r->body.len);
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "partialSuccess");
    const cJSON *rej = cJSON_GetObjectItemCaseSensitive(ps, "rejectedSpans");
    double rejected = cJSON_IsNumber(rej)   ? rej->valuedouble
                      : cJSON_IsString(rej) ? strtod(rej->valuestring, NULL)
                                            : 0;
    if (rejected > 0) {
        const cJSON *em = cJSON_GetObjectItemCaseSensitive(ps, "errorMessage");
        char msg[900];
        snprintf(msg, sizeof msg,
                 "OTLP collector at %s rejected %.0f span(s) of a batch: %.300s (logged once; "
                 "partial rejections are not retried)",
                 o->log_url, rejected, cJSON_IsString(em) ? em->valuestring : "no message");
        log_scrubbed(o, BASALT_LOG_WARN, msg);
        o->partial_logged = true;
    }
    cJSON_Delete(j);
}

static bool retryable_status(long s) {
    return s == 429 || s == 502 || s == 503 || s == 504;
}

/* A short readable cause from an error response body ({"message":...} or text). */
static void describe_status(const basalt_http_response *r, char *out, size_t cap) {
    char detail[256] = "";
    cJSON *j = r->body.len ? cJSON_ParseWithLength(r->body.data, r->body.len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    if (cJSON_IsString(m)) {
        snprintf(detail, sizeof detail, ": %.200s", m->valuestring);
    } else if (r->body.len && j == NULL) {
        size_t n = r->body.len < 200 ? r->body.len : 200;
        snprintf(detail, sizeof detail, ": %.*s", (int)n, r->body.data);
        for (char *p = detail; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    cJSON_Delete(j);
    snprintf(out, cap, "HTTP %ld%s", r->status, detail);
}

static basalt_export_result otlp_export(basalt_exporter *e, const basalt_resource *res,
                                        const basalt_span_record *const *recs, size_t n,
                                        uint64_t deadline_ns) {
    otlp_exporter *o = (otlp_exporter *)e;
    if (atomic_load_explicit(&e->abort, memory_order_acquire)) return BASALT_EXPORT_FAILURE;
    basalt_buf_clear(&o->body);
    if (!basalt_otlp_encode(&o->body, res, recs, n)) {
        log_failure(o, "out of memory while encoding");
        return BASALT_EXPORT_FAILURE;
    }
    basalt_http_request req = {0};
    req.method = "POST";
    req.url = o->url;
    req.headers = (const char *const *)o->headers;
    req.body = o->body.data;
    req.body_len = o->body.len;
    req.gzip = o->gzip;
    req.timeout_ms = o->timeout_ms;
    req.deadline_ns = deadline_ns;
    req.abort = &e->abort;
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    basalt_export_result result = BASALT_EXPORT_FAILURE;
    char why[400] = "";
    for (unsigned attempt = 0;; attempt++) {
        int64_t wait_ms = -1;
        if (basalt_http_perform(o->http, &req, &resp)) {
            if (resp.status >= 200 && resp.status < 300) {
                check_partial_success(o, &resp);
                result = BASALT_EXPORT_OK;
                break;
            }
            describe_status(&resp, why, sizeof why);
            if (!retryable_status(resp.status)) break; /* 400 and other 4xx/5xx: final */
            wait_ms = resp.retry_after_ms;
        } else {
            snprintf(why, sizeof why, "%s", resp.error);
            if (resp.aborted) break;
        }
        if (attempt + 1 >= MAX_ATTEMPTS) break;
        if (wait_ms < 0)
            wait_ms = (int64_t)basalt_http_backoff_ms(attempt, BACKOFF_BASE_MS, BACKOFF_MAX_MS);
        /* Give up now rather than sleep into the deadline. */
        uint64_t now = basalt_monotonic_ns();
        if (deadline_ns && now + (uint64_t)wait_ms * 1000000u >= deadline_ns) {
            strncat(why, " (no time left to retry)", sizeof why - strlen(why) - 1);
            break;
        }
        if (!basalt_http_sleep((uint64_t)wait_ms, deadline_ns, &e->abort)) break;
        atomic_fetch_add_explicit(&e->counters.retries, 1, memory_order_relaxed);
    }
    if (result != BASALT_EXPORT_OK) log_failure(o, why[0] ? why : "unknown error");
    basalt_http_response_free(&resp);
    return result;
}

static void otlp_destroy(basalt_exporter *e) {
    otlp_exporter *o = (otlp_exporter *)e;
    basalt_http_client_free(o->http);
    for (size_t i = 0; i < o->nheaders; i++)
        free(o->headers[i]);
    free(o->headers);
    free(o->url);
    free(o->log_url);
    free(o->api_key);
    basalt_buf_free(&o->body);
    free(o);
}

static const basalt_exporter_ops otlp_ops = {
    .type = "otlp",
    .export_spans = otlp_export,
    .flush = NULL,
    .shutdown = NULL,
    .destroy = otlp_destroy,
};

/* ---- construction ------------------------------------------------------------- */

/* The endpoint and where it came from, per Decisions 14/16. NULL when none. */
static char *resolve_endpoint(const char *explicit_url, const char *api_key, endpoint_source *src) {
    const char *v;
    if (explicit_url && *explicit_url) {
        *src = EP_EXPLICIT;
        return strdup(explicit_url);
    }
    if ((v = basalt_env_endpoint()) != NULL) {
        *src = EP_BASALT;
        return strdup(v);
    }
    if ((v = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != NULL) {
        *src = EP_OTEL;
        return strdup(v);
    }
    if ((v = env("OTEL_EXPORTER_OTLP_ENDPOINT")) != NULL) {
        *src = EP_OTEL;
        size_t n = strlen(v);
        return str_printf(n && v[n - 1] == '/' ? "%sv1/traces" : "%s/v1/traces", v, NULL);
    }
    if (api_key && *api_key) {
        *src = EP_BASALT;
        return strdup(DEFAULT_BASALT_ENDPOINT);
    }
    return NULL;
}

/* 1 none, 2 gzip, from the config or OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION. */
static int resolve_compression(int configured) {
    if (configured == 1 || configured == 2) return configured;
    const char *v = env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION");
    if (v == NULL) v = env("OTEL_EXPORTER_OTLP_COMPRESSION");
    if (v == NULL || strcasecmp(v, "none") == 0) return 1;
    if (strcasecmp(v, "gzip") == 0) return 2;
    basalt_log_once(BASALT_LOG_WARN, "unsupported OTLP compression '%s': sending uncompressed", v);
    return 1;
}

static uint32_t resolve_timeout(uint32_t configured) {
    if (configured) return configured;
    const char *v = env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
    if (v == NULL) v = env("OTEL_EXPORTER_OTLP_TIMEOUT");
    if (v) {
        char *end = NULL;
        unsigned long ms = strtoul(v, &end, 10);
        if (end && *end == '\0' && ms > 0 && ms <= UINT32_MAX) return (uint32_t)ms;
    }
    return DEFAULT_TIMEOUT_MS;
}

basalt_exporter *basalt_otlp_exporter_new(const basalt_otlp_config *cfg) {
    basalt_otlp_config empty = {0};
    if (cfg == NULL) cfg = &empty;
    const char *key = cfg->api_key && *cfg->api_key ? cfg->api_key : env("BASALT_API_KEY");
    endpoint_source src;
    char *url = resolve_endpoint(cfg->endpoint, key, &src);
    if (url == NULL) {
        basalt_log(BASALT_LOG_ERROR, "OTLP exporter not created: no endpoint (set an endpoint, "
                                     "OTEL_EXPORTER_OTLP_ENDPOINT or an API key)");
        return NULL;
    }
    header_list h = {{0}, 0};
    bool ok = add_header(&h, "Content-Type", 12, "application/json", "the exporter") &&
              add_header(&h, "User-Agent", 10, "basalt-lua/" BASALT_VERSION, "the exporter") &&
              add_config_headers(&h, cfg->headers);
    bool send_key = src == EP_BASALT && key != NULL;
    if (ok && send_key) {
        size_t blen = strlen(key) + 8;
        char *bearer = malloc(blen);
        ok = bearer != NULL;
        if (bearer) {
            snprintf(bearer, blen, "Bearer %s", key);
            ok = add_header(&h, "authorization", 13, bearer, "the API key");
            free(bearer);
        }
    }
    if (ok && src == EP_OTEL) {
        /* The signal-specific variable wins over the generic one (added first). */
        ok = add_env_headers(&h, "OTEL_EXPORTER_OTLP_TRACES_HEADERS") &&
             add_env_headers(&h, "OTEL_EXPORTER_OTLP_HEADERS");
    }
    otlp_exporter *o = ok ? calloc(1, sizeof *o) : NULL;
    if (o) {
        o->url = url;
        o->log_url = redacted_url(url);
        o->api_key = send_key ? strdup(key) : NULL;
        o->headers = calloc(h.n + 1, sizeof *o->headers);
        o->http = basalt_http_client_new();
    }
    if (o == NULL || o->log_url == NULL || o->headers == NULL || o->http == NULL ||
        (send_key && o->api_key == NULL)) {
        if (ok) basalt_log(BASALT_LOG_ERROR, "OTLP exporter not created: out of memory");
        free_headers(&h);
        if (o) {
            o->url = NULL;
            basalt_http_client_free(o->http);
            free(o->headers);
            free(o->log_url);
            free(o->api_key);
            free(o);
        }
        free(url);
        return NULL;
    }
    memcpy(o->headers, h.items, h.n * sizeof *o->headers);
    o->nheaders = h.n;
    o->timeout_ms = resolve_timeout(cfg->timeout_ms);
    o->gzip = resolve_compression(cfg->compression) == 2;
    basalt_exporter_init(&o->base, &otlp_ops, false);
    return &o->base;
}
