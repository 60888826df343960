/* Id generation: xoshiro256** per thread, seeded from getrandom(2). A fork
 * bumps a process-wide generation so the child reseeds instead of repeating
 * the parent's sequence. */
#include "basalt/ids.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Incremented in every forked child (atomic; read by each thread's generator). */
static _Atomic unsigned fork_generation = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void) {
    atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
}

static void register_atfork(void) {
    pthread_atfork(NULL, NULL, on_fork_child);
}

/* Per-thread generator state (thread-local: no lock). */
typedef struct rng {
    uint64_t s[4];
    unsigned generation; /* 0 = never seeded */
} rng;
static _Thread_local rng tls_rng;

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void seed(rng *r, unsigned gen) {
    uint64_t s[4] = {0, 0, 0, 0};
    size_t got = 0;
    while (got < sizeof s) {
        ssize_t n = getrandom((char *)s + got, sizeof s - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got < sizeof s) {
        /* getrandom unavailable: mix what we have through splitmix with the
         * address of the state; still never a bare time or pid seed. */
        uint64_t x = s[0] ^ (uint64_t)(uintptr_t)r;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x ^= (uint64_t)ts.tv_nsec << 17;
        for (int i = 0; i < 4; i++)
            s[i] ^= splitmix(&x);
    }
    if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1;
    memcpy(r->s, s, sizeof s);
    r->generation = gen;
}

static uint64_t next(void) {
    rng *r = &tls_rng;
    unsigned gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (r->generation != gen) {
        pthread_once(&atfork_once, register_atfork);
        seed(r, gen);
    }
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t basalt_random_u64(void) {
    return next();
}

void basalt_new_trace_id(uint8_t out[16]) {
    uint64_t a, b;
    do {
        a = next();
        b = next();
    } while ((a | b) == 0);
    memcpy(out, &a, 8);
    memcpy(out + 8, &b, 8);
}

void basalt_new_span_id(uint8_t out[8]) {
    uint64_t a;
    do
        a = next();
    while (a == 0);
    memcpy(out, &a, 8);
}
