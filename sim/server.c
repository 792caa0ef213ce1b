/* HTTP/1.1 server for crier-sim (see server.h), plain or over TLS. Each
 * connection parses one request at a time: http-parser is paused at the end of
 * every message, the request is answered (at once, after a delay timer, or as a
 * stream), and only then are pipelined bytes behind it parsed. */
#include "server.h"

#include <http_parser.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cr_error.h"
#include "cr_log.h"
#include "tls.h"

#define RBUF_SIZE (16 * 1024)
#define MAX_RESPONSE_BODY (8 * 1024 * 1024)
#define MAX_PENDING_WRITE (4 * 1024 * 1024) /* stop reading while more is unsent */
#define DRAIN_TIMEOUT_MS 5000
#define SWEEP_INTERVAL_MS 1000
#define KEEP_BUF_BYTES (64 * 1024)
#define TLS_PLAIN_MAX (64 * 1024)  /* decrypted bytes not yet in rbuf */
#define TLS_WIRE_MAX (16 * 1024 * 1024)

struct sim_server {
    struct sim *sim;
    uv_tcp_t listener;
    uv_timer_t sweep;
    struct sim_link *conns; /* open connections (struct conn), newest first */
    unsigned nconns;
    unsigned nalloc; /* connections not yet freed (closing ones included) */
    int port;
    int handles_open;
    int closing;
    SSL_CTX *tls_ctx;        /* borrowed; NULL: plain HTTP */
    const char *tag;         /* "sim" or "sim https", in log lines */
    uint64_t full_warned_ms; /* last "too many connections" warning */
    time_t date_sec;
    char date[40];
};

enum hstate { H_NONE, H_FIELD, H_VALUE };

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    struct sim_server *srv;
    struct sim_link link; /* in srv->conns while open */
    http_parser parser;
    char *rbuf;
    size_t rlen, roff;

    /* the request being parsed */
    struct cr_buf url, auth, ctype, body, hfield, hvalue;
    struct cr_buf hdrs;              /* every header line, for sim_request.headers */
    struct sim_pending *pending;     /* an answer a handler completes later */
    enum hstate hstate;
    size_t header_bytes;
    int expect_continue;
    int refuse_status; /* set by a callback that stops the parser */
    int keep_alive;

    struct sim_response res;
    struct cr_buf out;   /* response head (and small body) being sent */
    int busy;            /* an answer is delayed or streaming */
    int streaming;
    int closing;         /* uv_close called */
    int finishing;       /* last answer queued: shut down after it */
    int draining;        /* shut down; discarding input until EOF */
    int peer_eof;
    int reading;
    int handles_open;
    unsigned writes_pending;
    uint64_t last_active;

    /* over TLS: ciphertext is read into cbuf, decrypted into plain, then
     * moved into rbuf as room allows; answers are encrypted into wire */
    int tls_on;
    struct sim_tls tls;
    char *cbuf;
    struct cr_buf plain, wire;
};

/* A deferred answer (sim_res_defer): c is NULL once the connection closed. */
struct sim_pending {
    struct conn *c;
};

struct wreq {
    uv_write_t req;
    struct conn *c;
    size_t len;
    char data[];
};

static http_parser_settings parser_settings;
static char crlf[] = "\r\n";
static char empty[] = "";
static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
static char crlf_last[] = "\r\n0\r\n\r\n"; /* end of a chunk, then the last chunk */

static void conn_close(struct conn *c);
static void conn_process(struct conn *c);
static void conn_after_answer(struct conn *c);
static void stream_next(struct conn *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static const char *http_date(struct sim_server *srv)
{
    time_t now = time(NULL);

    if (now != srv->date_sec) {
        struct tm tm;

        srv->date_sec = now;
        gmtime_r(&now, &tm);
        if (strftime(srv->date, sizeof(srv->date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
            srv->date[0] = '\0';
    }
    return srv->date;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;

    (void)suggested;
    if (c->draining) {
        /* input after the last answer is discarded; reuse the whole buffer */
        c->rlen = c->roff = 0;
    }
    if (c->tls_on) {
        buf->base = c->cbuf;
        buf->len = RBUF_SIZE;
        return;
    }
    buf->base = c->rbuf + c->rlen;
    buf->len = RBUF_SIZE - c->rlen;
}

/* Moves decrypted bytes from c->plain into c->rbuf, as many as fit. */
static void tls_feed(struct conn *c)
{
    size_t n = c->plain.len;

    if (n > RBUF_SIZE - c->rlen)
        n = RBUF_SIZE - c->rlen;
    if (n == 0)
        return;
    memcpy(c->rbuf + c->rlen, c->plain.data, n);
    c->rlen += n;
    memmove(c->plain.data, c->plain.data + n, c->plain.len - n);
    c->plain.len -= n;
    c->plain.data[c->plain.len] = '\0';
}

static void conn_update_reading(struct conn *c)
{
    int want;
    size_t queued;

    if (c->closing)
        return;
    queued = c->tcp.write_queue_size;
    want = !c->peer_eof &&
           (c->draining || (!c->busy && !c->finishing && queued < MAX_PENDING_WRITE &&
                            c->rlen < RBUF_SIZE && c->plain.len < RBUF_SIZE));
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;

    (void)buf;
    if (nread == 0)
        return;
    c->last_active = uv_now(s->loop);
    if (nread < 0) {
        c->peer_eof = 1;
        c->reading = 0;
        uv_read_stop(s);
        /* answer what is complete; close once nothing is owed */
        if (nread != UV_EOF || c->draining || (!c->busy && c->writes_pending == 0))
            conn_close(c);
        return;
    }
    if (c->draining) {
        c->rlen = c->roff = 0;
        return;
    }
    if (c->tls_on) {
        int rc = sim_tls_input(&c->tls, c->srv->tag, buf->base, (size_t)nread, &c->plain,
                               &c->wire);

        if (sim_stream_flush(s, &c->wire) < 0 || rc < 0) {
            conn_close(c);
            return;
        }
    } else {
        c->rlen += (size_t)nread;
    }
    conn_process(c);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;

    free(w);
    c->writes_pending--;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->last_active = uv_now(c->tcp.loop);
    if (c->writes_pending == 0) {
        if (c->streaming)
            stream_next(c);
        else
            conn_after_answer(c);
    }
    if (!c->closing)
        conn_update_reading(c);
}

static int conn_writev_raw(struct conn *c, uv_buf_t *bufs, unsigned n, int try_first);

/* Sends the buffers (encrypted first over TLS), trying a direct write first
 * when allowed and nothing is queued; the rest is copied and queued. Returns 0
 * or a negative code. */
static int conn_writev(struct conn *c, uv_buf_t *bufs, unsigned n, int try_first)
{
    unsigned i;
    int rc;

    if (c->tls_on) {
        uv_buf_t sealed;

        cr_buf_reset(&c->wire);
        for (i = 0; i < n; i++) {
            if (sim_tls_output(&c->tls, bufs[i].base, bufs[i].len, &c->wire) < 0)
                return CR_EIO;
        }
        sealed = uv_buf_init(c->wire.data, (unsigned)c->wire.len);
        bufs = &sealed;
        n = 1;
        if (c->wire.len == 0)
            return 0;
        rc = conn_writev_raw(c, bufs, n, try_first);
        cr_buf_reset(&c->wire);
        return rc;
    }
    return conn_writev_raw(c, bufs, n, try_first);
}

/* conn_writev for bytes that go to the socket as they are. */
static int conn_writev_raw(struct conn *c, uv_buf_t *bufs, unsigned n, int try_first)
{
    size_t total = 0;
    size_t skip = 0;
    unsigned i;
    struct wreq *w;
    uv_buf_t b;
    int rc;

    for (i = 0; i < n; i++)
        total += bufs[i].len;
    if (try_first && c->writes_pending == 0) {
        rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (rc >= 0)
            skip = (size_t)rc;
        else if (rc != UV_EAGAIN && rc != UV_ENOSYS)
            return CR_ECLOSED;
    }
    if (skip == total && try_first)
        return 0;
    w = malloc(sizeof(*w) + (total - skip));
    if (w == NULL)
        return CR_ENOMEM;
    w->c = c;
    w->len = 0;
    for (i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        const char *p = bufs[i].base;

        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(w->data + w->len, p + skip, len - skip);
        w->len += len - skip;
        skip = 0;
    }
    b = uv_buf_init(w->data, (unsigned)w->len);
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(w);
        return CR_EIO;
    }
    c->writes_pending++;
    return 0;
}

/* Writes the status line and headers of c->res into c->out. body_len < 0
 * means chunked. */
static int put_head(struct conn *c, long long body_len)
{
    struct sim_response *r = &c->res;
    struct cr_buf *o = &c->out;
    int rc;

    cr_buf_reset(o);
    rc = cr_buf_appendf(o, "HTTP/1.1 %d %s\r\nServer: crier-sim\r\nDate: %s\r\n", r->status,
                        reason(r->status), http_date(c->srv));
    if (rc == 0 && r->ctype)
        rc = cr_buf_appendf(o, "Content-Type: %s\r\n", r->ctype);
    if (rc == 0 && body_len >= 0)
        rc = cr_buf_appendf(o, "Content-Length: %lld\r\n", body_len);
    if (rc == 0 && body_len < 0)
        rc = cr_buf_appends(o, "Transfer-Encoding: chunked\r\n");
    if (rc == 0 && r->headers.len)
        rc = cr_buf_append(o, r->headers.data, r->headers.len);
    if (rc == 0 && !c->keep_alive)
        rc = cr_buf_appends(o, "Connection: close\r\n");
    else if (rc == 0 && c->parser.http_major == 1 && c->parser.http_minor == 0)
        rc = cr_buf_appends(o, "Connection: keep-alive\r\n");
    if (rc == 0)
        rc = cr_buf_append(o, "\r\n", 2);
    return rc;
}

/* ---- answering ---- */

static void response_reset(struct sim_response *r)
{
    r->status = 500;
    r->ctype = NULL;
    cr_buf_reset(&r->headers);
    cr_buf_reset(&r->body);
    r->delay_ms = 0;
    if (r->fill_free)
        r->fill_free(r->fill_state);
    r->fill = NULL;
    r->fill_free = NULL;
    r->fill_state = NULL;
}

/* Called when everything of the current answer has been handed to the socket
 * (and, for queued writes, written). */
static void conn_after_answer(struct conn *c)
{
    if (c->closing || c->busy)
        return;
    if (c->finishing) {
        if (c->writes_pending > 0 || c->draining)
            return;
        if (c->peer_eof) {
            conn_close(c);
            return;
        }
        /* half-close and wait for the peer's EOF, so that it reads our answer
         * instead of getting a reset for input we never read */
        c->draining = 1;
        c->last_active = uv_now(c->tcp.loop);
        if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, NULL) < 0)
            conn_close(c);
        else
            conn_update_reading(c);
        return;
    }
    if (c->peer_eof && c->writes_pending == 0 && c->roff >= c->rlen)
        conn_close(c);
}

static void conn_fail_stream(struct conn *c, int err)
{
    cr_warn("sim stream to client: %s, connection closed", cr_strerror(err));
    conn_close(c);
}

static void stream_finish(struct conn *c)
{
    c->streaming = 0;
    c->busy = 0;
    response_reset(&c->res);
    if (!c->keep_alive)
        c->finishing = 1;
    if (c->writes_pending == 0)
        conn_after_answer(c);
    if (!c->closing) {
        conn_process(c);
        conn_update_reading(c);
    }
}

/* Produces and queues the next chunk of a streamed body. */
static void stream_next(struct conn *c)
{
    struct sim_response *r = &c->res;
    char size[24];
    uv_buf_t bufs[3];
    int done;
    int rc;
    int n;

    cr_buf_reset(&r->body);
    done = r->fill(r->fill_state, &r->body);
    if (done < 0) {
        conn_fail_stream(c, done);
        return;
    }
    if (r->body.len == 0 && !done) {
        conn_fail_stream(c, CR_EINVAL); /* would end the chunked body early */
        return;
    }
    if (r->body.len > 0) {
        n = snprintf(size, sizeof(size), "%zx\r\n", r->body.len);
        bufs[0] = uv_buf_init(size, (unsigned)n);
        bufs[1] = uv_buf_init(r->body.data, (unsigned)r->body.len);
        bufs[2] = done ? uv_buf_init(crlf_last, sizeof(crlf_last) - 1)
                       : uv_buf_init(crlf, sizeof(crlf) - 1);
        rc = conn_writev(c, bufs, 3, 0);
    } else {
        bufs[0] = uv_buf_init(crlf_last + 2, sizeof(crlf_last) - 3);
        rc = conn_writev(c, bufs, 1, 0);
    }
    if (rc < 0) {
        conn_fail_stream(c, rc);
        return;
    }
    if (done)
        stream_finish(c);
}

static void conn_send(struct conn *c)
{
    struct sim_response *r = &c->res;
    uv_buf_t bufs[2];
    int done = 1;
    int rc;

    if (r->fill) {
        cr_buf_reset(&r->body);
        done = r->fill(r->fill_state, &r->body);
        if (done < 0) {
            r->status = 500;
            r->ctype = SIM_JSON;
            cr_buf_reset(&r->body);
            cr_buf_appends(&r->body, "{\"error\":\"could not produce the answer\"}");
            done = 1;
        }
    }
    rc = put_head(c, done ? (long long)r->body.len : -1);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    bufs[0] = uv_buf_init(c->out.data, (unsigned)c->out.len);
    if (done) {
        bufs[1] = uv_buf_init(r->body.data, (unsigned)r->body.len);
        rc = conn_writev(c, bufs, r->body.len ? 2 : 1, 1);
        if (rc < 0) {
            conn_close(c);
            return;
        }
        c->busy = 0;
        response_reset(r);
        if (!c->keep_alive)
            c->finishing = 1;
        if (c->writes_pending == 0)
            conn_after_answer(c);
        return;
    }
    /* longer than one chunk: send it chunked, one chunk per completed write */
    c->streaming = 1;
    c->busy = 1;
    {
        char size[24];
        int n = snprintf(size, sizeof(size), "%zx\r\n", r->body.len);
        uv_buf_t all[4];

        all[0] = bufs[0];
        all[1] = uv_buf_init(size, (unsigned)n);
        all[2] = uv_buf_init(r->body.data, (unsigned)r->body.len);
        all[3] = uv_buf_init(crlf, sizeof(crlf) - 1);
        rc = conn_writev(c, all, 4, 0);
    }
    if (rc < 0)
        conn_fail_stream(c, rc);
}

struct sim_pending *sim_res_defer(struct sim_response *res)
{
    struct conn *c = (struct conn *)(void *)((char *)res - offsetof(struct conn, res));
    struct sim_pending *p;

    if (c->pending != NULL)
        return NULL;
    p = malloc(sizeof(*p));
    if (p == NULL)
        return NULL;
    p->c = c;
    c->pending = p;
    return p;
}

struct sim_response *sim_pending_response(struct sim_pending *p)
{
    return p->c != NULL ? &p->c->res : NULL;
}

void sim_pending_finish(struct sim_pending *p)
{
    struct conn *c = p->c;

    free(p);
    if (c == NULL)
        return;
    c->pending = NULL;
    conn_send(c);
    if (c->closing)
        return;
    conn_process(c);
    conn_update_reading(c);
}

static void on_delay(uv_timer_t *t)
{
    struct conn *c = t->data;

    conn_send(c);
    if (c->closing)
        return;
    conn_process(c);
    conn_update_reading(c);
}

/* Answers a request the server refuses itself (bad syntax, limits) and ends
 * the connection after it. */
static void conn_refuse(struct conn *c, int status)
{
    const char *msg;

    switch (status) {
    case 413: msg = "{\"error\":\"request body larger than 1 MiB\"}"; break;
    case 431: msg = "{\"error\":\"request headers larger than 16 KiB\"}"; break;
    default: msg = "{\"error\":\"malformed HTTP request\"}"; break;
    }
    if (status == 413 || status == 431) {
        sim_route_refused(c->srv->sim, http_method_str((enum http_method)c->parser.method),
                          cr_buf_cstr(&c->url), status);
    }
    response_reset(&c->res);
    sim_res_literal(&c->res, status, msg);
    c->keep_alive = 0;
    c->rlen = c->roff = 0;
    conn_send(c);
}

static void conn_dispatch(struct conn *c)
{
    struct sim_request req;
    char *url;
    char *q;

    url = c->url.data ? c->url.data : empty;
    q = strchr(url, '?');
    if (q != NULL)
        *q++ = '\0';
    req.method = (int)c->parser.method;
    req.method_name = http_method_str((enum http_method)c->parser.method);
    req.path = url;
    req.query = q ? q : "";
    req.auth = cr_buf_cstr(&c->auth);
    req.ctype = cr_buf_cstr(&c->ctype);
    req.headers = cr_buf_cstr(&c->hdrs);
    req.body = cr_buf_cstr(&c->body);
    req.body_len = c->body.len;
    response_reset(&c->res);
    sim_route_handle(c->srv->sim, &req, &c->res);
    if (c->pending != NULL) {
        c->busy = 1; /* answered by sim_pending_finish */
        return;
    }
    if (c->res.delay_ms > 0) {
        c->busy = 1;
        uv_timer_start(&c->timer, on_delay, c->res.delay_ms, 0);
        return;
    }
    conn_send(c);
}

static void conn_process(struct conn *c)
{
again:
    if (c->tls_on)
        tls_feed(c);
    while (!c->busy && !c->closing && !c->finishing && c->roff < c->rlen) {
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->roff,
                                       c->rlen - c->roff);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

        c->roff += n;
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            conn_dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            conn_refuse(c, c->refuse_status ? c->refuse_status : 400);
            break;
        }
        if (c->parser.upgrade) {
            /* no protocol switch here: treat what follows as garbage */
            conn_refuse(c, 400);
            break;
        }
    }
    if (c->closing)
        return;
    if (c->roff > 0) {
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
    }
    if (c->tls_on && c->plain.len > 0 && c->rlen < RBUF_SIZE && !c->busy && !c->finishing)
        goto again;
    if (c->peer_eof && !c->busy && c->writes_pending == 0)
        conn_close(c);
    else
        conn_update_reading(c);
}

/* ---- http-parser callbacks ---- */

static int header_budget(struct conn *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > SIM_MAX_HEADER_BYTES) {
        c->refuse_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;

    cr_buf_reset(&c->url);
    cr_buf_reset(&c->auth);
    cr_buf_reset(&c->ctype);
    cr_buf_reset(&c->hdrs);
    /* an idle connection keeps no large buffer from an earlier request */
    if (c->body.cap > KEEP_BUF_BYTES)
        cr_buf_release(&c->body);
    if (c->res.body.cap > KEEP_BUF_BYTES)
        cr_buf_release(&c->res.body);
    cr_buf_reset(&c->body);
    cr_buf_reset(&c->hfield);
    cr_buf_reset(&c->hvalue);
    c->hstate = H_NONE;
    c->header_bytes = 0;
    c->expect_continue = 0;
    c->refuse_status = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (header_budget(c, len) < 0)
        return -1;
    return cr_buf_append(&c->url, at, len) < 0 ? -1 : 0;
}

static void header_commit(struct conn *c)
{
    const char *name = cr_buf_cstr(&c->hfield);
    struct cr_buf *dst = NULL;

    if (cr_buf_appendf(&c->hdrs, "%s: %s\r\n", name, cr_buf_cstr(&c->hvalue)) < 0)
        cr_buf_reset(&c->hdrs); /* cannot happen within the header budget */

    if (strcasecmp(name, "authorization") == 0)
        dst = &c->auth;
    else if (strcasecmp(name, "content-type") == 0)
        dst = &c->ctype;
    else if (strcasecmp(name, "expect") == 0 &&
             strcasecmp(cr_buf_cstr(&c->hvalue), "100-continue") == 0)
        c->expect_continue = 1;
    if (dst != NULL) {
        cr_buf_reset(dst);
        if (cr_buf_append(dst, c->hvalue.data ? c->hvalue.data : "", c->hvalue.len) < 0)
            cr_buf_reset(dst);
    }
    cr_buf_reset(&c->hfield);
    cr_buf_reset(&c->hvalue);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    /* a new header line also costs its ": " and CRLF */
    if (header_budget(c, c->hstate == H_FIELD ? len : len + 4) < 0)
        return -1;
    if (c->hstate == H_VALUE)
        header_commit(c);
    c->hstate = H_FIELD;
    return cr_buf_append(&c->hfield, at, len) < 0 ? -1 : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (header_budget(c, len) < 0)
        return -1;
    c->hstate = H_VALUE;
    return cr_buf_append(&c->hvalue, at, len) < 0 ? -1 : 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;

    if (c->hstate == H_VALUE)
        header_commit(c);
    c->hstate = H_NONE;
    if (!(p->flags & F_CHUNKED) && p->content_length != ULLONG_MAX &&
        p->content_length > SIM_MAX_BODY_BYTES) {
        c->refuse_status = 413;
        return -1;
    }
    if (c->expect_continue) {
        uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);

        if (conn_writev(c, &b, 1, 1) < 0)
            return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (len > SIM_MAX_BODY_BYTES - c->body.len) {
        c->refuse_status = 413;
        return -1;
    }
    return cr_buf_append(&c->body, at, len) < 0 ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;

    c->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);
    return 0;
}

/* ---- connection lifetime ---- */

static void conn_free(struct conn *c)
{
    cr_buf_release(&c->url);
    cr_buf_release(&c->auth);
    cr_buf_release(&c->ctype);
    cr_buf_release(&c->hdrs);
    cr_buf_release(&c->body);
    cr_buf_release(&c->hfield);
    cr_buf_release(&c->hvalue);
    response_reset(&c->res);
    cr_buf_release(&c->res.headers);
    cr_buf_release(&c->res.body);
    cr_buf_release(&c->out);
    if (c->tls_on)
        sim_tls_release(&c->tls);
    cr_buf_release(&c->plain);
    cr_buf_release(&c->wire);
    free(c->cbuf);
    free(c->rbuf);
    free(c);
}

static void server_maybe_free(struct sim_server *srv)
{
    if (srv->closing && srv->handles_open == 0 && srv->nalloc == 0)
        free(srv);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct sim_server *srv = c->srv;

    if (--c->handles_open > 0)
        return;
    conn_free(c);
    srv->nalloc--;
    server_maybe_free(srv);
}

static void conn_close(struct conn *c)
{
    struct sim_server *srv = c->srv;

    if (c->closing)
        return;
    c->closing = 1;
    sim_link_remove(&srv->conns, &c->link);
    srv->nconns--;
    if (c->pending != NULL) {
        c->pending->c = NULL; /* its owner finishes it later and frees it */
        c->pending = NULL;
    }
    if (c->res.fill_free) {
        c->res.fill_free(c->res.fill_state);
        c->res.fill_free = NULL;
        c->res.fill = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_reject_closed(uv_handle_t *h)
{
    free(h);
}

int sim_reject_connection(uv_stream_t *server, const char *msg, size_t n)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    int rc;

    if (t == NULL)
        return CR_ENOMEM;
    uv_tcp_init(server->loop, t);
    rc = uv_accept(server, (uv_stream_t *)t) == 0 ? 0 : CR_EIO;
    if (rc == 0 && msg != NULL) {
        uv_buf_t b = uv_buf_init((char *)msg, (unsigned)n);

        uv_try_write((uv_stream_t *)t, &b, 1);
    }
    uv_close((uv_handle_t *)t, on_reject_closed);
    return rc;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct sim_server *srv = server->data;
    struct conn *c;

    if (status < 0) {
        cr_warn("sim accept: %s, connection dropped", uv_strerror(status));
        return;
    }
    if (srv->nconns >= SIM_MAX_CONNECTIONS) {
        if (sim_reject_connection(server, NULL, 0) == 0 &&
            uv_now(server->loop) - srv->full_warned_ms >= 1000) {
            srv->full_warned_ms = uv_now(server->loop);
            cr_warn("sim accept: %d connections open, new connections closed",
                    SIM_MAX_CONNECTIONS);
        }
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->rbuf = malloc(RBUF_SIZE);
    if (srv->tls_ctx != NULL)
        c->cbuf = malloc(RBUF_SIZE);
    if (c->rbuf == NULL || (srv->tls_ctx != NULL &&
                            (c->cbuf == NULL || sim_tls_init(&c->tls, srv->tls_ctx) < 0))) {
        free(c->cbuf);
        free(c->rbuf);
        free(c);
        return;
    }
    c->tls_on = srv->tls_ctx != NULL;
    cr_buf_init(&c->plain, TLS_PLAIN_MAX);
    cr_buf_init(&c->wire, TLS_WIRE_MAX);
    c->srv = srv;
    cr_buf_init(&c->url, SIM_MAX_HEADER_BYTES);
    cr_buf_init(&c->auth, SIM_MAX_HEADER_BYTES);
    cr_buf_init(&c->ctype, SIM_MAX_HEADER_BYTES);
    cr_buf_init(&c->hdrs, 2 * SIM_MAX_HEADER_BYTES);
    cr_buf_init(&c->hfield, SIM_MAX_HEADER_BYTES);
    cr_buf_init(&c->hvalue, SIM_MAX_HEADER_BYTES);
    cr_buf_init(&c->body, SIM_MAX_BODY_BYTES);
    cr_buf_init(&c->res.headers, 4096);
    cr_buf_init(&c->res.body, MAX_RESPONSE_BODY);
    cr_buf_init(&c->out, 64 * 1024);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->keep_alive = 1;
    sim_link_add(&srv->conns, &c->link, c);
    srv->nconns++;
    srv->nalloc++;
    c->last_active = uv_now(server->loop);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_update_reading(c);
}

/* Closes connections that sat idle too long, or did not finish draining. */
static void on_sweep(uv_timer_t *t)
{
    struct sim_server *srv = t->data;
    uint64_t now = uv_now(t->loop);
    struct sim_link *k = srv->conns;

    while (k != NULL) {
        struct sim_link *next = k->next;
        struct conn *c = k->conn;

        if (c->draining && now - c->last_active > DRAIN_TIMEOUT_MS)
            conn_close(c);
        else if (!c->busy && c->writes_pending == 0 &&
                 now - c->last_active > SIM_IDLE_TIMEOUT_MS)
            conn_close(c);
        k = next;
    }
}

static void on_server_handle_closed(uv_handle_t *h)
{
    struct sim_server *srv = h->data;

    srv->handles_open--;
    server_maybe_free(srv);
}

void sim_link_add(struct sim_link **head, struct sim_link *k, void *conn)
{
    k->conn = conn;
    k->prev = NULL;
    k->next = *head;
    if (*head != NULL)
        (*head)->prev = k;
    *head = k;
}

void sim_link_remove(struct sim_link **head, struct sim_link *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        *head = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
}

int sim_addr_parse(const char *host, int port, struct sockaddr_storage *addr)
{
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr) != 0)
        return CR_EINVAL;
    return 0;
}

int sim_listen(uv_tcp_t *listener, const struct sockaddr_storage *addr,
               uv_connection_cb on_connection, const char *tag, const char *host, int port,
               int *bound)
{
    struct sockaddr_storage name;
    int namelen = sizeof(name);
    int rc;

    rc = uv_tcp_bind(listener, (const struct sockaddr *)addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)listener, 1024, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(listener, (struct sockaddr *)&name, &namelen);
    if (rc < 0) {
        cr_error("%s listen on %s:%d: %s, not started", tag, host, port, uv_strerror(rc));
        return CR_EIO;
    }
    *bound = ntohs(name.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&name)->sin6_port
                                              : ((struct sockaddr_in *)&name)->sin_port);
    return 0;
}

int sim_server_start(struct sim *sim, const char *host, int port, struct sim_server **out)
{
    return sim_server_start_tls(sim, NULL, host, port, out);
}

int sim_server_start_tls(struct sim *sim, SSL_CTX *ctx, const char *host, int port,
                         struct sim_server **out)
{
    struct sim_server *srv;
    struct sockaddr_storage addr;

    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;

    if (sim_addr_parse(host, port, &addr) < 0)
        return CR_EINVAL;
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return CR_ENOMEM;
    srv->sim = sim;
    srv->tls_ctx = ctx;
    srv->tag = ctx != NULL ? "sim https" : "sim";
    uv_tcp_init(sim->loop, &srv->listener);
    uv_timer_init(sim->loop, &srv->sweep);
    srv->listener.data = srv;
    srv->sweep.data = srv;
    srv->handles_open = 2;
    if (sim_listen(&srv->listener, &addr, on_connection, srv->tag, host, port, &srv->port) < 0) {
        srv->closing = 1;
        uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
        uv_close((uv_handle_t *)&srv->sweep, on_server_handle_closed);
        return CR_EIO;
    }
    uv_timer_start(&srv->sweep, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    uv_unref((uv_handle_t *)&srv->sweep);
    *out = srv;
    return 0;
}

int sim_server_port(const struct sim_server *srv)
{
    return srv->port;
}

unsigned sim_server_connections(const struct sim_server *srv)
{
    return srv->nconns;
}

void sim_server_close(struct sim_server *srv)
{
    srv->closing = 1;
    while (srv->conns != NULL)
        conn_close(srv->conns->conn);
    uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
    uv_close((uv_handle_t *)&srv->sweep, on_server_handle_closed);
}
