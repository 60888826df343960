/* Processors: public dispatch, and the synchronous processor (memory and
 * console exporters: export at span end, on the ending thread, under a lock). */
#include "processor_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

void basalt_processor_on_end(basalt_processor *p, const basalt_span_record *rec) {
    p->ops->on_end(p, rec);
}

bool basalt_processor_flush(basalt_processor *p, uint32_t timeout_ms) {
    return p->ops->flush(p, timeout_ms);
}

bool basalt_processor_shutdown(basalt_processor *p, uint32_t timeout_ms) {
    return p->ops->shutdown(p, timeout_ms);
}

void basalt_processor_free(basalt_processor *p) {
    if (p == NULL) return;
    basalt_exporter *e = p->exporter;
    p->ops->destroy(p);
    basalt_exporter_release(e);
}

basalt_exporter *basalt_processor_exporter(basalt_processor *p) {
    return p->exporter;
}

size_t basalt_processor_queue_size(basalt_processor *p) {
    return p->ops->queue_size ? p->ops->queue_size(p) : 0;
}

void basalt_processor_atfork_prepare(basalt_processor *p) {
    if (p->ops->atfork_prepare) p->ops->atfork_prepare(p);
}

void basalt_processor_atfork_parent(basalt_processor *p) {
    if (p->ops->atfork_parent) p->ops->atfork_parent(p);
}

void basalt_processor_atfork_child(basalt_processor *p) {
    if (p->ops->atfork_child) p->ops->atfork_child(p);
}

/* ---- synchronous processor --------------------------------------------- */

typedef struct sync_processor {
    basalt_processor base;
    pthread_mutex_t lock; /* serialises calls into the exporter */
    bool shut;
} sync_processor;

static void sync_on_end(basalt_processor *p, const basalt_span_record *rec) {
    sync_processor *s = (sync_processor *)p;
    basalt_exporter *e = p->exporter;
    pthread_mutex_lock(&s->lock);
    if (!s->shut) {
        const basalt_span_record *one[1] = {rec};
        basalt_export_result r = e->ops->export_spans(e, p->res, one, 1, 0);
        if (r == BASALT_EXPORT_OK) {
            atomic_fetch_add_explicit(&e->counters.exported, 1, memory_order_relaxed);
        } else {
            atomic_fetch_add_explicit(&e->counters.failed, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&e->counters.failures, 1, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&s->lock);
}

static bool sync_flush(basalt_processor *p, uint32_t timeout_ms) {
    sync_processor *s = (sync_processor *)p;
    basalt_exporter *e = p->exporter;
    bool ok = true;
    pthread_mutex_lock(&s->lock);
    if (e->ops->flush)
        ok = e->ops->flush(e, basalt_monotonic_ns() + (uint64_t)timeout_ms * 1000000u);
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static bool sync_shutdown(basalt_processor *p, uint32_t timeout_ms) {
    sync_processor *s = (sync_processor *)p;
    basalt_exporter *e = p->exporter;
    bool ok = sync_flush(p, timeout_ms);
    pthread_mutex_lock(&s->lock);
    if (!s->shut) {
        s->shut = true;
        if (e->ops->shutdown)
            e->ops->shutdown(e, basalt_monotonic_ns() + (uint64_t)timeout_ms * 1000000u);
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static void sync_destroy(basalt_processor *p) {
    sync_processor *s = (sync_processor *)p;
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void sync_atfork_prepare(basalt_processor *p) {
    pthread_mutex_lock(&((sync_processor *)p)->lock);
}

static void sync_atfork_release(basalt_processor *p) {
    pthread_mutex_unlock(&((sync_processor *)p)->lock);
}

static const basalt_processor_ops sync_ops = {
    .on_end = sync_on_end,
    .flush = sync_flush,
    .shutdown = sync_shutdown,
    .destroy = sync_destroy,
    .queue_size = NULL,
    .atfork_prepare = sync_atfork_prepare,
    .atfork_parent = sync_atfork_release,
    .atfork_child = sync_atfork_release,
};

basalt_processor *basalt_sync_processor_new(basalt_exporter *exp, const basalt_resource *res) {
    sync_processor *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->base.ops = &sync_ops;
    basalt_exporter_retain(exp);
    s->base.exporter = exp;
    s->base.res = res;
    return &s->base;
}
