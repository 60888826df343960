/* The OTLP/HTTP exporter end to end: against the shared sink (node, --strict
 * --proto) for delivery, types, gzip, retries, fault modes and deadlines, and
 * against a loopback server of our own for endpoint resolution, headers, the
 * API key's whereabouts and partial success. Also the file exporter, two
 * exporters at once through the runtime, and a forked child exporting its own. */
#include "basalt/exporter.h"
#include "basalt/otlp_json.h"
#include "basalt/processor.h"
#include "basalt/runtime.h"
#include "check.h"
#include "loopback.h"
#include "sink.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECRET "sk-SECRET-7f3a9"

/* ---- captured log lines ------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER; /* guards logs, nlogs */
static char logs[64][1100];
static int nlogs;

static void capture(void *ud, basalt_log_level level, const char *msg) {
    (void)ud;
    (void)level;
    pthread_mutex_lock(&log_lock);
    if (nlogs < 64) snprintf(logs[nlogs++], sizeof logs[0], "%s", msg);
    pthread_mutex_unlock(&log_lock);
}

static void logs_reset(void) {
    pthread_mutex_lock(&log_lock);
    nlogs = 0;
    pthread_mutex_unlock(&log_lock);
}

/* Number of captured lines containing s. */
static int logs_with(const char *s) {
    int n = 0;
    pthread_mutex_lock(&log_lock);
    for (int i = 0; i < nlogs; i++)
        n += strstr(logs[i], s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return n;
}

/* ---- records -------------------------------------------------------------------- */

static const basalt_span_record *make_rec(uint64_t id) {
    static const basalt_value arr[2] = {{BASALT_VAL_STRING, {.s = {"stop", 4}}},
                                        {BASALT_VAL_STRING, {.s = {"length", 6}}}};
    basalt_kv attrs[5] = {{"basalt.span.kind", basalt_v_str("generation")},
                          {"gen_ai.usage.input_tokens", basalt_v_int(120)},
                          {"gen_ai.request.temperature", basalt_v_double(0.7)},
                          {"basalt.in_trace", basalt_v_bool(true)},
                          {"gen_ai.response.finish_reasons", basalt_v_array(arr, 2)}};
    basalt_span_record t;
    memset(&t, 0, sizeof t);
    memset(t.trace_id, 0x5a, 16);
    memcpy(t.trace_id, &id, 8); /* a trace per 4 spans */
    t.trace_id[0] = (uint8_t)(id / 4 + 1);
    uint64_t be = __builtin_bswap64(id);
    memcpy(t.span_id, &be, 8);
    t.name = "openai.chat.completions";
    t.kind = BASALT_OTEL_INTERNAL;
    t.trace_flags = 1;
    t.scope_name = "qa-trace";
    t.scope_version = "1.0.0";
    t.start_ns = basalt_wall_ns();
    t.end_ns = t.start_ns + 1000;
    t.attrs = attrs;
    t.nattrs = 5;
    return basalt_record_clone(&t);
}

static void end_range(basalt_processor *p, uint64_t first, uint64_t n) {
    for (uint64_t i = first; i < first + n; i++) {
        const basalt_span_record *r = make_rec(i);
        basalt_processor_on_end(p, r);
        basalt_record_release(r);
    }
}

static basalt_batch_config batch_cfg(uint32_t batch, uint32_t timeout_ms) {
    basalt_batch_config c;
    c.max_queue_size = 4096;
    c.max_export_batch_size = batch;
    c.schedule_delay_ms = 50;
    c.export_timeout_ms = timeout_ms;
    c.blocking = true;
    return c;
}

static basalt_exporter *otlp_to(const char *url, int compression) {
    basalt_otlp_config oc = {0};
    oc.endpoint = url;
    oc.timeout_ms = 5000;
    oc.compression = compression;
    return basalt_otlp_exporter_new(&oc);
}

static uint64_t ctr(basalt_exporter *e, _Atomic uint64_t *c) {
    (void)e;
    return atomic_load(c);
}

static uint64_t ms_since(uint64_t t0) {
    return (basalt_monotonic_ns() - t0) / 1000000u;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the sink's JSONL output: spans, and whether every span id is unique.
 * When types is set, checks the attribute types of the first span. */
static long out_spans(const char *file, bool *unique, bool check_types) {
    FILE *f = fopen(file, "r");
    if (f == NULL) return -1;
    size_t cap = 1024, n = 0;
    char **ids = malloc(cap * sizeof *ids);
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        if (j == NULL) continue;
        const cJSON *sid = cJSON_GetObjectItem(j, "span_id");
        if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = strdup(cJSON_IsString(sid) ? sid->valuestring : "");
        if (check_types && n == 1) {
            const cJSON *t = cJSON_GetObjectItem(j, "attr_types");
            const cJSON *a = cJSON_GetObjectItem(j, "attributes");
            CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "gen_ai.usage.input_tokens")),
                      "int");
            CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "gen_ai.request.temperature")),
                      "double");
            CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t, "basalt.in_trace")), "bool");
            CHECK_STR(
                cJSON_GetStringValue(cJSON_GetObjectItem(t, "gen_ai.response.finish_reasons")),
                "array");
            CHECK(cJSON_GetObjectItem(a, "gen_ai.usage.input_tokens")->valuedouble == 120);
            CHECK(cJSON_GetObjectItem(a, "gen_ai.request.temperature")->valuedouble == 0.7);
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    qsort(ids, n, sizeof *ids, cmp_str);
    *unique = true;
    for (size_t i = 1; i < n; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0) *unique = false;
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return (long)n;
}

#define NEED_SINK()                                                                                \
    do {                                                                                           \
        if (!sink_available()) {                                                                   \
            fprintf(stderr, "  skipped: node or the sink packages are missing\n");                 \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- against the sink ---------------------------------------------------------- */

static void deliver(int compression, const char *sink_args, uint64_t n) {
    sink_proc s;
    CHECK(sink_start(&s, sink_args));
    basalt_exporter *e = otlp_to(s.url, compression);
    CHECK(e != NULL);
    basalt_batch_config c = batch_cfg(100, 30000);
    basalt_processor *p = basalt_batch_processor_new(e, NULL, &c);
    end_range(p, 1, n);
    CHECK(basalt_processor_flush(p, 20000));
    CHECK_INT(ctr(e, &e->counters.exported), n);
    CHECK_INT(ctr(e, &e->counters.failed), 0);
    CHECK(basalt_processor_shutdown(p, 5000));
    basalt_processor_free(p);
    basalt_exporter_release(e);
    cJSON *k = sink_stop(&s);
    CHECK(k != NULL);
    CHECK_INT(sink_counter(k, "rejected"), 0);
    CHECK_INT(sink_counter(k, "spans"), n);
    if (compression == 2) CHECK_INT(sink_counter(k, "gzip_requests"), sink_counter(k, "requests"));
    bool unique = false;
    CHECK_INT(out_spans(s.out, &unique, true), n);
    CHECK(unique);
    cJSON_Delete(k);
    unlink(s.out);
}

static void test_every_span_arrives_exactly_once_with_its_types(void) {
    NEED_SINK();
    deliver(1, NULL, 1000);
}

static void test_gzip_is_accepted(void) {
    NEED_SINK();
    deliver(2, NULL, 300);
}

static void test_503_with_retry_after_is_retried_until_delivered(void) {
    NEED_SINK();
    /* About a third of requests get 503 + Retry-After: 1; every span still arrives once. */
    sink_proc s;
    CHECK(sink_start(&s, "--fail-rate 0.34 --retry-after 1"));
    basalt_exporter *e = otlp_to(s.url, 1);
    basalt_batch_config c = batch_cfg(50, 30000);
    basalt_processor *p = basalt_batch_processor_new(e, NULL, &c);
    end_range(p, 1, 200);
    CHECK(basalt_processor_flush(p, 30000));
    CHECK(basalt_processor_shutdown(p, 5000));
    uint64_t retries = ctr(e, &e->counters.retries);
    CHECK_INT(ctr(e, &e->counters.exported), 200);
    basalt_processor_free(p);
    basalt_exporter_release(e);
    cJSON *k = sink_stop(&s);
    CHECK_INT(sink_counter(k, "spans"), 200);
    CHECK(sink_counter(k, "injected") > 0);
    CHECK_INT(sink_counter(k, "injected"), retries);
    bool unique = false;
    CHECK_INT(out_spans(s.out, &unique, false), 200);
    CHECK(unique);
    cJSON_Delete(k);
    unlink(s.out);
}

static void test_retry_after_is_honoured_within_the_export_deadline(void) {
    NEED_SINK();
    sink_proc s;
    CHECK(sink_start(&s, "--status 503 --retry-after 1"));
    basalt_exporter *e = otlp_to(s.url, 1);
    basalt_batch_config c = batch_cfg(100, 3500);
    basalt_processor *p = basalt_batch_processor_new(e, NULL, &c);
    end_range(p, 1, 10);
    uint64_t t0 = basalt_monotonic_ns();
    CHECK(basalt_processor_flush(p, 10000));
    uint64_t ms = ms_since(t0);
    /* Attempts at 0, 1, 2 and 3 s; a fifth would end past the 3.5 s deadline. */
    CHECK(ms >= 2900 && ms < 3700);
    CHECK_INT(ctr(e, &e->counters.retries), 3);
    CHECK_INT(ctr(e, &e->counters.failed), 10);
    CHECK_INT(ctr(e, &e->counters.failures), 1);
    CHECK(basalt_processor_shutdown(p, 2000));
    basalt_processor_free(p);
    basalt_exporter_release(e);
    cJSON *k = sink_stop(&s);
    CHECK_INT(sink_counter(k, "requests"), 4);
    cJSON_Delete(k);
    unlink(s.out);
}

static void test_400_is_final(void) {
    NEED_SINK();
    sink_proc s;
    CHECK(sink_start(&s, "--status 400"));
    basalt_exporter *e = otlp_to(s.url, 1);
    basalt_batch_config c = batch_cfg(10, 10000);
    basalt_processor *p = basalt_batch_processor_new(e, NULL, &c);
    end_range(p, 1, 20);
    CHECK(basalt_processor_flush(p, 10000));
    CHECK_INT(ctr(e, &e->counters.retries), 0);
    CHECK_INT(ctr(e, &e->counters.failed), 20);
    CHECK_INT(ctr(e, &e->counters.failures), 2);
    CHECK(basalt_processor_shutdown(p, 2000));
    basalt_processor_free(p);
    basalt_exporter_release(e);
    cJSON *k = sink_stop(&s);
    CHECK_INT(sink_counter(k, "requests"), 2);
    cJSON_Delete(k);
    unlink(s.out);
}

static void test_slow_and_hanging_collectors_meet_shutdown_deadline(void) {
    NEED_SINK();
    /* Slow (300 ms a reply): everything arrives. */
    sink_proc s;
    CHECK(sink_start(&s, "--delay-ms 300"));
    basalt_exporter *e = otlp_to(s.url, 1);
    basalt_batch_config c = batch_cfg(50, 30000);
    basalt_processor *p = basalt_batch_processor_new(e, NULL, &c);
    end_range(p, 1, 100);
    CHECK(basalt_processor_flush(p, 10000));
    CHECK_INT(ctr(e, &e->counters.exported), 100);
    CHECK(basalt_processor_shutdown(p, 1000));
    basalt_processor_free(p);
    basalt_exporter_release(e);
    cJSON *k = sink_stop(&s);
    CHECK_INT(sink_counter(k, "spans"), 100);
    cJSON_Delete(k);
    unlink(s.out);

    /* Hanging (5 s a reply, export timeout 30 s): shutdown(1000) still returns. */
    CHECK(sink_start(&s, "--delay-ms 5000"));
    e = otlp_to(s.url, 1);
    p = basalt_batch_processor_new(e, NULL, &c);
    end_range(p, 1, 120);
    usleep(200000); /* the first batch is in flight */
    uint64_t t0 = basalt_monotonic_ns();
    CHECK(!basalt_processor_shutdown(p, 1000));
    uint64_t ms = ms_since(t0);
    CHECK(ms >= 950 && ms <= 1200);
    basalt_exporter_retain(e);
    t0 = basalt_monotonic_ns();
    basalt_processor_free(p); /* abort was raised: the worker stops at once */
    CHECK(ms_since(t0) < 500);
    CHECK_INT(ctr(e, &e->counters.failed), 120);
    basalt_exporter_release(e);
    basalt_exporter_release(e);
    k = sink_stop(&s);
    cJSON_Delete(k);
    unlink(s.out);
}

static void test_collector_down_counts_failures_and_returns_in_time(void) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", lb_dead_port());
    logs_reset();
    basalt_set_logger(capture, NULL);
    basalt_exporter *e = otlp_to(url, 1);
    basalt_batch_config c = batch_cfg(10, 1500);
    basalt_processor *p = basalt_batch_processor_new(e, NULL, &c);
    end_range(p, 1, 20);
    uint64_t t0 = basalt_monotonic_ns();
    CHECK(basalt_processor_flush(p, 6000));
    CHECK(ms_since(t0) < 3500); /* two exports, each given up within its 1.5 s */
    CHECK_INT(ctr(e, &e->counters.failed), 20);
    CHECK_INT(ctr(e, &e->counters.failures), 2);
    CHECK(ctr(e, &e->counters.retries) >= 2);
    CHECK_INT(ctr(e, &e->counters.exported), 0);
    t0 = basalt_monotonic_ns();
    CHECK(basalt_processor_shutdown(p, 1000));
    CHECK(ms_since(t0) < 1100);
    basalt_processor_free(p);
    basalt_exporter_release(e);
    basalt_set_logger(NULL, NULL);
    CHECK_INT(logs_with("OTLP export to"), 1); /* the first failure only */
}

/* ---- against the loopback server ------------------------------------------------ */

static void clear_env(void) {
    static const char *const vars[] = {"BASALT_OTEL_EXPORTER_OTLP_ENDPOINT",
                                       "BASALT_OTEL_ENDPOINT",
                                       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                       "OTEL_EXPORTER_OTLP_ENDPOINT",
                                       "OTEL_EXPORTER_OTLP_HEADERS",
                                       "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                                       "OTEL_EXPORTER_OTLP_COMPRESSION",
                                       "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                                       "BASALT_API_KEY",
                                       NULL};
    for (const char *const *v = vars; *v; v++)
        unsetenv(*v);
}

/* Exports one record through a fresh exporter and returns the request's head. */
static bool export_one(const basalt_otlp_config *oc, lb_server *s, char *head, size_t cap) {
    basalt_exporter *e = basalt_otlp_exporter_new(oc);
    if (e == NULL) return false;
    pthread_mutex_lock(&s->lock);
    s->last_len = 0;
    pthread_mutex_unlock(&s->lock);
    const basalt_span_record *r = make_rec(1);
    basalt_export_result res =
        e->ops->export_spans(e, NULL, &r, 1, basalt_monotonic_ns() + 3000000000u);
    basalt_record_release(r);
    basalt_exporter_release(e);
    pthread_mutex_lock(&s->lock);
    char *end = memmem(s->last_request, s->last_len, "\r\n\r\n", 4);
    size_t n = end ? (size_t)(end - s->last_request) : 0;
    if (n >= cap) n = cap - 1;
    memcpy(head, s->last_request, n);
    head[n] = '\0';
    pthread_mutex_unlock(&s->lock);
    return res == BASALT_EXPORT_OK && n > 0;
}

static void test_endpoint_resolution_order_and_auth_header(void) {
    lb_server *s = lb_start();
    char base[64], a[96], b[96], c[96], d[96], head[8192];
    lb_url(s, base, sizeof base, "");
    snprintf(a, sizeof a, "%s/explicit", base);
    snprintf(b, sizeof b, "%s/basalt", base);
    snprintf(c, sizeof c, "%s/otel-traces", base);
    snprintf(d, sizeof d, "%s/otel", base);
    clear_env();
    basalt_otlp_config oc = {0};
    oc.api_key = SECRET;

    /* Each source in turn, the higher ones set on top of the lower ones. */
    setenv("OTEL_EXPORTER_OTLP_ENDPOINT", d, 1);
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strncmp(head, "POST /otel/v1/traces HTTP/1.1", 29) == 0);
    CHECK(strcasestr(head, "authorization") == NULL);
    CHECK(strstr(head, "Content-Type: application/json\r\n") != NULL);

    setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", c, 1);
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strncmp(head, "POST /otel-traces HTTP/1.1", 26) == 0); /* verbatim */
    CHECK(strcasestr(head, "authorization") == NULL);

    setenv("BASALT_OTEL_ENDPOINT", b, 1); /* the alias */
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strncmp(head, "POST /basalt HTTP/1.1", 21) == 0);
    CHECK(strstr(head, "authorization: Bearer " SECRET "\r\n") != NULL);

    setenv("BASALT_OTEL_ENDPOINT", d, 1);
    setenv("BASALT_OTEL_EXPORTER_OTLP_ENDPOINT", b, 1); /* beats its alias */
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strncmp(head, "POST /basalt HTTP/1.1", 21) == 0);

    oc.endpoint = a; /* the exporter's own endpoint beats everything, and gets no key */
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strncmp(head, "POST /explicit HTTP/1.1", 23) == 0);
    CHECK(strcasestr(head, "authorization") == NULL);
    CHECK(strstr(head, SECRET) == NULL);

    /* The key from BASALT_API_KEY when none is configured. */
    oc.endpoint = NULL;
    oc.api_key = NULL;
    setenv("BASALT_API_KEY", SECRET, 1);
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strstr(head, "authorization: Bearer " SECRET "\r\n") != NULL);

    /* A base URL with a trailing slash gets no double slash. */
    clear_env();
    char slash[96];
    snprintf(slash, sizeof slash, "%s/", base);
    setenv("OTEL_EXPORTER_OTLP_ENDPOINT", slash, 1);
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strncmp(head, "POST /v1/traces HTTP/1.1", 24) == 0);
    clear_env();
    lb_stop(s);
}

static void test_configured_and_otel_headers(void) {
    lb_server *s = lb_start();
    char base[64], head[8192];
    lb_url(s, base, sizeof base, "/v1/traces");
    clear_env();
    setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=a%20b%2Cc, x-other = 1 ,junk,x-dup=generic", 1);
    setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-dup=traces", 1);

    /* An explicit endpoint gets its configured headers, not the OTEL_* ones. */
    const char *const mine[] = {"x-api-key: k1", NULL};
    basalt_otlp_config oc = {0};
    oc.endpoint = base;
    oc.headers = mine;
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strstr(head, "x-api-key: k1\r\n") != NULL);
    CHECK(strstr(head, "x-tenant") == NULL);

    /* An OTEL_* endpoint gets them, percent-decoded; the traces variable wins. */
    oc.endpoint = NULL;
    setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", base, 1);
    CHECK(export_one(&oc, s, head, sizeof head));
    CHECK(strstr(head, "x-tenant: a b,c\r\n") != NULL);
    CHECK(strstr(head, "x-other: 1\r\n") != NULL);
    CHECK(strstr(head, "x-dup: traces\r\n") != NULL);
    CHECK(strstr(head, "x-dup: generic") == NULL);
    CHECK(strstr(head, "x-api-key: k1\r\n") != NULL);

    /* CR/LF in a header value: no exporter, an error that does not show the value. */
    logs_reset();
    basalt_set_logger(capture, NULL);
    setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-evil=v%0D%0AInjected: " SECRET, 1);
    oc.headers = NULL;
    CHECK(basalt_otlp_exporter_new(&oc) == NULL);
    CHECK_INT(logs_with("x-evil"), 1);
    CHECK_INT(logs_with(SECRET), 0);
    const char *const bad[] = {"x-bad: a\r\nb: c", NULL};
    clear_env();
    oc.endpoint = base;
    oc.headers = bad;
    CHECK(basalt_otlp_exporter_new(&oc) == NULL);
    const char *const noname[] = {"novalue", NULL};
    oc.headers = noname;
    CHECK(basalt_otlp_exporter_new(&oc) == NULL);
    /* A key with CR/LF is refused too, and never echoed. */
    oc.headers = NULL;
    oc.endpoint = NULL;
    oc.api_key = "sk-x\r\nX-Injected: 1";
    setenv("BASALT_OTEL_ENDPOINT", base, 1);
    logs_reset();
    CHECK(basalt_otlp_exporter_new(&oc) == NULL);
    CHECK_INT(logs_with("X-Injected"), 0);
    basalt_set_logger(NULL, NULL);
    clear_env();
    lb_stop(s);
}

static void test_endpoint_known_and_nothing_configured(void) {
    clear_env();
    CHECK(!basalt_otlp_endpoint_known(NULL));
    CHECK(!basalt_otlp_endpoint_known(""));
    CHECK(basalt_otlp_endpoint_known("key"));
    setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1", 1);
    CHECK(basalt_otlp_endpoint_known(NULL));
    clear_env();
    setenv("BASALT_OTEL_ENDPOINT", "http://127.0.0.1:1", 1);
    CHECK(basalt_otlp_endpoint_known(NULL));
    clear_env();
    setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1", 1);
    CHECK(basalt_otlp_endpoint_known(NULL));
    clear_env();
    logs_reset();
    basalt_set_logger(capture, NULL);
    basalt_otlp_config oc = {0};
    CHECK(basalt_otlp_exporter_new(&oc) == NULL);
    CHECK_INT(logs_with("no endpoint"), 1);
    basalt_set_logger(NULL, NULL);
    /* With only a key: the Basalt collector (not contacted here). */
    oc.api_key = "key";
    basalt_exporter *e = basalt_otlp_exporter_new(&oc);
    CHECK(e != NULL);
    CHECK_STR(e ? e->ops->type : NULL, "otlp");
    CHECK(e && !e->synchronous);
    basalt_exporter_release(e);
}

static void test_api_key_never_logged_and_4xx_not_retried(void) {
    lb_server *s = lb_start();
    char url[64], head[4096];
    lb_url(s, url, sizeof url, "/v1/traces?token=" SECRET);
    clear_env();
    const char *body = "{\"code\":16,\"message\":\"bad key " SECRET "\"}";
    lb_set_reply(s, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json", body,
                 strlen(body));
    setenv("BASALT_OTEL_EXPORTER_OTLP_ENDPOINT", url, 1);
    logs_reset();
    basalt_set_logger(capture, NULL);
    basalt_otlp_config oc = {0};
    oc.api_key = SECRET;
    CHECK(!export_one(&oc, s, head, sizeof head));
    basalt_set_logger(NULL, NULL);
    pthread_mutex_lock(&s->lock);
    CHECK_INT(s->requests, 1);
    pthread_mutex_unlock(&s->lock);
    CHECK_INT(logs_with("HTTP 401"), 1);
    CHECK_INT(logs_with("bad key ***"), 1);
    CHECK_INT(logs_with(SECRET), 0);
    clear_env();
    lb_stop(s);
}

static void test_partial_success_is_logged_once_and_not_retried(void) {
    lb_server *s = lb_start();
    char url[64];
    lb_url(s, url, sizeof url, "/v1/traces");
    const char *body =
        "{\"partialSuccess\":{\"rejectedSpans\":\"2\",\"errorMessage\":\"too old\"}}";
    lb_set_reply(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json", body, strlen(body));
    logs_reset();
    basalt_set_logger(capture, NULL);
    basalt_exporter *e = otlp_to(url, 1);
    const basalt_span_record *r = make_rec(1);
    for (int i = 0; i < 3; i++)
        CHECK(e->ops->export_spans(e, NULL, &r, 1, basalt_monotonic_ns() + 3000000000u) ==
              BASALT_EXPORT_OK);
    basalt_record_release(r);
    basalt_set_logger(NULL, NULL);
    CHECK_INT(ctr(e, &e->counters.retries), 0);
    basalt_exporter_release(e);
    pthread_mutex_lock(&s->lock);
    CHECK_INT(s->requests, 3);
    pthread_mutex_unlock(&s->lock);
    CHECK_INT(logs_with("rejected 2 span(s)"), 1);
    CHECK_INT(logs_with("too old"), 1);
    lb_stop(s);
}

/* ---- the file exporter ------------------------------------------------------------ */

static void test_file_exporter_appends_parseable_lines(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/basalt-file-%d.jsonl", (int)getpid());
    unlink(path);
    for (int round = 0; round < 2; round++) {
        basalt_exporter *e = basalt_file_exporter_new(path);
        CHECK(e != NULL);
        if (e == NULL) return;
        CHECK(!e->synchronous);
        basalt_batch_config c = batch_cfg(10, 5000);
        basalt_processor *p = basalt_batch_processor_new(e, NULL, &c);
        end_range(p, 1 + (uint64_t)round * 100, round ? 5 : 25);
        CHECK(basalt_processor_flush(p, 5000));
        CHECK(basalt_processor_shutdown(p, 5000));
        basalt_processor_free(p);
        basalt_exporter_release(e);
    }
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    int lines = 0, spans = 0;
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        lines++;
        cJSON *j = cJSON_Parse(line);
        CHECK(j != NULL);
        cJSON *rs;
        cJSON_ArrayForEach(rs, cJSON_GetObjectItem(j, "resourceSpans")) {
            cJSON *ss;
            cJSON_ArrayForEach(ss, cJSON_GetObjectItem(rs, "scopeSpans")) {
                spans += cJSON_GetArraySize(cJSON_GetObjectItem(ss, "spans"));
            }
        }
        cJSON_Delete(j);
        if (lines == 1 && sink_available()) {
            char one[96];
            snprintf(one, sizeof one, "%s.first", path);
            FILE *o = fopen(one, "w");
            fputs(line, o);
            fclose(o);
            CHECK(sink_proto_check(one));
            unlink(one);
        }
    }
    free(line);
    if (f) fclose(f);
    CHECK_INT(lines, 4); /* 10 + 10 + 5, then 5 appended */
    CHECK_INT(spans, 30);
    unlink(path);
    logs_reset();
    basalt_set_logger(capture, NULL);
    CHECK(basalt_file_exporter_new("/nonexistent-dir/x.jsonl") == NULL);
    basalt_set_logger(NULL, NULL);
    CHECK_INT(logs_with("cannot open"), 1);
}

/* ---- through the runtime: two exporters, fork ---------------------------------------- */

static void run_traces(int n) {
    for (int i = 0; i < n; i++) {
        basalt_trace_opts to = {0};
        to.name = "QA System";
        to.feature_slug = "qa";
        basalt_ctx *ctx = NULL;
        basalt_error err;
        basalt_span *root = basalt_trace_start(&to, &ctx, &err);
        basalt_span_opts so = {0};
        so.name = "search_knowledge_base";
        so.kind = BASALT_KIND_RETRIEVAL;
        so.parent = ctx;
        basalt_ctx *cctx = NULL;
        basalt_span *child = basalt_span_start(&so, &cctx, &err);
        basalt_span_set_attr(child, "basalt.retrieval.results.count", basalt_v_int(5));
        basalt_span_end(child, 0);
        basalt_span_release(child);
        basalt_ctx_release(cctx);
        basalt_span_end(root, 0);
        basalt_span_release(root);
        basalt_ctx_release(ctx);
    }
}

static void test_two_exporters_and_a_forked_child_through_the_runtime(void) {
    NEED_SINK();
    clear_env();
    sink_proc s;
    CHECK(sink_start(&s, NULL));
    char path[64];
    snprintf(path, sizeof path, "/tmp/basalt-rt-%d.jsonl", (int)getpid());
    unlink(path);
    basalt_exporter *ex[2] = {otlp_to(s.url, 2), basalt_file_exporter_new(path)};
    basalt_config cfg = {0};
    cfg.exporters_set = true;
    cfg.exporters = ex;
    cfg.nexporters = 2;
    cfg.batch_set = true;
    cfg.batch = batch_cfg(64, 10000);
    cfg.service_name = "export-test";
    basalt_error err;
    CHECK(basalt_init(&cfg, &err));
    basalt_exporter_release(ex[0]);
    basalt_exporter_release(ex[1]);
    run_traces(10);
    CHECK(basalt_force_flush(5000));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        run_traces(5);
        bool ok = basalt_force_flush(5000);
        basalt_stats st;
        basalt_get_stats(&st);
        ok = ok && st.nexporters == 2 && st.exporters[0].spans_exported == 30 &&
             st.exporters[1].spans_exported == 30; /* the parent's 20 and its own 10 */
        ok = basalt_shutdown(5000) && ok;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    run_traces(5);
    CHECK(basalt_force_flush(5000));
    basalt_stats st;
    basalt_get_stats(&st);
    CHECK_INT(st.nexporters, 2);
    CHECK_INT(st.exporters[0].spans_exported, 30);
    CHECK_INT(st.exporters[1].spans_exported, 30);
    CHECK_INT(st.spans_exported, 60);
    CHECK_INT(st.spans_dropped, 0);
    CHECK_INT(st.export_failures, 0);
    CHECK(basalt_shutdown(5000));
    cJSON *k = sink_stop(&s);
    CHECK_INT(sink_counter(k, "rejected"), 0);
    CHECK_INT(sink_counter(k, "spans"), 40); /* parent 20 + 10, child 10 */
    bool unique = false;
    CHECK_INT(out_spans(s.out, &unique, false), 40);
    CHECK(unique);
    cJSON_Delete(k);
    unlink(s.out);
    /* The file got the same 40 spans, in whole lines from both processes. */
    FILE *f = fopen(path, "r");
    int spans = 0;
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        CHECK(j != NULL);
        cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "resourceSpans"), 0);
        cJSON *ss;
        cJSON_ArrayForEach(ss, cJSON_GetObjectItem(rs, "scopeSpans")) {
            spans += cJSON_GetArraySize(cJSON_GetObjectItem(ss, "spans"));
        }
        cJSON_Delete(j);
    }
    free(line);
    if (f) fclose(f);
    CHECK_INT(spans, 40);
    unlink(path);
}

TEST_MAIN(TEST_CASE(test_endpoint_resolution_order_and_auth_header),
          TEST_CASE(test_configured_and_otel_headers),
          TEST_CASE(test_endpoint_known_and_nothing_configured),
          TEST_CASE(test_api_key_never_logged_and_4xx_not_retried),
          TEST_CASE(test_partial_success_is_logged_once_and_not_retried),
          TEST_CASE(test_collector_down_counts_failures_and_returns_in_time),
          TEST_CASE(test_file_exporter_appends_parseable_lines),
          TEST_CASE(test_every_span_arrives_exactly_once_with_its_types),
          TEST_CASE(test_gzip_is_accepted), TEST_CASE(test_400_is_final),
          TEST_CASE(test_503_with_retry_after_is_retried_until_delivered),
          TEST_CASE(test_retry_after_is_honoured_within_the_export_deadline),
          TEST_CASE(test_slow_and_hanging_collectors_meet_shutdown_deadline),
          TEST_CASE(test_two_exporters_and_a_forked_child_through_the_runtime))
