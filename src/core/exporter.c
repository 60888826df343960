/* The exporter base: reference counting shared by every exporter type. */
#include "basalt/exporter.h"

#include <stdatomic.h>
#include <string.h>

void basalt_exporter_init(basalt_exporter *e, const basalt_exporter_ops *ops, bool synchronous) {
    e->ops = ops;
    e->synchronous = synchronous;
    atomic_init(&e->refcount, 1);
    atomic_init(&e->abort, false);
    memset(&e->counters, 0, sizeof e->counters);
}

void basalt_exporter_retain(basalt_exporter *e) {
    if (e) atomic_fetch_add_explicit(&e->refcount, 1, memory_order_relaxed);
}

void basalt_exporter_release(basalt_exporter *e) {
    if (e == NULL) return;
    if (atomic_fetch_sub_explicit(&e->refcount, 1, memory_order_acq_rel) == 1) e->ops->destroy(e);
}
