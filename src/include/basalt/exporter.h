/* Exporters: where finished span records go. A processor (synchronous or
 * batching) owns each exporter and calls it from one thread at a time. */
#ifndef BASALT_EXPORTER_H
#define BASALT_EXPORTER_H

#include "basalt/common.h"
#include "basalt/record.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Resource and instrumentation identity of a pipeline (immutable, shared). */
typedef struct basalt_resource {
    const basalt_kv *attrs;
    size_t nattrs;
} basalt_resource;

/* Result of one export call. */
typedef enum basalt_export_result {
    BASALT_EXPORT_OK = 0,
    BASALT_EXPORT_FAILURE = 1 /* failed for good (after the exporter's own retries) */
} basalt_export_result;

/* Counters of one exporter, updated with relaxed atomics by its processor and
 * by the exporter (retries); read at any time by basalt_stats(). */
typedef struct basalt_exporter_counters {
    _Atomic uint64_t exported; /* spans in exports that succeeded */
    _Atomic uint64_t failed;   /* spans in exports that failed for good */
    _Atomic uint64_t failures; /* export calls that failed for good */
    _Atomic uint64_t retries;  /* extra attempts made by the exporter */
    _Atomic uint64_t dropped;  /* spans refused by a full queue */
    _Atomic uint64_t queued;   /* spans waiting in the queue now */
} basalt_exporter_counters;

typedef struct basalt_exporter basalt_exporter;

/* Exporter operations. Deadlines are absolute basalt_monotonic_ns() values. */
typedef struct basalt_exporter_ops {
    const char *type; /* "otlp", "console", "file", "memory", ... */
    /* Exports n records. Must return by the deadline; never raises or aborts. */
    basalt_export_result (*export_spans)(basalt_exporter *e, const basalt_resource *res,
                                         const basalt_span_record *const *recs, size_t n,
                                         uint64_t deadline_ns);
    /* Makes exported data durable/visible (fsync, stdout flush). Optional. */
    bool (*flush)(basalt_exporter *e, uint64_t deadline_ns);
    /* Called once, last, before destroy. Optional. */
    void (*shutdown)(basalt_exporter *e, uint64_t deadline_ns);
    /* Frees the exporter. */
    void (*destroy)(basalt_exporter *e);
} basalt_exporter_ops;

/* Base of every exporter; concrete exporters embed it first. */
struct basalt_exporter {
    const basalt_exporter_ops *ops;
    bool synchronous;     /* export at span end on the caller's thread (memory, console) */
    _Atomic int refcount; /* a memory exporter is shared with Lua handles */
    _Atomic bool abort;   /* set by shutdown deadlines: give up in-flight work now */
    basalt_exporter_counters counters;
};

/* Initialises the base part. */
BASALT_API void basalt_exporter_init(basalt_exporter *e, const basalt_exporter_ops *ops,
                                     bool synchronous);
/* Reference counting (thread-safe); the last release calls ops->destroy. */
BASALT_API void basalt_exporter_retain(basalt_exporter *e);
BASALT_API void basalt_exporter_release(basalt_exporter *e);

/* ---- built-in exporters ---------------------------------------------------- */

/* Memory exporter: keeps every record it gets, synchronously, for tests. */
BASALT_API basalt_exporter *basalt_memory_exporter_new(void);
/* Number of records held. */
BASALT_API size_t basalt_memory_exporter_count(basalt_exporter *e);
/* Copies up to cap retained record pointers into out (caller releases each);
 * returns how many were written. Records are in end order. */
BASALT_API size_t basalt_memory_exporter_snapshot(basalt_exporter *e,
                                                  const basalt_span_record **out, size_t cap);
/* Forgets every record. */
BASALT_API void basalt_memory_exporter_clear(basalt_exporter *e);

/* Console exporter: prints each finished trace as an indented tree to `out`
 * (stdout when NULL) when its local root ends. */
BASALT_API basalt_exporter *basalt_console_exporter_new(void *file /* FILE* */);

/* File exporter: appends one OTLP JSON ExportTraceServiceRequest per line;
 * flush fsyncs. NULL (with a logged error) when the file cannot be opened. */
BASALT_API basalt_exporter *basalt_file_exporter_new(const char *path);

/* OTLP/HTTP JSON exporter configuration. */
typedef struct basalt_otlp_config {
    /* Full URL (used verbatim). NULL: resolved as Decisions 14/16 of the spec:
     * BASALT_OTEL_EXPORTER_OTLP_ENDPOINT (alias BASALT_OTEL_ENDPOINT),
     * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces",
     * then https://otel.getbasalt.ai/v1/traces when api_key is set. */
    const char *endpoint;
    const char *api_key;        /* sent as authorization: Bearer only to Basalt endpoints */
    const char *const *headers; /* NULL-terminated "name: value" strings, or NULL;
                                   OTEL_EXPORTER_OTLP_HEADERS is added for OTEL_* endpoints */
    uint32_t timeout_ms;        /* per HTTP request; 0 = 10000 */
    int compression;            /* 0 unset (OTEL_EXPORTER_OTLP_COMPRESSION), 1 none, 2 gzip */
} basalt_otlp_config;

/* True when an OTLP endpoint is known from the environment or an API key is given
 * (the default exporter is OTLP then, else console). */
BASALT_API bool basalt_otlp_endpoint_known(const char *api_key);

/* OTLP/HTTP JSON exporter (libcurl, keep-alive, retries with backoff). NULL with a
 * logged error when the configuration is invalid (e.g. a header with CR/LF). */
BASALT_API basalt_exporter *basalt_otlp_exporter_new(const basalt_otlp_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
