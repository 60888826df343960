/* Span processors: the glue between span end and an exporter. A synchronous
 * processor exports on the caller's thread; a batch processor (the
 * OpenTelemetry BatchSpanProcessor model) queues records for a worker thread. */
#ifndef BASALT_PROCESSOR_H
#define BASALT_PROCESSOR_H

#include "basalt/common.h"
#include "basalt/exporter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Batch settings (defaults from the OpenTelemetry specification). */
typedef struct basalt_batch_config {
    uint32_t max_queue_size;        /* 2048 */
    uint32_t max_export_batch_size; /* 512 */
    uint32_t schedule_delay_ms;     /* 5000 */
    uint32_t export_timeout_ms;     /* 30000 */
    bool blocking;                  /* span end waits for room instead of dropping */
} basalt_batch_config;

/* Fills the OpenTelemetry defaults, then applies OTEL_BSP_* environment values. */
BASALT_API void basalt_batch_config_defaults(basalt_batch_config *cfg);

typedef struct basalt_processor basalt_processor;

/* A processor exporting synchronously on the caller's thread (under a lock). */
BASALT_API basalt_processor *basalt_sync_processor_new(basalt_exporter *exp,
                                                       const basalt_resource *res);
/* A batch processor with its own worker thread. Takes a reference on exp. */
BASALT_API basalt_processor *basalt_batch_processor_new(basalt_exporter *exp,
                                                        const basalt_resource *res,
                                                        const basalt_batch_config *cfg);
/* Hands a finished record over (takes its own reference). Never blocks unless the
 * processor is blocking; a full queue drops the record and counts it. */
BASALT_API void basalt_processor_on_end(basalt_processor *p, const basalt_span_record *rec);
/* Exports everything handed over so far; false when the deadline passed first. */
BASALT_API bool basalt_processor_flush(basalt_processor *p, uint32_t timeout_ms);
/* Flushes, stops the worker and shuts the exporter down, within the deadline. */
BASALT_API bool basalt_processor_shutdown(basalt_processor *p, uint32_t timeout_ms);
/* Frees the processor (after shutdown) and releases its exporter. */
BASALT_API void basalt_processor_free(basalt_processor *p);
/* The exporter behind the processor (counters live there). */
BASALT_API basalt_exporter *basalt_processor_exporter(basalt_processor *p);
/* Spans waiting in the queue now (0 for synchronous processors). */
BASALT_API size_t basalt_processor_queue_size(basalt_processor *p);

/* fork() support: called by the runtime's pthread_atfork handlers. In the child,
 * the queue is emptied and the worker thread restarted. */
BASALT_API void basalt_processor_atfork_prepare(basalt_processor *p);
BASALT_API void basalt_processor_atfork_parent(basalt_processor *p);
BASALT_API void basalt_processor_atfork_child(basalt_processor *p);

#ifdef __cplusplus
}
#endif
#endif
