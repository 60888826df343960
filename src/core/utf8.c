/* UTF-8 validation and repair: one bad byte must never make a collector
 * reject a whole batch, so invalid sequences become U+FFFD. */
#include "basalt/common.h"

#include <string.h>

/* Length of the valid sequence at s[0..len), or 0 when invalid (RFC 3629:
 * no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t valid_seq(const unsigned char *s, size_t len) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (len >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (len < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (len < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && s[1] > 0x8F) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

bool basalt_utf8_repair(const char *str, size_t len, basalt_buf *out) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        if (i + 8 <= len) { /* ASCII runs, eight bytes at a time */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        size_t n = valid_seq(s + i, len - i);
        if (n == 0) break;
        i += n;
    }
    if (i == len) return true;
    basalt_buf_append(out, s, i);
    while (i < len) {
        size_t n = valid_seq(s + i, len - i);
        if (n) {
            basalt_buf_append(out, s + i, n);
            i += n;
        } else {
            basalt_buf_append(out, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    return false;
}
