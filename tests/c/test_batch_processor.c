/* The batch processor with a scriptable exporter: thresholds and the schedule
 * delay, exact drop counts, blocking mode losing nothing, flush and shutdown
 * deadlines with a hanging exporter, OTEL_BSP_* settings, and fork. */
#include "basalt/processor.h"
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct test_exp {
    basalt_exporter base;
    pthread_mutex_t lock; /* guards ids, nids, batches, max_batch */
    uint64_t *ids;
    size_t nids, cap;
    size_t batches, max_batch;
    _Atomic bool gate_closed;  /* export waits while closed */
    _Atomic bool honour_abort; /* a closed gate gives up when abort is raised */
    _Atomic int entered;       /* export calls begun */
    _Atomic int flushes, shutdowns;
    _Atomic bool returned_late; /* an export that ignored abort has returned */
    int delay_us;
    bool fail;
} test_exp;

static uint64_t rec_id(const basalt_span_record *r) {
    uint64_t v;
    memcpy(&v, r->span_id, 8);
    return v;
}

static basalt_export_result t_export(basalt_exporter *e, const basalt_resource *res,
                                     const basalt_span_record *const *recs, size_t n,
                                     uint64_t deadline_ns) {
    test_exp *t = (test_exp *)e;
    (void)res;
    (void)deadline_ns;
    atomic_fetch_add(&t->entered, 1);
    bool ignored_abort = false;
    while (atomic_load(&t->gate_closed)) {
        if (atomic_load(&e->abort)) {
            if (atomic_load(&t->honour_abort)) return BASALT_EXPORT_FAILURE;
            ignored_abort = true;
        }
        usleep(1000);
    }
    if (t->delay_us) usleep((useconds_t)t->delay_us);
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < n; i++) {
        if (t->nids == t->cap) {
            t->cap = t->cap ? t->cap * 2 : 256;
            t->ids = realloc(t->ids, t->cap * sizeof *t->ids);
        }
        t->ids[t->nids++] = rec_id(recs[i]);
    }
    t->batches++;
    if (n > t->max_batch) t->max_batch = n;
    pthread_mutex_unlock(&t->lock);
    if (ignored_abort) atomic_store(&t->returned_late, true);
    return t->fail ? BASALT_EXPORT_FAILURE : BASALT_EXPORT_OK;
}

static bool t_flush(basalt_exporter *e, uint64_t deadline_ns) {
    (void)deadline_ns;
    atomic_fetch_add(&((test_exp *)e)->flushes, 1);
    return true;
}

static void t_shutdown(basalt_exporter *e, uint64_t deadline_ns) {
    (void)deadline_ns;
    atomic_fetch_add(&((test_exp *)e)->shutdowns, 1);
}

static void t_destroy(basalt_exporter *e) {
    test_exp *t = (test_exp *)e;
    pthread_mutex_destroy(&t->lock);
    free(t->ids);
    free(t);
}

static const basalt_exporter_ops t_ops = {"test", t_export, t_flush, t_shutdown, t_destroy};

static test_exp *texp_new(void) {
    test_exp *t = calloc(1, sizeof *t);
    basalt_exporter_init(&t->base, &t_ops, false);
    pthread_mutex_init(&t->lock, NULL);
    atomic_store(&t->honour_abort, true);
    return t;
}

static size_t texp_count(test_exp *t) {
    pthread_mutex_lock(&t->lock);
    size_t n = t->nids;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* True when ids holds each of first..first+n-1 exactly once and nothing else.
 */
static bool texp_exactly(test_exp *t, uint64_t first, size_t n) {
    pthread_mutex_lock(&t->lock);
    bool ok = t->nids == n;
    unsigned char *seen = calloc(n ? n : 1, 1);
    for (size_t i = 0; ok && i < t->nids; i++) {
        uint64_t id = t->ids[i];
        if (id < first || id >= first + n || seen[id - first])
            ok = false;
        else
            seen[id - first] = 1;
    }
    free(seen);
    pthread_mutex_unlock(&t->lock);
    return ok;
}

static uint64_t counter(test_exp *t, _Atomic uint64_t *c) {
    (void)t;
    return atomic_load(c);
}

static const basalt_span_record *make_rec(uint64_t id) {
    basalt_span_record tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    memset(tmpl.trace_id, 0x11, 16);
    memcpy(tmpl.span_id, &id, 8);
    tmpl.name = "s";
    tmpl.kind = BASALT_OTEL_INTERNAL;
    tmpl.start_ns = 1;
    tmpl.end_ns = 2;
    return basalt_record_clone(&tmpl);
}

static void end_one(basalt_processor *p, uint64_t id) {
    const basalt_span_record *r = make_rec(id);
    basalt_processor_on_end(p, r);
    basalt_record_release(r);
}

static basalt_batch_config cfg_of(uint32_t queue, uint32_t batch, uint32_t delay_ms,
                                  bool blocking) {
    basalt_batch_config c;
    c.max_queue_size = queue;
    c.max_export_batch_size = batch;
    c.schedule_delay_ms = delay_ms;
    c.export_timeout_ms = 30000;
    c.blocking = blocking;
    return c;
}

static bool wait_for(bool (*pred)(void *), void *arg, int ms) {
    for (int i = 0; i < ms; i++) {
        if (pred(arg)) return true;
        usleep(1000);
    }
    return pred(arg);
}

static size_t want_count;
static bool has_count(void *arg) {
    return texp_count(arg) >= want_count;
}
static bool has_entered(void *arg) {
    return atomic_load(&((test_exp *)arg)->entered) > 0;
}

static uint64_t ms_since(uint64_t t0) {
    return (basalt_monotonic_ns() - t0) / 1000000u;
}

static void test_config_defaults_and_env(void) {
    unsetenv("OTEL_BSP_MAX_QUEUE_SIZE");
    unsetenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
    unsetenv("OTEL_BSP_SCHEDULE_DELAY");
    unsetenv("OTEL_BSP_EXPORT_TIMEOUT");
    basalt_batch_config c;
    basalt_batch_config_defaults(&c);
    CHECK_INT(c.max_queue_size, 2048);
    CHECK_INT(c.max_export_batch_size, 512);
    CHECK_INT(c.schedule_delay_ms, 5000);
    CHECK_INT(c.export_timeout_ms, 30000);
    CHECK(!c.blocking);
    setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100", 1);
    setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10", 1);
    setenv("OTEL_BSP_SCHEDULE_DELAY", "200", 1);
    setenv("OTEL_BSP_EXPORT_TIMEOUT", "1000", 1);
    basalt_batch_config_defaults(&c);
    CHECK_INT(c.max_queue_size, 100);
    CHECK_INT(c.max_export_batch_size, 10);
    CHECK_INT(c.schedule_delay_ms, 200);
    CHECK_INT(c.export_timeout_ms, 1000);
    setenv("OTEL_BSP_MAX_QUEUE_SIZE", "lots", 1);
    setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-1", 1);
    setenv("OTEL_BSP_EXPORT_TIMEOUT", "0", 1);
    basalt_batch_config_defaults(&c);
    CHECK_INT(c.max_queue_size, 2048);
    CHECK_INT(c.max_export_batch_size, 512);
    CHECK_INT(c.export_timeout_ms, 30000);
    unsetenv("OTEL_BSP_MAX_QUEUE_SIZE");
    unsetenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
    unsetenv("OTEL_BSP_SCHEDULE_DELAY");
    unsetenv("OTEL_BSP_EXPORT_TIMEOUT");
}

static void test_full_batches_go_at_once_rest_waits_for_delay(void) {
    test_exp *t = texp_new();
    basalt_batch_config c = cfg_of(100, 10, 60000, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    for (uint64_t i = 1; i <= 25; i++)
        end_one(p, i);
    want_count = 20;
    CHECK(wait_for(has_count, t, 2000));
    usleep(50000);
    CHECK_INT(texp_count(t), 20); /* the last 5 wait for the delay */
    CHECK_INT(t->max_batch, 10);
    CHECK_INT(basalt_processor_queue_size(p), 5);
    CHECK_INT(counter(t, &t->base.counters.queued), 5);
    CHECK(basalt_processor_flush(p, 2000));
    CHECK(texp_exactly(t, 1, 25));
    CHECK_INT(basalt_processor_queue_size(p), 0);
    CHECK_INT(counter(t, &t->base.counters.queued), 0);
    CHECK_INT(counter(t, &t->base.counters.exported), 25);
    CHECK(atomic_load(&t->flushes) >= 1);
    CHECK(basalt_processor_shutdown(p, 2000));
    CHECK_INT(atomic_load(&t->shutdowns), 1);
    basalt_processor_free(p);
    basalt_exporter_release(&t->base);
}

static void test_schedule_delay_exports_a_partial_batch(void) {
    test_exp *t = texp_new();
    basalt_batch_config c = cfg_of(2048, 512, 150, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    uint64_t t0 = basalt_monotonic_ns();
    for (uint64_t i = 1; i <= 3; i++)
        end_one(p, i);
    usleep(60000);
    CHECK_INT(texp_count(t), 0);
    want_count = 3;
    CHECK(wait_for(has_count, t, 2000));
    uint64_t ms = ms_since(t0);
    CHECK(ms >= 140 && ms < 1000);
    CHECK_INT(t->batches, 1);
    CHECK(basalt_processor_shutdown(p, 2000));
    basalt_processor_free(p);
    basalt_exporter_release(&t->base);
}

static void test_full_queue_drops_are_counted_exactly(void) {
    test_exp *t = texp_new();
    atomic_store(&t->gate_closed, true);
    basalt_batch_config c = cfg_of(8, 4, 0, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    end_one(p, 1);
    CHECK(wait_for(has_entered, t, 2000)); /* record 1 is in flight, the queue is empty */
    for (uint64_t i = 2; i <= 14; i++)
        end_one(p, i);
    CHECK_INT(counter(t, &t->base.counters.dropped), 5); /* 8 fit, 5 do not */
    CHECK_INT(counter(t, &t->base.counters.queued), 8);
    CHECK_INT(basalt_processor_queue_size(p), 8);
    atomic_store(&t->gate_closed, false);
    CHECK(basalt_processor_flush(p, 2000));
    CHECK(texp_exactly(t, 1, 9));
    CHECK_INT(counter(t, &t->base.counters.exported), 9);
    CHECK_INT(counter(t, &t->base.counters.dropped), 5);
    CHECK(basalt_processor_shutdown(p, 2000));
    end_one(p, 99); /* after shutdown: dropped and counted */
    CHECK_INT(counter(t, &t->base.counters.dropped), 6);
    basalt_processor_free(p);
    basalt_exporter_release(&t->base);
}

typedef struct {
    basalt_processor *p;
    uint64_t first, n;
} producer;

static void *produce(void *arg) {
    producer *pr = arg;
    for (uint64_t i = 0; i < pr->n; i++)
        end_one(pr->p, pr->first + i);
    return NULL;
}

static void test_blocking_mode_loses_nothing(void) {
    test_exp *t = texp_new();
    t->delay_us = 500;
    basalt_batch_config c = cfg_of(16, 8, 1000, true);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    pthread_t th[3];
    producer pr[3];
    for (int i = 0; i < 3; i++) {
        pr[i] = (producer){p, 1 + (uint64_t)i * 1000, 1000};
        pthread_create(&th[i], NULL, produce, &pr[i]);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK(basalt_processor_flush(p, 10000));
    CHECK_INT(counter(t, &t->base.counters.dropped), 0);
    CHECK_INT(counter(t, &t->base.counters.exported), 3000);
    CHECK(texp_exactly(t, 1, 3000));
    CHECK(t->max_batch <= 8);
    CHECK(basalt_processor_shutdown(p, 2000));
    basalt_processor_free(p);
    basalt_exporter_release(&t->base);
}

static void test_nonblocking_mode_under_load_accounts_for_every_span(void) {
    test_exp *t = texp_new();
    t->delay_us = 2000;
    basalt_batch_config c = cfg_of(32, 8, 1000, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    for (uint64_t i = 1; i <= 2000; i++)
        end_one(p, i);
    CHECK(basalt_processor_flush(p, 20000));
    uint64_t exported = counter(t, &t->base.counters.exported);
    uint64_t dropped = counter(t, &t->base.counters.dropped);
    CHECK(dropped > 0);
    CHECK_INT(exported + dropped, 2000);
    CHECK_INT(texp_count(t), exported);
    CHECK(basalt_processor_shutdown(p, 2000));
    basalt_processor_free(p);
    basalt_exporter_release(&t->base);
}

static void test_flush_and_shutdown_meet_deadlines_with_a_hanging_exporter(void) {
    test_exp *t = texp_new();
    atomic_store(&t->gate_closed, true);
    basalt_batch_config c = cfg_of(64, 4, 0, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    for (uint64_t i = 1; i <= 10; i++)
        end_one(p, i);
    uint64_t t0 = basalt_monotonic_ns();
    CHECK(!basalt_processor_flush(p, 200));
    uint64_t ms = ms_since(t0);
    CHECK(ms >= 190 && ms < 400);
    t0 = basalt_monotonic_ns();
    CHECK(!basalt_processor_shutdown(p, 300));
    ms = ms_since(t0);
    CHECK(ms >= 290 && ms < 500);
    CHECK(atomic_load(&t->base.abort));
    /* The exporter honours abort: the worker winds down at once; what it still
     * held counts as failed, not silently lost. */
    t0 = basalt_monotonic_ns();
    basalt_exporter_retain(&t->base);
    basalt_processor_free(p);
    CHECK(ms_since(t0) < 1000);
    CHECK_INT(counter(t, &t->base.counters.failed), 10);
    CHECK_INT(atomic_load(&t->shutdowns), 1);
    basalt_exporter_release(&t->base);
    basalt_exporter_release(&t->base);
}

static bool returned_late(void *arg) {
    return atomic_load(&((test_exp *)arg)->returned_late);
}

static void test_free_does_not_wait_forever_for_an_exporter_ignoring_abort(void) {
    test_exp *t = texp_new();
    atomic_store(&t->gate_closed, true);
    atomic_store(&t->honour_abort, false);
    basalt_batch_config c = cfg_of(64, 4, 0, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    end_one(p, 1);
    CHECK(wait_for(has_entered, t, 2000));
    uint64_t t0 = basalt_monotonic_ns();
    CHECK(!basalt_processor_shutdown(p, 100));
    basalt_exporter_retain(&t->base);
    basalt_processor_free(p); /* gives up after its grace period, the worker frees later */
    uint64_t ms = ms_since(t0);
    CHECK(ms < 3000);
    atomic_store(&t->gate_closed, false);
    CHECK(wait_for(returned_late, t, 3000));
    usleep(100000); /* the worker finishes and frees the processor */
    CHECK_INT(atomic_load(&t->shutdowns), 1);
    basalt_exporter_release(&t->base);
    basalt_exporter_release(&t->base);
}

static void test_failures_are_counted(void) {
    test_exp *t = texp_new();
    t->fail = true;
    basalt_batch_config c = cfg_of(64, 5, 0, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    for (uint64_t i = 1; i <= 10; i++)
        end_one(p, i);
    CHECK(basalt_processor_flush(p, 2000));
    CHECK_INT(counter(t, &t->base.counters.failed), 10);
    CHECK_INT(counter(t, &t->base.counters.exported), 0);
    CHECK(counter(t, &t->base.counters.failures) >= 2);
    CHECK(basalt_processor_shutdown(p, 2000));
    basalt_processor_free(p);
    basalt_exporter_release(&t->base);
}

static void test_fork_child_exports_its_own_spans(void) {
    test_exp *t = texp_new();
    atomic_store(&t->gate_closed, true);
    basalt_batch_config c = cfg_of(64, 4, 0, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    for (uint64_t i = 1; i <= 4; i++)
        end_one(p, i);
    CHECK(wait_for(has_entered, t, 2000)); /* one batch in flight, the rest queued */
    fflush(NULL);
    basalt_processor_atfork_prepare(p);
    pid_t pid = fork();
    if (pid == 0) {
        basalt_processor_atfork_child(p);
        int bad = 0;
        if (basalt_processor_queue_size(p) != 0) bad |= 1;
        pthread_mutex_lock(&t->lock);
        t->nids = 0;
        pthread_mutex_unlock(&t->lock);
        atomic_store(&t->gate_closed, false);
        for (uint64_t i = 100; i < 105; i++)
            end_one(p, i);
        if (!basalt_processor_flush(p, 5000)) bad |= 2;
        if (!texp_exactly(t, 100, 5)) bad |= 4;
        if (!basalt_processor_shutdown(p, 2000)) bad |= 8;
        basalt_processor_free(p);
        basalt_exporter_release(&t->base);
        _exit(bad);
    }
    basalt_processor_atfork_parent(p);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    if (WIFEXITED(st) && WEXITSTATUS(st)) fprintf(stderr, "  child status %d\n", WEXITSTATUS(st));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    atomic_store(&t->gate_closed, false);
    end_one(p, 5);
    CHECK(basalt_processor_flush(p, 5000));
    CHECK(texp_exactly(t, 1, 5)); /* the parent keeps its own, none of the child's */
    CHECK(basalt_processor_shutdown(p, 2000));
    basalt_processor_free(p);
    basalt_exporter_release(&t->base);
}

/* The worker idles in a condition wait when the fork happens (the usual case). */
static void test_fork_while_the_worker_idles(void) {
    test_exp *t = texp_new();
    basalt_batch_config c = cfg_of(64, 4, 0, false);
    basalt_processor *p = basalt_batch_processor_new(&t->base, NULL, &c);
    end_one(p, 1);
    CHECK(basalt_processor_flush(p, 2000));
    usleep(20000);
    fflush(NULL);
    basalt_processor_atfork_prepare(p);
    pid_t pid = fork();
    if (pid == 0) {
        basalt_processor_atfork_child(p);
        for (uint64_t i = 2; i < 5; i++)
            end_one(p, i);
        int bad = basalt_processor_flush(p, 5000) ? 0 : 1;
        if (!texp_exactly(t, 1, 4)) bad |= 2;
        if (!basalt_processor_shutdown(p, 2000)) bad |= 4;
        basalt_processor_free(p);
        basalt_exporter_release(&t->base);
        _exit(bad);
    }
    basalt_processor_atfork_parent(p);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    end_one(p, 2);
    CHECK(basalt_processor_flush(p, 5000));
    CHECK(texp_exactly(t, 1, 2));
    CHECK(basalt_processor_shutdown(p, 2000));
    basalt_processor_free(p);
    basalt_exporter_release(&t->base);
}

TEST_MAIN(TEST_CASE(test_config_defaults_and_env),
          TEST_CASE(test_full_batches_go_at_once_rest_waits_for_delay),
          TEST_CASE(test_schedule_delay_exports_a_partial_batch),
          TEST_CASE(test_full_queue_drops_are_counted_exactly),
          TEST_CASE(test_blocking_mode_loses_nothing),
          TEST_CASE(test_nonblocking_mode_under_load_accounts_for_every_span),
          TEST_CASE(test_flush_and_shutdown_meet_deadlines_with_a_hanging_exporter),
          TEST_CASE(test_free_does_not_wait_forever_for_an_exporter_ignoring_abort),
          TEST_CASE(test_failures_are_counted), TEST_CASE(test_fork_child_exports_its_own_spans),
          TEST_CASE(test_fork_while_the_worker_idles))
