/* Small string helpers for the per-message path, where snprintf's format
 * parsing costs more than the copy itself. */
#ifndef CR_STR_H
#define CR_STR_H

#include <stddef.h>
#include <stdint.h>

/* Room for any int64_t in decimal, with sign and NUL. */
#define CR_NUM_MAX 21

/* Copies src (NULL counts as "") into dst of size bytes, cut to fit; dst is
 * always terminated when size > 0. Returns the bytes copied. */
size_t cr_strlcpy(char *dst, const char *src, size_t size);

/* Returns the length (1 to 4) of the valid UTF-8 sequence at s, of which n
 * bytes (n > 0) may be read; 0 when it is not valid (overlong forms,
 * surrogates and code points past U+10FFFF are not); -1 when it is a valid
 * start cut off after n bytes. A NUL byte inside a sequence makes it invalid,
 * so in a C string n may be 4 whatever is left. */
int cr_utf8_seq_len(const unsigned char *s, size_t n);

/* Returns the offset of the first byte of the C string str that is not
 * valid UTF-8 (overlong forms, surrogates and code points past U+10FFFF are
 * invalid), or -1 when it is all valid. */
long cr_utf8_invalid_at(const char *str);

/* Writes v in decimal into buf (CR_NUM_MAX bytes or more). Returns buf. */
char *cr_fmt_i64(char *buf, int64_t v);

/* Returns the value of the hex digit c (either case), or -1 when c is none. */
int cr_hex_value(char c);

/* Character classes for cr_chars_ok. */
enum cr_chars {
    CR_CHARS_LETTERS = 1 << 0, /* A-Z a-z */
    CR_CHARS_DIGITS = 1 << 1,  /* 0-9 */
};

/* Returns nonzero when each of the n bytes at s is in one of classes (a set
 * of cr_chars, ASCII only) or is one of the bytes of extra (NULL: none); a
 * NUL byte never is. n == 0 gives nonzero: callers check the length. */
int cr_chars_ok(const char *s, size_t n, int classes, const char *extra);

/* The C string s trimmed of white space (isspace) at both ends: returns
 * where the rest starts, inside s, and sets *len to its length. */
const char *cr_str_trim(const char *s, size_t *len);

#endif
