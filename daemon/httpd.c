/* The HTTP listener (see httpd.h): each connection reads into one fixed
 * buffer, feeds http-parser, hands whole requests to the handler and stops
 * reading until the answer is written, so a connection holds at most one
 * request and one answer, each under its cap. */
#include "httpd.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"

#define READ_BUF 8192                /* one read; pipelined bytes wait here */
#define RESPONSE_MAX (8 * 1024 * 1024) /* the largest answer (a /metrics page) */
#define LINGER_MS 2000               /* after an error answer, read and drop for this long */
#define LINGER_BYTES (1024 * 1024)   /* ... or until this much was dropped */
#define EXTRA_REJECTING 64           /* connections being answered 503 at once */
#define METHOD_MAX 15
#define STREAM_BACKLOG_MAX (256 * 1024) /* bytes a streaming client may fall behind by */

/* ---- the parser ---------------------------------------------------------- */

static int req_new(struct cr_httpd_parser *p)
{
    struct cr_httpd_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return CR_ENOMEM;
    cr_buf_init(&r->target, p->lim.max_header_bytes);
    cr_buf_init(&r->hdrs, p->lim.max_header_bytes);
    cr_buf_init(&r->body, p->lim.max_body_bytes);
    p->req = r;
    p->in_value = 0;
    p->expect_continue = 0;
    return 0;
}

void cr_httpd_req_free(struct cr_httpd_req *req)
{
    if (req == NULL)
        return;
    cr_buf_release(&req->target);
    cr_buf_release(&req->hdrs);
    cr_buf_release(&req->body);
    free(req->path);
    free(req->query);
    free(req);
}

static int reject(struct cr_httpd_parser *p, int status, const char *why)
{
    if (p->status == 0) {
        p->status = status;
        p->why = why;
    }
    return -1;
}

static int on_message_begin(http_parser *hp)
{
    struct cr_httpd_parser *p = hp->data;

    if (p->req == NULL && req_new(p) < 0)
        return reject(p, 503, "out of memory");
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    struct cr_httpd_parser *p = hp->data;

    if (p->req->target.len == 0) /* the method is known once the target starts */
        snprintf(p->req->method, sizeof(p->req->method), "%.*s", METHOD_MAX,
                 http_method_str((enum http_method)hp->method));
    if (p->req->target.len + n > p->lim.max_header_bytes)
        return reject(p, 414, "request target over the header limit");
    if (cr_buf_append(&p->req->target, at, n) < 0)
        return reject(p, 503, "out of memory");
    return 0;
}

/* Header bytes so far, request target included. */
static int header_room(const struct cr_httpd_parser *p, size_t n)
{
    return p->req->target.len + p->req->hdrs.len + n + 2 <= p->lim.max_header_bytes;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct cr_httpd_parser *p = hp->data;
    struct cr_httpd_req *r = p->req;

    if (p->in_value || r->nhdrs == 0) {
        /* A new header line: end the previous value first. */
        if (p->in_value && cr_buf_append(&r->hdrs, "", 1) < 0)
            return reject(p, 431, "header lines over the limit");
        if (r->nhdrs >= p->lim.max_headers)
            return reject(p, 431, "too many header lines");
        r->nhdrs++;
        p->in_value = 0;
    }
    if (!header_room(p, n) || cr_buf_append(&r->hdrs, at, n) < 0)
        return reject(p, 431, "header lines over the limit");
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct cr_httpd_parser *p = hp->data;
    struct cr_httpd_req *r = p->req;

    if (!p->in_value) {
        if (cr_buf_append(&r->hdrs, "", 1) < 0) /* end of the name */
            return reject(p, 431, "header lines over the limit");
        p->in_value = 1;
    }
    if (!header_room(p, n) || cr_buf_append(&r->hdrs, at, n) < 0)
        return reject(p, 431, "header lines over the limit");
    return 0;
}

static int split_target(struct cr_httpd_req *r)
{
    const char *t = cr_buf_cstr(&r->target);
    const char *q = strchr(t, '?');
    size_t plen = q ? (size_t)(q - t) : strlen(t);

    r->path = strndup(t, plen);
    r->query = strdup(q ? q + 1 : "");
    return (r->path == NULL || r->query == NULL) ? CR_ENOMEM : 0;
}

static int on_headers_complete(http_parser *hp)
{
    struct cr_httpd_parser *p = hp->data;
    struct cr_httpd_req *r = p->req;
    const char *m = http_method_str((enum http_method)hp->method);
    const char *expect;

    if (r->nhdrs > 0) {
        if (!p->in_value && cr_buf_append(&r->hdrs, "", 1) < 0) /* a name with no value */
            return reject(p, 431, "header lines over the limit");
        if (cr_buf_append(&r->hdrs, "", 1) < 0)
            return reject(p, 431, "header lines over the limit");
    }
    snprintf(r->method, sizeof(r->method), "%.*s", METHOD_MAX, m);
    if (split_target(r) < 0)
        return reject(p, 503, "out of memory");
    if (r->target.len == 0 || cr_buf_cstr(&r->target)[0] != '/')
        return reject(p, 400, "request target is not a path");
    if (hp->upgrade)
        return reject(p, 400, "protocol upgrades are not served");
    if (!(hp->flags & F_CHUNKED) && hp->content_length != ULLONG_MAX &&
        hp->content_length > p->lim.max_body_bytes)
        return reject(p, 413, "Content-Length over the body limit");
    expect = cr_httpd_header(r, "expect");
    if (expect != NULL) {
        if (strcasecmp(expect, "100-continue") != 0)
            return reject(p, 417, "unknown Expect");
        p->expect_continue = 1;
    }
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    struct cr_httpd_parser *p = hp->data;
    int rc = cr_buf_append(&p->req->body, at, n);

    if (rc == CR_ETOOBIG)
        return reject(p, 413, "body over the limit");
    if (rc < 0)
        return reject(p, 503, "out of memory");
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct cr_httpd_parser *p = hp->data;

    p->req->keep_alive = http_should_keep_alive(hp);
    p->complete = 1;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void cr_httpd_parser_init(struct cr_httpd_parser *p, const struct cr_httpd_limits *lim)
{
    memset(p, 0, sizeof(*p));
    p->lim = *lim;
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
}

int cr_httpd_parser_feed(struct cr_httpd_parser *p, const char *data, size_t n, size_t *used)
{
    size_t k;
    enum http_errno e;

    *used = 0;
    if (p->status != 0)
        return p->status;
    if (p->complete)
        return 1;
    if (n == 0)
        return 0;
    k = http_parser_execute(&p->hp, &settings, data, n);
    *used = k;
    if (p->status != 0)
        return p->status;
    if (p->complete)
        return 1;
    e = HTTP_PARSER_ERRNO(&p->hp);
    if (e == HPE_HEADER_OVERFLOW) {
        p->status = 431;
        p->why = "header lines over the parser's limit";
    } else if (e != HPE_OK) {
        p->status = 400;
        p->why = http_errno_description(e);
    } else if (k != n) {
        p->status = 400;
        p->why = "unparsed bytes";
    }
    return p->status;
}

int cr_httpd_parser_started(const struct cr_httpd_parser *p)
{
    return p->req != NULL && !p->complete;
}

struct cr_httpd_req *cr_httpd_parser_take(struct cr_httpd_parser *p)
{
    struct cr_httpd_req *r = p->complete ? p->req : NULL;

    if (r == NULL)
        return NULL;
    p->req = NULL;
    p->complete = 0;
    p->in_value = 0;
    p->expect_continue = 0;
    http_parser_pause(&p->hp, 0);
    return r;
}

void cr_httpd_parser_release(struct cr_httpd_parser *p)
{
    cr_httpd_req_free(p->req);
    p->req = NULL;
}

const char *cr_httpd_header(const struct cr_httpd_req *req, const char *name)
{
    const char *s = req->hdrs.data;
    const char *end;
    size_t i;

    /* no header yet: data is NULL, and NULL + 0 is undefined behaviour */
    if (s == NULL)
        return NULL;
    end = s + req->hdrs.len;
    for (i = 0; i < req->nhdrs && s < end; i++) {
        const char *v = s + strlen(s) + 1;

        if (v >= end)
            return NULL;
        if (strcasecmp(s, name) == 0)
            return v;
        s = v + strlen(v) + 1;
    }
    return NULL;
}

const char *cr_httpd_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* ---- forms --------------------------------------------------------------- */

/* Decodes s[0..n) into a new string. */
static char *form_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t i, k = 0;

    if (out == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[k++] = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < n ? cr_hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? cr_hex_value(s[i + 2]) : -1;

            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (s[i] == '\0') {
            free(out);
            return NULL;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    return out;
}

int cr_form_parse(const char *s, size_t len, struct cr_form *f)
{
    size_t i = 0, count = 1, k;
    int rc = CR_ENOMEM;

    memset(f, 0, sizeof(*f));
    if (len == 0)
        return 0;
    for (k = 0; k < len; k++)
        count += s[k] == '&';
    if (count > CR_FORM_MAX_FIELDS)
        return CR_ETOOBIG;
    f->name = calloc(count, sizeof(char *));
    f->value = calloc(count, sizeof(char *));
    if (f->name == NULL || f->value == NULL)
        goto out;
    while (i <= len) {
        const char *amp = memchr(s + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - s) : len;
        const char *eq = memchr(s + i, '=', end - i);

        if (end > i) { /* empty pairs ("a=1&&b=2") are skipped */
            if (eq == NULL) {
                rc = CR_EPARSE;
                goto out;
            }
            f->name[f->n] = form_decode(s + i, (size_t)(eq - s) - i);
            f->value[f->n] = form_decode(eq + 1, end - (size_t)(eq - s) - 1);
            f->n++;
            if (f->name[f->n - 1] == NULL || f->value[f->n - 1] == NULL) {
                rc = CR_EPARSE; /* a bad escape or a NUL (out of memory reads as this too) */
                goto out;
            }
        }
        i = end + 1;
    }
    rc = 0;
out:
    if (rc != 0)
        cr_form_release(f);
    return rc;
}

const char *cr_form_get(const struct cr_form *f, const char *name)
{
    size_t i;

    for (i = 0; i < f->n; i++) {
        if (strcmp(f->name[i], name) == 0)
            return f->value[i];
    }
    return NULL;
}

void cr_form_release(struct cr_form *f)
{
    size_t i;

    for (i = 0; i < f->n; i++) {
        free(f->name[i]);
        free(f->value[i]);
    }
    free(f->name);
    free(f->value);
    memset(f, 0, sizeof(*f));
}

/* ---- the server ---------------------------------------------------------- */

enum conn_state {
    C_IDLE,     /* waiting for a request's first byte (idle timer) */
    C_READING,  /* a request has begun (read timer) */
    C_HANDLING, /* the handler has the request; not reading */
    C_WRITING,  /* the answer is being written (write timer) */
    C_DRAINING, /* answered with an error: reading and dropping until EOF or the linger timer */
    C_STREAMING, /* a long-lived answer (cr_httpd_stream_start): written as it comes */
    C_CLOSING
};

struct cr_httpd_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_write_t creq;          /* "100 Continue" */
    uv_shutdown_t sreq;
    struct cr_httpd *srv;
    struct cr_httpd_conn *prev, *next;
    struct cr_httpd_parser parser;
    struct cr_httpd_req *pending; /* with the handler */
    struct cr_buf out;
    enum conn_state state;
    int close_after;          /* close once the answer is written */
    int rejecting;            /* over max_connections: answered 503 */
    int continue_sent;
    int handles;              /* open handles; freed at 0 */
    size_t roff, rlen;        /* pipelined bytes kept in rbuf */
    size_t dropped;           /* bytes read and dropped while draining */
    struct cr_buf more;       /* streaming: bytes queued while out is being written */
    int writing;              /* streaming: a write is under way */
    int ending;               /* streaming: close once everything queued is written */
    cr_httpd_gone_cb gone;    /* streaming: called once when the connection closes */
    void *gone_ud;
    char peer[64];
    char rbuf[READ_BUF];
};

struct cr_httpd {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct cr_httpd_opts o;
    struct cr_httpd_conn *conns;
    size_t nconns;            /* serving connections */
    size_t nrejecting;        /* being answered 503 */
    int port;
    int closing;
    int listener_open;
    void (*done)(void *ud);
    void *done_ud;
};

static void conn_close(struct cr_httpd_conn *c);
static void process(struct cr_httpd_conn *c, const char *data, size_t n);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void maybe_free_server(struct cr_httpd *s)
{
    if (!s->closing || s->listener_open || s->conns != NULL)
        return;
    if (s->done != NULL)
        s->done(s->done_ud);
    free(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct cr_httpd_conn *c = h->data;
    struct cr_httpd *s = c->srv;

    if (--c->handles > 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->rejecting)
        s->nrejecting--;
    else
        s->nconns--;
    cr_httpd_parser_release(&c->parser);
    cr_buf_release(&c->out);
    cr_buf_release(&c->more);
    free(c);
    maybe_free_server(s);
}

static void conn_close(struct cr_httpd_conn *c)
{
    cr_httpd_gone_cb gone = c->gone;

    if (c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    c->gone = NULL;
    if (gone != NULL)
        gone(c->gone_ud); /* the stream's owner forgets c now */
    if (c->pending != NULL) {
        c->pending->conn = NULL; /* the handler's answer will be dropped */
        c->pending = NULL;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_timer(uv_timer_t *t);

static void arm(struct cr_httpd_conn *c, long ms)
{
    uv_timer_start(&c->timer, on_timer, (uint64_t)(ms > 0 ? ms : 1), 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct cr_httpd_conn *c = h->data;

    (void)hint;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* draining goes on until EOF or the linger timer */
}

static void stream_flush(struct cr_httpd_conn *c);

static void on_written(uv_write_t *w, int status)
{
    struct cr_httpd_conn *c = w->data;

    if (c->state == C_CLOSING)
        return;
    if (c->state == C_STREAMING) {
        c->writing = 0;
        cr_buf_reset(&c->out);
        uv_timer_stop(&c->timer);
        if (status < 0)
            conn_close(c);
        else
            stream_flush(c);
        return;
    }
    cr_buf_reset(&c->out);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after) {
        /* Half-close and drop what the client still sends, so that closing with
         * unread bytes does not turn into a reset that loses the answer. */
        c->state = C_DRAINING;
        c->dropped = 0;
        arm(c, LINGER_MS);
        c->sreq.data = c;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0 ||
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
            conn_close(c);
        return;
    }
    c->state = C_IDLE;
    arm(c, c->srv->o.idle_timeout_ms);
    if (c->rlen > 0) {
        size_t off = c->roff, n = c->rlen;

        c->roff = c->rlen = 0;
        process(c, c->rbuf + off, n);
        if (c->state != C_IDLE && c->state != C_READING)
            return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* Writes out (already built) and moves to C_WRITING. */
static void send_out(struct cr_httpd_conn *c)
{
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);

    c->state = C_WRITING;
    uv_read_stop((uv_stream_t *)&c->tcp);
    arm(c, c->srv->o.read_timeout_ms);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        conn_close(c);
}

static int build_response(struct cr_buf *out, int status, const char *ctype, const char *extra,
                          const void *body, size_t len, int keep_alive, int head)
{
    int rc;

    cr_buf_reset(out);
    rc = cr_buf_appendf(out,
                        "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: %s\r\n"
                        "Cache-Control: no-store\r\n",
                        status, cr_httpd_reason(status), len, keep_alive ? "keep-alive" : "close");
    if (rc == 0 && ctype != NULL)
        rc = cr_buf_appendf(out, "Content-Type: %s\r\n", ctype);
    if (rc == 0 && extra != NULL)
        rc = cr_buf_appends(out, extra);
    if (rc == 0)
        rc = cr_buf_append(out, "\r\n", 2);
    if (rc == 0 && !head && len > 0)
        rc = cr_buf_append(out, body, len);
    return rc;
}

/* Answers a request the listener refuses itself, logs it, and closes after. */
static void refuse(struct cr_httpd_conn *c, int status, const char *why)
{
    const struct cr_httpd_req *r = c->parser.req;
    const char *path = (r != NULL && r->path != NULL) ? r->path : NULL;
    char body[160];
    int n;

    cr_warn("http %s: %s %s: %d %s; connection closed", c->peer,
            (r != NULL && r->method[0]) ? r->method : "-",
            path ? path : (r != NULL && r->target.len ? cr_buf_cstr(&r->target) : "-"), status,
            why ? why : cr_httpd_reason(status));
    if (c->srv->o.rejected != NULL)
        c->srv->o.rejected(path, status, c->srv->o.ud);
    n = snprintf(body, sizeof(body), "%d %s\n", status, cr_httpd_reason(status));
    c->close_after = 1;
    c->rlen = 0;
    if (build_response(&c->out, status, "text/plain; charset=utf-8", NULL, body,
                       n > 0 ? (size_t)n : 0, 0, 0) < 0) {
        conn_close(c);
        return;
    }
    send_out(c);
}

static void on_continue_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void send_continue(struct cr_httpd_conn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)line, sizeof(line) - 1);

    c->continue_sent = 1;
    c->creq.data = c;
    if (uv_write(&c->creq, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written) != 0)
        conn_close(c);
}

/* Feeds bytes; keeps what follows a complete request for after its answer. */
static void process(struct cr_httpd_conn *c, const char *data, size_t n)
{
    struct cr_httpd *s = c->srv;
    struct cr_httpd_req *req;
    size_t used = 0;
    int rc;

    rc = cr_httpd_parser_feed(&c->parser, data, n, &used);
    if (rc >= 400) {
        refuse(c, rc, c->parser.why);
        return;
    }
    if (c->state == C_IDLE && (cr_httpd_parser_started(&c->parser) || rc == 1)) {
        c->state = C_READING;
        arm(c, s->o.read_timeout_ms);
    }
    if (rc == 0) {
        if (c->parser.expect_continue && !c->continue_sent)
            send_continue(c);
        return;
    }
    /* A whole request: stop reading, keep the rest, hand it over. */
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    if (used < n) {
        /* data always lies in rbuf: a read, or bytes kept from the previous one */
        c->roff = (size_t)(data - c->rbuf) + used;
        c->rlen = n - used;
    }
    req = cr_httpd_parser_take(&c->parser);
    c->continue_sent = 0;
    req->conn = c;
    c->pending = req;
    c->state = C_HANDLING;
    s->o.handler(req, s->o.ud);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct cr_httpd_conn *c = st->data;

    if (c->state == C_CLOSING)
        return;
    if (nread < 0) {
        if (c->state == C_READING && nread == UV_EOF)
            cr_debug("http %s: client closed in the middle of a request", c->peer);
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->state == C_STREAMING)
        return; /* the client has nothing more to say; only its EOF matters */
    if (c->state == C_DRAINING) {
        c->dropped += (size_t)nread;
        if (c->dropped > LINGER_BYTES)
            conn_close(c);
        return;
    }
    if (c->state != C_IDLE && c->state != C_READING)
        return;
    process(c, buf->base, (size_t)nread);
}

static void on_timer(uv_timer_t *t)
{
    struct cr_httpd_conn *c = t->data;

    switch (c->state) {
    case C_IDLE:
        conn_close(c);
        break;
    case C_READING:
        refuse(c, 408, "request not received within read_timeout_ms");
        break;
    case C_WRITING:
        cr_warn("http %s: answer not taken within %ld ms; connection closed", c->peer,
                c->srv->o.read_timeout_ms);
        conn_close(c);
        break;
    case C_STREAMING:
        cr_warn("http %s: stream not taken within %ld ms; connection closed", c->peer,
                c->srv->o.read_timeout_ms);
        conn_close(c);
        break;
    case C_DRAINING:
    case C_HANDLING:
    case C_CLOSING:
        conn_close(c);
        break;
    }
}

static void peer_name(struct cr_httpd_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[48] = "?";
    int port = 0;

    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;

            uv_ip4_name(a, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;

            uv_ip6_name(a, host, sizeof(host));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
}

static void on_reject_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *ls, int status)
{
    struct cr_httpd *s = ls->data;
    struct cr_httpd_conn *c;
    int rejecting;

    if (status < 0) {
        cr_warn("http: accept failed: %s", uv_strerror(status));
        return;
    }
    rejecting = s->nconns >= (size_t)s->o.max_connections;
    c = (rejecting && s->nrejecting >= EXTRA_REJECTING) ? NULL : calloc(1, sizeof(*c));
    if (c == NULL) {
        /* Over every cap (or out of memory): accept and close at once. */
        uv_tcp_t *t = malloc(sizeof(*t));

        if (t == NULL)
            return;
        uv_tcp_init(s->loop, t);
        if (uv_accept(ls, (uv_stream_t *)t) == 0)
            cr_warn("http: connection refused: %zu open, the most allowed", s->nconns);
        uv_close((uv_handle_t *)t, on_reject_closed);
        return;
    }
    c->srv = s;
    c->tcp.data = c->timer.data = c;
    cr_buf_init(&c->out, RESPONSE_MAX);
    cr_buf_init(&c->more, STREAM_BACKLOG_MAX);
    cr_httpd_parser_init(&c->parser, &s->o.lim);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->handles = 2;
    c->rejecting = rejecting;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    if (rejecting)
        s->nrejecting++;
    else
        s->nconns++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    peer_name(c);
    if (rejecting) {
        refuse(c, 503, "over http.max_connections");
        return;
    }
    c->state = C_IDLE;
    arm(c, s->o.idle_timeout_ms);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

int cr_httpd_respond(struct cr_httpd_req *req, int status, const char *content_type,
                     const char *extra, const void *body, size_t len)
{
    struct cr_httpd_conn *c = req->conn;
    int rc;

    if (c == NULL) {
        cr_httpd_req_free(req);
        return CR_ECLOSED;
    }
    c->pending = NULL;
    c->close_after = !req->keep_alive || c->srv->closing;
    rc = build_response(&c->out, status, content_type, extra, body, len, !c->close_after,
                        strcmp(req->method, "HEAD") == 0);
    cr_httpd_req_free(req);
    if (rc < 0) {
        cr_error("http %s: answer of %zu bytes could not be built: %s; connection closed",
                 c->peer, len, cr_strerror(rc));
        conn_close(c);
        return rc;
    }
    send_out(c);
    return 0;
}

/* ---- long-lived answers ---- */

/* Writes what is queued when no write is under way; closes once an ended
 * stream has written everything. */
static void stream_flush(struct cr_httpd_conn *c)
{
    struct cr_buf t;
    uv_buf_t b;

    if (c->writing || c->state != C_STREAMING)
        return;
    if (c->more.len == 0) {
        if (c->ending)
            conn_close(c);
        return;
    }
    t = c->out; /* out is empty: swap, so that more takes the next bytes */
    c->out = c->more;
    c->more = t;
    c->out.max = RESPONSE_MAX;
    c->more.max = STREAM_BACKLOG_MAX;
    b = uv_buf_init(c->out.data, (unsigned)c->out.len);
    c->writing = 1;
    arm(c, c->srv->o.read_timeout_ms);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        conn_close(c);
}

struct cr_httpd_conn *cr_httpd_stream_start(struct cr_httpd_req *req, const char *content_type,
                                            const char *extra, cr_httpd_gone_cb gone, void *ud)
{
    struct cr_httpd_conn *c = req->conn;
    int rc;

    if (c == NULL) {
        cr_httpd_req_free(req);
        return NULL;
    }
    c->pending = NULL;
    cr_httpd_req_free(req);
    if (c->srv->closing) {
        conn_close(c);
        return NULL;
    }
    rc = cr_buf_appendf(&c->more, "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                                  "Cache-Control: no-store\r\nContent-Type: %s\r\n%s\r\n",
                        content_type, extra != NULL ? extra : "");
    if (rc < 0) {
        conn_close(c);
        return NULL;
    }
    c->state = C_STREAMING;
    c->close_after = 1;
    c->rlen = 0; /* pipelined requests after a stream are not answered */
    c->gone = gone;
    c->gone_ud = ud;
    uv_timer_stop(&c->timer);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        c->gone = NULL;
        conn_close(c);
        return NULL;
    }
    stream_flush(c);
    return c;
}

int cr_httpd_stream_write(struct cr_httpd_conn *c, const void *data, size_t len)
{
    if (c == NULL || c->state != C_STREAMING || c->ending)
        return CR_ECLOSED;
    if (cr_buf_append(&c->more, data, len) < 0) {
        cr_warn("http %s: stream client over %d bytes behind; connection closed", c->peer,
                STREAM_BACKLOG_MAX);
        conn_close(c);
        return CR_ETOOBIG;
    }
    stream_flush(c);
    return 0;
}

void cr_httpd_stream_end(struct cr_httpd_conn *c)
{
    if (c == NULL || c->state != C_STREAMING)
        return;
    c->gone = NULL;
    c->ending = 1;
    stream_flush(c);
}

int cr_httpd_listen_parse(const char *listen, struct sockaddr_storage *ss)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    size_t hlen;
    char *end = NULL;
    long port;

    if (colon == NULL || colon == listen)
        return CR_EINVAL;
    hlen = (size_t)(colon - listen);
    if (listen[0] == '[' && hlen >= 2 && listen[hlen - 1] == ']') {
        listen++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host))
        return CR_EINVAL;
    memcpy(host, listen, hlen);
    host[hlen] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 || port > 65535)
        return CR_EINVAL;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return CR_EINVAL;
}

int cr_httpd_init(uv_loop_t *loop, const struct cr_httpd_opts *opts, struct cr_httpd **out)
{
    struct sockaddr_storage ss;
    struct cr_httpd *s = NULL;
    int len = sizeof(ss);
    int e;
    int rc = CR_EINVAL;

    memset(&ss, 0, sizeof(ss));
    if (opts->listen == NULL || opts->handler == NULL || cr_httpd_listen_parse(opts->listen, &ss) < 0) {
        cr_error("http: listen address '%s' is not an IP address and port",
                 opts->listen ? opts->listen : "(none)");
        goto out;
    }
    rc = CR_ENOMEM;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto out;
    s->loop = loop;
    s->o = *opts;
    s->o.listen = NULL;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listener_open = 1;
    e = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (e != 0) {
        cr_error("http: cannot listen on %s: %s", opts->listen, uv_strerror(e));
        rc = CR_EIO;
        goto out;
    }
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (s != NULL) {
        s->closing = 1;
        cr_httpd_close(s, NULL, NULL);
    }
    return rc;
}

int cr_httpd_port(const struct cr_httpd *s)
{
    return s->port;
}

void *cr_httpd_ud(const struct cr_httpd *s)
{
    return s->o.ud;
}

size_t cr_httpd_connections(const struct cr_httpd *s)
{
    return s->nconns;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct cr_httpd *s = h->data;

    s->listener_open = 0;
    maybe_free_server(s);
}

void cr_httpd_close(struct cr_httpd *s, void (*done)(void *ud), void *ud)
{
    struct cr_httpd_conn *c, *next;

    if (s == NULL) {
        if (done != NULL)
            done(ud);
        return;
    }
    s->closing = 1;
    s->done = done;
    s->done_ud = ud;
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        conn_close(c);
    }
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
