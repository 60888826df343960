/* The libcurl transport against a loopback server of the test's own: keep-alive,
 * captured headers, Retry-After forms, header validation, the response cap,
 * deadlines and the abort flag on a hanging server, gzip bodies, backoff, sleep,
 * and a forked child opening its own connection. */
#include "basalt/http.h"
#include "check.h"
#include "loopback.h"

#include <stdatomic.h>
#include <sys/wait.h>

static const char *const json_headers[] = {"Content-Type: application/json", NULL};

static basalt_http_request post(const char *url, const char *body) {
    basalt_http_request r = {0};
    r.method = "POST";
    r.url = url;
    r.headers = json_headers;
    r.body = body;
    r.body_len = strlen(body);
    r.timeout_ms = 5000;
    return r;
}

static void test_requests_reuse_one_connection(void) {
    lb_server *s = lb_start();
    char url[64];
    lb_url(s, url, sizeof url, "/v1/traces");
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    for (int i = 0; i < 3; i++) {
        basalt_http_request r = post(url, "{\"a\":1}");
        CHECK(basalt_http_perform(c, &r, &resp));
        CHECK_INT(resp.status, 200);
        CHECK_STR(basalt_buf_cstr(&resp.body), "{}");
        CHECK_STR(resp.content_type, "application/json");
        CHECK_INT(resp.retry_after_ms, -1);
        CHECK(!resp.transport_error);
    }
    pthread_mutex_lock(&s->lock);
    CHECK_INT(s->connections, 1);
    CHECK_INT(s->requests, 3);
    s->last_request[s->last_len] = '\0';
    CHECK(strstr(s->last_request, "POST /v1/traces HTTP/1.1\r\n") == s->last_request);
    CHECK(strstr(s->last_request, "Content-Type: application/json\r\n") != NULL);
    CHECK(strstr(s->last_request, "Expect:") == NULL);
    CHECK(strstr(s->last_request, "\r\n\r\n{\"a\":1}") != NULL);
    pthread_mutex_unlock(&s->lock);
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
    lb_stop(s);
}

static void test_retry_after_seconds_and_date(void) {
    lb_server *s = lb_start();
    char url[64];
    lb_url(s, url, sizeof url, "/");
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);

    lb_set_reply(s, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7", "", 0);
    basalt_http_request r = post(url, "{}");
    CHECK(basalt_http_perform(c, &r, &resp));
    CHECK_INT(resp.status, 503);
    CHECK_INT(resp.retry_after_ms, 7000);

    char hdr[160], date[64];
    time_t when = time(NULL) + 30;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(hdr, sizeof hdr, "HTTP/1.1 429 Too Many Requests\r\nretry-after: %s", date);
    lb_set_reply(s, hdr, "", 0);
    CHECK(basalt_http_perform(c, &r, &resp));
    CHECK_INT(resp.status, 429);
    CHECK(resp.retry_after_ms >= 28000 && resp.retry_after_ms <= 31000);

    lb_set_reply(s, "HTTP/1.1 503 Service Unavailable\r\nRetry-After: soon", "", 0);
    CHECK(basalt_http_perform(c, &r, &resp));
    CHECK_INT(resp.retry_after_ms, -1);
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
    lb_stop(s);
}

static void test_header_validation(void) {
    static const struct {
        const char *line;
        bool ok;
    } cases[] = {
        {"Authorization: Bearer x", true},
        {"x-a:b", true},
        {"X-Empty:", true},
        {"no colon", false},
        {": no name", false},
        {"Bad Name: v", false},
        {"X-A: v\r\nX-Injected: 1", false},
        {"X-A: v\n", false},
        {"X-A: \rv", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (basalt_http_header_valid(cases[i].line) != cases[i].ok)
            fprintf(stderr, "  header case %zu (%s)\n", i, cases[i].line);
        CHECK(basalt_http_header_valid(cases[i].line) == cases[i].ok);
    }
    CHECK(!basalt_http_header_valid(NULL));

    /* A request with such a header is never sent. */
    lb_server *s = lb_start();
    char url[64];
    lb_url(s, url, sizeof url, "/");
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    const char *const bad[] = {"X-A: 1\r\nX-B: 2", NULL};
    basalt_http_request r = post(url, "{}");
    r.headers = bad;
    CHECK(!basalt_http_perform(c, &r, &resp));
    CHECK(resp.transport_error);
    CHECK_INT(resp.status, 0);
    usleep(50000);
    pthread_mutex_lock(&s->lock);
    CHECK_INT(s->requests, 0);
    pthread_mutex_unlock(&s->lock);
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
    lb_stop(s);
}

static void test_response_body_is_capped(void) {
    lb_server *s = lb_start();
    char url[64];
    lb_url(s, url, sizeof url, "/");
    size_t big = 100000;
    char *body = malloc(big);
    memset(body, 'x', big);
    lb_set_reply(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain", body, big);
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    basalt_http_request r = post(url, "{}");
    r.max_response_bytes = 1000;
    CHECK(basalt_http_perform(c, &r, &resp));
    CHECK_INT(resp.status, 200);
    CHECK_INT(resp.body.len, 1000);
    CHECK_STR(resp.content_type, "text/plain");
    r.max_response_bytes = 0; /* default 4 MiB: everything */
    CHECK(basalt_http_perform(c, &r, &resp));
    CHECK_INT(resp.body.len, big);
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
    free(body);
    lb_stop(s);
}

static void test_hanging_server_is_cut_at_the_deadline(void) {
    lb_server *s = lb_start();
    s->delay_ms = 20000;
    char url[64];
    lb_url(s, url, sizeof url, "/");
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    basalt_http_request r = post(url, "{}");
    r.timeout_ms = 60000;
    uint64_t t0 = basalt_monotonic_ns();
    r.deadline_ns = t0 + 300000000u;
    CHECK(!basalt_http_perform(c, &r, &resp));
    uint64_t ms = (basalt_monotonic_ns() - t0) / 1000000u;
    CHECK(ms >= 250 && ms < 600);
    CHECK(resp.transport_error);
    CHECK(resp.timed_out);
    CHECK(!resp.aborted);

    /* The request's own total timeout also cuts it. */
    r.deadline_ns = 0;
    r.timeout_ms = 300;
    t0 = basalt_monotonic_ns();
    CHECK(!basalt_http_perform(c, &r, &resp));
    ms = (basalt_monotonic_ns() - t0) / 1000000u;
    CHECK(ms >= 250 && ms < 600);
    CHECK(resp.timed_out);
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
    lb_stop(s);
}

typedef struct {
    _Atomic bool *flag;
    int after_ms;
} raiser;

static void *raise_later(void *arg) {
    raiser *r = arg;
    usleep((useconds_t)r->after_ms * 1000);
    atomic_store(r->flag, true);
    return NULL;
}

static void test_abort_flag_cuts_a_request_and_a_sleep(void) {
    lb_server *s = lb_start();
    s->delay_ms = 20000;
    char url[64];
    lb_url(s, url, sizeof url, "/");
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    _Atomic bool abort_flag = false;
    raiser ra = {&abort_flag, 200};
    pthread_t th;
    pthread_create(&th, NULL, raise_later, &ra);
    basalt_http_request r = post(url, "{}");
    r.timeout_ms = 60000;
    r.abort = &abort_flag;
    uint64_t t0 = basalt_monotonic_ns();
    CHECK(!basalt_http_perform(c, &r, &resp));
    uint64_t ms = (basalt_monotonic_ns() - t0) / 1000000u;
    pthread_join(th, NULL);
    CHECK(ms >= 150 && ms < 500);
    CHECK(resp.aborted);
    /* Already raised: nothing is attempted. */
    CHECK(!basalt_http_perform(c, &r, &resp));
    CHECK(resp.aborted);

    atomic_store(&abort_flag, false);
    pthread_create(&th, NULL, raise_later, &ra);
    t0 = basalt_monotonic_ns();
    CHECK(!basalt_http_sleep(5000, 0, &abort_flag));
    ms = (basalt_monotonic_ns() - t0) / 1000000u;
    pthread_join(th, NULL);
    CHECK(ms >= 150 && ms < 400);

    t0 = basalt_monotonic_ns();
    CHECK(!basalt_http_sleep(5000, t0 + 100000000u, NULL));
    ms = (basalt_monotonic_ns() - t0) / 1000000u;
    CHECK(ms >= 90 && ms < 300);
    t0 = basalt_monotonic_ns();
    CHECK(basalt_http_sleep(50, 0, NULL));
    ms = (basalt_monotonic_ns() - t0) / 1000000u;
    CHECK(ms >= 50 && ms < 200);
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
    lb_stop(s);
}

static void test_connection_refused_is_a_transport_error(void) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/traces", lb_dead_port());
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    basalt_http_request r = post(url, "{}");
    uint64_t t0 = basalt_monotonic_ns();
    CHECK(!basalt_http_perform(c, &r, &resp));
    CHECK((basalt_monotonic_ns() - t0) / 1000000u < 2000);
    CHECK(resp.transport_error);
    CHECK(!resp.timed_out);
    CHECK_INT(resp.status, 0);
    CHECK(resp.error[0] != '\0');
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
}

static void test_gzip_body_is_sent_compressed(void) {
    lb_server *s = lb_start();
    char url[64];
    lb_url(s, url, sizeof url, "/");
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    char body[4096];
    memset(body, 'a', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    basalt_http_request r = post(url, body);
    r.gzip = true;
    CHECK(basalt_http_perform(c, &r, &resp));
    CHECK_INT(resp.status, 200);
    pthread_mutex_lock(&s->lock);
    char *hdr_end = memmem(s->last_request, s->last_len, "\r\n\r\n", 4);
    CHECK(hdr_end != NULL);
    if (hdr_end) {
        *hdr_end = '\0';
        CHECK(strstr(s->last_request, "Content-Encoding: gzip\r\n") != NULL);
        unsigned char *b = (unsigned char *)hdr_end + 4;
        size_t blen = s->last_len - (size_t)(hdr_end + 4 - s->last_request);
        CHECK(blen > 10 && blen < 200); /* 4 KiB of 'a' compresses to a few dozen bytes */
        CHECK(b[0] == 0x1f && b[1] == 0x8b);
    }
    pthread_mutex_unlock(&s->lock);
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
    lb_stop(s);
}

static void test_backoff_doubles_with_jitter_and_cap(void) {
    for (unsigned k = 0; k < 6; k++) {
        uint64_t lo = UINT64_MAX, hi = 0;
        for (int i = 0; i < 200; i++) {
            uint64_t d = basalt_http_backoff_ms(k, 100, 100000);
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        uint64_t mid = 100u << k;
        CHECK(lo >= mid * 8 / 10 && hi <= mid * 12 / 10);
        CHECK(hi > lo); /* jitter */
    }
    for (int i = 0; i < 100; i++)
        CHECK(basalt_http_backoff_ms(30, 1000, 5000) <= 5000);
    CHECK(basalt_http_backoff_ms(200, 1000, 5000) >= 4000); /* no overflow */
}

static void test_forked_child_uses_its_own_connection(void) {
    lb_server *s = lb_start();
    char url[64];
    lb_url(s, url, sizeof url, "/");
    basalt_http_client *c = basalt_http_client_new();
    basalt_http_response resp;
    basalt_http_response_init(&resp);
    basalt_http_request r = post(url, "{}");
    CHECK(basalt_http_perform(c, &r, &resp));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        bool ok = basalt_http_perform(c, &r, &resp) && resp.status == 200;
        basalt_http_response_free(&resp);
        basalt_http_client_free(c);
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(basalt_http_perform(c, &r, &resp));
    CHECK_INT(resp.status, 200);
    pthread_mutex_lock(&s->lock);
    CHECK_INT(s->connections, 2); /* the parent's, kept alive, and the child's */
    CHECK_INT(s->requests, 3);
    pthread_mutex_unlock(&s->lock);
    basalt_http_response_free(&resp);
    basalt_http_client_free(c);
    lb_stop(s);
}

TEST_MAIN(TEST_CASE(test_requests_reuse_one_connection),
          TEST_CASE(test_retry_after_seconds_and_date), TEST_CASE(test_header_validation),
          TEST_CASE(test_response_body_is_capped),
          TEST_CASE(test_hanging_server_is_cut_at_the_deadline),
          TEST_CASE(test_abort_flag_cuts_a_request_and_a_sleep),
          TEST_CASE(test_connection_refused_is_a_transport_error),
          TEST_CASE(test_gzip_body_is_sent_compressed),
          TEST_CASE(test_backoff_doubles_with_jitter_and_cap),
          TEST_CASE(test_forked_child_uses_its_own_connection))
