/* Logging: one process-wide sink, and "once per distinct message" warnings. */
#include "basalt/common.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Process-wide logger state, guarded by log_lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static basalt_log_fn log_fn = NULL;
static void *log_ud = NULL;

/* Hashes of messages already logged once, guarded by log_lock (open addressing;
 * when full, further distinct messages are still logged: never silently lost). */
#define ONCE_SLOTS 1024
static uint64_t once_seen[ONCE_SLOTS];
static size_t once_count = 0;

void basalt_set_logger(basalt_log_fn fn, void *ud) {
    pthread_mutex_lock(&log_lock);
    log_fn = fn;
    log_ud = ud;
    pthread_mutex_unlock(&log_lock);
}

const char *basalt_log_level_name(basalt_log_level level) {
    switch (level) {
    case BASALT_LOG_DEBUG:
        return "debug";
    case BASALT_LOG_INFO:
        return "info";
    case BASALT_LOG_WARN:
        return "warn";
    default:
        return "error";
    }
}

static void emit(basalt_log_level level, const char *msg) {
    pthread_mutex_lock(&log_lock);
    basalt_log_fn fn = log_fn;
    void *ud = log_ud;
    pthread_mutex_unlock(&log_lock);
    if (fn) {
        fn(ud, level, msg);
    } else if (level >= BASALT_LOG_WARN) {
        fprintf(stderr, "basalt [%s] %s\n", basalt_log_level_name(level), msg);
    }
}

void basalt_log(basalt_log_level level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(level, msg);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ? h : 1;
}

/* Returns true the first time a hash is seen. */
static bool once_first(uint64_t h) {
    bool first = true;
    pthread_mutex_lock(&log_lock);
    if (once_count < ONCE_SLOTS * 3 / 4) {
        size_t i = h % ONCE_SLOTS;
        while (once_seen[i] != 0) {
            if (once_seen[i] == h) {
                first = false;
                break;
            }
            i = (i + 1) % ONCE_SLOTS;
        }
        if (first) {
            once_seen[i] = h;
            once_count++;
        }
    }
    pthread_mutex_unlock(&log_lock);
    return first;
}

void basalt_log_once(basalt_log_level level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (once_first(fnv1a(msg))) emit(level, msg);
}
