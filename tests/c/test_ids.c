/* Trace and span ids: never zero, 32 / 16 lowercase hex, no repeats, separate
 * sequences per thread, and a forked child that does not replay its parent. */
#include "basalt/ids.h"
#include "basalt/record.h"
#include "check.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 100000

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t span_u64(void) {
    uint8_t id[8];
    basalt_new_span_id(id);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | id[i];
    return v;
}

static void test_ids_are_nonzero_lowercase_hex(void) {
    for (int i = 0; i < 1000; i++) {
        uint8_t t[16], s[8];
        basalt_new_trace_id(t);
        basalt_new_span_id(s);
        char th[33], sh[17];
        basalt_hex_encode(t, 16, th);
        basalt_hex_encode(s, 8, sh);
        CHECK_INT(strlen(th), 32);
        CHECK_INT(strlen(sh), 16);
        CHECK(strspn(th, "0123456789abcdef") == 32);
        CHECK(strspn(sh, "0123456789abcdef") == 16);
        CHECK(strcmp(th, "00000000000000000000000000000000") != 0);
        CHECK(strcmp(sh, "0000000000000000") != 0);
    }
}

static void test_span_ids_do_not_repeat(void) {
    uint64_t *v = malloc(sizeof *v * N);
    for (int i = 0; i < N; i++)
        v[i] = span_u64();
    qsort(v, N, sizeof *v, cmp_u64);
    int dups = 0;
    for (int i = 1; i < N; i++)
        dups += v[i] == v[i - 1];
    CHECK_INT(dups, 0);
    free(v);
}

static void *first_ids(void *out) {
    uint64_t *o = out;
    for (int i = 0; i < 4; i++)
        o[i] = span_u64();
    return NULL;
}

static void test_threads_have_their_own_sequences(void) {
    uint64_t a[4], b[4];
    pthread_t t1, t2;
    pthread_create(&t1, NULL, first_ids, a);
    pthread_create(&t2, NULL, first_ids, b);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

static void test_forked_child_does_not_replay_the_parent(void) {
    span_u64(); /* the parent's generator is seeded */
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        uint64_t v[4];
        for (int i = 0; i < 4; i++)
            v[i] = span_u64();
        ssize_t w = write(fds[1], v, sizeof v);
        _exit(w == (ssize_t)sizeof v ? 0 : 1);
    }
    uint64_t mine[4], child[4];
    for (int i = 0; i < 4; i++)
        mine[i] = span_u64();
    CHECK(read(fds[0], child, sizeof child) == (ssize_t)sizeof child);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(mine, child, sizeof mine) != 0);
    close(fds[0]);
    close(fds[1]);
}

/* The word-at-a-time hex writer against printf, for every length up to 17 bytes
 * (ids are 8 and 16) and many byte values. */
static void test_hex_encoding_matches_printf(void) {
    uint8_t b[17];
    char out[35], want[35];
    unsigned seed = 12345;
    for (int t = 0; t < 20000; t++) {
        for (size_t i = 0; i < sizeof b; i++) {
            seed = seed * 1103515245u + 12345u;
            b[i] =
                (uint8_t)(t < 256 ? (unsigned)t : seed >> 16); /* every single byte value first */
        }
        size_t n = (size_t)t % 18;
        basalt_hex_encode(b, n, out);
        for (size_t i = 0; i < n; i++)
            snprintf(want + 2 * i, 3, "%02x", b[i]);
        want[2 * n] = '\0';
        CHECK_STR(out, want);
    }
}

TEST_MAIN(TEST_CASE(test_ids_are_nonzero_lowercase_hex),
          TEST_CASE(test_hex_encoding_matches_printf), TEST_CASE(test_span_ids_do_not_repeat),
          TEST_CASE(test_threads_have_their_own_sequences),
          TEST_CASE(test_forked_child_does_not_replay_the_parent))
