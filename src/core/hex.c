/* Lowercase hex encoding of ids. */
#include "basalt/record.h"

#include <string.h>

/* Eight bytes become sixteen characters in a few word operations: each nibble
 * spread into a byte of its own, then offset to '0'..'9' or 'a'..'f'. */
static inline void hex8(const uint8_t *in, char *out) {
    uint64_t v;
    memcpy(&v, in, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v); /* the first byte most significant */
#endif
    for (int half = 0; half < 2; half++) {
        uint64_t y = (uint32_t)(v >> (32 - 32 * half));
        y = (y | y << 16) & 0x0000ffff0000ffffull;
        y = (y | y << 8) & 0x00ff00ff00ff00ffull;
        y = (y | y << 4) & 0x0f0f0f0f0f0f0f0full;
        uint64_t letters = ((y + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
        y += 0x3030303030303030ull + letters * ('a' - '0' - 10);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        y = __builtin_bswap64(y); /* the first nibble at the lowest address */
#endif
        memcpy(out + 8 * half, &y, 8);
    }
}

void basalt_hex_encode(const uint8_t *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        hex8(bytes + i, out + 2 * i);
    for (; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
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
