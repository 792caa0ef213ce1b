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
#include <strings.h>

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
    "row names the columns (at most 256): id (required), email, phone, push_token,\n"
    "push_platform, lang, channels, min_priority, quiet, tz, name, segments (names\n"
    "separated by ';'), whatsapp (checked as phone), whatsapp_optin; any other column is stored as a hash field of the same name.\n"
    "An empty cell removes that field from an existing subscriber.\n"
    "Checks: id [A-Za-z0-9._:-]{1,64}; email one '@' and no spaces; phone\n"
    "stored in E.164: +<country code>... or 00<country code>... as written, a\n"
    "national number (07700 900123) in the --country (spaces, '-', '.', '/' and\n"
    "parentheses ignored); channels from email,sms,push,whatsapp; push_platform fcm or\n"
    "apns; min_priority urgent/high/normal/bulk; quiet HH:MM-HH:MM; lang 2 to 15\n"
    "of A-Z a-z -; tz a zone name; segment names printable ASCII without spaces;\n"
    "every cell valid UTF-8; the number of fields matches the header.\n"
    "A bad id, channels, min_priority, quiet or tz, or a wrong number of fields,\n"
    "rejects the line: FILE:LINE: line rejected: <problems>. Any other bad cell\n"
    "is dropped (the subscriber keeps what it had for that field) and the rest of\n"
    "the line imported: FILE:LINE: ID imported without <columns>: <problems>.\n"
    "Problems name the column and its number. Quoted fields, embedded commas and\n"
    "newlines, CRLF and a UTF-8 byte order mark are handled.\n"
    "Ends with `imported N subscribers into M segments, K lines rejected, P\n"
    "imported without some fields`; exit 1 if any line was rejected or dropped a\n"
    "field.\n"
    "\n"
    "Options:\n"
    "  -n, --dry-run    check the file only; write nothing (no Redis needed)\n"
    "  -C, --country CC the country of national phone numbers (default\n"
    "                   $CRIER_COUNTRY, else GB; one of GB IE US CA FR DE NL BE PL\n"
    "                   ES PT AU NZ)\n";

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
    COL_WHATSAPP,
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
    [COL_WHATSAPP] = "whatsapp",
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
    const struct country *country; /* of national phone numbers */
    int fatal;                 /* stop: a header problem, a runaway record, Redis gone */
    int exit_code;             /* when fatal */

    /* the record being read */
    struct cell cells[MAX_COLS];
    unsigned char drop[MAX_COLS]; /* the cell is bad: its field is left as it was */
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
    long partial;              /* lines imported without some of their fields */
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

/* A country a national phone number can be written for: its calling code,
 * its trunk prefix (dialled before a national number, dropped in E.164; ""
 * for none) and how many digits the national number has without it. */
struct country {
    const char *iso;       /* ISO 3166 alpha-2 */
    const char *cc;        /* calling code */
    const char *trunk;
    int nsn_min, nsn_max;
};

static const struct country countries[] = {
    {"GB", "44", "0", 9, 10},  {"IE", "353", "0", 7, 9}, {"US", "1", "1", 10, 10},
    {"CA", "1", "1", 10, 10},  {"FR", "33", "0", 9, 9},  {"DE", "49", "0", 6, 13},
    {"NL", "31", "0", 9, 9},   {"BE", "32", "0", 8, 9},  {"PL", "48", "", 9, 9},
    {"ES", "34", "", 9, 9},    {"PT", "351", "", 9, 9},  {"AU", "61", "0", 9, 9},
    {"NZ", "64", "0", 8, 10},
};
#define NCOUNTRIES (sizeof(countries) / sizeof(countries[0]))

static const struct country *country_find(const char *iso)
{
    size_t i;

    for (i = 0; i < NCOUNTRIES; i++)
        if (strcasecmp(countries[i].iso, iso) == 0)
            return &countries[i];
    return NULL;
}

#define PHONE_DIGITS_MAX 15 /* E.164 */
#define PHONE_OUT_MAX 32 /* "+", 15 digits, NUL, with room to spare */

/* Normalises a phone number to E.164 into out (PHONE_OUT_MAX bytes): spaces,
 * '-', '.', '/' and parentheses are dropped; "+" or "00" starts an
 * international number (a "(0)" after the country code, as in
 * "+44 (0)7700 900123", is dropped); anything else is a national number of
 * country c, written with its trunk prefix ("07700 900123" in GB). Returns
 * NULL, or why the number cannot be one. */
static const char *normalise_phone(const char *s, size_t n, const struct country *c, char *out)
{
    char d[64];
    size_t nd = 0;
    size_t i;
    int plus = 0;
    int seen = 0;
    const char *nsn;
    size_t len;
    size_t tl;

    for (i = 0; i < n; i++) {
        char ch = s[i];

        if (ch >= '0' && ch <= '9') {
            if (nd == sizeof(d) - 1)
                return "has too many digits for a phone number";
            d[nd++] = ch;
            seen = 1;
        } else if (ch == '+' && !seen && !plus) {
            plus = 1;
            seen = 1;
        } else if (ch == '(' && i + 2 < n && s[i + 1] == '0' && s[i + 2] == ')' &&
                   (plus || (nd >= 2 && d[0] == '0' && d[1] == '0'))) {
            i += 2; /* "+44 (0)20...": the trunk 0 is not dialled from abroad */
        } else if (ch != ' ' && ch != '-' && ch != '.' && ch != '/' && ch != '(' && ch != ')') {
            return "has a character other than digits, a leading '+', spaces, '-', '.', '/' "
                   "and parentheses";
        }
    }
    d[nd] = '\0';
    if (nd == 0)
        return "has no digits";
    if (plus || (nd > 2 && d[0] == '0' && d[1] == '0')) {
        const char *intl = plus ? d : d + 2;

        len = strlen(intl);
        if (intl[0] < '1' || intl[0] > '9' || len < 7 || len > PHONE_DIGITS_MAX)
            return "is not an international number (+ or 00, a country code, 7 to 15 digits "
                   "in all)";
        out[0] = '+';
        memcpy(out + 1, intl, len + 1); /* len <= PHONE_DIGITS_MAX: fits */
        return NULL;
    }
    /* national */
    nsn = d;
    tl = strlen(c->trunk);
    if (tl > 0 && strncmp(d, c->trunk, tl) == 0)
        nsn = d + tl;
    else if (strcmp(c->trunk, "0") == 0)
        return "is neither international (+ or 00 and a country code) nor national (a "
               "leading 0)";
    len = strlen(nsn);
    if ((int)len < c->nsn_min || (int)len > c->nsn_max || nsn[0] == '0' ||
        strlen(c->cc) + len > PHONE_DIGITS_MAX)
        return "has too few or too many digits for a national number of the --country "
               "(GB unless set)";
    out[0] = '+';
    memcpy(out + 1, c->cc, strlen(c->cc));
    memcpy(out + 1 + strlen(c->cc), nsn, len + 1); /* at most PHONE_DIGITS_MAX digits: fits */
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
            return "must be channel names from email, sms, push, whatsapp separated by ','";
        memcpy(name, a, (size_t)(b - a));
        name[b - a] = '\0';
        if (cr_channel_parse(name, &ch) < 0)
            return "must be channel names from email, sms, push, whatsapp separated by ','";
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

/* A segment name as the job document names segments. */
static int segment_name_ok(const char *name, size_t n)
{
    size_t i;

    if (n > SEGMENT_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

struct seg_check {
    size_t count;
    struct cr_buf *pb;         /* problems: each bad name */
    const char *col;
    size_t colno;
};

static void problem(struct cr_buf *pb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void quote_value(const char *s, size_t n, char *out, size_t outlen);

static int seg_check_one(const char *name, size_t n, void *ud)
{
    struct seg_check *sc = ud;
    char bq[64];

    sc->count++;
    if (!segment_name_ok(name, n)) {
        quote_value(name, n, bq, sizeof(bq));
        problem(sc->pb, "%s (column %zu) '%s': must be 1 to %d printable ASCII characters "
                "without spaces", sc->col, sc->colno, bq, SEGMENT_NAME_MAX);
    }
    return 0;
}

/* Appends "; " between problems. */
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

    if (im->too_many) {
        fprintf(stderr, "%s:%ld: the header has more than %d columns (the limit); import "
                "stopped\n", im->path, im->rec_line, MAX_COLS);
        goto fatal;
    }
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

/* A bad value in one of these columns rejects the whole line: without it the
 * resident would get more than they asked for (every channel, every priority,
 * messages at night) or could not be stored at all (id). A bad value in any
 * other column only drops that field. */
static int rejects_line(enum col_kind k)
{
    return k == COL_ID || k == COL_CHANNELS || k == COL_MIN_PRIORITY || k == COL_QUIET ||
           k == COL_TZ;
}

/* Replaces cell's text with s (copied). Returns 0 or CR_ENOMEM. */
static int replace_cell(struct cell *c, const char *s)
{
    char *copy = strdup(s);

    if (copy == NULL)
        return CR_ENOMEM;
    free(c->s);
    c->s = copy;
    c->len = strlen(copy);
    return 0;
}

/* Checks the current record cell by cell; a phone number is normalised to
 * E.164 in place. Returns the id cell index, or -1 when the line is rejected.
 * Problems that reject the line go to rej, those that only drop a field (its
 * drop flag set) to dropped. */
static int check_record(struct imp *im, struct cr_buf *rej, struct cr_buf *dropped)
{
    char q[64];
    char phone[PHONE_OUT_MAX];
    int id_col = -1;
    size_t i;

    memset(im->drop, 0, sizeof(im->drop));
    if (im->too_many || im->ncells != im->ncols) {
        problem(rej, "has %s%zu fields, the header has %zu%s", im->too_many ? "over " : "",
                im->ncells, im->ncols,
                im->line > im->rec_line ? " (the record spans several lines: an unclosed quote?)"
                                        : "");
        return -1;
    }
    for (i = 0; i < im->ncols; i++) {
        const char *s = im->cells[i].s;
        size_t n = im->cells[i].len;
        const char *why = NULL;
        struct cr_buf *pb = rejects_line(im->kinds[i]) ? rej : dropped;
        size_t mark = dropped->len;

        quote_value(s, n, q, sizeof(q));
        if (im->kinds[i] == COL_ID)
            id_col = (int)i;
        if (n > MAX_VALUE) {
            problem(pb, "%s (column %zu): longer than %d bytes", im->cols[i], i + 1, MAX_VALUE);
            im->drop[i] = 1;
            continue;
        }
        if (!valid_utf8((const unsigned char *)s, n)) {
            problem(pb, "%s (column %zu): not valid UTF-8", im->cols[i], i + 1);
            im->drop[i] = 1;
            continue;
        }
        if (n == 0) {
            if (im->kinds[i] == COL_ID)
                problem(rej, "id (column %zu): missing", i + 1);
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
        case COL_WHATSAPP: /* the WhatsApp number, in E.164 as phone */
            why = normalise_phone(s, n, im->country, phone);
            if (why == NULL && replace_cell(&im->cells[i], phone) < 0)
                why = "out of memory";
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
            /* a bad name is left out, the good ones kept (write_record skips it) */
            struct seg_check sc;

            memset(&sc, 0, sizeof(sc));
            sc.pb = dropped;
            sc.col = im->cols[i];
            sc.colno = i + 1;
            each_segment(s, n, seg_check_one, &sc);
            if (sc.count > MAX_SEGMENTS_PER_LINE) {
                dropped->len = mark; /* one problem for the whole cell */
                if (dropped->data)
                    dropped->data[mark] = '\0';
                problem(dropped, "%s (column %zu): %zu names, over the limit of %d",
                        im->cols[i], i + 1, sc.count, MAX_SEGMENTS_PER_LINE);
                im->drop[i] = 1;
            }
            break;
        }
        case COL_NAME:
        case COL_EXTRA:
            break;
        }
        if (why) {
            problem(pb, "%s (column %zu) '%s': %s", im->cols[i], i + 1, q, why);
            im->drop[i] = 1;
        }
    }
    if (rej->len > 0)
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

    if (!segment_name_ok(name, n))
        return 0; /* reported by check_record: left out */
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
            if (im->kinds[i] == COL_ID || im->kinds[i] == COL_SEGMENTS || im->drop[i])
                continue; /* a dropped field keeps what the subscriber had */
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
        if (im->kinds[i] == COL_SEGMENTS && !im->drop[i])
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

/* "email, phone": the names of the dropped columns. */
static void dropped_names(const struct imp *im, struct cr_buf *out)
{
    size_t i;

    for (i = 0; i < im->ncols; i++) {
        int bad_seg = 0;

        if (im->kinds[i] == COL_SEGMENTS && !im->drop[i]) {
            struct seg_check sc;
            struct cr_buf none;

            cr_buf_init(&none, PROBLEMS_MAX);
            memset(&sc, 0, sizeof(sc));
            sc.pb = &none;
            sc.col = im->cols[i];
            each_segment(im->cells[i].s, im->cells[i].len, seg_check_one, &sc);
            bad_seg = none.len > 0;
            cr_buf_release(&none);
        }
        if (!im->drop[i] && !bad_seg)
            continue;
        if (out->len > 0)
            cr_buf_appends(out, ", ");
        cr_buf_appends(out, im->cols[i]);
        if (bad_seg)
            cr_buf_appends(out, " (some names)");
    }
}

static void end_record(struct imp *im)
{
    struct cr_buf rej;
    struct cr_buf dropped;
    struct cr_buf names;
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
    cr_buf_init(&rej, PROBLEMS_MAX);
    cr_buf_init(&dropped, PROBLEMS_MAX);
    cr_buf_init(&names, PROBLEMS_MAX);
    id_col = check_record(im, &rej, &dropped);
    if (id_col < 0) {
        fprintf(stderr, "%s:%ld: line rejected: %s%s%s\n", im->path, im->rec_line,
                rej.len ? cr_buf_cstr(&rej) : "no id", dropped.len ? "; " : "",
                cr_buf_cstr(&dropped));
        im->rejected++;
    } else {
        if (dropped.len > 0)
            dropped_names(im, &names);
        write_record(im, id_col);
        if (dropped.len > 0 && !im->fatal) {
            fprintf(stderr, "%s:%ld: %s imported without %s: %s\n", im->path, im->rec_line,
                    im->cells[id_col].s, cr_buf_cstr(&names), cr_buf_cstr(&dropped));
            im->partial++;
        }
    }
    cr_buf_release(&rej);
    cr_buf_release(&dropped);
    cr_buf_release(&names);
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
                                         {"country", required_argument, NULL, 'C'},
                                         {NULL, 0, NULL, 0}};
    const char *env_country = getenv("CRIER_COUNTRY");
    const char *country_arg = env_country && *env_country ? env_country : "GB";
    const struct country *country;
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
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "nC:", opts, NULL);
        if (c == -1)
            break;
        if (c == 'n') {
            dry_run = 1;
            continue;
        }
        if (c == 'C') {
            country_arg = optarg;
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
    country = country_find(country_arg);
    if (country == NULL) {
        fprintf(stderr, "crierctl import: %s %s: not one of",
                country_arg == env_country ? "CRIER_COUNTRY" : "--country", country_arg);
        for (i = 0; i < NCOUNTRIES; i++)
            fprintf(stderr, " %s", countries[i].iso);
        fputs(" (write other numbers in E.164, +<country code>...)\n", stderr);
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
    im->country = country;
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
    printf("%simported %ld subscribers into %zu segments, %ld lines rejected, %ld imported "
           "without some fields%s\n",
           dry_run ? "dry run: would have " : "", im->imported, im->segs.n, im->rejected,
           im->partial, im->fatal ? " (import stopped early)" : "");
    if (im->fatal)
        code = im->exit_code ? im->exit_code : CTL_EXIT_FAIL;
    else
        code = im->rejected || im->partial ? CTL_EXIT_FAIL : CTL_EXIT_OK;
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
