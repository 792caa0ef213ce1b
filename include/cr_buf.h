/* A growable byte buffer with a hard cap fixed at creation: everything crier
 * reads from outside or builds for the wire goes through one of these, so no
 * input can make memory grow without bound. */
#ifndef CR_BUF_H
#define CR_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct cr_buf {
    char *data;  /* always NUL-terminated when non-NULL; owned */
    size_t len;  /* bytes used, not counting the NUL */
    size_t cap;  /* bytes allocated */
    size_t max;  /* the most len may ever be */
};

/* Prepares an empty buffer that may hold at most max bytes. Allocates nothing. */
void cr_buf_init(struct cr_buf *b, size_t max);

/* Appends n bytes. Returns 0, CR_ETOOBIG (past max; b unchanged) or CR_ENOMEM. */
int cr_buf_append(struct cr_buf *b, const void *p, size_t n);

/* Makes room for n more bytes without changing the contents, so that the
 * appends that follow need no allocation. Returns 0, CR_ETOOBIG (past max;
 * nothing reserved) or CR_ENOMEM. */
int cr_buf_reserve(struct cr_buf *b, size_t n);

/* Appends a NUL-terminated string; as cr_buf_append. */
int cr_buf_appends(struct cr_buf *b, const char *s);

/* Appends s percent-encoded for a URL query or a form body: every byte but
 * RFC 3986's unreserved ones (ALPHA DIGIT - . _ ~) as %XX, as
 * curl_easy_escape does. As cr_buf_append; on an error b may hold part of it. */
int cr_buf_append_pct(struct cr_buf *b, const char *s);

/* Appends printf-style output; as cr_buf_append. fmt must be a literal. */
int cr_buf_appendf(struct cr_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* va_list form of cr_buf_appendf. */
int cr_buf_vappendf(struct cr_buf *b, const char *fmt, va_list ap);

/* Returns the contents as a C string ("" when empty); valid until the next change. */
const char *cr_buf_cstr(const struct cr_buf *b);

/* Empties the buffer, keeping its memory for reuse. */
void cr_buf_reset(struct cr_buf *b);

/* Hands the data to the caller (who frees it) and leaves b empty; NULL when empty. */
char *cr_buf_steal(struct cr_buf *b);

/* Frees the memory; b may be initialised again. */
void cr_buf_release(struct cr_buf *b);

#endif
