/* Shared vocabulary of the basalt C API: visibility, attribute values, byte buffers. */
#ifndef BASALT_COMMON_H
#define BASALT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(BASALT_BUILDING)
#define BASALT_API __attribute__((visibility("default")))
#else
#define BASALT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Type of an attribute value (the OTLP AnyValue cases). */
typedef enum basalt_value_type {
    BASALT_VAL_NONE = 0, /* absent: "do not write" */
    BASALT_VAL_BOOL,
    BASALT_VAL_INT,
    BASALT_VAL_DOUBLE,
    BASALT_VAL_STRING,
    BASALT_VAL_ARRAY,
    BASALT_VAL_KVLIST
} basalt_value_type;

typedef struct basalt_value basalt_value;
typedef struct basalt_kv basalt_kv;

/* An attribute value. Strings are length-delimited and need not be NUL-terminated
 * when they come from a caller; values stored in a span record are always
 * NUL-terminated copies. */
struct basalt_value {
    basalt_value_type type;
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            const char *ptr;
            size_t len;
        } s;
        struct {
            const basalt_value *items;
            size_t n;
        } arr;
        struct {
            const basalt_kv *items;
            size_t n;
        } kv;
    } u;
};

/* A key/value pair: span attributes, event attributes, resource attributes. */
struct basalt_kv {
    const char *key;
    basalt_value value;
};

/* Value constructors. */
static inline basalt_value basalt_v_bool(bool b) {
    basalt_value v;
    v.type = BASALT_VAL_BOOL;
    v.u.b = b;
    return v;
}
static inline basalt_value basalt_v_int(int64_t i) {
    basalt_value v;
    v.type = BASALT_VAL_INT;
    v.u.i = i;
    return v;
}
static inline basalt_value basalt_v_double(double d) {
    basalt_value v;
    v.type = BASALT_VAL_DOUBLE;
    v.u.d = d;
    return v;
}
static inline basalt_value basalt_v_strn(const char *s, size_t len) {
    basalt_value v;
    v.type = BASALT_VAL_STRING;
    v.u.s.ptr = s;
    v.u.s.len = len;
    return v;
}
BASALT_API basalt_value basalt_v_str(const char *s);
static inline basalt_value basalt_v_array(const basalt_value *items, size_t n) {
    basalt_value v;
    v.type = BASALT_VAL_ARRAY;
    v.u.arr.items = items;
    v.u.arr.n = n;
    return v;
}

/* A growable byte buffer (JSON writers, HTTP bodies). Zero-initialise to use. */
typedef struct basalt_buf {
    char *data;
    size_t len;
    size_t cap;
} basalt_buf;

/* Makes room for `extra` more bytes; false when out of memory. */
BASALT_API bool basalt_buf_reserve(basalt_buf *b, size_t extra);
/* Appends bytes; false when out of memory (the buffer is unchanged). */
BASALT_API bool basalt_buf_append(basalt_buf *b, const void *p, size_t n);
/* Appends a NUL-terminated string. */
BASALT_API bool basalt_buf_puts(basalt_buf *b, const char *s);
/* Appends one byte. */
BASALT_API bool basalt_buf_putc(basalt_buf *b, char c);
/* Keeps the allocation, forgets the content. */
static inline void basalt_buf_clear(basalt_buf *b) {
    b->len = 0;
}
/* Releases the allocation. */
BASALT_API void basalt_buf_free(basalt_buf *b);
/* Ensures data[len] == '\0' (not counted in len) and returns data. */
BASALT_API const char *basalt_buf_cstr(basalt_buf *b);

/* Log levels of the runtime's logger. */
typedef enum basalt_log_level {
    BASALT_LOG_DEBUG = 0,
    BASALT_LOG_INFO,
    BASALT_LOG_WARN,
    BASALT_LOG_ERROR
} basalt_log_level;

/* "debug", "info", "warn" or "error". */
BASALT_API const char *basalt_log_level_name(basalt_log_level level);
/* Logs through the configured logger (default: warnings and errors to stderr). */
BASALT_API void basalt_log(basalt_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Logs a warning once per process per distinct message text. */
BASALT_API void basalt_log_once(basalt_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A log sink: receives level and a formatted message. Called from any thread,
 * the export worker included, so it must be thread-safe. */
typedef void (*basalt_log_fn)(void *ud, basalt_log_level level, const char *msg);
/* Replaces the process-wide log sink (NULL restores the stderr default). */
BASALT_API void basalt_set_logger(basalt_log_fn fn, void *ud);

/* Monotonic clock in nanoseconds (deadlines, durations). */
BASALT_API uint64_t basalt_monotonic_ns(void);
/* Wall clock in nanoseconds since the Unix epoch (span timestamps). */
BASALT_API uint64_t basalt_wall_ns(void);

/* Replaces invalid UTF-8 sequences with U+FFFD. Returns true when `s` was
 * already valid (and writes nothing); otherwise writes the repaired text to out. */
BASALT_API bool basalt_utf8_repair(const char *s, size_t len, basalt_buf *out);

/* The library version, "MAJOR.MINOR.PATCH". */
BASALT_API const char *basalt_version(void);

#ifdef __cplusplus
}
#endif
#endif
