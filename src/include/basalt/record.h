/* Finished span records: what span end hands to exporters. Immutable once
 * ended; shared between exporters by reference count. Only C data: no Lua. */
#ifndef BASALT_RECORD_H
#define BASALT_RECORD_H

#include "basalt/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* OpenTelemetry span kinds (OTLP enum values). */
typedef enum basalt_otel_kind {
    BASALT_OTEL_UNSPECIFIED = 0,
    BASALT_OTEL_INTERNAL = 1,
    BASALT_OTEL_SERVER = 2,
    BASALT_OTEL_CLIENT = 3,
    BASALT_OTEL_PRODUCER = 4,
    BASALT_OTEL_CONSUMER = 5
} basalt_otel_kind;

/* Span status codes (OTLP enum values). */
typedef enum basalt_status_code {
    BASALT_STATUS_UNSET = 0,
    BASALT_STATUS_OK = 1,
    BASALT_STATUS_ERROR = 2
} basalt_status_code;

/* A span event (e.g. "exception"). */
typedef struct basalt_event {
    const char *name;
    uint64_t time_ns;
    const basalt_kv *attrs;
    uint32_t nattrs;
} basalt_event;

/* A finished span. Every string is NUL-terminated and valid UTF-8 (repaired at
 * write time). Attributes are final: propagated values (feature slug, identity,
 * evaluators, should_evaluate, global metadata, prompt context) and markers are
 * already materialised, with explicit writes winning over propagated ones. */
typedef struct basalt_span_record {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_span_id[8];
    bool has_parent;         /* parent_span_id is meaningful */
    bool parent_is_remote;   /* the parent came from an extracted traceparent */
    uint8_t trace_flags;     /* W3C flags; 0x01 = sampled */
    const char *trace_state; /* W3C tracestate or NULL */

    const char *name;
    basalt_otel_kind kind;
    const char *scope_name;    /* instrumentation scope, e.g. "basalt.observability" */
    const char *scope_version; /* may be NULL */

    uint64_t start_ns; /* Unix epoch nanoseconds */
    uint64_t end_ns;

    const basalt_kv *attrs;
    uint32_t nattrs;
    uint32_t dropped_attrs;

    const basalt_event *events;
    uint32_t nevents;
    uint32_t dropped_events;

    basalt_status_code status_code;
    const char *status_message; /* NULL when none */
} basalt_span_record;

/* Takes one more reference (exporter fan-out, queues). Thread-safe. */
BASALT_API void basalt_record_retain(const basalt_span_record *rec);
/* Drops one reference; the last one frees the record. Thread-safe. */
BASALT_API void basalt_record_release(const basalt_span_record *rec);
/* Finds an attribute by key; NULL when absent. */
BASALT_API const basalt_value *basalt_record_attr(const basalt_span_record *rec, const char *key);

/* Builds a standalone record (tests, C hosts replaying data). Copies everything;
 * returns a record with one reference, or NULL when out of memory. */
BASALT_API basalt_span_record *basalt_record_clone(const basalt_span_record *tmpl);

/* Lowercase hex of n bytes into out (2n chars + NUL). */
BASALT_API void basalt_hex_encode(const uint8_t *bytes, size_t n, char *out);
/* Parses exactly 2n lowercase-or-uppercase hex chars; false when malformed. */
BASALT_API bool basalt_hex_decode(const char *hex, size_t n, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif
