/* An RFC 5321 SMTP server for crier-sim on its own port: EHLO with 8BITMIME,
 * SIZE, PIPELINING, STARTTLS and AUTH PLAIN/LOGIN, several messages per
 * connection, magic recipient domains, and each received message parsed
 * (From, To, RFC 2047 Subject, MIME parts, List-Unsubscribe) into the log of
 * endpoint "smtp". */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "cr_log.h"
#include "record.h"
#include "server.h"
#include "tls.h"

#define MAX_CONNS 1024
#define MAX_LINE 1000                   /* octets including CRLF (RFC 5321 4.5.3.1.6) */
#define MAX_MESSAGE (10 * 1024 * 1024)  /* 552 beyond */
#define MAX_RCPTS 100                   /* 452 beyond (RFC 5321 4.5.3.1.8) */
#define MAX_ADDR 320
#define MAX_PARTS 32                    /* MIME leaves recorded */
#define MAX_MIME_DEPTH 4
#define HOSTNAME "crier-sim"

struct sim_smtp {
    struct sim *sim;
    SSL_CTX *ctx; /* NULL: no STARTTLS */
    uint64_t next_id;
    struct sim_listener l; /* the listening socket and open connections */
};

enum sstate { S_CMD, S_DATA, S_AUTH_PLAIN, S_AUTH_USER, S_AUTH_PASS };

struct sconn {
    uv_tcp_t tcp;
    uv_shutdown_t shutdown;
    struct sim_smtp *srv;
    struct sim_link link; /* in srv->l.conns while open */
    struct sim_tls tls;
    int tls_on;
    int switched; /* STARTTLS answered: the rest of the plaintext read is dropped */
    struct cr_buf line;
    int line_too_long;
    struct cr_buf plain, wire, out;
    enum sstate state;
    int greeted; /* HELO or EHLO seen */
    int authed;
    struct cr_buf auth_user, login_user;
    int in_mail;
    struct cr_buf mail_from;
    struct cr_buf rcpts; /* NUL-terminated addresses back to back */
    size_t nrcpt;
    struct cr_buf msg;
    int msg_too_big;
    int msg_line_too_long;
    int closing;
    int quitting;
};

/* ---- replies and output ---- */

static void reply(struct sconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply(struct sconn *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (cr_buf_vappendf(&c->out, fmt, ap) == 0)
        cr_buf_append(&c->out, "\r\n", 2);
    va_end(ap);
}

static void on_conn_closed(uv_handle_t *h);

static void conn_close(struct sconn *c)
{
    struct sim_smtp *s = c->srv;

    if (c->closing)
        return;
    c->closing = 1;
    sim_listener_remove(&s->l, &c->link);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct sconn *c = req->data;

    (void)status;
    conn_close(c);
}

/* Sends the queued replies, through TLS when it is on; after QUIT, half-closes
 * once they are written. Returns 0 or a negative code. */
static int conn_flush(struct sconn *c)
{
    int rc = 0, wrc;

    if (c->out.len > 0) {
        if (c->tls_on)
            rc = sim_tls_output(&c->tls, c->out.data, c->out.len, &c->wire);
        else
            rc = cr_buf_append(&c->wire, c->out.data, c->out.len);
        cr_buf_reset(&c->out);
    }
    if (rc == 0 && c->quitting && c->tls_on)
        sim_tls_close_notify(&c->tls, &c->wire);
    wrc = sim_stream_flush((uv_stream_t *)&c->tcp, &c->wire);
    if (rc == 0)
        rc = wrc;
    if (rc == 0 && c->quitting) {
        c->shutdown.data = c;
        uv_read_stop((uv_stream_t *)&c->tcp);
        if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
            rc = CR_EIO;
    }
    return rc;
}

/* ---- message parsing ---- */

/* The header block of an entity: [p, end of headers); *body gets the body. */
static size_t header_block(const char *p, size_t n, const char **body)
{
    const char *e;

    if (n >= 2 && p[0] == '\r' && p[1] == '\n') {
        *body = p + 2;
        return 0;
    }
    e = memmem(p, n, "\r\n\r\n", 4);
    if (e == NULL) {
        *body = p + n;
        return n;
    }
    *body = e + 4;
    return (size_t)(e - p) + 2;
}

/* Appends the unfolded value of the first header called name to out.
 * Returns 1 when found, 0 when not. */
static int header_get(const char *h, size_t n, const char *name, struct cr_buf *out)
{
    size_t nl = strlen(name);
    const char *p = h, *end = h + n;

    cr_buf_reset(out);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;

        if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;

            for (;;) {
                const char *stop = eol ? eol : end;

                if (stop > v && stop[-1] == '\r')
                    stop--;
                cr_buf_append(out, v, (size_t)(stop - v));
                if (next >= end || (*next != ' ' && *next != '\t'))
                    break;
                v = next;
                eol = memchr(v, '\n', (size_t)(end - v));
                next = eol ? eol + 1 : end;
            }
            /* trim */
            {
                size_t a = 0, b = out->len;
                const char *d = cr_buf_cstr(out);

                while (a < b && (d[a] == ' ' || d[a] == '\t'))
                    a++;
                while (b > a && (d[b - 1] == ' ' || d[b - 1] == '\t'))
                    b--;
                memmove(out->data, d + a, b - a);
                out->len = b - a;
                out->data[out->len] = '\0';
            }
            return 1;
        }
        p = next;
    }
    return 0;
}

/* Decodes one encoded word's text (B or Q) and appends it to out. */
static int decode_word(char enc, const char *t, size_t n, struct cr_buf *out)
{
    size_t i;

    if (enc == 'B' || enc == 'b') {
        unsigned char in[1024], dec[768];
        size_t len = 0, pad;
        int got;

        if (n + 3 > sizeof(in))
            return CR_EPARSE;
        memcpy(in, t, n);
        len = n;
        while (len % 4 != 0)
            in[len++] = '=';
        pad = 0;
        for (i = len; i > 0 && in[i - 1] == '='; i--)
            pad++;
        got = EVP_DecodeBlock(dec, in, (int)len);
        if (got < 0 || (size_t)got < pad)
            return CR_EPARSE;
        return cr_buf_append(out, dec, (size_t)got - pad);
    }
    for (i = 0; i < n; i++) {
        char ch = t[i];

        if (ch == '_') {
            ch = ' ';
        } else if (ch == '=' && i + 2 < n && isxdigit((unsigned char)t[i + 1]) &&
                   isxdigit((unsigned char)t[i + 2])) {
            char hex[3] = {t[i + 1], t[i + 2], 0};

            ch = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        if (cr_buf_append(out, &ch, 1) < 0)
            return CR_ETOOBIG;
    }
    return 0;
}

/* RFC 2047: decodes the encoded words in s (whitespace between two adjacent
 * encoded words is dropped); everything else is copied. */
static void decode_2047(const char *s, struct cr_buf *out)
{
    size_t i = 0, n = strlen(s);
    size_t ws_start = 0, ws_len = 0;
    int prev_word = 0;

    cr_buf_reset(out);
    while (i < n) {
        if (s[i] == '=' && i + 1 < n && s[i + 1] == '?') {
            const char *cs = s + i + 2;
            const char *q1 = strchr(cs, '?');
            const char *q2 = q1 && q1[1] && q1[2] == '?' ? q1 + 2 : NULL;
            const char *endw = q2 ? strstr(q2 + 1, "?=") : NULL;

            if (endw != NULL && strchr("BbQq", q1[1]) != NULL) {
                size_t mark = out->len;

                if (!prev_word && ws_len)
                    cr_buf_append(out, s + ws_start, ws_len);
                if (decode_word(q1[1], q2 + 1, (size_t)(endw - q2 - 1), out) == 0) {
                    ws_len = 0;
                    prev_word = 1;
                    i = (size_t)(endw - s) + 2;
                    continue;
                }
                out->len = mark;
                out->data[mark] = '\0';
            }
        }
        if (s[i] == ' ' || s[i] == '\t') {
            if (ws_len == 0)
                ws_start = i;
            ws_len++;
            i++;
            continue;
        }
        if (ws_len)
            cr_buf_append(out, s + ws_start, ws_len);
        ws_len = 0;
        prev_word = 0;
        cr_buf_append(out, s + i, 1);
        i++;
    }
    if (ws_len)
        cr_buf_append(out, s + ws_start, ws_len);
}

/* The media type of a Content-Type value, lower-cased, into out (size n). */
static void media_type(const char *ctype, char *out, size_t n)
{
    size_t i = 0;

    while (*ctype == ' ')
        ctype++;
    while (ctype[i] && ctype[i] != ';' && ctype[i] != ' ' && i + 1 < n) {
        out[i] = (char)tolower((unsigned char)ctype[i]);
        i++;
    }
    out[i] = '\0';
}

/* The boundary parameter of a multipart Content-Type into out (size n). */
static int boundary_of(const char *ctype, char *out, size_t n)
{
    const char *p = ctype;
    size_t i = 0;

    while ((p = strchr(p, ';')) != NULL) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "boundary=", 9) != 0)
            continue;
        p += 9;
        if (*p == '"') {
            p++;
            while (p[i] && p[i] != '"' && i + 1 < n) {
                out[i] = p[i];
                i++;
            }
        } else {
            while (p[i] && p[i] != ';' && p[i] != ' ' && i + 1 < n) {
                out[i] = p[i];
                i++;
            }
        }
        out[i] = '\0';
        return i > 0;
    }
    return 0;
}

struct mime_info {
    cJSON *parts; /* leaf media types, in order */
    int alternative; /* a multipart/alternative with text/plain and text/html */
};

/* Walks one MIME entity; *type gets its media type. */
static void walk_entity(const char *p, size_t n, int depth, struct mime_info *mi, char *type,
                        size_t type_n)
{
    const char *body;
    size_t hn = header_block(p, n, &body);
    size_t bn = n - (size_t)(body - p);
    struct cr_buf ct;
    char boundary[128], delim[132];
    size_t dl;
    const char *cur, *end = body + bn;
    int has_plain = 0, has_html = 0;

    cr_buf_init(&ct, 4096);
    if (!header_get(p, hn, "Content-Type", &ct))
        cr_buf_appends(&ct, "text/plain");
    media_type(cr_buf_cstr(&ct), type, type_n);
    if (strncmp(type, "multipart/", 10) != 0 || depth >= MAX_MIME_DEPTH ||
        !boundary_of(cr_buf_cstr(&ct), boundary, sizeof(boundary))) {
        if (cJSON_GetArraySize(mi->parts) < MAX_PARTS)
            cJSON_AddItemToArray(mi->parts, cJSON_CreateString(type));
        goto out;
    }
    dl = (size_t)snprintf(delim, sizeof(delim), "--%s", boundary);
    /* the first delimiter may open the body; later ones follow a CRLF */
    cur = (bn >= dl && memcmp(body, delim, dl) == 0) ? body : NULL;
    if (cur == NULL) {
        const char *f = memmem(body, bn, delim, dl);

        while (f != NULL && !(f >= body + 2 && f[-1] == '\n')) {
            f = memmem(f + 1, (size_t)(end - f - 1), delim, dl);
        }
        cur = f;
    }
    while (cur != NULL && (size_t)(end - cur) >= dl + 2 && memcmp(cur + dl, "--", 2) != 0) {
        const char *start = memchr(cur, '\n', (size_t)(end - cur));
        const char *next;
        char child[64];

        if (start == NULL)
            break;
        start++;
        next = start;
        for (;;) {
            next = memmem(next, (size_t)(end - next), delim, dl);
            if (next == NULL || (next >= start + 2 && next[-1] == '\n' && next[-2] == '\r'))
                break;
            next++;
        }
        if (next == NULL)
            break;
        walk_entity(start, (size_t)(next - 2 - start), depth + 1, mi, child, sizeof(child));
        has_plain |= strcmp(child, "text/plain") == 0;
        has_html |= strcmp(child, "text/html") == 0;
        cur = next;
    }
    if (strcmp(type, "multipart/alternative") == 0 && has_plain && has_html)
        mi->alternative = 1;
out:
    cr_buf_release(&ct);
}

/* Adds header name's value (cleaned to UTF-8) to f, or null. */
static void add_header(cJSON *f, const char *key, const char *h, size_t hn, const char *name,
                       struct cr_buf *tmp, struct cr_buf *clean)
{
    if (!header_get(h, hn, name, tmp)) {
        cJSON_AddNullToObject(f, key);
        return;
    }
    cr_buf_reset(clean);
    sim_utf8_clean(clean, cr_buf_cstr(tmp), tmp->len, 0);
    cJSON_AddStringToObject(f, key, cr_buf_cstr(clean));
}

/* Records the transaction that just ended with reply code (counted as the
 * HTTP status count); recipients are the accepted RCPTs, or the one given. */
static void record(struct sconn *c, const char *verb, int code, int count, const char *rcpt,
                   const char *reply_text)
{
    struct sim *sim = c->srv->sim;
    const char *rcpts[MAX_RCPTS];
    const char *ref = NULL;
    size_t nr = 0, hn = 0;
    const char *h = NULL, *body = NULL;
    cJSON *f = cJSON_CreateObject();
    struct cr_buf tmp, clean, mid;
    struct mime_info mi;
    char top[64] = "";
    char *text = NULL;
    struct sim_log_input in;

    cr_buf_init(&tmp, 64 * 1024);
    cr_buf_init(&clean, 64 * 1024);
    cr_buf_init(&mid, 1024);
    if (rcpt != NULL) {
        rcpts[nr++] = rcpt;
    } else {
        const char *p = c->rcpts.data;
        size_t i;

        for (i = 0; i < c->nrcpt; i++) {
            rcpts[nr++] = p;
            p += strlen(p) + 1;
        }
    }
    if (f == NULL)
        goto log;
    cJSON_AddStringToObject(f, "mail_from", cr_buf_cstr(&c->mail_from));
    cJSON_AddBoolToObject(f, "tls", c->tls_on);
    if (c->auth_user.len)
        cJSON_AddStringToObject(f, "auth_user", cr_buf_cstr(&c->auth_user));
    else
        cJSON_AddNullToObject(f, "auth_user");
    cJSON_AddStringToObject(f, "reply", reply_text);
    if (strcmp(verb, "DATA") == 0 && c->msg.len > 0) {
        h = c->msg.data;
        hn = header_block(h, c->msg.len, &body);
        cJSON_AddNumberToObject(f, "size", (double)c->msg.len);
        add_header(f, "from", h, hn, "From", &tmp, &clean);
        add_header(f, "to", h, hn, "To", &tmp, &clean);
        add_header(f, "subject_raw", h, hn, "Subject", &tmp, &clean);
        if (header_get(h, hn, "Subject", &tmp)) {
            struct cr_buf dec;

            cr_buf_init(&dec, 64 * 1024);
            decode_2047(cr_buf_cstr(&tmp), &dec);
            cr_buf_reset(&clean);
            sim_utf8_clean(&clean, cr_buf_cstr(&dec), dec.len, 0);
            cJSON_AddStringToObject(f, "subject", cr_buf_cstr(&clean));
            cr_buf_release(&dec);
        } else {
            cJSON_AddNullToObject(f, "subject");
        }
        add_header(f, "message_id", h, hn, "Message-ID", &tmp, &clean);
        add_header(f, "date", h, hn, "Date", &tmp, &clean);
        add_header(f, "list_unsubscribe", h, hn, "List-Unsubscribe", &tmp, &clean);
        add_header(f, "list_unsubscribe_post", h, hn, "List-Unsubscribe-Post", &tmp, &clean);
        if (header_get(h, hn, "Message-ID", &mid)) {
            /* "<ref@domain>": the local part is crier's idempotency ref */
            char *lt = strchr(mid.data, '<'), *at = strrchr(mid.data, '@');

            if (lt != NULL && at != NULL && at > lt + 1) {
                *at = '\0';
                ref = lt + 1;
            }
        }
        mi.parts = cJSON_AddArrayToObject(f, "parts");
        mi.alternative = 0;
        walk_entity(c->msg.data, c->msg.len, 0, &mi, top, sizeof(top));
        cJSON_AddStringToObject(f, "content_type", top);
        cJSON_AddBoolToObject(f, "multipart_alternative", mi.alternative);
    }
    text = cJSON_PrintUnformatted(f);
log:
    memset(&in, 0, sizeof(in));
    in.ep = SIM_EP_SMTP;
    in.t_ms = sim_now_ms(sim);
    in.method = verb;
    in.path = "smtp";
    in.status = code;
    in.count_status = count;
    in.recipients = rcpts;
    in.nrecipients = nr;
    in.auth = cr_buf_cstr(&c->auth_user);
    in.ctype = top;
    in.refs = ref ? &ref : NULL;
    in.nrefs = ref ? 1 : 0;
    in.body = cr_buf_cstr(&c->msg);
    in.body_len = strcmp(verb, "DATA") == 0 ? c->msg.len : 0;
    in.fields = text;
    sim_record_add(sim->rec, &in);
    cJSON_free(text);
    cJSON_Delete(f);
    cr_buf_release(&tmp);
    cr_buf_release(&clean);
    cr_buf_release(&mid);
}

/* ---- commands ---- */

static void transaction_reset(struct sconn *c)
{
    c->in_mail = 0;
    cr_buf_reset(&c->mail_from);
    cr_buf_reset(&c->rcpts);
    c->nrcpt = 0;
    if (c->msg.cap > 1024 * 1024)
        cr_buf_release(&c->msg);
    cr_buf_reset(&c->msg);
    c->msg_too_big = 0;
    c->msg_line_too_long = 0;
}

/* Parses "<addr>" (after "FROM:"/"TO:" and optional spaces) into out; *rest
 * gets what follows. Returns 0 or CR_EPARSE. */
static int parse_path(const char *s, struct cr_buf *out, const char **rest)
{
    const char *gt;

    while (*s == ' ')
        s++;
    if (*s != '<')
        return CR_EPARSE;
    gt = strchr(s, '>');
    if (gt == NULL || (size_t)(gt - s - 1) > MAX_ADDR)
        return CR_EPARSE;
    cr_buf_reset(out);
    if (cr_buf_append(out, s + 1, (size_t)(gt - s - 1)) < 0)
        return CR_EPARSE;
    *rest = gt + 1;
    return 0;
}

static int need_auth(const struct sconn *c)
{
    return c->srv->sim->opt.smtp_user != NULL && !c->authed;
}

/* Checks decoded credentials and answers 235 or 535. */
static void auth_check(struct sconn *c, const char *user, size_t ul, const char *pass, size_t pl)
{
    const struct sim_options *o = &c->srv->sim->opt;
    int ok = o->smtp_user == NULL || (strlen(o->smtp_user) == ul &&
                                      memcmp(o->smtp_user, user, ul) == 0 &&
                                      strlen(o->smtp_pass) == pl && memcmp(o->smtp_pass, pass, pl) == 0);

    c->state = S_CMD;
    if (!ok) {
        reply(c, "535 5.7.8 Authentication credentials invalid");
        return;
    }
    c->authed = 1;
    cr_buf_reset(&c->auth_user);
    cr_buf_append(&c->auth_user, user, ul > 256 ? 256 : ul);
    reply(c, "235 2.7.0 Authentication successful");
}

/* Decodes base64 text into out; returns 0 or CR_EPARSE. */
static int b64_decode(const char *s, struct cr_buf *out)
{
    size_t n = strlen(s);
    unsigned char dec[768];
    size_t pad = 0;
    int got;

    if (n == 0 || n % 4 != 0 || n > 1024)
        return CR_EPARSE;
    if (s[n - 1] == '=')
        pad++;
    if (n > 1 && s[n - 2] == '=')
        pad++;
    got = EVP_DecodeBlock(dec, (const unsigned char *)s, (int)n);
    if (got < 0 || (size_t)got < pad)
        return CR_EPARSE;
    cr_buf_reset(out);
    return cr_buf_append(out, dec, (size_t)got - pad) < 0 ? CR_EPARSE : 0;
}

static void auth_plain(struct sconn *c, const char *b64)
{
    struct cr_buf d;
    const char *z1, *z2;

    cr_buf_init(&d, 1024);
    c->state = S_CMD;
    if (b64_decode(b64, &d) < 0 || d.len == 0) {
        reply(c, "501 5.5.2 Cannot decode the response");
        goto out;
    }
    /* authzid NUL authcid NUL passwd */
    z1 = memchr(d.data, '\0', d.len);
    z2 = z1 ? memchr(z1 + 1, '\0', d.len - (size_t)(z1 + 1 - d.data)) : NULL;
    if (z2 == NULL) {
        reply(c, "501 5.5.2 Malformed PLAIN response");
        goto out;
    }
    auth_check(c, z1 + 1, (size_t)(z2 - z1 - 1), z2 + 1, d.len - (size_t)(z2 + 1 - d.data));
out:
    cr_buf_release(&d);
}

static void cmd_auth(struct sconn *c, const char *arg)
{
    const struct sim_options *o = &c->srv->sim->opt;

    if (!c->greeted) {
        reply(c, "503 5.5.1 Send EHLO first");
        return;
    }
    if (c->authed || c->in_mail) {
        reply(c, "503 5.5.1 Already authenticated or in a mail transaction");
        return;
    }
    if (o->smtp_require_tls && !c->tls_on) {
        reply(c, "530 5.7.0 Must issue a STARTTLS command first");
        return;
    }
    if (strncasecmp(arg, "PLAIN", 5) == 0 && (arg[5] == '\0' || arg[5] == ' ')) {
        if (arg[5] == ' ' && arg[6] != '\0') {
            auth_plain(c, arg + 6);
        } else {
            c->state = S_AUTH_PLAIN;
            reply(c, "334 ");
        }
        return;
    }
    if (strncasecmp(arg, "LOGIN", 5) == 0 && (arg[5] == '\0' || arg[5] == ' ')) {
        if (arg[5] == ' ' && arg[6] != '\0') {
            if (b64_decode(arg + 6, &c->login_user) < 0) {
                reply(c, "501 5.5.2 Cannot decode the response");
                return;
            }
            c->state = S_AUTH_PASS;
            reply(c, "334 UGFzc3dvcmQ6");
        } else {
            c->state = S_AUTH_USER;
            reply(c, "334 VXNlcm5hbWU6");
        }
        return;
    }
    reply(c, "504 5.5.4 Unrecognized authentication type");
}

static void auth_line(struct sconn *c, const char *line)
{
    struct cr_buf pass;

    if (strcmp(line, "*") == 0) {
        c->state = S_CMD;
        reply(c, "501 5.7.0 Authentication cancelled");
        return;
    }
    if (c->state == S_AUTH_PLAIN) {
        auth_plain(c, line);
        return;
    }
    if (c->state == S_AUTH_USER) {
        if (b64_decode(line, &c->login_user) < 0) {
            c->state = S_CMD;
            reply(c, "501 5.5.2 Cannot decode the response");
            return;
        }
        c->state = S_AUTH_PASS;
        reply(c, "334 UGFzc3dvcmQ6");
        return;
    }
    cr_buf_init(&pass, 1024);
    if (b64_decode(line, &pass) < 0) {
        c->state = S_CMD;
        reply(c, "501 5.5.2 Cannot decode the response");
    } else {
        auth_check(c, cr_buf_cstr(&c->login_user), c->login_user.len, cr_buf_cstr(&pass),
                   pass.len);
    }
    cr_buf_release(&pass);
}

static void cmd_ehlo(struct sconn *c, const char *arg, int extended)
{
    if (*arg == '\0') {
        reply(c, "501 5.5.4 %s needs a domain or address", extended ? "EHLO" : "HELO");
        return;
    }
    transaction_reset(c);
    c->greeted = 1;
    if (!extended) {
        reply(c, "250 %s", HOSTNAME);
        return;
    }
    reply(c, "250-%s greets %.64s", HOSTNAME, arg);
    reply(c, "250-8BITMIME");
    reply(c, "250-SIZE %d", MAX_MESSAGE);
    reply(c, "250-PIPELINING");
    reply(c, "250-ENHANCEDSTATUSCODES");
    if (c->srv->ctx != NULL && !c->tls_on)
        reply(c, "250-STARTTLS");
    reply(c, "250 AUTH PLAIN LOGIN");
}

static void cmd_mail(struct sconn *c, const char *arg)
{
    const struct sim_options *o = &c->srv->sim->opt;
    const char *rest;

    if (!c->greeted) {
        reply(c, "503 5.5.1 Send EHLO first");
        return;
    }
    if (o->smtp_require_tls && !c->tls_on) {
        reply(c, "530 5.7.0 Must issue a STARTTLS command first");
        return;
    }
    if (need_auth(c)) {
        reply(c, "530 5.7.0 Authentication required");
        return;
    }
    if (c->in_mail) {
        reply(c, "503 5.5.1 Nested MAIL command");
        return;
    }
    if (strncasecmp(arg, "FROM:", 5) != 0 || parse_path(arg + 5, &c->mail_from, &rest) < 0) {
        reply(c, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    while (*rest == ' ')
        rest++;
    while (*rest != '\0') {
        const char *sp = strchr(rest, ' ');
        size_t len = sp ? (size_t)(sp - rest) : strlen(rest);

        if (len > 5 && strncasecmp(rest, "SIZE=", 5) == 0) {
            char *end;
            unsigned long long size = strtoull(rest + 5, &end, 10);

            if (end != rest + len) {
                reply(c, "501 5.5.4 Bad SIZE parameter");
                return;
            }
            if (size > MAX_MESSAGE) {
                reply(c, "552 5.3.4 Message size exceeds fixed maximum message size");
                return;
            }
        } else if (!(len > 5 && strncasecmp(rest, "BODY=", 5) == 0) &&
                   !(len > 5 && strncasecmp(rest, "AUTH=", 5) == 0)) {
            reply(c, "555 5.5.4 Unsupported MAIL parameter");
            return;
        }
        rest += len;
        while (*rest == ' ')
            rest++;
    }
    c->in_mail = 1;
    reply(c, "250 2.1.0 Sender OK");
}

static void cmd_rcpt(struct sconn *c, const char *arg)
{
    struct cr_buf addr;
    const char *rest, *at;

    cr_buf_init(&addr, MAX_ADDR + 1);
    if (!c->in_mail) {
        reply(c, "503 5.5.1 Need MAIL before RCPT");
        goto out;
    }
    if (strncasecmp(arg, "TO:", 3) != 0 || parse_path(arg + 3, &addr, &rest) < 0) {
        reply(c, "501 5.5.4 Syntax: RCPT TO:<address>");
        goto out;
    }
    at = strrchr(cr_buf_cstr(&addr), '@');
    if (addr.len == 0 || at == NULL || at[1] == '\0') {
        reply(c, "501 5.1.3 Bad recipient address syntax");
        goto out;
    }
    if (c->nrcpt >= MAX_RCPTS) {
        reply(c, "452 4.5.3 Too many recipients");
        goto out;
    }
    if (strcasecmp(at + 1, "invalid.sim") == 0) {
        reply(c, "550 5.1.1 <%s>: Recipient address rejected: no such user", addr.data);
        record(c, "RCPT", 550, 404, addr.data, "550 5.1.1 no such user");
        goto out;
    }
    if (strcasecmp(at + 1, "busy.sim") == 0) {
        reply(c, "451 4.3.0 <%s>: Mailbox busy, try again later", addr.data);
        record(c, "RCPT", 451, 503, addr.data, "451 4.3.0 try again later");
        goto out;
    }
    if (cr_buf_append(&c->rcpts, addr.data, addr.len + 1) < 0) {
        reply(c, "452 4.5.3 Too many recipients");
        goto out;
    }
    c->nrcpt++;
    reply(c, "250 2.1.5 Recipient OK");
out:
    cr_buf_release(&addr);
}

static void data_end(struct sconn *c)
{
    struct sim_smtp *s = c->srv;
    char text[128];

    c->state = S_CMD;
    if (c->msg_too_big) {
        snprintf(text, sizeof(text), "552 5.3.4 Message size exceeds fixed maximum message size");
        reply(c, "%s", text);
        record(c, "DATA", 552, 413, NULL, text);
    } else if (c->msg_line_too_long) {
        snprintf(text, sizeof(text), "500 5.5.2 Line too long");
        reply(c, "%s", text);
        record(c, "DATA", 500, 400, NULL, text);
    } else {
        switch (sim_provider_inject(s->sim, SIM_EP_SMTP)) {
        case SIM_INJECT_429:
            snprintf(text, sizeof(text), "451 4.7.1 Rate limit exceeded, try again later");
            reply(c, "%s", text);
            record(c, "DATA", 451, 429, NULL, text);
            break;
        case SIM_INJECT_5XX:
            snprintf(text, sizeof(text), "554 5.3.0 Transaction failed");
            reply(c, "%s", text);
            record(c, "DATA", 554, 503, NULL, text);
            break;
        default:
            snprintf(text, sizeof(text), "250 2.0.0 OK: queued as SIM%010llu",
                     (unsigned long long)++s->next_id);
            reply(c, "%s", text);
            record(c, "DATA", 250, 200, NULL, text);
            break;
        }
    }
    transaction_reset(c);
}

static void data_line(struct sconn *c, const char *line, size_t n, int too_long)
{
    if (n == 1 && line[0] == '.' && !too_long) {
        data_end(c);
        return;
    }
    if (too_long)
        c->msg_line_too_long = 1;
    if (n > 0 && line[0] == '.') { /* dot-unstuffing (RFC 5321 4.5.2) */
        line++;
        n--;
    }
    if (c->msg_too_big)
        return;
    if (cr_buf_append(&c->msg, line, n) < 0 || cr_buf_append(&c->msg, "\r\n", 2) < 0)
        c->msg_too_big = 1;
}

static void cmd_starttls(struct sconn *c, const char *arg)
{
    if (c->srv->ctx == NULL) {
        reply(c, "454 4.7.0 TLS not available");
        return;
    }
    if (c->tls_on) {
        reply(c, "503 5.5.1 TLS already active");
        return;
    }
    if (*arg != '\0') {
        reply(c, "501 5.5.4 STARTTLS takes no arguments");
        return;
    }
    if (sim_tls_init(&c->tls, c->srv->ctx) < 0) {
        reply(c, "454 4.7.0 TLS not available now");
        return;
    }
    reply(c, "220 2.0.0 Ready to start TLS");
    if (conn_flush(c) < 0) {
        conn_close(c);
        return;
    }
    /* RFC 3207: forget everything said in the clear */
    c->tls_on = 1;
    c->switched = 1;
    c->greeted = 0;
    c->authed = 0;
    cr_buf_reset(&c->auth_user);
    transaction_reset(c);
}

static void command(struct sconn *c, const char *line, int too_long)
{
    char verb[16];
    size_t i = 0;
    const char *arg;

    if (too_long) {
        reply(c, "500 5.5.2 Line too long");
        return;
    }
    if (c->state == S_AUTH_PLAIN || c->state == S_AUTH_USER || c->state == S_AUTH_PASS) {
        auth_line(c, line);
        return;
    }
    while (line[i] && line[i] != ' ' && i + 1 < sizeof(verb)) {
        verb[i] = (char)toupper((unsigned char)line[i]);
        i++;
    }
    verb[i] = '\0';
    arg = line + i;
    while (*arg == ' ')
        arg++;
    if (i == 0) {
        reply(c, "500 5.5.2 Syntax error, command unrecognized");
    } else if (strcmp(verb, "EHLO") == 0) {
        cmd_ehlo(c, arg, 1);
    } else if (strcmp(verb, "HELO") == 0) {
        cmd_ehlo(c, arg, 0);
    } else if (strcmp(verb, "MAIL") == 0) {
        cmd_mail(c, arg);
    } else if (strcmp(verb, "RCPT") == 0) {
        cmd_rcpt(c, arg);
    } else if (strcmp(verb, "DATA") == 0) {
        if (*arg != '\0')
            reply(c, "501 5.5.4 DATA takes no arguments");
        else if (!c->in_mail)
            reply(c, "503 5.5.1 Need MAIL command");
        else if (c->nrcpt == 0)
            reply(c, "554 5.5.1 No valid recipients");
        else {
            c->state = S_DATA;
            reply(c, "354 End data with <CR><LF>.<CR><LF>");
        }
    } else if (strcmp(verb, "RSET") == 0) {
        transaction_reset(c);
        reply(c, "250 2.0.0 OK");
    } else if (strcmp(verb, "NOOP") == 0) {
        reply(c, "250 2.0.0 OK");
    } else if (strcmp(verb, "QUIT") == 0) {
        reply(c, "221 2.0.0 Bye");
        c->quitting = 1;
    } else if (strcmp(verb, "VRFY") == 0) {
        reply(c, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
    } else if (strcmp(verb, "STARTTLS") == 0) {
        cmd_starttls(c, arg);
    } else if (strcmp(verb, "AUTH") == 0) {
        cmd_auth(c, arg);
    } else {
        reply(c, "502 5.5.2 Command not recognized");
    }
}

/* Splits input into lines (CRLF or bare LF) and handles each, until QUIT or
 * STARTTLS stops the plaintext. */
static void feed(struct sconn *c, const char *p, size_t n)
{
    while (n > 0 && !c->quitting && !c->switched && !c->closing) {
        const char *lf = memchr(p, '\n', n);
        size_t take = lf ? (size_t)(lf - p) : n;

        if (!c->line_too_long) {
            if (c->line.len + take + 2 > MAX_LINE) {
                c->line_too_long = 1;
                cr_buf_reset(&c->line);
            } else {
                cr_buf_append(&c->line, p, take);
            }
        }
        if (lf == NULL)
            return;
        p += take + 1;
        n -= take + 1;
        if (c->line.len > 0 && c->line.data[c->line.len - 1] == '\r')
            c->line.data[--c->line.len] = '\0';
        if (c->state == S_DATA)
            data_line(c, cr_buf_cstr(&c->line), c->line.len, c->line_too_long);
        else
            command(c, cr_buf_cstr(&c->line), c->line_too_long);
        cr_buf_reset(&c->line);
        c->line_too_long = 0;
    }
}

/* ---- connections ---- */

static void smtp_free(void *owner)
{
    free(owner);
}

static void close_conn(void *conn)
{
    conn_close(conn);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct sconn *c = h->data;
    struct sim_smtp *s = c->srv;

    sim_tls_release(&c->tls);
    cr_buf_release(&c->line);
    cr_buf_release(&c->plain);
    cr_buf_release(&c->wire);
    cr_buf_release(&c->out);
    cr_buf_release(&c->auth_user);
    cr_buf_release(&c->login_user);
    cr_buf_release(&c->mail_from);
    cr_buf_release(&c->rcpts);
    cr_buf_release(&c->msg);
    free(c);
    sim_listener_freed(&s->l);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sconn *c = h->data;

    (void)suggested;
    sim_listener_buf(&c->srv->l, buf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct sconn *c = st->data;
    int rc = 0;

    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (c->tls_on) {
        rc = sim_tls_input(&c->tls, "smtp", buf->base, (size_t)nread, &c->plain, &c->wire);
        c->switched = 0;
        if (c->plain.len > 0)
            feed(c, c->plain.data, c->plain.len);
        cr_buf_reset(&c->plain);
    } else {
        feed(c, buf->base, (size_t)nread);
    }
    if (c->closing)
        return;
    if (conn_flush(c) < 0 || rc < 0)
        conn_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct sim_smtp *s = server->data;
    struct sconn *c;

    if (status < 0)
        return;
    if (s->l.nconns >= MAX_CONNS) {
        static const char busy[] = "421 4.3.2 Too many connections, try again later\r\n";

        sim_reject_connection(server, busy, sizeof(busy) - 1);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->srv = s;
    cr_buf_init(&c->line, MAX_LINE);
    cr_buf_init(&c->plain, 1024 * 1024);
    cr_buf_init(&c->wire, 1024 * 1024);
    cr_buf_init(&c->out, 64 * 1024);
    cr_buf_init(&c->auth_user, 512);
    cr_buf_init(&c->login_user, 512);
    cr_buf_init(&c->mail_from, MAX_ADDR + 1);
    cr_buf_init(&c->rcpts, MAX_RCPTS * (MAX_ADDR + 1));
    cr_buf_init(&c->msg, MAX_MESSAGE);
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    sim_listener_add(&s->l, &c->link, c);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    reply(c, "220 %s ESMTP ready", HOSTNAME);
    if (conn_flush(c) < 0)
        conn_close(c);
}

int sim_smtp_start(struct sim *sim, SSL_CTX *ctx, const char *host, int port,
                   struct sim_smtp **out)
{
    struct sim_smtp *s;
    struct sockaddr_storage addr;
    int rc;

    if (sim_addr_parse(host, port, &addr) < 0)
        return CR_EINVAL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CR_ENOMEM;
    s->sim = sim;
    s->ctx = ctx;
    rc = sim_listener_start(&s->l, sim->loop, s, smtp_free, "sim smtp", &addr, host, port,
                            on_connection);
    if (rc < 0)
        return rc;
    *out = s;
    return 0;
}

int sim_smtp_port(const struct sim_smtp *s)
{
    return s->l.port;
}

void sim_smtp_close(struct sim_smtp *s)
{
    sim_listener_close(&s->l, close_conn);
}
