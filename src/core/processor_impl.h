/* Internal: the processor interface that the synchronous and batch processors
 * implement (processor.c dispatches the public functions through it). */
#ifndef BASALT_PROCESSOR_IMPL_H
#define BASALT_PROCESSOR_IMPL_H

#include "basalt/processor.h"

typedef struct basalt_processor_ops {
    void (*on_end)(basalt_processor *p, const basalt_span_record *rec);
    bool (*flush)(basalt_processor *p, uint32_t timeout_ms);
    bool (*shutdown)(basalt_processor *p, uint32_t timeout_ms);
    void (*destroy)(basalt_processor *p); /* frees p; the exporter is released by the caller */
    size_t (*queue_size)(basalt_processor *p);
    void (*atfork_prepare)(basalt_processor *p); /* optional */
    void (*atfork_parent)(basalt_processor *p);  /* optional */
    void (*atfork_child)(basalt_processor *p);   /* optional */
} basalt_processor_ops;

/* Base of every processor; implementations embed it first. */
struct basalt_processor {
    const basalt_processor_ops *ops;
    basalt_exporter *exporter;  /* one reference owned */
    const basalt_resource *res; /* borrowed from the pipeline, outlives the processor */
};

#endif
