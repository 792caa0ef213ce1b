/* String helpers (see cr_str.h). */
#include "cr_str.h"

#include <string.h>

size_t cr_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n;

    if (size == 0)
        return 0;
    n = src ? strnlen(src, size - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

char *cr_fmt_i64(char *buf, int64_t v)
{
    char tmp[CR_NUM_MAX];
    size_t n = 0;
    size_t i = 0;
    /* in unsigned arithmetic, so INT64_MIN has a magnitude too */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        buf[i++] = '-';
    while (n > 0)
        buf[i++] = tmp[--n];
    buf[i] = '\0';
    return buf;
}

long cr_utf8_invalid_at(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;

    while (s[i]) {
        unsigned char b = s[i];
        size_t len;
        size_t k;
        unsigned char lo = 0x80;
        unsigned char hi = 0xBF;

        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0)
                lo = 0xA0; /* overlong */
            if (b == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0)
                lo = 0x90; /* overlong */
            if (b == 0xF4)
                hi = 0x8F; /* past U+10FFFF */
        } else {
            return (long)i;
        }
        if (s[i + 1] < lo || s[i + 1] > hi)
            return (long)i;
        for (k = 2; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return (long)i;
        }
        i += len;
    }
    return -1;
}

int cr_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
