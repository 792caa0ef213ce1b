/* String helpers (see cr_str.h). */
#include "cr_str.h"

#include <ctype.h>
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

int cr_utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80; /* the second byte's range: no overlong forms, */
    unsigned char hi = 0xBF; /* surrogates or code points past U+10FFFF */
    size_t len;
    size_t i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        if (s[0] == 0xE0)
            lo = 0xA0;
        if (s[0] == 0xED)
            hi = 0x9F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        if (s[0] == 0xF0)
            lo = 0x90;
        if (s[0] == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if (i >= n)
            return -1;
        if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xBF))
            return 0;
    }
    return (int)len;
}

long cr_utf8_invalid_at(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    size_t i = 0;

    while (i < n) {
        int len = cr_utf8_seq_len(s + i, n - i);

        if (len <= 0)
            return (long)i;
        i += (size_t)len;
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

int cr_chars_ok(const char *s, size_t n, int classes, const char *extra)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if ((classes & CR_CHARS_LETTERS) && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
            continue;
        if ((classes & CR_CHARS_DIGITS) && ch >= '0' && ch <= '9')
            continue;
        if (ch == '\0' || extra == NULL || strchr(extra, ch) == NULL)
            return 0;
    }
    return 1;
}

const char *cr_str_trim(const char *s, size_t *len)
{
    size_t n;

    while (*s != '\0' && isspace((unsigned char)*s))
        s++;
    n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}
