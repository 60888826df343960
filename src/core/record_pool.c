/* Recycled blocks of the two objects made per span: records and live spans.
 * A record is usually allocated by the application thread and freed by an
 * export worker, and spans are freed in bursts by Lua's garbage collector;
 * either way glibc sends most allocations down its slow path (one thread's
 * cache fills up, the other's stays empty). Here each thread keeps a small
 * cache per kind (thread-local: no lock) and trades half of it at a time with
 * a shared stack (guarded by that stack's spin lock, held for a few pointer
 * moves). */
#include "record_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define LOCAL_MAX  64
#define SHARED_MAX 4096

typedef struct free_block {
    struct free_block *next;
} free_block;

typedef struct shared_stack {
    atomic_flag lock;
    free_block *top;  /* under lock */
    _Atomic size_t n; /* written under lock; read without it as a hint */
} shared_stack;

static shared_stack pools[BLOCK_KINDS] = {{ATOMIC_FLAG_INIT, NULL, 0}, {ATOMIC_FLAG_INIT, NULL, 0}};

/* n changes only under the lock, so a plain load and store is enough. */
static void count_add(shared_stack *p, size_t d) {
    atomic_store_explicit(&p->n, atomic_load_explicit(&p->n, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

typedef struct local_cache {
    void *blocks[BLOCK_KINDS][LOCAL_MAX];
    size_t n[BLOCK_KINDS];
} local_cache;

static _Thread_local local_cache *tl; /* this thread's caches, NULL until first use */
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static void lock(shared_stack *p) {
    while (atomic_flag_test_and_set_explicit(&p->lock, memory_order_acquire)) {
    }
}

static void unlock(shared_stack *p) {
    atomic_flag_clear_explicit(&p->lock, memory_order_release);
}

/* Moves n blocks of kind k from the cache to its shared stack (freeing what
 * does not fit). */
static void give_back(local_cache *c, int k, size_t n) {
    shared_stack *p = &pools[k];
    lock(p);
    while (n && atomic_load_explicit(&p->n, memory_order_relaxed) < SHARED_MAX) {
        free_block *b = c->blocks[k][--c->n[k]];
        b->next = p->top;
        p->top = b;
        count_add(p, 1);
        n--;
    }
    unlock(p);
    while (n--)
        free(c->blocks[k][--c->n[k]]);
}

/* Thread exit: the cache's blocks go back to the shared stacks. */
static void cache_destroy(void *v) {
    local_cache *c = v;
    for (int k = 0; k < BLOCK_KINDS; k++)
        give_back(c, k, c->n[k]);
    free(c);
}

/* A forked child has one thread: a lock held by another thread of the parent
 * at fork time must not stay held. */
static void child_after_fork(void) {
    for (int k = 0; k < BLOCK_KINDS; k++)
        atomic_flag_clear(&pools[k].lock);
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

void *block_alloc(int k, size_t size) {
    local_cache *c = cache();
    shared_stack *p = &pools[k];
    if (c && c->n[k] == 0 && atomic_load_explicit(&p->n, memory_order_relaxed)) { /* a hint */
        lock(p);
        while (c->n[k] < LOCAL_MAX / 2 && p->top) {
            free_block *b = p->top;
            p->top = b->next;
            count_add(p, (size_t)-1);
            c->blocks[k][c->n[k]++] = b;
        }
        unlock(p);
    }
    if (c && c->n[k]) {
        void *b = c->blocks[k][--c->n[k]];
        /* The next block likely comes from another thread's cache (an export
         * worker freed it): start fetching it for writing now. */
        if (c->n[k]) {
            const char *next = c->blocks[k][c->n[k] - 1];
            for (size_t off = 0; off < size; off += 64)
                __builtin_prefetch(next + off, 1);
        }
        return b;
    }
    return malloc(size);
}

void block_free(int k, void *b) {
    local_cache *c = cache();
    if (c == NULL) {
        free(b);
        return;
    }
    if (c->n[k] == LOCAL_MAX) give_back(c, k, LOCAL_MAX / 2);
    c->blocks[k][c->n[k]++] = b;
}

void *record_block_alloc(void) {
    return block_alloc(BLOCK_RECORD, sizeof(record_impl));
}

void record_block_free(void *p) {
    block_free(BLOCK_RECORD, p);
}
