/* Memory exporter: keeps every record it receives (tests, the Lua testing
 * helper). Synchronous; its list is guarded by its own lock because Lua code
 * may read it from another thread than the one ending spans. */
#include "basalt/exporter.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct memory_exporter {
    basalt_exporter base;
    pthread_mutex_t lock; /* guards recs/n/cap */
    const basalt_span_record **recs;
    size_t n, cap;
} memory_exporter;

static basalt_export_result mem_export(basalt_exporter *e, const basalt_resource *res,
                                       const basalt_span_record *const *recs, size_t n,
                                       uint64_t deadline_ns) {
    (void)res;
    (void)deadline_ns;
    memory_exporter *m = (memory_exporter *)e;
    pthread_mutex_lock(&m->lock);
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        while (cap < m->n + n)
            cap *= 2;
        const basalt_span_record **p = realloc(m->recs, sizeof *p * cap);
        if (p == NULL) {
            pthread_mutex_unlock(&m->lock);
            return BASALT_EXPORT_FAILURE;
        }
        m->recs = p;
        m->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        basalt_record_retain(recs[i]);
        m->recs[m->n++] = recs[i];
    }
    pthread_mutex_unlock(&m->lock);
    return BASALT_EXPORT_OK;
}

void basalt_memory_exporter_clear(basalt_exporter *e) {
    memory_exporter *m = (memory_exporter *)e;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n; i++)
        basalt_record_release(m->recs[i]);
    m->n = 0;
    pthread_mutex_unlock(&m->lock);
}

static void mem_destroy(basalt_exporter *e) {
    memory_exporter *m = (memory_exporter *)e;
    basalt_memory_exporter_clear(e);
    free(m->recs);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static const basalt_exporter_ops memory_ops = {
    .type = "memory",
    .export_spans = mem_export,
    .flush = NULL,
    .shutdown = NULL,
    .destroy = mem_destroy,
};

basalt_exporter *basalt_memory_exporter_new(void) {
    memory_exporter *m = calloc(1, sizeof *m);
    if (m == NULL) return NULL;
    basalt_exporter_init(&m->base, &memory_ops, true);
    pthread_mutex_init(&m->lock, NULL);
    return &m->base;
}

size_t basalt_memory_exporter_count(basalt_exporter *e) {
    memory_exporter *m = (memory_exporter *)e;
    pthread_mutex_lock(&m->lock);
    size_t n = m->n;
    pthread_mutex_unlock(&m->lock);
    return n;
}

size_t basalt_memory_exporter_snapshot(basalt_exporter *e, const basalt_span_record **out,
                                       size_t cap) {
    memory_exporter *m = (memory_exporter *)e;
    pthread_mutex_lock(&m->lock);
    size_t n = m->n < cap ? m->n : cap;
    for (size_t i = 0; i < n; i++) {
        basalt_record_retain(m->recs[i]);
        out[i] = m->recs[i];
    }
    pthread_mutex_unlock(&m->lock);
    return n;
}
