/* Lowercase hex encoding of ids. */
#include "basalt/record.h"

#include <pthread.h>
#include <string.h>

/* Two characters per byte from one table (written once, then read-only). */
static char pairs[512];
static pthread_once_t pairs_once = PTHREAD_ONCE_INIT;

static void pairs_init(void) {
    static const char digits[] = "0123456789abcdef";
    for (int b = 0; b < 256; b++) {
        pairs[2 * b] = digits[b >> 4];
        pairs[2 * b + 1] = digits[b & 15];
    }
}

__attribute__((constructor)) static void pairs_at_load(void) {
    pthread_once(&pairs_once, pairs_init);
}

void basalt_hex_encode(const uint8_t *bytes, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        memcpy(out + 2 * i, pairs + 2 * bytes[i], 2);
    out[2 * n] = '\0';
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool basalt_hex_decode(const char *hex, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]);
        if (hi < 0) return false;
        int lo = hexval(hex[2 * i + 1]);
        if (lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}
