/* The batch processor (the OpenTelemetry BatchSpanProcessor model): span end
 * puts a retained record pointer into a bounded ring; one worker thread per
 * processor takes up to max_export_batch_size records when that many are
 * waiting, when the oldest waiting record is schedule_delay old, or when a
 * flush or shutdown asks, and calls the exporter outside the lock.
 *
 * Lock discipline: `lock` guards every field below marked (L): the ring, the
 * sequence numbers, the flush generations, the in-flight batch and the worker's
 * state. The exporter is called only by the worker thread, never under `lock`,
 * so span end never waits for the network. Counters are atomics in the
 * exporter. */
#include "processor_impl.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_MS 1000000u
/* How long destroy waits for a worker that must give up (abort raised) before
 * leaving it to free the processor itself. */
#define DESTROY_GRACE_MS 2000u

typedef struct batch_processor {
    basalt_processor base;
    basalt_batch_config cfg;

    pthread_mutex_t lock;
    pthread_cond_t work_cv; /* worker waits here: records, flush, shutdown */
    pthread_cond_t room_cv; /* blocking span ends wait here for room */
    pthread_cond_t done_cv; /* flushers and shutdown wait here for progress */

    const basalt_span_record **ring; /* (L) capacity cfg.max_queue_size */
    size_t head, count;              /* (L) */
    uint64_t first_pending_ns;       /* (L) when the queue last became non-empty */
    uint64_t enqueued;               /* (L) records accepted so far */
    uint64_t done;                   /* (L) records whose export finished (ok or not) */

    const basalt_span_record **batch; /* (L) the in-flight batch (released in a fork child) */
    size_t nbatch;                    /* (L) */
    const basalt_span_record **spare; /* worker only: a finished batch, released unlocked */

    uint64_t flush_req;    /* (L) flush requests made (generation) */
    uint64_t flush_done;   /* (L) flush requests completed */
    uint64_t flush_target; /* (L) `enqueued` at the latest request */
    bool flush_ok;         /* (L) the exporter's own flush result for flush_done */

    bool stopping;          /* (L) shutdown asked: drain, flush, shut the exporter, exit */
    bool exited;            /* (L) the worker has finished */
    bool orphaned;          /* (L) destroy gave up waiting: the worker frees the processor
                             */
    bool started;           /* (L) a worker thread exists (joinable) */
    uint64_t stop_deadline; /* (L) shutdown's deadline (monotonic ns) */
    pthread_t worker;
} batch_processor;

/* ---- configuration
 * ------------------------------------------------------------ */

static void env_u32(const char *name, uint32_t *out, bool allow_zero) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || *end != '\0' || n > UINT32_MAX || (n == 0 && !allow_zero)) {
        basalt_log_once(BASALT_LOG_WARN, "ignoring %s=%s: not a valid number", name, v);
        return;
    }
    *out = (uint32_t)n;
}

void basalt_batch_config_defaults(basalt_batch_config *cfg) {
    cfg->max_queue_size = 2048;
    cfg->max_export_batch_size = 512;
    cfg->schedule_delay_ms = 5000;
    cfg->export_timeout_ms = 30000;
    cfg->blocking = false;
    env_u32("OTEL_BSP_MAX_QUEUE_SIZE", &cfg->max_queue_size, false);
    env_u32("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &cfg->max_export_batch_size, false);
    env_u32("OTEL_BSP_SCHEDULE_DELAY", &cfg->schedule_delay_ms, true);
    env_u32("OTEL_BSP_EXPORT_TIMEOUT", &cfg->export_timeout_ms, false);
}

/* ---- helpers
 * -------------------------------------------------------------------- */

static struct timespec to_timespec(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    return ts;
}

/* Waits on cv (monotonic clock) until deadline_ns; false when it passed. */
static bool wait_until(pthread_cond_t *cv, pthread_mutex_t *m, uint64_t deadline_ns) {
    if (basalt_monotonic_ns() >= deadline_ns) return false;
    struct timespec ts = to_timespec(deadline_ns);
    pthread_cond_timedwait(cv, m, &ts);
    return true;
}

static void init_sync(batch_processor *b) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->work_cv, &ca);
    pthread_cond_init(&b->room_cv, &ca);
    pthread_cond_init(&b->done_cv, &ca);
    pthread_condattr_destroy(&ca);
}

static void destroy_sync(batch_processor *b) {
    pthread_cond_destroy(&b->work_cv);
    pthread_cond_destroy(&b->room_cv);
    pthread_cond_destroy(&b->done_cv);
    pthread_mutex_destroy(&b->lock);
}

static void free_processor(batch_processor *b) {
    for (size_t i = 0; i < b->count; i++)
        basalt_record_release(b->ring[(b->head + i) % b->cfg.max_queue_size]);
    for (size_t i = 0; i < b->nbatch; i++)
        basalt_record_release(b->batch[i]);
    destroy_sync(b);
    free(b->ring);
    free(b->batch);
    free(b->spare);
    free(b);
}

static void set_queued(batch_processor *b) {
    atomic_store_explicit(&b->base.exporter->counters.queued, (uint64_t)b->count,
                          memory_order_relaxed);
}

/* ---- the worker
 * ------------------------------------------------------------------ */

static bool flush_pending(const batch_processor *b) {
    return b->flush_req > b->flush_done;
}

/* True when the worker has something to do now (L). */
static bool worker_ready(const batch_processor *b, uint64_t now) {
    if (b->stopping || flush_pending(b)) return true;
    if (b->count >= b->cfg.max_export_batch_size) return true;
    return b->count > 0 &&
           now >= b->first_pending_ns + (uint64_t)b->cfg.schedule_delay_ms * NS_PER_MS;
}

/* Exports the taken batch outside the lock, then accounts for it (L on
 * entry/exit). */
static void export_batch(batch_processor *b) {
    basalt_exporter *e = b->base.exporter;
    size_t n = b->nbatch;
    pthread_mutex_unlock(&b->lock);
    uint64_t deadline = basalt_monotonic_ns() + (uint64_t)b->cfg.export_timeout_ms * NS_PER_MS;
    basalt_export_result r = e->ops->export_spans(e, b->base.res, b->batch, n, deadline);
    if (r == BASALT_EXPORT_OK) {
        atomic_fetch_add_explicit(&e->counters.exported, n, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&e->counters.failed, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&e->counters.failures, 1, memory_order_relaxed);
    }
    pthread_mutex_lock(&b->lock);
    /* The records are released outside the lock: span ends that find the queue
     * lock busy would otherwise wait for 512 releases. Swapped into the spare
     * array first, so a fork child (which releases `batch`) never sees them. */
    const basalt_span_record **done = b->batch;
    b->batch = b->spare;
    b->spare = done;
    b->nbatch = 0;
    b->done += n;
    pthread_cond_broadcast(&b->done_cv);
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < n; i++) {
        if (i + 4 < n) __builtin_prefetch(done[i + 4], 1); /* cold again by now */
        basalt_record_release(done[i]);
    }
    pthread_mutex_lock(&b->lock);
}

/* Moves up to max_export_batch_size records from the ring to the batch (L). */
static void take_batch(batch_processor *b) {
    size_t n = b->count < b->cfg.max_export_batch_size ? b->count : b->cfg.max_export_batch_size;
    for (size_t i = 0; i < n; i++) {
        b->batch[i] = b->ring[b->head];
        b->head = (b->head + 1) % b->cfg.max_queue_size;
    }
    b->nbatch = n;
    b->count -= n;
    if (b->count) b->first_pending_ns = basalt_monotonic_ns();
    set_queued(b);
    pthread_cond_broadcast(&b->room_cv);
}

/* The exporter's own flush (fsync, stdout), outside the lock (L on entry/exit).
 */
static void flush_exporter(batch_processor *b, uint64_t deadline) {
    basalt_exporter *e = b->base.exporter;
    uint64_t gen = b->flush_req;
    pthread_mutex_unlock(&b->lock);
    bool ok = e->ops->flush ? e->ops->flush(e, deadline) : true;
    pthread_mutex_lock(&b->lock);
    b->flush_done = gen;
    b->flush_ok = ok;
    pthread_cond_broadcast(&b->done_cv);
}

static void *worker_main(void *arg) {
    batch_processor *b = arg;
    basalt_exporter *e = b->base.exporter;
    basalt_exporter_retain(e); /* the worker may outlive an orphaning destroy */
    pthread_mutex_lock(&b->lock);
    for (;;) {
        uint64_t now = basalt_monotonic_ns();
        if (!worker_ready(b, now)) {
            if (b->count == 0)
                pthread_cond_wait(&b->work_cv, &b->lock);
            else
                wait_until(&b->work_cv, &b->lock,
                           b->first_pending_ns + (uint64_t)b->cfg.schedule_delay_ms * NS_PER_MS);
            continue;
        }
        if (b->count > 0) {
            take_batch(b);
            export_batch(b);
            continue;
        }
        /* The queue is empty: everything handed over so far has been exported. */
        uint64_t timeout = (uint64_t)b->cfg.export_timeout_ms * NS_PER_MS;
        if (flush_pending(b) && b->done >= b->flush_target) {
            uint64_t d = basalt_monotonic_ns() + timeout;
            if (b->stopping && b->stop_deadline < d) d = b->stop_deadline;
            flush_exporter(b, d);
        }
        if (b->stopping) break;
    }
    uint64_t deadline = b->stop_deadline;
    pthread_mutex_unlock(&b->lock);
    if (e->ops->flush) e->ops->flush(e, deadline);
    if (e->ops->shutdown) e->ops->shutdown(e, deadline);
    pthread_mutex_lock(&b->lock);
    b->exited = true;
    b->flush_done = b->flush_req;
    pthread_cond_broadcast(&b->done_cv);
    bool orphaned = b->orphaned;
    pthread_mutex_unlock(&b->lock);
    if (orphaned) free_processor(b);
    basalt_exporter_release(e);
    return NULL;
}

/* Starts the worker with every signal blocked, so the host's handlers run on
 * its own threads only (L). */
static bool start_worker(batch_processor *b) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&b->worker, NULL, worker_main, b);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        basalt_log(BASALT_LOG_ERROR, "cannot start the export thread: %s", strerror(rc));
        b->exited = true;
        b->started = false;
        return false;
    }
    pthread_setname_np(b->worker, "basalt-export");
    b->started = true;
    b->exited = false;
    return true;
}

/* ---- processor operations
 * ------------------------------------------------------ */

static void count_drop(batch_processor *b) {
    atomic_fetch_add_explicit(&b->base.exporter->counters.dropped, 1, memory_order_relaxed);
}

static void batch_on_end(basalt_processor *p, const basalt_span_record *rec) {
    batch_processor *b = (batch_processor *)p;
    pthread_mutex_lock(&b->lock);
    bool dropped = false;
    if (b->stopping) {
        dropped = true;
    } else if (b->count == b->cfg.max_queue_size) {
        if (b->cfg.blocking) {
            /* A producer that filled the queue outpaces the exporter: it resumes
             * once three batches' worth of room is free (or three quarters of
             * the queue, when that is less), not at the first free slot. The
             * worker still has a batch ready, so throughput is the same, a
             * blocked span end waits at most three exports, and the producer
             * wakes a third as often: fewer context switches, and fewer starts
             * with caches another process has filled meanwhile. */
            size_t three = 3 * (size_t)b->cfg.max_export_batch_size;
            size_t low = b->cfg.max_queue_size > three ? b->cfg.max_queue_size - three : 0;
            if (low < b->cfg.max_queue_size / 4) low = b->cfg.max_queue_size / 4;
            uint64_t d = basalt_monotonic_ns() + (uint64_t)b->cfg.export_timeout_ms * NS_PER_MS;
            while (b->count > low && !b->stopping && wait_until(&b->room_cv, &b->lock, d)) {
            }
        }
        dropped = b->count == b->cfg.max_queue_size || b->stopping;
    }
    if (dropped) {
        bool stopping = b->stopping;
        count_drop(b);
        pthread_mutex_unlock(&b->lock);
        if (stopping)
            basalt_log_once(BASALT_LOG_WARN,
                            "a span ended after shutdown was dropped; later ones are counted");
        else
            basalt_log_once(BASALT_LOG_WARN,
                            "span queue full: dropping spans (counted in stats().spans_dropped; "
                            "raise batch.max_queue_size or set batch.blocking)");
        return;
    }
    basalt_record_retain(rec);
    b->ring[(b->head + b->count) % b->cfg.max_queue_size] = rec;
    b->count++;
    b->enqueued++;
    set_queued(b);
    /* Wake the worker only when it has a reason: the timer starts, or a batch is
     * full. */
    if (b->count == 1) {
        b->first_pending_ns = basalt_monotonic_ns();
        pthread_cond_signal(&b->work_cv);
    } else if (b->count == b->cfg.max_export_batch_size) {
        pthread_cond_signal(&b->work_cv);
    }
    pthread_mutex_unlock(&b->lock);
}

static bool batch_flush(basalt_processor *p, uint32_t timeout_ms) {
    batch_processor *b = (batch_processor *)p;
    uint64_t deadline = basalt_monotonic_ns() + (uint64_t)timeout_ms * NS_PER_MS;
    pthread_mutex_lock(&b->lock);
    if (b->exited) {
        pthread_mutex_unlock(&b->lock);
        return true; /* shut down: everything was handled then */
    }
    uint64_t gen = ++b->flush_req;
    b->flush_target = b->enqueued;
    pthread_cond_signal(&b->work_cv);
    while (b->flush_done < gen && wait_until(&b->done_cv, &b->lock, deadline)) {
    }
    bool ok = b->flush_done >= gen && b->flush_ok;
    pthread_mutex_unlock(&b->lock);
    return ok;
}

/* How long shutdown waits, past its deadline, for an aborted export to stop
 * (the HTTP transport checks the abort flag every 20 ms). */
#define ABORT_GRACE_MS 100

static bool batch_shutdown(basalt_processor *p, uint32_t timeout_ms) {
    batch_processor *b = (batch_processor *)p;
    uint64_t deadline = basalt_monotonic_ns() + (uint64_t)timeout_ms * NS_PER_MS;
    pthread_mutex_lock(&b->lock);
    if (!b->stopping) {
        b->stopping = true;
        b->stop_deadline = deadline;
        pthread_cond_signal(&b->work_cv);
        pthread_cond_broadcast(&b->room_cv); /* blocked span ends give up */
    }
    while (!b->exited && wait_until(&b->done_cv, &b->lock, deadline)) {
    }
    bool ok = b->exited;
    if (!ok) {
        /* Past the deadline: make a hanging exporter give up in-flight work now,
         * and give the worker a moment to stop and count what it abandons, so
         * the counters read right after shutdown are final. */
        atomic_store_explicit(&p->exporter->abort, true, memory_order_release);
        uint64_t grace = basalt_monotonic_ns() + (uint64_t)ABORT_GRACE_MS * NS_PER_MS;
        while (!b->exited && wait_until(&b->done_cv, &b->lock, grace)) {
        }
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

static void batch_destroy(basalt_processor *p) {
    batch_processor *b = (batch_processor *)p;
    pthread_mutex_lock(&b->lock);
    if (!b->stopping) {
        b->stopping = true;
        b->stop_deadline = basalt_monotonic_ns();
        pthread_cond_signal(&b->work_cv);
        pthread_cond_broadcast(&b->room_cv);
    }
    if (!b->exited) atomic_store_explicit(&p->exporter->abort, true, memory_order_release);
    uint64_t d = basalt_monotonic_ns() + (uint64_t)DESTROY_GRACE_MS * NS_PER_MS;
    while (!b->exited && wait_until(&b->done_cv, &b->lock, d)) {
    }
    if (!b->exited) {
        /* An exporter that ignores abort: the worker frees us when it returns. */
        b->orphaned = true;
        pthread_detach(b->worker);
        pthread_mutex_unlock(&b->lock);
        basalt_log(BASALT_LOG_WARN, "an exporter did not stop in time; it is left to finish");
        return;
    }
    bool joinable = b->started;
    pthread_mutex_unlock(&b->lock);
    if (joinable) pthread_join(b->worker, NULL);
    free_processor(b);
}

static size_t batch_queue_size(basalt_processor *p) {
    batch_processor *b = (batch_processor *)p;
    pthread_mutex_lock(&b->lock);
    size_t n = b->count;
    pthread_mutex_unlock(&b->lock);
    return n;
}

/* fork(): the forking thread holds `lock` across fork, so the child sees a
 * consistent queue. The worker may have been inside the exporter; the child
 * drops what the parent still owns (it exports it), then runs its own worker.
 */
static void batch_atfork_prepare(basalt_processor *p) {
    pthread_mutex_lock(&((batch_processor *)p)->lock);
}

static void batch_atfork_parent(basalt_processor *p) {
    pthread_mutex_unlock(&((batch_processor *)p)->lock);
}

static void batch_atfork_child(basalt_processor *p) {
    batch_processor *b = (batch_processor *)p;
    /* The parent's worker may be waiting on a condition variable; that waiter does
     * not exist here, and pthread_cond_destroy would wait for it: start clean. */
    memset(&b->lock, 0, sizeof b->lock);
    memset(&b->work_cv, 0, sizeof b->work_cv);
    memset(&b->room_cv, 0, sizeof b->room_cv);
    memset(&b->done_cv, 0, sizeof b->done_cv);
    init_sync(b);
    pthread_mutex_lock(&b->lock);
    for (size_t i = 0; i < b->count; i++)
        basalt_record_release(b->ring[(b->head + i) % b->cfg.max_queue_size]);
    for (size_t i = 0; i < b->nbatch; i++)
        basalt_record_release(b->batch[i]);
    b->head = b->count = b->nbatch = 0;
    b->done = b->enqueued;
    b->flush_done = b->flush_req;
    b->flush_ok = true;
    set_queued(b);
    atomic_store_explicit(&p->exporter->abort, false, memory_order_relaxed);
    b->started = false;
    b->exited = true;
    if (!b->stopping && !b->orphaned) start_worker(b);
    pthread_mutex_unlock(&b->lock);
}

static const basalt_processor_ops batch_ops = {
    .on_end = batch_on_end,
    .flush = batch_flush,
    .shutdown = batch_shutdown,
    .destroy = batch_destroy,
    .queue_size = batch_queue_size,
    .atfork_prepare = batch_atfork_prepare,
    .atfork_parent = batch_atfork_parent,
    .atfork_child = batch_atfork_child,
};

basalt_processor *basalt_batch_processor_new(basalt_exporter *exp, const basalt_resource *res,
                                             const basalt_batch_config *cfg) {
    if (exp == NULL) return NULL;
    batch_processor *b = calloc(1, sizeof *b);
    if (b == NULL) return NULL;
    if (cfg)
        b->cfg = *cfg;
    else
        basalt_batch_config_defaults(&b->cfg);
    if (b->cfg.max_queue_size == 0) b->cfg.max_queue_size = 2048;
    if (b->cfg.max_export_batch_size == 0) b->cfg.max_export_batch_size = 512;
    if (b->cfg.max_export_batch_size > b->cfg.max_queue_size)
        b->cfg.max_export_batch_size = b->cfg.max_queue_size; /* as the OpenTelemetry spec says */
    if (b->cfg.export_timeout_ms == 0) b->cfg.export_timeout_ms = 30000;
    b->ring = calloc(b->cfg.max_queue_size, sizeof *b->ring);
    b->batch = calloc(b->cfg.max_export_batch_size, sizeof *b->batch);
    b->spare = calloc(b->cfg.max_export_batch_size, sizeof *b->spare);
    if (b->ring == NULL || b->batch == NULL || b->spare == NULL) {
        free(b->ring);
        free(b->batch);
        free(b->spare);
        free(b);
        return NULL;
    }
    init_sync(b);
    b->flush_ok = true;
    b->base.ops = &batch_ops;
    basalt_exporter_retain(exp);
    b->base.exporter = exp;
    b->base.res = res;
    pthread_mutex_lock(&b->lock);
    bool ok = start_worker(b);
    pthread_mutex_unlock(&b->lock);
    if (!ok) {
        basalt_exporter_release(exp);
        free_processor(b);
        return NULL;
    }
    return &b->base;
}
