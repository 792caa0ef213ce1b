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
