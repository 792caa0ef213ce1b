/* Capped growable buffer (see cr_buf.h). */
#include "cr_buf.h"
#include "cr_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cr_buf_init(struct cr_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static int grow(struct cr_buf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 64;
    char *p;

    if (need > b->max)
        return CR_ETOOBIG;
    while (cap < need + 1)
        cap *= 2;
    if (cap <= b->cap)
        return 0;
    p = realloc(b->data, cap);
    if (p == NULL)
        return CR_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int cr_buf_reserve(struct cr_buf *b, size_t n)
{
    if (n > b->max - b->len)
        return CR_ETOOBIG;
    return grow(b, b->len + n);
}

int cr_buf_append(struct cr_buf *b, const void *p, size_t n)
{
    int rc;

    if (n > b->max - b->len)
        return CR_ETOOBIG;
    rc = grow(b, b->len + n);
    if (rc < 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int cr_buf_appends(struct cr_buf *b, const char *s)
{
    return cr_buf_append(b, s, strlen(s));
}

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

int cr_buf_append_pct(struct cr_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    int rc = 0;

    while (rc == 0 && *p) {
        const unsigned char *run = p;

        while (*p && unreserved(*p))
            p++;
        if (p > run)
            rc = cr_buf_append(b, run, (size_t)(p - run));
        if (rc == 0 && *p) {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};

            rc = cr_buf_append(b, e, 3);
            p++;
        }
    }
    return rc;
}

int cr_buf_vappendf(struct cr_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    int rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return CR_EINVAL;
    if ((size_t)n > b->max - b->len)
        return CR_ETOOBIG;
    rc = grow(b, b->len + (size_t)n);
    if (rc < 0)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int cr_buf_appendf(struct cr_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cr_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

const char *cr_buf_cstr(const struct cr_buf *b)
{
    return b->data ? b->data : "";
}

void cr_buf_reset(struct cr_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *cr_buf_steal(struct cr_buf *b)
{
    char *p = b->data;

    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void cr_buf_release(struct cr_buf *b)
{
    free(b->data);
    cr_buf_init(b, b->max);
}
