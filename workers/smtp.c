/* SMTP adapter: one message per recipient, described as an envelope, the
 * message's own headers and a text/plain + text/html pair that the HTTP client
 * sends with libcurl's SMTP and curl_mime; the last SMTP reply code decides the
 * outcome. */
#include "adapter.h"
#include "cr_error.h"
#include "cr_str.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* How the last SMTP reply code maps to an outcome (RFC 5321 section 4.2,
 * RFC 3463 for the enhanced codes servers add in the text):
 *
 *   2xx                      SENT     the server took the message
 *   421 450 451 452 (4xx)    RETRY    service down, mailbox busy, local error, no storage
 *   530 534 535 538          RETRY    authentication required or refused: our
 *                                     credentials, fixable by an operator, not the address
 *   550 551 553              SUPPRESS mailbox unavailable, not local, name not allowed:
 *                                     a hard bounce, the address must not be used again
 *   552 554 other 5xx        FAILED   storage exceeded, transaction failed: this
 *                                     message is refused, the address may still work
 *   anything else            FAILED   (RETRY when it looks like 4xx)
 *
 * Transport failures (refused connection, TLS handshake, a server that does not
 * offer STARTTLS when it is required) never reach classify: the dispatcher
 * retries them. */

/* RFC 2047 section 2: an encoded-word is at most 75 characters, and a header
 * line holding one at most 76 (RFC 5322 section 2.1.1 asks for 78). */
#define EW_MAX 75
#define EW_OVERHEAD 12 /* "=?UTF-8?B?" and "?=" */
#define EW_MAX_BYTES ((EW_MAX - EW_OVERHEAD) / 4 * 3) /* 45 bytes: 60 base64 characters */
#define HDR_LINE_MAX 76
#define HEADER_VALUE_MAX 32768 /* a folded header field; a 10,000-byte subject fits */
#define MSGID_LOCAL_MAX 200

struct smtp {
    char *url;        /* scheme://host[:port][/helo] */
    char *userpwd;    /* "user:password" or NULL */
    char *from_email;
    char *from_name;  /* NULL = none; a message's sender_name wins */
    const char *domain; /* inside from_email, after the '@' */
    int starttls;
};

static const char *const smtp_keys[] = {"username", "password", "from_email", "from_name",
                                        "starttls", "helo",     NULL};

static void smtp_free(void *state)
{
    struct smtp *s = state;

    if (s == NULL)
        return;
    free(s->url);
    cr_free_secret(s->userpwd); /* "user:password" */
    free(s->from_email);
    free(s->from_name);
    free(s);
}

/* An address for an envelope and a header: local@domain, nothing that could
 * end the header, start another address or a comment, or break the envelope. */
static int address_ok(const char *s)
{
    const char *at;
    const char *p;

    if (s == NULL || s[0] == '\0' || s[0] == '@')
        return 0;
    at = strrchr(s, '@');
    if (at == NULL || at[1] == '\0')
        return 0;
    for (p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if (c <= 0x20 || c == 0x7f || strchr("<>()[],;:\\\"", c) != NULL)
            return 0;
    }
    return 1;
}

/* A host name for EHLO: letters, digits, '-' and '.' (or an address literal
 * in brackets is not supported: operators name the host). */
static int helo_ok(const char *s)
{
    return s[0] != '\0' && cr_chars_ok(s, strlen(s), CR_CHARS_LETTERS | CR_CHARS_DIGITS, "-.");
}

/* The config url must be smtp://host[:port] or smtps://host[:port]. *tls is
 * set for smtps:// (TLS from the first byte). */
static int check_url(const char *base, int *tls)
{
    const char *host;

    if (strncasecmp(base, "smtp://", 7) == 0) {
        host = base + 7;
        *tls = 0;
    } else if (strncasecmp(base, "smtps://", 8) == 0) {
        host = base + 8;
        *tls = 1;
    } else {
        return 0;
    }
    if (host[0] == '\0' || strpbrk(host, "/?#@ \t\r\n") != NULL)
        return 0;
    return 1;
}

static int read_bool(const cJSON *cfg, const char *key, int def, int *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(cfg, key);

    if (item == NULL || cJSON_IsNull(item)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(item))
        return -1;
    *out = cJSON_IsTrue(item) ? 1 : 0;
    return 0;
}

static int smtp_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                     char *err, size_t errlen)
{
    struct smtp *s;
    char *base = NULL;
    char *user = NULL;
    char *pass = NULL;
    char *helo = NULL;
    struct cr_buf b;
    int tls = 0;
    int rc;

    *state = NULL;
    cr_buf_init(&b, 2048);
    if (!cJSON_IsObject(cfg))
        return cr_cfg_fail(err, errlen, path, NULL, "must be an object");
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CR_ENOMEM;
    rc = cr_cfg_base_url(base_url, path, &base, err, errlen);
    if (rc < 0)
        goto out;
    if (!check_url(base, &tls)) {
        rc = cr_cfg_fail(err, errlen, path, "url",
                         "must be smtp://host[:port] or smtps://host[:port], got \"%s\"", base);
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "from_email", 1, &s->from_email, err, errlen);
    if (rc < 0)
        goto out;
    if (!address_ok(s->from_email)) {
        rc = cr_cfg_fail(err, errlen, path, "from_email",
                         "must be a plain email address (local@domain, no spaces, CR or LF)");
        goto out;
    }
    s->domain = strrchr(s->from_email, '@') + 1;
    rc = cr_cfg_string(cfg, path, "from_name", 0, &s->from_name, err, errlen);
    if (rc < 0)
        goto out;
    if (s->from_name != NULL && !cr_header_safe(s->from_name)) {
        rc = cr_cfg_fail(err, errlen, path, "from_name", "must not contain CR or LF");
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "username", 0, &user, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "password", 0, &pass, err, errlen);
    if (rc < 0)
        goto out;
    if ((user == NULL) != (pass == NULL)) {
        rc = cr_cfg_fail(err, errlen, path, user ? "password" : "username",
                         "is required when %s is set", user ? "username" : "password");
        goto out;
    }
    if (user != NULL) {
        if (strchr(user, ':') != NULL || !cr_header_safe(user)) {
            rc = cr_cfg_fail(err, errlen, path, "username", "must not contain ':', CR or LF");
            goto out;
        }
        if (!cr_header_safe(pass)) {
            rc = cr_cfg_fail(err, errlen, path, "password", "must not contain CR or LF");
            goto out;
        }
        rc = cr_buf_appendf(&b, "%s:%s", user, pass);
        if (rc < 0) {
            rc = rc == CR_ETOOBIG ? cr_cfg_fail(err, errlen, path, "password", "is too long")
                                  : rc;
            goto out;
        }
        s->userpwd = cr_buf_steal(&b);
    }
    if (read_bool(cfg, "starttls", 1, &s->starttls) < 0) {
        rc = cr_cfg_fail(err, errlen, path, "starttls", "must be true or false");
        goto out;
    }
    /* smtps:// is TLS from the start; requiring it keeps curl from ever
     * settling for less on either scheme. */
    if (tls)
        s->starttls = 1;
    rc = cr_cfg_string(cfg, path, "helo", 0, &helo, err, errlen);
    if (rc < 0)
        goto out;
    if (helo != NULL && !helo_ok(helo)) {
        rc = cr_cfg_fail(err, errlen, path, "helo",
                         "must be a host name (letters, digits, '-' and '.')");
        goto out;
    }
    /* libcurl takes the EHLO name from the URL path. */
    cr_buf_reset(&b);
    rc = cr_buf_appendf(&b, "%s%s%s", base, helo ? "/" : "", helo ? helo : "");
    if (rc < 0) {
        rc = rc == CR_ETOOBIG ? cr_cfg_fail(err, errlen, path, "helo", "is too long") : rc;
        goto out;
    }
    s->url = cr_buf_steal(&b);
    *state = s;
    s = NULL;
    rc = 0;
out:
    cr_buf_release(&b);
    free(base);
    free(user);
    cr_free_secret(pass);
    free(helo);
    smtp_free(s);
    return rc;
}

/* ---- header values ---- */

/* Printable ASCII and spaces only, and nothing a reader would take for the
 * start of an encoded-word. */
static int plain_ascii(const char *s)
{
    const char *p;

    for (p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if (c < 0x20 || c > 0x7e)
            return 0;
    }
    return strstr(s, "=?") == NULL;
}

/* A header field being written as folded lines (RFC 5322 section 2.2.3):
 * "Name:" then tokens, each after one space, on the current line while it
 * stays within HDR_LINE_MAX characters, else on a new line that the fold (CRLF)
 * starts with that space. b holds the whole field, folds included. */
struct fold {
    struct cr_buf *b;
    size_t line_start; /* offset in b where the current line begins */
};

/* Characters on the current line so far. */
static size_t fold_col(const struct fold *f)
{
    return f->b->len - f->line_start;
}

/* Ends the current line: the next token starts a continuation line. */
static int fold_break(struct fold *f)
{
    int rc = cr_buf_append(f->b, "\r\n", 2);

    f->line_start = f->b->len;
    return rc;
}

/* Appends " " + tok, folding first when it would pass HDR_LINE_MAX and the line
 * holds more than its leading space (a token longer than a line stays whole:
 * nothing may be broken inside it). */
static int fold_put(struct fold *f, const char *tok, size_t len)
{
    int rc = 0;

    if (fold_col(f) + 1 + len > HDR_LINE_MAX && fold_col(f) > 1)
        rc = fold_break(f);
    if (rc == 0)
        rc = cr_buf_append(f->b, " ", 1);
    if (rc == 0)
        rc = cr_buf_append(f->b, tok, len);
    return rc;
}

/* The most bytes of s[pos..len) an encoded-word of at most room characters
 * holds, ending on a UTF-8 character boundary (a character is never split
 * across words, RFC 2047 section 5); 0 when not even one character fits. */
static size_t ew_bytes(const char *s, size_t pos, size_t len, size_t room)
{
    size_t n;

    if (room > EW_MAX)
        room = EW_MAX;
    if (room < EW_OVERHEAD + 4)
        return 0;
    n = (room - EW_OVERHEAD) / 4 * 3; /* base64: 4 characters per 3 bytes */
    if (n >= len - pos)
        return len - pos;
    while (n > 0 && ((unsigned char)s[pos + n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* Appends s as RFC 2047 encoded-words "=?UTF-8?B?...?=": each of at most
 * EW_MAX characters, filling the room left on its line, a new line when
 * not even one character would fit. Readers drop the space between two
 * adjacent encoded-words (RFC 2047 section 6.2), so the text is unchanged. */
static int fold_encoded(struct fold *f, const char *s)
{
    size_t len = strlen(s);
    size_t pos = 0;
    unsigned char enc[4 * ((EW_MAX - EW_OVERHEAD) / 4) + 1];
    char word[EW_MAX + 1];
    int rc = 0;

    while (rc == 0 && pos < len) {
        size_t room = HDR_LINE_MAX - fold_col(f) - 1;
        size_t n = HDR_LINE_MAX > fold_col(f) + 1 ? ew_bytes(s, pos, len, room) : 0;
        int outlen;

        if (n == 0 && fold_col(f) > 0) {
            rc = fold_break(f); /* never twice in a row: an empty line ends the header */
            if (rc < 0)
                break;
            n = ew_bytes(s, pos, len, HDR_LINE_MAX - 1);
        }
        if (n == 0) /* not UTF-8 (a config value): cut where the word is full */
            n = len - pos < EW_MAX_BYTES ? len - pos : EW_MAX_BYTES;
        outlen = EVP_EncodeBlock(enc, (const unsigned char *)s + pos, (int)n);
        if (outlen < 0)
            return CR_ENOMEM;
        snprintf(word, sizeof(word), "=?UTF-8?B?%.*s?=", outlen, (const char *)enc);
        rc = fold_put(f, word, strlen(word));
        pos += n;
    }
    return rc;
}

/* Appends plain ASCII text folded at its spaces, when that keeps every line
 * within HDR_LINE_MAX and the text reads the same unfolded (single spaces only,
 * none at either end); else nothing and returns 1 (the caller encodes it). */
static int fold_plain(struct fold *f, const char *s)
{
    size_t len = strlen(s);
    size_t i;
    size_t word = 0;
    int rc = 0;

    if (fold_col(f) + 1 + len <= HDR_LINE_MAX)
        return fold_put(f, s, len);
    if (len == 0 || s[0] == ' ' || s[len - 1] == ' ' || strstr(s, "  ") != NULL)
        return 1;
    for (i = 0; i <= len; i++) {
        if (s[i] == ' ' || s[i] == '\0') {
            /* The first word shares its line with the name. */
            if ((word == 0 ? fold_col(f) + 1 : 1) + (i - word) > HDR_LINE_MAX)
                return 1;
            word = i + 1;
        }
    }
    for (i = 0, word = 0; rc == 0 && i <= len; i++) {
        if (s[i] == ' ' || s[i] == '\0') {
            rc = fold_put(f, s + word, i - word);
            word = i + 1;
        }
    }
    return rc;
}

/* RFC 5322 atext: what an atom of a phrase may hold without quoting. */
static int atext_word(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!isalnum(c) && strchr("!#$%&'*+-/=?^_`{|}~", c) == NULL)
            return 0;
        if (c == '=' && i + 1 < len && s[i + 1] == '?')
            return 0; /* would read as the start of an encoded-word */
    }
    return len > 0;
}

/* Appends a phrase (RFC 5322 3.2.5) word by word: words that are atoms as
 * they are, each run of other words as encoded-words (RFC 2047 section 5,
 * rule 3) with its inner spaces inside them. The space between an atom and
 * an encoded-word survives decoding everywhere; the space between two
 * adjacent encoded-words is dropped by RFC 2047 readers but kept by some
 * (Python's email package), so encoded-words only meet where one run is too
 * long for a single word. Returns 1 (nothing appended) when the name has
 * whitespace that words cannot keep: leading, trailing or doubled spaces. */
static int fold_phrase(struct fold *f, const char *name)
{
    size_t len = strlen(name);
    size_t i = 0;
    size_t run = 0;       /* start of the run of words to encode */
    int in_run = 0;
    struct cr_buf tmp;
    int rc = 0;

    if (len == 0 || name[0] == ' ' || name[len - 1] == ' ' || strstr(name, "  ") != NULL)
        return 1;
    cr_buf_init(&tmp, HEADER_VALUE_MAX);
    while (rc == 0 && i <= len) {
        size_t start = i;
        size_t end = i;

        while (end < len && name[end] != ' ')
            end++;
        if (atext_word(name + start, end - start)) {
            if (in_run) {
                cr_buf_reset(&tmp);
                rc = cr_buf_append(&tmp, name + run, start - 1 - run);
                if (rc == 0)
                    rc = fold_encoded(f, cr_buf_cstr(&tmp));
                in_run = 0;
            }
            if (rc == 0)
                rc = fold_put(f, name + start, end - start);
        } else if (!in_run) {
            run = start;
            in_run = 1;
        }
        i = end + 1;
    }
    if (rc == 0 && in_run) {
        cr_buf_reset(&tmp);
        rc = cr_buf_append(&tmp, name + run, len - run);
        if (rc == 0)
            rc = fold_encoded(f, cr_buf_cstr(&tmp));
    }
    cr_buf_release(&tmp);
    return rc;
}

/* Appends a display name: a quoted-string when plain ASCII and it fits on
 * the line, else a phrase of atoms and encoded-words (whole encoded-words
 * when its spacing is unusual). */
static int fold_display_name(struct fold *f, const char *name)
{
    struct cr_buf q;
    const char *p;
    int rc;

    if (!plain_ascii(name))
        goto phrase;
    cr_buf_init(&q, HEADER_VALUE_MAX);
    rc = cr_buf_appends(&q, "\"");
    for (p = name; rc == 0 && *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            rc = cr_buf_append(&q, "\\", 1);
        if (rc == 0)
            rc = cr_buf_append(&q, p, 1);
    }
    if (rc == 0)
        rc = cr_buf_appends(&q, "\"");
    if (rc == 0 && fold_col(f) + 1 + q.len <= HDR_LINE_MAX) {
        rc = fold_put(f, cr_buf_cstr(&q), q.len);
        cr_buf_release(&q);
        return rc;
    }
    cr_buf_release(&q);
    if (rc < 0)
        return rc;
phrase:
    rc = fold_phrase(f, name);
    if (rc == 1)
        rc = fold_encoded(f, name);
    return rc;
}

/* Adds the folded field in b ("Name: ..." with CRLF SP folds) as one header
 * entry: curl writes it as it is, followed by CRLF. The only CR and LF in it
 * are the folds made here (the values were checked with cr_header_safe). */
static int add_folded(struct cr_request *req, const struct cr_buf *b)
{
    struct curl_slist *list;

    if (b->len + 1 >= HEADER_VALUE_MAX)
        return CR_ETOOBIG;
    list = curl_slist_append(req->headers, cr_buf_cstr(b));
    if (list == NULL)
        return CR_ENOMEM;
    req->headers = list;
    return 0;
}

/* From: [display-name] <from_email>, folded. */
static int add_from(struct cr_request *req, struct cr_buf *b, const char *name, const char *email)
{
    struct fold f = {b, 0};
    int rc;

    cr_buf_reset(b);
    rc = cr_buf_appends(b, "From:");
    if (rc == 0 && name != NULL && name[0] != '\0')
        rc = fold_display_name(&f, name);
    if (rc == 0) {
        struct cr_buf addr;

        cr_buf_init(&addr, HEADER_VALUE_MAX);
        rc = cr_buf_appendf(&addr, "<%s>", email);
        if (rc == 0)
            rc = fold_put(&f, cr_buf_cstr(&addr), addr.len);
        cr_buf_release(&addr);
    }
    if (rc == 0)
        rc = add_folded(req, b);
    return rc;
}

/* Subject: the text as it is when it fits a line, folded at its spaces when
 * plain ASCII, else as encoded-words; either way lines of at most HDR_LINE_MAX. */
static int add_subject(struct cr_request *req, struct cr_buf *b, const char *subject)
{
    struct fold f = {b, 0};
    int rc;

    cr_buf_reset(b);
    rc = cr_buf_appends(b, "Subject:");
    if (rc == 0 && plain_ascii(subject))
        rc = fold_plain(&f, subject);
    else if (rc == 0)
        rc = 1;
    if (rc == 1)
        rc = fold_encoded(&f, subject);
    if (rc == 0)
        rc = add_folded(req, b);
    return rc;
}

/* RFC 5322 date-time in UTC, from the adapter's clock. */
static int add_date(struct cr_request *req, int64_t now_ms)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    char value[64];

    if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
        tm.tm_mon > 11)
        return CR_EINVAL;
    snprintf(value, sizeof(value), "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    return cr_req_add_header(req, "Date", value);
}

/* "<local@domain>" where local is ref made into a dot-atom: letters, digits,
 * '-' and '_' stay, '/' becomes '.', anything else "=XX", so that distinct
 * refs give distinct ids and a retry repeats the same one. */
static int add_message_id(struct cr_request *req, struct cr_buf *b, const char *ref,
                          const char *domain)
{
    const unsigned char *p;
    int last_dot = 1; /* no dot first */
    int rc;

    cr_buf_reset(b);
    rc = cr_buf_appends(b, "<");

    for (p = (const unsigned char *)ref; rc == 0 && *p != '\0'; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_') {
            rc = cr_buf_append(b, p, 1);
            last_dot = 0;
        } else if (*p == '/' && !last_dot && p[1] != '\0') {
            rc = cr_buf_append(b, ".", 1);
            last_dot = 1;
        } else {
            rc = cr_buf_appendf(b, "=%02X", *p);
            last_dot = 0;
        }
        if (b->len > MSGID_LOCAL_MAX)
            return CR_ETOOBIG;
    }
    if (rc == 0)
        rc = cr_buf_appendf(b, "@%s>", domain);
    if (rc == 0)
        rc = cr_req_add_header(req, "Message-ID", cr_buf_cstr(b));
    return rc;
}

/* A copy of text in the canonical form of text types (RFC 2046 section 4.1.1):
 * every line break (LF, CR or CRLF) becomes CRLF, so that the
 * quoted-printable encoder writes it as a hard line break (RFC 2045 section
 * 6.7 rule 4) instead of "=0A". *outlen is the copy's length; NULL when out
 * of memory. */
static char *text_crlf(const char *text, size_t *outlen)
{
    size_t len = strlen(text);
    size_t i;
    size_t o = 0;
    char *out;

    if (len > (SIZE_MAX - 1) / 2)
        return NULL;
    out = malloc(2 * len + 1);
    if (out == NULL)
        return NULL;
    for (i = 0; i < len; i++) {
        if (text[i] == '\r' || text[i] == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
            if (text[i] == '\r' && text[i + 1] == '\n')
                i++;
        } else {
            out[o++] = text[i];
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static int add_part(struct cr_request *req, const char *type, const char *data)
{
    struct cr_mime_part *mp;

    if (data == NULL)
        return 0;
    if (req->nparts >= CR_MIME_PARTS_MAX)
        return CR_ETOOBIG;
    mp = &req->parts[req->nparts];
    mp->type = strdup(type);
    mp->data = text_crlf(data, &mp->len);
    if (mp->type == NULL || mp->data == NULL) {
        free(mp->type);
        free(mp->data);
        mp->type = NULL;
        mp->data = NULL;
        mp->len = 0;
        return CR_ENOMEM;
    }
    req->nparts++;
    return 0;
}

/* One message per request (n must be 1: SMTP has one envelope per mail, and
 * one recipient keeps bounces per address). CR_EINVAL when the address, the
 * subject, the sender name or the unsubscribe URL could smuggle a header or
 * an envelope command (CR, LF, brackets...), or when there is no content. */
static int smtp_build(void *state, const struct cr_message *const *msgs, size_t n,
                      struct cr_request *req)
{
    const struct smtp *s = state;
    const struct cr_message *m;
    const char *name;
    struct cr_buf b;
    struct curl_slist *rcpt;
    int rc = CR_EINVAL;

    cr_buf_init(&b, HEADER_VALUE_MAX);
    if (n != 1)
        goto out;
    m = msgs[0];
    name = m->sender_name ? m->sender_name : s->from_name;
    if (!address_ok(m->address) || (m->text == NULL && m->html == NULL))
        goto out;
    if ((m->subject != NULL && !cr_header_safe(m->subject)) ||
        (name != NULL && !cr_header_safe(name)) || (m->ref != NULL && !cr_header_safe(m->ref)))
        goto out;
    if (m->unsubscribe_url != NULL && !cr_unsubscribe_url_ok(m->unsubscribe_url))
        goto out;

    req->transport = CR_TRANSPORT_SMTP;
    req->smtp_starttls = s->starttls;
    req->userpwd = s->userpwd;
    snprintf(req->method, sizeof(req->method), "POST");
    cr_buf_reset(&req->url);
    rc = cr_buf_appends(&req->url, s->url);
    if (rc < 0)
        goto out;
    rc = CR_ENOMEM;
    free(req->mail_from);
    req->mail_from = strdup(s->from_email);
    if (req->mail_from == NULL)
        goto out;
    rcpt = curl_slist_append(req->rcpt, m->address);
    if (rcpt == NULL)
        goto out;
    req->rcpt = rcpt;

    rc = add_date(req, req->now_ms);
    if (rc == 0 && m->ref != NULL)
        rc = add_message_id(req, &b, m->ref, s->domain);
    if (rc == 0)
        rc = add_from(req, &b, name, s->from_email);
    if (rc == 0)
        rc = cr_req_add_header(req, "To", m->address);
    if (rc == 0 && m->subject != NULL)
        rc = add_subject(req, &b, m->subject);
    if (rc == 0)
        rc = cr_req_add_header(req, "MIME-Version", "1.0");
    if (rc == 0 && m->unsubscribe_url != NULL) {
        cr_buf_reset(&b);
        rc = cr_buf_appendf(&b, "<%s>", m->unsubscribe_url);
        if (rc == 0)
            rc = cr_req_add_header(req, "List-Unsubscribe", cr_buf_cstr(&b));
        if (rc == 0)
            rc = cr_req_add_header(req, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
    }
    if (rc == 0)
        rc = add_part(req, "text/plain; charset=utf-8", m->text);
    if (rc == 0)
        rc = add_part(req, "text/html; charset=utf-8", m->html);
out:
    cr_buf_release(&b);
    return rc;
}

static void smtp_classify(void *state, const struct cr_message *const *msgs, size_t n,
                          const struct cr_response *resp, struct cr_result *res)
{
    long st = resp->status;
    char code[24];

    (void)state;
    (void)msgs;
    if (n == 0)
        return;
    snprintf(code, sizeof(code), "%ld", st);
    if (st >= 200 && st <= 299)
        cr_result_setf(res, CR_OUT_SENT, code, "accepted (SMTP %ld)", st);
    else if (st == 530 || st == 534 || st == 535 || st == 538)
        cr_result_setf(res, CR_OUT_RETRY, code,
                       "authentication refused (SMTP %ld): check username and password", st);
    else if (st == 550 || st == 551 || st == 553)
        cr_result_setf(res, CR_OUT_SUPPRESS, code,
                       "mailbox unavailable (SMTP %ld): hard bounce", st);
    else if (st >= 400 && st <= 499)
        cr_result_setf(res, CR_OUT_RETRY, code, "temporary failure (SMTP %ld)", st);
    else if (st >= 500 && st <= 599)
        cr_result_setf(res, CR_OUT_FAILED, code, "message refused (SMTP %ld)", st);
    else
        cr_result_setf(res, CR_OUT_FAILED, code, "unexpected SMTP reply %ld", st);
    cr_result_finish(res, n, resp);
}

const struct cr_provider_ops cr_smtp_ops = {
    .type = "smtp",
    .channel = CR_CH_EMAIL,
    .platform = NULL,
    .max_batch = 1,
    .keys = smtp_keys,
    .init = smtp_init,
    .free_state = smtp_free,
    .build = smtp_build,
    .classify = smtp_classify,
    .flags = CR_PROVIDER_SMTP,
};
