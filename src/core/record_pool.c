/* Recycled record blocks. A record is usually allocated by the application
 * thread and freed by an export worker; glibc then sends nearly every
 * allocation down its slow path (the freeing thread's cache fills up, the
 * allocating thread's stays empty). Here each thread keeps a small cache
 * (thread-local: no lock) and trades half of it at a time with a shared stack
 * (guarded by pool.lock, a spin lock held for a few pointer moves). */
#include "record_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define LOCAL_MAX  64
#define SHARED_MAX 4096

typedef struct free_block {
    struct free_block *next;
} free_block;

static struct {
    atomic_flag lock;
    free_block *top;
    size_t n;
} pool = {ATOMIC_FLAG_INIT, NULL, 0};

typedef struct local_cache {
    void *blocks[LOCAL_MAX];
    size_t n;
} local_cache;

static _Thread_local local_cache *tl; /* this thread's cache, NULL until first use */
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static void lock(void) {
    while (atomic_flag_test_and_set_explicit(&pool.lock, memory_order_acquire)) {
    }
}

static void unlock(void) {
    atomic_flag_clear_explicit(&pool.lock, memory_order_release);
}

/* Moves n blocks from the cache to the shared stack (freeing what does not fit). */
static void give_back(local_cache *c, size_t n) {
    lock();
    while (n && pool.n < SHARED_MAX) {
        free_block *b = c->blocks[--c->n];
        b->next = pool.top;
        pool.top = b;
        pool.n++;
        n--;
    }
    unlock();
    while (n--)
        free(c->blocks[--c->n]);
}

/* Thread exit: the cache's blocks go back to the shared stack. */
static void cache_destroy(void *p) {
    local_cache *c = p;
    give_back(c, c->n);
    free(c);
}

/* A forked child has one thread: a lock held by another thread of the parent
 * at fork time must not stay held. */
static void child_after_fork(void) {
    atomic_flag_clear(&pool.lock);
}

static void tl_init(void) {
    pthread_key_create(&tl_key, cache_destroy);
    pthread_atfork(NULL, NULL, child_after_fork);
}

static local_cache *cache(void) {
    if (tl) return tl;
    pthread_once(&tl_once, tl_init);
    tl = calloc(1, sizeof *tl);
    if (tl) pthread_setspecific(tl_key, tl);
    return tl;
}

void *record_block_alloc(void) {
    local_cache *c = cache();
    if (c && c->n == 0 && pool.top) { /* unlocked peek: only a hint */
        lock();
        while (c->n < LOCAL_MAX / 2 && pool.top) {
            free_block *b = pool.top;
            pool.top = b->next;
            pool.n--;
            c->blocks[c->n++] = b;
        }
        unlock();
    }
    if (c && c->n) return c->blocks[--c->n];
    return malloc(sizeof(record_impl));
}

void record_block_free(void *p) {
    local_cache *c = cache();
    if (c == NULL) {
        free(p);
        return;
    }
    if (c->n == LOCAL_MAX) give_back(c, LOCAL_MAX / 2);
    c->blocks[c->n++] = p;
}
