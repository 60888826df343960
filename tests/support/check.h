/* Minimal C test harness: CHECK records a failure and goes on; TEST_MAIN runs
 * the listed tests and prints "N passed, N failed" (read by CI). */
#ifndef BASALT_TEST_CHECK_H
#define BASALT_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failures_ = 0;
static int check_current_failed_ = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);             \
            check_current_failed_ = 1;                                                             \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                     \
            fprintf(stderr, "  %s:%d: CHECK_STR failed: %s == %s (\"%s\" vs \"%s\")\n", __FILE__,  \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                     \
            check_current_failed_ = 1;                                                             \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "  %s:%d: CHECK_INT failed: %s == %s (%lld vs %lld)\n", __FILE__,      \
                    __LINE__, #a, #b, a_, b_);                                                     \
            check_current_failed_ = 1;                                                             \
        }                                                                                          \
    } while (0)

typedef struct check_case_ {
    const char *name;
    void (*fn)(void);
} check_case_;

#define TEST_CASE(fn)                                                                              \
    { #fn, fn }

static inline int check_run_(const check_case_ *cases, size_t n) {
    int passed = 0;
    for (size_t i = 0; i < n; i++) {
        check_current_failed_ = 0;
        cases[i].fn();
        if (check_current_failed_) {
            check_failures_++;
            fprintf(stderr, "FAIL %s\n", cases[i].name);
        } else {
            passed++;
            fprintf(stderr, "ok   %s\n", cases[i].name);
        }
    }
    printf("%d passed, %d failed\n", passed, check_failures_);
    return check_failures_ ? 1 : 0;
}

#define TEST_MAIN(...)                                                                             \
    int main(void) {                                                                               \
        static const check_case_ cases_[] = {__VA_ARGS__};                                         \
        return check_run_(cases_, sizeof cases_ / sizeof cases_[0]);                               \
    }

#endif
