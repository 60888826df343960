/* W3C Trace Context (traceparent, tracestate) and Baggage headers, parsed
 * strictly: a malformed header is rejected as a whole. */
#ifndef BASALT_PROPAGATION_H
#define BASALT_PROPAGATION_H

#include "basalt/common.h"
#include "basalt/context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A parsed traceparent. */
typedef struct basalt_traceparent {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;
} basalt_traceparent;

/* Parses "00-<32 hex>-<16 hex>-<2 hex>" (lowercase, non-zero ids; version ff
 * invalid; future versions accept extra "-..." fields). */
BASALT_API bool basalt_traceparent_parse(const char *s, basalt_traceparent *out);
/* Writes the version-00 form (55 chars + NUL) into out. */
BASALT_API void basalt_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8],
                                          uint8_t flags, char out[56]);
/* Validates a tracestate header (list-members key=value, at most 32). */
BASALT_API bool basalt_tracestate_valid(const char *s);
/* Validates a baggage header (key=value[;props], comma separated, W3C limits). */
BASALT_API bool basalt_baggage_valid(const char *s);

/* Extracts a remote context from header values (each may be NULL). Returns NULL
 * when traceparent is missing or invalid; an invalid tracestate or baggage is
 * dropped on its own. New reference. */
BASALT_API basalt_ctx *basalt_extract(const char *traceparent, const char *tracestate,
                                      const char *baggage);

/* Header writer callback for inject. */
typedef void (*basalt_header_fn)(void *ud, const char *name, const char *value);
/* Writes traceparent (flags 01) and, when present, tracestate and baggage for the
 * context's current span. Returns false (writing nothing) without a valid span. */
BASALT_API bool basalt_inject(const basalt_ctx *c, basalt_header_fn fn, void *ud);

#ifdef __cplusplus
}
#endif
#endif
