/* OTLP JSON encoding of span records (ExportTraceServiceRequest), written
 * directly into a byte buffer: no intermediate tree on the hot path. */
#ifndef BASALT_OTLP_JSON_H
#define BASALT_OTLP_JSON_H

#include "basalt/common.h"
#include "basalt/exporter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends one ExportTraceServiceRequest holding recs (grouped by scope) to out.
 * Follows the OTLP JSON mapping: lowerCamelCase keys, hex ids, decimal-string
 * 64-bit integers, integer enums, repaired UTF-8, proto3 non-finite doubles.
 * Returns false only when out of memory. */
BASALT_API bool basalt_otlp_encode(basalt_buf *out, const basalt_resource *res,
                                   const basalt_span_record *const *recs, size_t n);

/* JSON string literal (with quotes) of s, escaping and repairing UTF-8. */
BASALT_API bool basalt_json_write_string(basalt_buf *out, const char *s, size_t len);

#ifdef __cplusplus
}
#endif
#endif
