/* JSON string literals: escaping plus UTF-8 repair in one pass, shared by the
 * OTLP encoder and the Lua serialiser (attribute values, metadata). */
#include "basalt/otlp_json.h"

#include <string.h>

static const char hexdigits[] = "0123456789abcdef";

/* Escapes s[0..len) (already valid UTF-8) into out, quotes excluded. */
static bool write_escaped(basalt_buf *out, const char *s, size_t len) {
    /* Worst case 6 bytes per input byte (\u00XX). */
    if (!basalt_buf_reserve(out, len * 6 + 2)) return false;
    char *w = out->data + out->len;
    size_t i = 0;
    /* Copy eight plain bytes at a time (none < 0x20, '"' or '\\'). */
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (i + 8 <= len) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
        uint64_t special = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
        if (special & highs & ~x) break; /* bytes >= 0x80 pass: UTF-8 is kept */
        memcpy(w, &x, 8);
        w += 8;
        i += 8;
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '\n':
            *w++ = 'n';
            break;
        case '\r':
            *w++ = 'r';
            break;
        case '\t':
            *w++ = 't';
            break;
        case '\b':
            *w++ = 'b';
            break;
        case '\f':
            *w++ = 'f';
            break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = hexdigits[c >> 4];
            *w++ = hexdigits[c & 15];
        }
    }
    out->len = (size_t)(w - out->data);
    return true;
}

bool basalt_json_write_string(basalt_buf *out, const char *s, size_t len) {
    if (!basalt_buf_putc(out, '"')) return false;
    basalt_buf fixed = {0};
    if (s && !basalt_utf8_repair(s, len, &fixed)) {
        s = fixed.data;
        len = fixed.len;
    }
    bool ok = write_escaped(out, s ? s : "", s ? len : 0);
    basalt_buf_free(&fixed);
    return ok && basalt_buf_putc(out, '"');
}
