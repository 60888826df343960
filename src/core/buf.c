/* Growable byte buffers and small value helpers. */
#include "basalt/common.h"

#include <stdlib.h>
#include <string.h>

basalt_value basalt_v_str(const char *s) {
    return basalt_v_strn(s, s ? strlen(s) : 0);
}

bool basalt_buf_reserve(basalt_buf *b, size_t extra) {
    if (b->cap - b->len > extra) return true; /* keeps one byte for the NUL of cstr */
    size_t need = b->len + extra + 1;
    if (need < b->len) return false;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) return false;
    b->data = p;
    b->cap = cap;
    return true;
}

bool basalt_buf_append(basalt_buf *b, const void *p, size_t n) {
    if (!basalt_buf_reserve(b, n)) return false;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

bool basalt_buf_puts(basalt_buf *b, const char *s) {
    return basalt_buf_append(b, s, strlen(s));
}

bool basalt_buf_putc(basalt_buf *b, char c) {
    if (!basalt_buf_reserve(b, 1)) return false;
    b->data[b->len++] = c;
    return true;
}

void basalt_buf_free(basalt_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

const char *basalt_buf_cstr(basalt_buf *b) {
    if (!basalt_buf_reserve(b, 0)) return NULL;
    b->data[b->len] = '\0';
    return b->data;
}
