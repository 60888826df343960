/* HTTP transport over libcurl (basalt/http.h): one easy handle per client, driven
 * through a private multi handle so the wait loop wakes at least every
 * POLL_SLICE_MS to check the abort flag and the deadline (curl_easy_perform can
 * sleep up to a second between progress callbacks). The multi handle keeps the
 * connection cache, so consecutive requests reuse one keep-alive connection. */
#include "basalt/http.h"
#include "basalt/ids.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define POLL_SLICE_MS        20
#define DEFAULT_CONNECT_MS   10000u
#define DEFAULT_TIMEOUT_MS   30000u
#define DEFAULT_MAX_RESPONSE (4u * 1024u * 1024u)
#define MAX_SOCKETS          8
#define UPLOAD_BUFFER        (512L * 1024L) /* curl caps it at 2 MiB */

struct basalt_http_client {
    CURLM *multi;
    CURL *easy;
    pid_t pid;                /* process that created the handles (fork detection) */
    bool in_perform;          /* a transfer is under way (seen by a forked child) */
    int sockets[MAX_SOCKETS]; /* sockets curl opened, -1 when free */
    basalt_buf gz;            /* compressed body, reused */
};

/* Per-request state shared with curl's callbacks. */
typedef struct xfer {
    basalt_http_response *resp;
    size_t cap;
    bool capped; /* the body passed the cap: transfer stopped on purpose */
    uint64_t deadline_ns;
    const _Atomic bool *abort;
} xfer;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static bool global_ok = false; /* written once under global_once */

static void global_init(void) {
    global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* Handles a forked child inherited while a transfer was under way in a thread
 * that no longer exists: their state is unknowable, so they are never touched
 * again, only kept reachable. Guarded by abandoned_lock. */
#define MAX_ABANDONED 16
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static void *abandoned[MAX_ABANDONED];
static size_t nabandoned = 0;

static curl_socket_t open_socket_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    basalt_http_client *c = ud;
    (void)purpose;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    for (int i = 0; i < MAX_SOCKETS; i++) {
        if (c->sockets[i] < 0) {
            c->sockets[i] = fd;
            break;
        }
    }
    return fd;
}

static int close_socket_cb(void *ud, curl_socket_t fd) {
    basalt_http_client *c = ud;
    for (int i = 0; i < MAX_SOCKETS; i++)
        if (c->sockets[i] == fd) c->sockets[i] = -1;
    return close(fd);
}

static bool make_handles(basalt_http_client *c) {
    c->multi = curl_multi_init();
    c->easy = curl_easy_init();
    c->pid = getpid();
    c->in_perform = false;
    for (int i = 0; i < MAX_SOCKETS; i++)
        c->sockets[i] = -1;
    return c->multi && c->easy;
}

static void free_handles(basalt_http_client *c) {
    if (c->easy) curl_easy_cleanup(c->easy);
    if (c->multi) curl_multi_cleanup(c->multi);
    c->easy = NULL;
    c->multi = NULL;
}

/* In a forked child the connections are shared with the parent: point our copies
 * of the sockets at /dev/null first, so closing them (a TLS close_notify
 * included) cannot write into the parent's connection, then start afresh. */
static bool reset_after_fork(basalt_http_client *c) {
    if (c->in_perform) {
        pthread_mutex_lock(&abandoned_lock);
        if (nabandoned + 2 <= MAX_ABANDONED) {
            abandoned[nabandoned++] = c->easy;
            abandoned[nabandoned++] = c->multi;
        }
        pthread_mutex_unlock(&abandoned_lock);
    } else {
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int i = 0; i < MAX_SOCKETS && devnull >= 0; i++)
            if (c->sockets[i] >= 0) dup2(devnull, c->sockets[i]);
        if (devnull >= 0) close(devnull);
        free_handles(c);
    }
    c->easy = NULL;
    c->multi = NULL;
    return make_handles(c);
}

basalt_http_client *basalt_http_client_new(void) {
    pthread_once(&global_once, global_init);
    if (!global_ok) return NULL;
    basalt_http_client *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    if (!make_handles(c)) {
        free_handles(c);
        free(c);
        return NULL;
    }
    return c;
}

void basalt_http_client_free(basalt_http_client *c) {
    if (c == NULL) return;
    if (c->pid != getpid()) reset_after_fork(c); /* never close the parent's connection from here */
    free_handles(c);
    basalt_buf_free(&c->gz);
    free(c);
}

void basalt_http_response_init(basalt_http_response *resp) {
    memset(resp, 0, sizeof *resp);
    resp->retry_after_ms = -1;
}

void basalt_http_response_free(basalt_http_response *resp) {
    basalt_buf_free(&resp->body);
}

bool basalt_http_header_valid(const char *line) {
    if (line == NULL) return false;
    const char *colon = strchr(line, ':');
    if (colon == NULL || colon == line) return false;
    for (const char *p = line; *p; p++) {
        if (*p == '\r' || *p == '\n') return false;
        if (p < colon && (*p == ' ' || *p == '\t')) return false; /* no space in a name */
    }
    return true;
}

uint64_t basalt_http_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms) {
    uint64_t d = base_ms;
    for (unsigned i = 0; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms) d = max_ms;
    /* +-20%: d * (0.8 + 0.4 * u), u uniform in [0, 1). */
    double u = (double)(basalt_random_u64() >> 11) / 9007199254740992.0;
    uint64_t j = (uint64_t)((double)d * (0.8 + 0.4 * u));
    return j > max_ms ? max_ms : j;
}

static bool should_stop(uint64_t deadline_ns, const _Atomic bool *abort) {
    if (abort && atomic_load_explicit(abort, memory_order_acquire)) return true;
    return deadline_ns && basalt_monotonic_ns() >= deadline_ns;
}

bool basalt_http_sleep(uint64_t ms, uint64_t deadline_ns, const _Atomic bool *abort) {
    uint64_t end = basalt_monotonic_ns() + ms * 1000000u;
    for (;;) {
        if (should_stop(deadline_ns, abort)) return false;
        uint64_t now = basalt_monotonic_ns();
        if (now >= end) return true;
        uint64_t slice = end - now;
        if (slice > 10000000u) slice = 10000000u; /* wake every 10 ms to look at abort */
        if (deadline_ns && deadline_ns > now && deadline_ns - now < slice)
            slice = deadline_ns - now;
        struct timespec ts = {(time_t)(slice / 1000000000u), (long)(slice % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

/* ---- curl callbacks ----------------------------------------------------------- */

static size_t write_cb(char *p, size_t size, size_t n, void *ud) {
    xfer *x = ud;
    size_t len = size * n;
    basalt_buf *b = &x->resp->body;
    if (b->len + len > x->cap) {
        basalt_buf_append(b, p, x->cap - b->len);
        x->capped = true;
        return 0; /* stop reading: the rest is not wanted */
    }
    return basalt_buf_append(b, p, len) ? len : 0;
}

/* Retry-After: delta-seconds or an HTTP-date. */
static int64_t parse_retry_after(const char *v) {
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        char *end = NULL;
        long long s = strtoll(v, &end, 10);
        if (s < 0 || s > 86400 * 365) return -1;
        return (int64_t)s * 1000;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1) return -1;
    time_t now = time(NULL);
    return t > now ? (int64_t)(t - now) * 1000 : 0;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value) {
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':') return false;
    *value = line + n + 1;
    return true;
}

static size_t header_cb(char *p, size_t size, size_t n, void *ud) {
    xfer *x = ud;
    size_t len = size * n;
    char line[512];
    size_t l = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, p, l);
    line[l] = '\0';
    while (l && (line[l - 1] == '\r' || line[l - 1] == '\n'))
        line[--l] = '\0';
    const char *v;
    if (strncmp(line, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue or a redirect): forget the old one. */
        x->resp->content_type[0] = '\0';
        x->resp->retry_after_ms = -1;
    } else if (header_is(line, l, "content-type", &v)) {
        while (*v == ' ')
            v++;
        size_t vl = strlen(v), cap = sizeof x->resp->content_type - 1;
        if (vl > cap) vl = cap; /* an overlong media type is cut, not overflowed */
        memcpy(x->resp->content_type, v, vl);
        x->resp->content_type[vl] = '\0';
    } else if (header_is(line, l, "retry-after", &v)) {
        x->resp->retry_after_ms = parse_retry_after(v);
    }
    return len;
}

static int xferinfo_cb(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    xfer *x = ud;
    (void)dt, (void)dn, (void)ut, (void)un;
    return should_stop(x->deadline_ns, x->abort) ? 1 : 0;
}

/* ---- one request ---------------------------------------------------------------- */

static bool gzip_body(basalt_buf *out, const void *body, size_t len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16: a gzip wrapper rather than zlib's. */
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    uLong bound = deflateBound(&z, (uLong)len);
    basalt_buf_clear(out);
    if (!basalt_buf_reserve(out, bound)) {
        deflateEnd(&z);
        return false;
    }
    z.next_in = (Bytef *)(uintptr_t)body;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out->data;
    z.avail_out = (uInt)bound;
    int rc = deflate(&z, Z_FINISH);
    out->len = z.total_out;
    deflateEnd(&z);
    return rc == Z_STREAM_END;
}

static void set_error(basalt_http_response *resp, const char *msg) {
    resp->transport_error = true;
    snprintf(resp->error, sizeof resp->error, "%s", msg);
}

/* Builds the header list; NULL-safe on failure (returns false). */
static bool build_headers(const basalt_http_request *req, struct curl_slist **out) {
    struct curl_slist *h = NULL, *t;
    /* No "Expect: 100-continue" round trip on large bodies. */
    if ((t = curl_slist_append(h, "Expect:")) == NULL) goto fail;
    h = t;
    if (req->gzip) {
        if ((t = curl_slist_append(h, "Content-Encoding: gzip")) == NULL) goto fail;
        h = t;
    }
    for (const char *const *p = req->headers; p && *p; p++) {
        if ((t = curl_slist_append(h, *p)) == NULL) goto fail;
        h = t;
    }
    *out = h;
    return true;
fail:
    curl_slist_free_all(h);
    return false;
}

static void setup_easy(basalt_http_client *c, const basalt_http_request *req, xfer *x,
                       struct curl_slist *hdrs, long total_ms, char *errbuf) {
    CURL *e = c->easy;
    curl_easy_reset(e); /* options only: the connection cache stays in the multi handle */
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(
        e, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(req->connect_timeout_ms ? req->connect_timeout_ms : DEFAULT_CONNECT_MS));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, total_ms);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, c);
    const char *method = req->method ? req->method : "GET";
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        const void *body = req->body ? req->body : "";
        size_t len = req->body ? req->body_len : 0;
        if (req->gzip) {
            body = c->gz.data;
            len = c->gz.len;
        }
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        /* curl copies the body through this buffer: at its 64 KiB default a
         * 512-span batch takes six sends and a dozen polls, each a kernel entry. */
        curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, UPLOAD_BUFFER);
        if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
}

/* Runs the transfer to completion, the deadline or the abort flag. */
static CURLcode run_transfer(basalt_http_client *c, xfer *x) {
    CURLcode rc = CURLE_OK;
    bool done = false;
    if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK) return CURLE_FAILED_INIT;
    c->in_perform = true;
    while (!done) {
        int running = 0;
        if (curl_multi_perform(c->multi, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }
        int left;
        CURLMsg *m;
        while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (m->msg == CURLMSG_DONE && m->easy_handle == c->easy) {
                rc = m->data.result;
                done = true;
            }
        }
        if (done) break;
        if (should_stop(x->deadline_ns, x->abort)) {
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        curl_multi_poll(c->multi, NULL, 0, POLL_SLICE_MS, NULL);
    }
    curl_multi_remove_handle(c->multi, c->easy);
    c->in_perform = false;
    return rc;
}

bool basalt_http_perform(basalt_http_client *c, const basalt_http_request *req,
                         basalt_http_response *resp) {
    basalt_buf_clear(&resp->body);
    resp->status = 0;
    resp->content_type[0] = '\0';
    resp->retry_after_ms = -1;
    resp->transport_error = resp->timed_out = resp->aborted = false;
    resp->error[0] = '\0';

    if (req->url == NULL || *req->url == '\0') {
        set_error(resp, "no URL");
        return false;
    }
    for (const char *const *p = req->headers; p && *p; p++) {
        if (!basalt_http_header_valid(*p)) {
            set_error(resp, "invalid header (no name, or CR/LF in it)");
            return false;
        }
    }
    if (c->pid != getpid() && !reset_after_fork(c)) {
        set_error(resp, "cannot create a curl handle");
        return false;
    }
    uint64_t now = basalt_monotonic_ns();
    if (should_stop(req->deadline_ns, req->abort)) {
        resp->transport_error = true;
        resp->aborted = req->abort && atomic_load(req->abort);
        resp->timed_out = !resp->aborted;
        snprintf(resp->error, sizeof resp->error, "%s before the request started",
                 resp->aborted ? "aborted" : "deadline passed");
        return false;
    }
    long total_ms = (long)(req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS);
    if (req->deadline_ns) {
        long left = (long)((req->deadline_ns - now + 999999u) / 1000000u);
        if (left < total_ms) total_ms = left;
    }
    if (req->gzip &&
        !gzip_body(&c->gz, req->body ? req->body : "", req->body ? req->body_len : 0)) {
        set_error(resp, "gzip failed");
        return false;
    }
    struct curl_slist *hdrs = NULL;
    if (!build_headers(req, &hdrs)) {
        set_error(resp, "out of memory");
        return false;
    }
    xfer x = {.resp = resp,
              .cap = req->max_response_bytes ? req->max_response_bytes : DEFAULT_MAX_RESPONSE,
              .capped = false,
              .deadline_ns = req->deadline_ns,
              .abort = req->abort};
    char errbuf[CURL_ERROR_SIZE];
    errbuf[0] = '\0';
    setup_easy(c, req, &x, hdrs, total_ms, errbuf);
    CURLcode rc = run_transfer(c, &x);
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);

    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && x.capped && status > 0)) {
        resp->status = status;
        return true;
    }
    resp->transport_error = true;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        resp->aborted = req->abort && atomic_load(req->abort);
        resp->timed_out = !resp->aborted;
        snprintf(resp->error, sizeof resp->error, "%s",
                 resp->aborted ? "aborted" : "deadline passed");
    } else {
        resp->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
        snprintf(resp->error, sizeof resp->error, "%s%s%s", curl_easy_strerror(rc),
                 errbuf[0] ? ": " : "", errbuf);
        size_t l = strlen(resp->error);
        while (l && resp->error[l - 1] == '\n')
            resp->error[--l] = '\0';
    }
    return false;
}
