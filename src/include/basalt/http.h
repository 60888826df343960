/* HTTP transport over libcurl, shared by the OTLP exporter and the prompts
 * client. One client = one reused connection (keep-alive); a client is used by
 * one thread at a time. One call = one attempt: retry policies live with callers. */
#ifndef BASALT_HTTP_H
#define BASALT_HTTP_H

#include "basalt/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct basalt_http_client basalt_http_client;

/* One request. Headers are "Name: value" strings (CR/LF rejected). */
typedef struct basalt_http_request {
    const char *method; /* "GET", "POST" */
    const char *url;
    const char *const *headers; /* NULL-terminated, or NULL */
    const void *body;           /* may be NULL */
    size_t body_len;
    bool gzip;                   /* compress body, add Content-Encoding: gzip */
    uint32_t connect_timeout_ms; /* 0 = 10000 */
    uint32_t timeout_ms;         /* total, 0 = 30000 */
    uint64_t deadline_ns;        /* absolute monotonic; 0 = none; aborts past it */
    const _Atomic bool *abort;   /* aborts when it becomes true; may be NULL */
    size_t max_response_bytes;   /* body read cap; 0 = 4 MiB */
} basalt_http_request;

/* What came back. */
typedef struct basalt_http_response {
    long status;            /* HTTP status, 0 when no response */
    basalt_buf body;        /* capped at max_response_bytes */
    char content_type[128]; /* "" when absent */
    int64_t retry_after_ms; /* from Retry-After (seconds or HTTP date); -1 when absent */
    bool transport_error;   /* no HTTP response (connect, DNS, reset, timeout) */
    bool timed_out;         /* timeout or deadline passed */
    bool aborted;           /* the abort flag was raised */
    char error[256];        /* human-readable cause when transport_error */
} basalt_http_response;

/* A new client (curl_global_init is done once, thread-safely). NULL on OOM. */
BASALT_API basalt_http_client *basalt_http_client_new(void);
BASALT_API void basalt_http_client_free(basalt_http_client *c);
/* Performs one attempt. Fills resp (initialise it with basalt_http_response_init).
 * Returns true when an HTTP response arrived (any status). */
BASALT_API bool basalt_http_perform(basalt_http_client *c, const basalt_http_request *req,
                                    basalt_http_response *resp);
BASALT_API void basalt_http_response_init(basalt_http_response *resp);
BASALT_API void basalt_http_response_free(basalt_http_response *resp);

/* True for a header line that may be sent (has a name and ':', no CR/LF). */
BASALT_API bool basalt_http_header_valid(const char *line);
/* Retry delay for attempt k (0-based): base * 2^k, capped, with +-20% jitter. */
BASALT_API uint64_t basalt_http_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t max_ms);
/* Sleeps up to ms, waking early when *abort becomes true or the deadline passes.
 * Returns false when it was cut short. */
BASALT_API bool basalt_http_sleep(uint64_t ms, uint64_t deadline_ns, const _Atomic bool *abort);

#ifdef __cplusplus
}
#endif
#endif
