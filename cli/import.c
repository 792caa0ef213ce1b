/* crierctl import: subscribers and segment membership from a CSV file (parsed
 * by libcsv), every line checked before it is written, good lines written to
 * Redis pipelined in chunks, bad lines reported with their line number. */
#include <csv.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_buf.h"
#include "cr_error.h"
#include "ctl.h"

#define MAX_COLS 256
#define MAX_RECORD (1024 * 1024)   /* bytes of one CSV record */
#define MAX_VALUE (64 * 1024)      /* bytes of one cell */
#define MAX_SEGMENTS_PER_LINE 256
#define MAX_DISTINCT_SEGMENTS 1000000
#define CHUNK_LINES 1000
#define SEGMENT_NAME_MAX 128       /* as the job document's segment names */
#define PROBLEMS_MAX 1024

static const char help[] =
    "Usage: crierctl import [options] FILE.csv\n"
    "Writes subscribers (<prefix>sub:<id> hashes) and segment membership\n"
    "(<prefix>seg:<name> sets) from a CSV file ('-' = standard input). The first\n"
    "row names the columns: id (required), email, phone, push_token, push_platform,\n"
    "lang, channels, min_priority, quiet, tz, name, segments (names separated by\n"
    "';'); any other column is stored as a hash field of the same name.\n"
    "An empty cell removes that field from an existing subscriber.\n"
    "Checks: id [A-Za-z0-9._:-]{1,64}; email one '@' and no spaces; phone E.164\n"
    "(+ and 7 to 15 digits); channels from email,sms,push; push_platform fcm or\n"
    "apns; min_priority urgent/high/normal/bulk; quiet HH:MM-HH:MM; lang 2 to 15\n"
    "of A-Z a-z -; tz a zone name; segment names printable ASCII without spaces;\n"
    "every cell valid UTF-8; the number of fields matches the header.\n"
    "A bad line is reported as FILE:LINE: <problem> and skipped. Quoted fields,\n"
    "embedded commas and newlines, CRLF and a UTF-8 byte order mark are handled.\n"
    "Ends with `imported N subscribers into M segments, K lines rejected`;\n"
    "exit 1 if any line was rejected.\n"
    "\n"
    "Options:\n"
    "  -n, --dry-run    check the file only; write nothing (no Redis needed)\n";

enum col_kind {
    COL_ID,
    COL_EMAIL,
    COL_PHONE,
    COL_PUSH_TOKEN,
    COL_PUSH_PLATFORM,
    COL_LANG,
    COL_CHANNELS,
    COL_MIN_PRIORITY,
    COL_QUIET,
    COL_TZ,
    COL_NAME,
    COL_SEGMENTS,
    COL_EXTRA,
};

static const char *const known_cols[] = {
    [COL_ID] = "id",
    [COL_EMAIL] = "email",
    [COL_PHONE] = "phone",
    [COL_PUSH_TOKEN] = "push_token",
    [COL_PUSH_PLATFORM] = "push_platform",
    [COL_LANG] = "lang",
    [COL_CHANNELS] = "channels",
    [COL_MIN_PRIORITY] = "min_priority",
    [COL_QUIET] = "quiet",
    [COL_TZ] = "tz",
    [COL_NAME] = "name",
    [COL_SEGMENTS] = "segments",
};

/* A set of strings (segment names), open addressing, capped. */
struct strset {
    char **slots;
    size_t cap;   /* power of two */
    size_t n;
};

struct cell {
    char *s;      /* NUL-terminated copy */
    size_t len;
};

/* One good line, waiting in the chunk for its replies. */
struct pending {
    long line;
    int ncmds;
};

struct imp {
    struct ctl *ctl;
    const char *path;
    int dry_run;
    int fatal;                 /* stop: a header problem, a runaway record, Redis gone */
    int exit_code;             /* when fatal */

    /* the record being read */
    struct cell cells[MAX_COLS];
    size_t ncells;
    int too_many;
    int bad_alloc;
    size_t rec_bytes;
    long line;                 /* physical line being fed (1-based) */
    long rec_line;             /* line where the current record started */
    int at_start;              /* between records */

    /* the header */
    int have_header;
    char *cols[MAX_COLS];
    enum col_kind kinds[MAX_COLS];
    size_t ncols;

    /* writing */
    struct pending chunk[CHUNK_LINES];
    size_t nchunk;
    struct strset segs;        /* distinct segments of imported lines */
    long imported;
    long rejected;
};

/* ---- small checks ---- */

/* Adds s (copied) to set. Returns 0, CR_ETOOBIG past the cap, CR_ENOMEM. */
static int strset_add(struct strset *set, const char *s)
{
    size_t i;

    if (set->n * 2 >= set->cap) {
        size_t ncap = set->cap ? set->cap * 2 : 1024;
        char **nslots;
        size_t k;

        if (set->n >= MAX_DISTINCT_SEGMENTS)
            return CR_ETOOBIG;
        nslots = calloc(ncap, sizeof(*nslots));
        if (nslots == NULL)
            return CR_ENOMEM;
        for (k = 0; k < set->cap; k++) {
            if (set->slots[k] == NULL)
                continue;
            i = (size_t)cr_ctl_hash_str(set->slots[k]) & (ncap - 1);
            while (nslots[i])
                i = (i + 1) & (ncap - 1);
            nslots[i] = set->slots[k];
        }
        free(set->slots);
        set->slots = nslots;
        set->cap = ncap;
    }
    i = (size_t)cr_ctl_hash_str(s) & (set->cap - 1);
    while (set->slots[i]) {
        if (strcmp(set->slots[i], s) == 0)
            return 0;
        i = (i + 1) & (set->cap - 1);
    }
    set->slots[i] = strdup(s);
    if (set->slots[i] == NULL)
        return CR_ENOMEM;
    set->n++;
    return 0;
}

static void strset_free(struct strset *set)
{
    size_t i;

    for (i = 0; i < set->cap; i++)
        free(set->slots[i]);
    free(set->slots);
    memset(set, 0, sizeof(*set));
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF, no NUL. */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        size_t j;
        uint32_t cp;

        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int is_id_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == ':' || ch == '-';
}

static int valid_id(const char *s, size_t n)
{
    size_t i;

    if (n < 1 || n > 64)
        return 0;
    for (i = 0; i < n; i++)
        if (!is_id_char((unsigned char)s[i]))
            return 0;
    return 1;
}

static int has_space_or_control(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c <= 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

/* NULL when fine, else what is wrong. */
static const char *check_email(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);

    if (n > 254)
        return "longer than 254 bytes";
    if (has_space_or_control(s, n))
        return "has a space or a control character";
    if (at == NULL || memchr(at + 1, '@', n - (size_t)(at - s) - 1) != NULL)
        return "must have exactly one '@'";
    if (at == s || at == s + n - 1)
        return "needs a name before and a domain after the '@'";
    return NULL;
}

static const char *check_phone(const char *s, size_t n)
{
    size_t i;

    if (n < 8 || n > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return "is not E.164 ('+', a digit 1-9, then 6 to 14 more digits)";
    for (i = 2; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return "is not E.164 ('+', a digit 1-9, then 6 to 14 more digits)";
    return NULL;
}

static const char *check_channels(const char *s, size_t n)
{
    const char *p = s;
    const char *end = s + n;

    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        const char *a = p;
        const char *b = stop;
        enum cr_channel ch;
        char name[16];

        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        if (b == a || (size_t)(b - a) >= sizeof(name))
            return "must be channel names from email, sms, push separated by ','";
        memcpy(name, a, (size_t)(b - a));
        name[b - a] = '\0';
        if (cr_channel_parse(name, &ch) < 0)
            return "must be channel names from email, sms, push separated by ','";
        if (comma == NULL)
            return NULL;
        p = comma + 1;
    }
}

static int two_digits(const char *s, int max)
{
    int v;

    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return 0;
    v = (s[0] - '0') * 10 + (s[1] - '0');
    return v <= max;
}

static const char *check_quiet(const char *s, size_t n)
{
    if (n != 11 || s[2] != ':' || s[5] != '-' || s[8] != ':' || !two_digits(s, 23) ||
        !two_digits(s + 3, 59) || !two_digits(s + 6, 23) || !two_digits(s + 9, 59))
        return "must be HH:MM-HH:MM (e.g. 22:00-07:00)";
    return NULL;
}

static const char *check_lang(const char *s, size_t n)
{
    size_t i;

    if (n < 2 || n > 15)
        return "must be 2 to 15 of A-Z a-z - (e.g. en, pl, pt-BR)";
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))
            return "must be 2 to 15 of A-Z a-z - (e.g. en, pl, pt-BR)";
    }
    return NULL;
}

static const char *check_tz(const char *s, size_t n)
{
    size_t i;

    if (n > 63 || strstr(s, ".."))
        return "is not a time zone name (e.g. Europe/London)";
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+'))
            return "is not a time zone name (e.g. Europe/London)";
    }
    return NULL;
}

static const char *check_token(const char *s, size_t n)
{
    if (n > 4096)
        return "longer than 4096 bytes";
    if (has_space_or_control(s, n))
        return "has a space or a control character";
    return NULL;
}

/* Calls fn(name, len, ud) for each ';'-separated segment name, spaces around
 * a name trimmed and empty names skipped; stops at the first nonzero return. */
static int each_segment(const char *s, size_t n, int (*fn)(const char *, size_t, void *), void *ud)
{
    const char *p = s;
    const char *end = s + n;
    int rc;

    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        const char *a = p;
        const char *b = stop;

        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        if (b > a) {
            rc = fn(a, (size_t)(b - a), ud);
            if (rc != 0)
                return rc;
        }
        p = stop + (semi ? 1 : 0);
    }
    return 0;
}

struct seg_check {
    size_t count;
    const char *bad; /* first bad name */
    size_t badlen;
};

static int seg_check_one(const char *name, size_t n, void *ud)
{
    struct seg_check *sc = ud;
    size_t i;

    sc->count++;
    if (n > SEGMENT_NAME_MAX)
        goto bad;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c <= 0x20 || c >= 0x7f)
            goto bad;
    }
    return 0;
bad:
    sc->bad = name;
    sc->badlen = n;
    return 1;
}

/* Appends "; " between problems. */
static void problem(struct cr_buf *pb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct cr_buf *pb, const char *fmt, ...)
{
    va_list ap;

    if (pb->len > 0)
        cr_buf_appends(pb, "; ");
    va_start(ap, fmt);
    cr_buf_vappendf(pb, fmt, ap);
    va_end(ap);
}

/* A value as it appears in a message: cut to 40 bytes, newlines shown as spaces. */
static void quote_value(const char *s, size_t n, char *out, size_t outlen)
{
    size_t i;
    size_t k = 0;

    for (i = 0; i < n && k + 4 < outlen && i < 40; i++)
        out[k++] = (s[i] == '\n' || s[i] == '\r') ? ' ' : s[i];
    if (i < n && k + 4 < outlen) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* ---- the header ---- */

static void header(struct imp *im)
{
    size_t i;
    size_t j;
    int have_id = 0;

    for (i = 0; i < im->ncells; i++) {
        char *name = im->cells[i].s;
        size_t n = im->cells[i].len;
        size_t k;

        if (i == 0 && n >= 3 && memcmp(name, "\xef\xbb\xbf", 3) == 0) {
            memmove(name, name + 3, n - 2); /* the byte order mark, and the NUL */
            n -= 3;
            im->cells[i].len = n;
        }
        if (n == 0 || n > 128 || has_space_or_control(name, n) || !valid_utf8((void *)name, n)) {
            fprintf(stderr, "%s:%ld: column %zu of the header must be a name (1 to 128 bytes, "
                    "no spaces)\n", im->path, im->rec_line, i + 1);
            goto fatal;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(im->cols[j], name) == 0) {
                fprintf(stderr, "%s:%ld: column '%s' appears twice in the header\n", im->path,
                        im->rec_line, name);
                goto fatal;
            }
        }
        im->kinds[i] = COL_EXTRA;
        for (k = 0; k < sizeof(known_cols) / sizeof(known_cols[0]); k++)
            if (strcmp(name, known_cols[k]) == 0)
                im->kinds[i] = (enum col_kind)k;
        if (im->kinds[i] == COL_ID)
            have_id = 1;
        im->cols[i] = name;
        im->cells[i].s = NULL; /* ownership moved to cols */
        im->ncols = i + 1;
    }
    if (!have_id) {
        fprintf(stderr, "%s:%ld: the header has no 'id' column\n", im->path, im->rec_line);
        goto fatal;
    }
    im->have_header = 1;
    return;
fatal:
    im->fatal = 1;
    im->exit_code = CTL_EXIT_FAIL;
}

/* ---- one line ---- */

/* Checks the current record; returns the id cell index, or -1 with the
 * problems in pb. */
static int check_record(struct imp *im, struct cr_buf *pb)
{
    char q[64];
    int id_col = -1;
    size_t i;

    if (im->too_many || im->ncells != im->ncols) {
        problem(pb, "has %s%zu fields, the header has %zu%s", im->too_many ? "over " : "",
                im->ncells, im->ncols,
                im->line > im->rec_line ? " (the record spans several lines: an unclosed quote?)"
                                        : "");
        return -1;
    }
    for (i = 0; i < im->ncols; i++) {
        const char *s = im->cells[i].s;
        size_t n = im->cells[i].len;
        const char *why = NULL;

        quote_value(s, n, q, sizeof(q));
        if (im->kinds[i] == COL_ID)
            id_col = (int)i;
        if (n > MAX_VALUE) {
            problem(pb, "%s: longer than %d bytes", im->cols[i], MAX_VALUE);
            continue;
        }
        if (!valid_utf8((const unsigned char *)s, n)) {
            problem(pb, "%s: not valid UTF-8", im->cols[i]);
            continue;
        }
        if (n == 0) {
            if (im->kinds[i] == COL_ID)
                problem(pb, "id: missing");
            continue;
        }
        switch (im->kinds[i]) {
        case COL_ID:
            if (!valid_id(s, n))
                why = "must be 1 to 64 of A-Z a-z 0-9 . _ : -";
            break;
        case COL_EMAIL:
            why = check_email(s, n);
            break;
        case COL_PHONE:
            why = check_phone(s, n);
            break;
        case COL_PUSH_TOKEN:
            why = check_token(s, n);
            break;
        case COL_PUSH_PLATFORM:
            if (strcmp(s, "fcm") != 0 && strcmp(s, "apns") != 0)
                why = "must be fcm or apns";
            break;
        case COL_LANG:
            why = check_lang(s, n);
            break;
        case COL_CHANNELS:
            why = check_channels(s, n);
            break;
        case COL_MIN_PRIORITY: {
            enum cr_priority p;

            if (cr_priority_parse(s, &p) < 0)
                why = "must be urgent, high, normal or bulk";
            break;
        }
        case COL_QUIET:
            why = check_quiet(s, n);
            break;
        case COL_TZ:
            why = check_tz(s, n);
            break;
        case COL_SEGMENTS: {
            struct seg_check sc;
            char bq[64];

            memset(&sc, 0, sizeof(sc));
            each_segment(s, n, seg_check_one, &sc);
            if (sc.bad) {
                quote_value(sc.bad, sc.badlen, bq, sizeof(bq));
                problem(pb, "segments: '%s' must be 1 to %d printable ASCII characters without "
                        "spaces", bq, SEGMENT_NAME_MAX);
            } else if (sc.count > MAX_SEGMENTS_PER_LINE) {
                problem(pb, "segments: %zu names, over the limit of %d", sc.count,
                        MAX_SEGMENTS_PER_LINE);
            }
            break;
        }
        case COL_NAME:
        case COL_EXTRA:
            break;
        }
        if (why)
            problem(pb, "%s '%s': %s", im->cols[i], q, why);
    }
    if (pb->len > 0)
        return -1;
    return id_col;
}

/* Reads the replies of the chunk's commands; an error reply rejects its line. */
static void flush_chunk(struct imp *im)
{
    size_t i;
    int k;
    int code;

    for (i = 0; i < im->nchunk && !im->fatal; i++) {
        const char *err = NULL;
        char errbuf[256];

        for (k = 0; k < im->chunk[i].ncmds; k++) {
            redisReply *r = cr_ctl_pipe_read(im->ctl, &code);

            if (r == NULL) {
                im->fatal = 1;
                im->exit_code = code;
                break;
            }
            if (r->type == REDIS_REPLY_ERROR && err == NULL) {
                snprintf(errbuf, sizeof(errbuf), "%s", r->str);
                err = errbuf;
            }
            freeReplyObject(r);
        }
        if (im->fatal)
            break;
        if (err) {
            fprintf(stderr, "%s:%ld: Redis refused the line: %s\n", im->path, im->chunk[i].line,
                    err);
            im->rejected++;
        } else {
            im->imported++;
        }
    }
    im->nchunk = 0;
}

struct seg_write {
    struct imp *im;
    const char *id;
    int ncmds;
    int rc;
};

static int seg_write_one(const char *name, size_t n, void *ud)
{
    struct seg_write *sw = ud;
    char seg[SEGMENT_NAME_MAX + 1];
    char key[CR_KEY_MAX];
    const char *argv[3];
    int rc;

    memcpy(seg, name, n);
    seg[n] = '\0';
    rc = strset_add(&sw->im->segs, seg);
    if (rc < 0) {
        sw->rc = rc;
        return 1;
    }
    if (sw->im->dry_run)
        return 0;
    if (cr_key_for(&sw->im->ctl->keys, "seg", seg, key, sizeof(key)) < 0) {
        sw->rc = CR_ETOOBIG;
        return 1;
    }
    argv[0] = "SADD";
    argv[1] = key;
    argv[2] = sw->id;
    rc = cr_ctl_pipe_append(sw->im->ctl, 3, argv, NULL);
    if (rc != 0) {
        sw->rc = -rc;
        return 1;
    }
    sw->ncmds++;
    return 0;
}

/* Queues the writes of a good line: HSET of the filled cells, HDEL of the
 * empty ones, SADD per segment. */
static void write_record(struct imp *im, int id_col)
{
    const char *hset[2 + 2 * MAX_COLS];
    size_t hlen[2 + 2 * MAX_COLS];
    const char *hdel[2 + MAX_COLS];
    char key[CR_KEY_MAX];
    const char *id = im->cells[id_col].s;
    struct seg_write sw;
    int nset = 2;
    int ndel = 2;
    size_t i;
    int rc = 0;

    memset(&sw, 0, sizeof(sw));
    sw.im = im;
    sw.id = id;
    if (!im->dry_run) {
        cr_key_for(&im->ctl->keys, "sub", id, key, sizeof(key));
        hset[0] = "HSET";
        hset[1] = key;
        hlen[0] = 4;
        hlen[1] = strlen(key);
        hdel[0] = "HDEL";
        hdel[1] = key;
        for (i = 0; i < im->ncols; i++) {
            if (im->kinds[i] == COL_ID || im->kinds[i] == COL_SEGMENTS)
                continue;
            if (im->cells[i].len == 0) {
                hdel[ndel++] = im->cols[i];
                continue;
            }
            hset[nset] = im->cols[i];
            hlen[nset++] = strlen(im->cols[i]);
            hset[nset] = im->cells[i].s;
            hlen[nset++] = im->cells[i].len;
        }
        if (nset > 2) {
            rc = cr_ctl_pipe_append(im->ctl, nset, hset, hlen);
            sw.ncmds++;
        }
        if (rc == 0 && ndel > 2) {
            rc = cr_ctl_pipe_append(im->ctl, ndel, hdel, NULL);
            sw.ncmds++;
        }
        if (rc != 0) {
            im->fatal = 1;
            im->exit_code = rc;
            return;
        }
    }
    for (i = 0; i < im->ncols; i++)
        if (im->kinds[i] == COL_SEGMENTS)
            each_segment(im->cells[i].s, im->cells[i].len, seg_write_one, &sw);
    if (sw.rc != 0) {
        im->fatal = 1;
        im->exit_code = sw.rc > 0 ? sw.rc : CTL_EXIT_FAIL;
        if (sw.rc < 0)
            fprintf(stderr, "%s:%ld: %s\n", im->path, im->rec_line,
                    sw.rc == CR_ETOOBIG ? "too many distinct segments (or a name too long)"
                                        : cr_strerror(sw.rc));
        return;
    }
    if (im->dry_run) {
        im->imported++;
        return;
    }
    im->chunk[im->nchunk].line = im->rec_line;
    im->chunk[im->nchunk].ncmds = sw.ncmds;
    im->nchunk++;
    if (im->nchunk == CHUNK_LINES)
        flush_chunk(im);
}

static void end_record(struct imp *im)
{
    struct cr_buf pb;
    int id_col;

    if (im->bad_alloc) {
        fprintf(stderr, "%s:%ld: out of memory\n", im->path, im->rec_line);
        im->fatal = 1;
        im->exit_code = CTL_EXIT_FAIL;
        return;
    }
    if (!im->have_header) {
        header(im);
        return;
    }
    cr_buf_init(&pb, PROBLEMS_MAX);
    id_col = check_record(im, &pb);
    if (id_col < 0) {
        fprintf(stderr, "%s:%ld: %s\n", im->path, im->rec_line,
                pb.len ? cr_buf_cstr(&pb) : "rejected");
        im->rejected++;
    } else {
        write_record(im, id_col);
    }
    cr_buf_release(&pb);
}

static void clear_record(struct imp *im)
{
    size_t i;

    for (i = 0; i < im->ncells; i++)
        free(im->cells[i].s);
    im->ncells = 0;
    im->too_many = 0;
    im->bad_alloc = 0;
    im->rec_bytes = 0;
}

/* ---- libcsv callbacks ---- */

static void on_field(void *s, size_t len, void *data)
{
    struct imp *im = data;
    char *copy;

    if (im->fatal)
        return;
    if (im->ncells == MAX_COLS) {
        im->too_many = 1;
        im->ncells = MAX_COLS;
        return;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        im->bad_alloc = 1;
        return;
    }
    if (len)
        memcpy(copy, s, len);
    copy[len] = '\0';
    im->cells[im->ncells].s = copy;
    im->cells[im->ncells].len = len;
    im->ncells++;
}

static void on_record(int term, void *data)
{
    struct imp *im = data;

    (void)term;
    if (!im->fatal)
        end_record(im);
    clear_record(im);
    im->at_start = 1;
}

/* ---- feeding the parser line by line, to know each record's line number ---- */

static int only_newlines(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

static void feed(struct imp *im, struct csv_parser *p, const char *buf, size_t n)
{
    const char *q = buf;
    const char *end = buf + n;

    while (q < end && !im->fatal) {
        const char *nl = memchr(q, '\n', (size_t)(end - q));
        size_t seg = nl ? (size_t)(nl - q + 1) : (size_t)(end - q);

        if (im->at_start && !only_newlines(q, seg)) {
            im->at_start = 0;
            im->rec_line = im->line;
            im->rec_bytes = 0;
        }
        if (!im->at_start) {
            im->rec_bytes += seg;
            if (im->rec_bytes > MAX_RECORD) {
                fprintf(stderr, "%s:%ld: record longer than %d bytes (an unclosed quote?); "
                        "import stopped\n", im->path, im->rec_line, MAX_RECORD);
                im->fatal = 1;
                im->exit_code = CTL_EXIT_FAIL;
                return;
            }
        }
        if (csv_parse(p, q, seg, on_field, on_record, im) != seg) {
            fprintf(stderr, "%s:%ld: %s; import stopped\n", im->path, im->line,
                    csv_strerror(csv_error(p)));
            im->fatal = 1;
            im->exit_code = CTL_EXIT_FAIL;
            return;
        }
        if (nl)
            im->line++;
        q += seg;
    }
}

int cr_ctl_import(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS,
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    struct imp *im = NULL;
    struct csv_parser parser;
    int parser_ready = 0;
    char buf[65536];
    FILE *f = NULL;
    int dry_run = 0;
    int code = CTL_EXIT_FAIL;
    size_t n;
    size_t i;
    int c;

    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "n", opts, NULL);
        if (c == -1)
            break;
        if (c == 'n') {
            dry_run = 1;
            continue;
        }
        code = cr_ctl_opt_other(ctl, c, optarg, help);
        if (code >= 0)
            return code;
    }
    if (optind != argc - 1) {
        fputs(help, stderr);
        return CTL_EXIT_USAGE;
    }
    im = calloc(1, sizeof(*im));
    if (im == NULL) {
        fprintf(stderr, "crierctl import: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    im->ctl = ctl;
    im->path = argv[optind];
    im->dry_run = dry_run;
    im->line = 1;
    im->at_start = 1;
    if (strcmp(im->path, "-") == 0) {
        f = stdin;
    } else {
        f = fopen(im->path, "rb");
        if (f == NULL) {
            fprintf(stderr, "crierctl import: %s: %s\n", im->path, strerror(errno));
            goto out;
        }
    }
    if (!dry_run) {
        code = cr_ctl_connect(ctl);
        if (code != 0)
            goto out;
    }
    if (csv_init(&parser, CSV_APPEND_NULL) != 0) {
        fprintf(stderr, "crierctl import: out of memory\n");
        code = CTL_EXIT_FAIL;
        goto out;
    }
    parser_ready = 1;
    for (;;) {
        n = fread(buf, 1, sizeof(buf), f);
        if (n > 0)
            feed(im, &parser, buf, n);
        if (im->fatal || n < sizeof(buf))
            break;
    }
    if (!im->fatal && ferror(f)) {
        fprintf(stderr, "crierctl import: %s: read error\n", im->path);
        im->fatal = 1;
        im->exit_code = CTL_EXIT_FAIL;
    }
    if (!im->fatal && csv_fini(&parser, on_field, on_record, im) != 0) {
        fprintf(stderr, "%s:%ld: %s\n", im->path, im->rec_line,
                csv_strerror(csv_error(&parser)));
        im->rejected++;
    }
    if (!im->fatal && !im->have_header) {
        fprintf(stderr, "%s: empty file: no header row\n", im->path);
        im->fatal = 1;
        im->exit_code = CTL_EXIT_FAIL;
    }
    if (!im->fatal && im->nchunk > 0)
        flush_chunk(im);
    printf("%simported %ld subscribers into %zu segments, %ld lines rejected%s\n",
           dry_run ? "dry run: would have " : "", im->imported, im->segs.n, im->rejected,
           im->fatal ? " (import stopped early)" : "");
    if (im->fatal)
        code = im->exit_code ? im->exit_code : CTL_EXIT_FAIL;
    else
        code = im->rejected ? CTL_EXIT_FAIL : CTL_EXIT_OK;
out:
    if (parser_ready)
        csv_free(&parser);
    if (f && f != stdin)
        fclose(f);
    if (im) {
        clear_record(im);
        for (i = 0; i < im->ncols; i++)
            free(im->cols[i]);
        strset_free(&im->segs);
        free(im);
    }
    return code;
}
