/* crier's HTTP/1.1 client (see h1.h): one request at a time per connection,
 * connections kept per origin and reused, TLS over memory BIOs, answers read
 * by http-parser. Every event handler records what ended a request on its
 * connection and settles it last, so a callback that submits again (or closes
 * the client) never runs inside the parser or the TLS engine. */
#include "h1.h"

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"

#define RBUF_SIZE (16 * 1024)
#define HEAD_MAX (64 * 1024)       /* request line and headers */
#define HDRS_MAX (16 * 1024)       /* response header lines kept */
/* TLS output beyond the request's own bytes (handshakes, record overhead). */
#define TLS_OUT_MAX (4 * 1024 * 1024)
#define TLS_OUT_KEEP (64 * 1024)   /* TLS output memory kept between writes */
#define DEFAULT_MAX_RESPONSE (1024 * 1024)
#define DEFAULT_CONNECT_MS 300000L /* libcurl's, for providers that set none */
#define DNS_TTL_MS 60000           /* a resolved address is reused this long */
#define KEEPALIVE_S 30             /* TCP keepalive probes after this idle time */
#define IDLE_MAX_MS 118000         /* an idle connection older than this is not reused:
                                      a NAT or a load balancer may have dropped it */
#define ADDRS_MAX 8                /* addresses of a name kept, tried in turn */
#define HOSTPORT_MAX 300
#define DETAIL_MAX 320
#define RETRY_AFTER_MAX 64
#define AGENT "crier/0.1"

/* Where requests go: one scheme, host, port and CA file. Owned by the client,
 * freed with it; holds the idle connections to it. */
struct origin {
    struct origin *next;
    char *prefix;      /* the URL up to the path, as first seen ("https://h:443") */
    char *host;        /* without IPv6 brackets */
    char *ca_file;     /* NULL = the system's CAs */
    char port[8];
    int tls;
    int is_ip;
    char hostport[HOSTPORT_MAX]; /* for Host: and messages */
    SSL_CTX *ctx;      /* TLS: made on first use */
    struct conn *idle; /* most recently used first */
    struct sockaddr_storage addrs[ADDRS_MAX]; /* in the resolver's order */
    int naddrs;          /* 0 = not resolved yet */
    int addr_first;      /* tried first: the one that last took a connection */
    uint64_t addr_until; /* loop ms */
};

/* One request, from submit to its callback. Owned by the client; on the
 * connection carrying it. */
struct req {
    struct origin *o;
    cr_http_done_cb cb;
    void *ud;
    uint64_t start_ns;
    uint64_t deadline; /* loop ms; 0 = none */
    long connect_ms;
    struct cr_buf head;
    struct cr_buf body;
    int has_body;
    int got_bytes; /* some of an answer arrived */
    int retried;   /* sent again once after a reused connection failed it */
    int toobig;
    long status;
    struct cr_buf rbody;
    struct cr_buf hdrs;
    size_t line_start;
    int hdr_state; /* last header callback: 0 none, 1 name, 2 value */
    char retry_after[RETRY_AFTER_MAX];
    int has_retry_after;
};

enum conn_state { C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_BUSY, C_IDLE, C_CLOSING };

/* One connection. Owned by the client (on its list) until its last handle
 * closed; on its origin's idle stack while idle. */
struct conn {
    struct cr_h1 *c;
    struct origin *o;
    struct conn *prev, *next;  /* the client's list */
    struct conn *next_idle;
    enum conn_state st;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t wr;
    uv_getaddrinfo_t gai;
    int open_handles;
    int resolving;
    int writing;
    int used;      /* carried a request to its end before */
    uint64_t idle_since; /* loop ms it last went idle */
    int first;     /* the origin address its request's connects began with */
    int tried;     /* addresses tried before this connection's */
    int ai;        /* the origin address it connects to */
    struct req *req;
    http_parser parser;
    int msg_done;
    int keep;      /* the answer allows reuse */
    /* What ended the request on it, settled after the event handler. */
    int fin;
    int fin_err;
    char detail[DETAIL_MAX];
    SSL *ssl;
    BIO *rbio, *wbio;
    int tls_up;
    struct cr_buf wout;   /* TLS bytes being written */
    struct cr_buf wpend;  /* TLS bytes waiting for the write under way */
    char rbuf[RBUF_SIZE];
};

struct cr_h1 {
    uv_loop_t *loop;
    struct origin *origins;
    struct origin *last; /* the origin of the last request: most requests go there again */
    struct conn *conns;
    size_t inflight;
    size_t nidle;
    size_t max_idle;
    int closing;
    void (*closed_cb)(void *ud);
    void *closed_ud;
};

static http_parser_settings parser_settings;

static void conn_close(struct conn *k);
static void settle(struct conn *k);
static int conn_start(struct cr_h1 *c, struct origin *o, struct req *q,
                      const struct conn *prev);
static int next_address(struct conn *k);
static void send_request(struct conn *k);

/* ---- requests ---- */

static void req_free(struct req *q)
{
    cr_buf_release(&q->head);
    cr_buf_release(&q->body);
    cr_buf_release(&q->rbody);
    cr_buf_release(&q->hdrs);
    free(q);
}

/* Hands the outcome to the callback and frees q. */
static void deliver(struct cr_h1 *c, struct req *q, int err, const char *detail)
{
    struct cr_response resp;
    long latency_us = (long)((uv_hrtime() - q->start_ns) / 1000);

    c->inflight--;
    if (err == 0) {
        resp.status = q->status;
        resp.body = q->rbody.data ? q->rbody.data : "";
        resp.body_len = q->rbody.len;
        resp.retry_after = q->has_retry_after ? q->retry_after : NULL;
        resp.headers = q->hdrs.data ? q->hdrs.data : "";
        q->cb(q->ud, 0, &resp, "", latency_us);
    } else {
        q->cb(q->ud, err, NULL, detail, latency_us);
    }
    req_free(q);
}

static void fail(struct conn *k, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records that the request on k ended with err; settle() delivers it. */
static void fail(struct conn *k, int err, const char *fmt, ...)
{
    va_list ap;

    if (k->fin)
        return;
    k->fin = 1;
    k->fin_err = err;
    va_start(ap, fmt);
    vsnprintf(k->detail, sizeof(k->detail), fmt, ap);
    va_end(ap);
}

/* ---- answers (http-parser callbacks; parser.data is the connection) ---- */

/* Ends the header line being read: checked for Retry-After, then "\r\n". */
static void end_header_line(struct req *q)
{
    if (q->hdr_state != 2)
        return;
    if (q->hdrs.len >= q->line_start)
        if (cr_http_retry_after(q->hdrs.data + q->line_start, q->hdrs.len - q->line_start,
                                q->retry_after, sizeof(q->retry_after)))
            q->has_retry_after = 1;
    (void)cr_buf_append(&q->hdrs, "\r\n", 2);
    q->hdr_state = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct req *q = ((struct conn *)p->data)->req;

    if (q->hdr_state != 1) {
        end_header_line(q);
        q->line_start = q->hdrs.len;
    }
    /* Over the cap the remaining lines are dropped, not the answer. */
    (void)cr_buf_append(&q->hdrs, at, len);
    q->hdr_state = 1;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct req *q = ((struct conn *)p->data)->req;

    if (q->hdr_state == 1)
        (void)cr_buf_append(&q->hdrs, ": ", 2);
    (void)cr_buf_append(&q->hdrs, at, len);
    q->hdr_state = 2;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct req *q = ((struct conn *)p->data)->req;

    end_header_line(q);
    q->status = (long)p->status_code;
    /* Refuses an announced length over the cap before reading it. */
    if (p->status_code >= 200 && p->content_length != (uint64_t)-1 &&
        p->content_length > (uint64_t)q->rbody.max) {
        q->toobig = 1;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct req *q = ((struct conn *)p->data)->req;

    if (cr_buf_append(&q->rbody, at, len) < 0) {
        q->toobig = 1;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *k = p->data;
    struct req *q = k->req;

    if (p->status_code >= 100 && p->status_code < 200) {
        /* An interim answer: only the final one counts. */
        cr_buf_reset(&q->hdrs);
        cr_buf_reset(&q->rbody);
        q->hdr_state = 0;
        q->has_retry_after = 0;
        return 0;
    }
    k->msg_done = 1;
    k->keep = http_should_keep_alive(p);
    http_parser_pause(p, 1);
    return 0;
}

/* Feeds n answer bytes (plaintext) to the parser. */
static void feed(struct conn *k, const char *p, size_t n)
{
    size_t used;
    enum http_errno e;

    if (k->fin)
        return;
    if (k->req == NULL) {
        /* Bytes nobody asked for: the connection is out of step. */
        conn_close(k);
        return;
    }
    k->req->got_bytes = 1;
    used = http_parser_execute(&k->parser, &parser_settings, p, n);
    if (k->msg_done) {
        if (used < n)
            k->keep = 0; /* more than one answer: not reused */
        k->fin = 1;
        k->fin_err = 0;
        return;
    }
    e = HTTP_PARSER_ERRNO(&k->parser);
    if (k->req->toobig)
        fail(k, CR_ETOOBIG, "response body over %zu bytes", k->req->rbody.max);
    else if (e != HPE_OK)
        fail(k, CR_EHTTP, "bad answer from %s: %s", k->o->hostport, http_errno_description(e));
}

/* The server closed the connection (or ended TLS). */
static void on_eof(struct conn *k)
{
    if (k->req == NULL || k->fin) {
        conn_close(k);
        return;
    }
    if (k->req->got_bytes && !k->msg_done) {
        /* An answer read to the end of the connection ends now. */
        (void)http_parser_execute(&k->parser, &parser_settings, NULL, 0);
        if (k->msg_done) {
            k->keep = 0;
            k->fin = 1;
            k->fin_err = 0;
            return;
        }
    }
    fail(k, CR_ECLOSED, "connection to %s closed by the server %s", k->o->hostport,
         k->req->got_bytes ? "in the middle of the answer" : "before any answer");
}

/* ---- TLS ---- */

/* "SSL certificate problem: ..." when the server's certificate was refused,
 * else OpenSSL's first error. Clears OpenSSL's error queue. */
static void tls_fail(struct conn *k, const char *op)
{
    long v = SSL_get_verify_result(k->ssl);
    unsigned long e = ERR_get_error();
    char es[200];

    if (v != X509_V_OK) {
        fail(k, CR_EHTTP, "SSL certificate problem: %s (%s)", X509_verify_cert_error_string(v),
             k->o->hostport);
    } else if (e != 0) {
        ERR_error_string_n(e, es, sizeof(es));
        fail(k, CR_EHTTP, "TLS %s with %s failed: %s", op, k->o->hostport, es);
    } else {
        fail(k, CR_ECLOSED, "TLS %s with %s failed: connection cut", op, k->o->hostport);
    }
    ERR_clear_error();
}

static void on_write(uv_write_t *w, int status);

/* Writes what TLS produced: one write at a time, the rest waits in wpend. */
static void tls_pump(struct conn *k)
{
    char tmp[RBUF_SIZE];
    int n;
    uv_buf_t b;
    int rc;

    while ((n = BIO_read(k->wbio, tmp, sizeof(tmp))) > 0) {
        if (cr_buf_append(&k->wpend, tmp, (size_t)n) < 0) {
            fail(k, CR_ENOMEM, "TLS output to %s over %zu bytes", k->o->hostport, k->wpend.max);
            return;
        }
    }
    if (k->writing || k->wpend.len == 0 || k->st == C_CLOSING)
        return;
    {
        struct cr_buf t = k->wout;

        k->wout = k->wpend;
        k->wpend = t;
        cr_buf_reset(&k->wpend);
    }
    b = uv_buf_init(k->wout.data, (unsigned int)k->wout.len);
    rc = uv_write(&k->wr, (uv_stream_t *)&k->tcp, &b, 1, on_write);
    if (rc < 0) {
        fail(k, CR_ECLOSED, "writing to %s failed: %s", k->o->hostport, uv_strerror(rc));
        return;
    }
    k->writing = 1;
}

static void tls_handshake(struct conn *k)
{
    int rc;
    int err;

    ERR_clear_error();
    rc = SSL_do_handshake(k->ssl);
    if (rc == 1) {
        k->tls_up = 1;
        tls_pump(k);
        if (!k->fin)
            send_request(k);
        return;
    }
    err = SSL_get_error(k->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        tls_pump(k);
    else
        tls_fail(k, "handshake");
}

static void tls_read(struct conn *k, size_t n)
{
    if (BIO_write(k->rbio, k->rbuf, (int)n) != (int)n) {
        fail(k, CR_ENOMEM, "reading from %s: out of memory", k->o->hostport);
        return;
    }
    if (!k->tls_up) {
        tls_handshake(k);
        if (!k->tls_up || k->fin)
            return;
    }
    while (!k->fin && k->st != C_CLOSING) {
        int r;
        int err;

        ERR_clear_error();
        /* rbuf's ciphertext is in rbio by now: it takes the plaintext */
        r = SSL_read(k->ssl, k->rbuf, sizeof(k->rbuf));
        if (r > 0) {
            feed(k, k->rbuf, (size_t)r);
            continue;
        }
        err = SSL_get_error(k->ssl, r);
        if (err == SSL_ERROR_ZERO_RETURN)
            on_eof(k);
        else if (err != SSL_ERROR_WANT_READ)
            tls_fail(k, "read");
        break;
    }
    /* TLS bytes after the answer (a second answer, an alert) would be read
     * as the answer to the connection's next request: as feed() does for
     * plain TCP, the connection is not reused. */
    if (k->msg_done && k->keep && (SSL_pending(k->ssl) > 0 || BIO_ctrl_pending(k->rbio) > 0))
        k->keep = 0;
    if (!k->fin && k->st != C_CLOSING)
        tls_pump(k);
}

/* The client context for o: verification always on, o's CA file or the
 * system's. */
static int tls_context(struct origin *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: cannot make a context");
        return CR_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((o->ca_file ? SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        snprintf(err, errlen, "TLS: cannot load CA certificates from %s",
                 o->ca_file ? o->ca_file : "the system store");
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return CR_EHTTP;
    }
    o->ctx = ctx;
    return 0;
}

static int tls_start(struct conn *k)
{
    struct origin *o = k->o;

    k->ssl = SSL_new(o->ctx);
    k->rbio = BIO_new(BIO_s_mem());
    k->wbio = BIO_new(BIO_s_mem());
    if (k->ssl == NULL || k->rbio == NULL || k->wbio == NULL) {
        BIO_free(k->rbio);
        BIO_free(k->wbio);
        k->rbio = k->wbio = NULL;
        fail(k, CR_ENOMEM, "TLS to %s: out of memory", o->hostport);
        return -1;
    }
    SSL_set_bio(k->ssl, k->rbio, k->wbio);
    if (o->is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), o->host) != 1)
            goto bad;
    } else if (SSL_set_tlsext_host_name(k->ssl, o->host) != 1 ||
               SSL_set1_host(k->ssl, o->host) != 1) {
        goto bad;
    }
    SSL_set_connect_state(k->ssl);
    k->st = C_HANDSHAKE;
    tls_handshake(k);
    return 0;
bad:
    tls_fail(k, "setup");
    return -1;
}

/* ---- connections ---- */

/* Frees k once its handles are closed and no name lookup is under way; the
 * client too when it is closing and k was its last connection. */
static void conn_maybe_free(struct conn *k)
{
    struct cr_h1 *c = k->c;

    if (k->open_handles > 0 || k->resolving)
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    if (k->ssl)
        SSL_free(k->ssl); /* frees the BIOs too */
    cr_buf_release(&k->wout);
    cr_buf_release(&k->wpend);
    free(k);
    if (c->closing && c->conns == NULL) {
        void (*closed)(void *ud) = c->closed_cb;
        void *ud = c->closed_ud;

        free(c);
        if (closed)
            closed(ud);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *k = h->data;

    k->open_handles--;
    conn_maybe_free(k);
}

static void unlink_idle(struct conn *k)
{
    struct conn **pp;

    for (pp = &k->o->idle; *pp; pp = &(*pp)->next_idle) {
        if (*pp == k) {
            *pp = k->next_idle;
            k->c->nidle--;
            break;
        }
    }
    k->next_idle = NULL;
}

/* Closes k; it is freed after its handles closed. A request still on it
 * stays on it for settle(). */
static void conn_close(struct conn *k)
{
    if (k->st == C_CLOSING)
        return;
    if (k->st == C_IDLE)
        unlink_idle(k);
    k->st = C_CLOSING;
    if (k->resolving)
        (void)uv_cancel((uv_req_t *)&k->gai);
    uv_close((uv_handle_t *)&k->timer, on_handle_closed);
    uv_close((uv_handle_t *)&k->tcp, on_handle_closed);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *k = t->data;
    struct req *q = k->req;

    if (q == NULL)
        return;
    if (k->st == C_RESOLVING || k->st == C_CONNECTING || k->st == C_HANDSHAKE)
        fail(k, CR_ETIMEOUT, "connect to %s timed out after %ld ms", k->o->hostport,
             (long)((uv_hrtime() - q->start_ns) / 1000000));
    else
        fail(k, CR_ETIMEOUT, "no answer from %s: timed out after %ld ms", k->o->hostport,
             (long)((uv_hrtime() - q->start_ns) / 1000000));
    settle(k);
}

/* Arms k's timer for the request's next deadline: the connect timeout while
 * connecting, then the request's total timeout. */
static void arm(struct conn *k)
{
    struct req *q = k->req;
    uint64_t now = uv_now(k->c->loop);
    uint64_t due = q->deadline;

    if (k->st == C_RESOLVING || k->st == C_CONNECTING || k->st == C_HANDSHAKE) {
        uint64_t cdue = now + (uint64_t)(q->connect_ms > 0 ? q->connect_ms : DEFAULT_CONNECT_MS);

        if (due == 0 || cdue < due)
            due = cdue;
    }
    if (due == 0) {
        uv_timer_stop(&k->timer);
        return;
    }
    uv_timer_start(&k->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_write(uv_write_t *w, int status)
{
    struct conn *k = w->data;

    k->writing = 0;
    if (k->st == C_CLOSING)
        return;
    /* A large request's copy is not kept for the life of the connection. */
    if (k->wout.cap > TLS_OUT_KEEP)
        cr_buf_release(&k->wout);
    else
        cr_buf_reset(&k->wout);
    if (status < 0) {
        if (k->req == NULL) {
            conn_close(k);
            return;
        }
        fail(k, CR_ECLOSED, "writing to %s failed: %s", k->o->hostport, uv_strerror(status));
        settle(k);
        return;
    }
    if (k->ssl && k->wpend.len > 0) {
        tls_pump(k);
        if (k->fin)
            settle(k);
    }
}

/* Sends the request on k, connected (and TLS up). */
static void send_request(struct conn *k)
{
    struct req *q = k->req;
    int rc;

    k->st = C_BUSY;
    http_parser_init(&k->parser, HTTP_RESPONSE);
    k->parser.data = k;
    k->msg_done = 0;
    k->keep = 0;
    arm(k);
    if (k->ssl) {
        /* The whole request goes through the TLS output, whatever its size
         * (a SendGrid body may be 16 MiB), plus the records' overhead. */
        k->wout.max = k->wpend.max = TLS_OUT_MAX + q->head.len + q->body.len;
        ERR_clear_error();
        if (SSL_write(k->ssl, q->head.data, (int)q->head.len) <= 0 ||
            (q->body.len > 0 && SSL_write(k->ssl, q->body.data, (int)q->body.len) <= 0)) {
            tls_fail(k, "write");
            return;
        }
        tls_pump(k);
        return;
    }
    {
        uv_buf_t b[2];
        unsigned int nb = 1;

        b[0] = uv_buf_init(q->head.data, (unsigned int)q->head.len);
        if (q->body.len > 0)
            b[nb++] = uv_buf_init(q->body.data, (unsigned int)q->body.len);
        rc = uv_write(&k->wr, (uv_stream_t *)&k->tcp, b, nb, on_write);
    }
    if (rc < 0) {
        fail(k, CR_ECLOSED, "writing to %s failed: %s", k->o->hostport, uv_strerror(rc));
        return;
    }
    k->writing = 1;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct conn *k = h->data;

    (void)hint;
    *b = uv_buf_init(k->rbuf, sizeof(k->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *k = s->data;

    (void)b;
    if (k->st == C_CLOSING || n == 0)
        return;
    if (n < 0) {
        if (n == UV_EOF)
            on_eof(k);
        else if (k->req)
            fail(k, CR_ECLOSED, "reading from %s failed: %s", k->o->hostport,
                 uv_strerror((int)n));
        else
            conn_close(k);
    } else if (k->ssl) {
        tls_read(k, (size_t)n);
    } else {
        feed(k, k->rbuf, (size_t)n);
    }
    if (k->fin)
        settle(k);
}

static void on_connect(uv_connect_t *cr, int status)
{
    struct conn *k = cr->data;
    int rc;

    if (k->st == C_CLOSING)
        return;
    if (status < 0) {
        if (next_address(k))
            return;
        fail(k, CR_ECLOSED, "connect to %s failed: %s", k->o->hostport, uv_strerror(status));
        settle(k);
        return;
    }
    k->o->addr_first = k->ai;
    rc = uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read);
    if (rc < 0)
        fail(k, CR_ECLOSED, "reading from %s failed: %s", k->o->hostport, uv_strerror(rc));
    else if (k->o->tls)
        (void)tls_start(k);
    else
        send_request(k);
    if (k->fin)
        settle(k);
}

static void do_connect(struct conn *k)
{
    struct origin *o = k->o;
    int rc;

    k->st = C_CONNECTING;
    k->ai = (k->first + k->tried) % o->naddrs;
    rc = uv_tcp_connect(&k->connect, &k->tcp, (const struct sockaddr *)&o->addrs[k->ai],
                        on_connect);
    if (rc < 0) {
        if (next_address(k))
            return;
        /* Delivered from the timer, never from inside submit. */
        fail(k, CR_ECLOSED, "connect to %s failed: %s", k->o->hostport, uv_strerror(rc));
        uv_timer_start(&k->timer, on_timer, 0, 0);
    }
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct conn *k = g->data;
    struct origin *o = k->o;
    const struct addrinfo *ai;
    int n = 0;

    k->resolving = 0;
    if (k->st == C_CLOSING) {
        uv_freeaddrinfo(res);
        conn_maybe_free(k);
        return;
    }
    for (ai = status < 0 ? NULL : res; ai && n < ADDRS_MAX; ai = ai->ai_next) {
        if (ai->ai_addrlen <= sizeof(o->addrs[0]))
            memcpy(&o->addrs[n++], ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    if (n == 0) {
        fail(k, CR_EHTTP, "could not resolve host %s: %s", o->host,
             status < 0 ? uv_strerror(status) : "no address");
        settle(k);
        return;
    }
    o->naddrs = n;
    o->addr_first = 0;
    o->addr_until = uv_now(k->c->loop) + DNS_TTL_MS;
    k->first = 0;
    do_connect(k);
}

/* k's connect failed: its request moves to a new connection to the origin's
 * next address, as a name may resolve to several (localhost to ::1 and
 * 127.0.0.1) and a server listen on only one. Returns 1 when moved (k is
 * closing), 0 when every address was tried (k keeps the request). */
static int next_address(struct conn *k)
{
    struct req *q = k->req;

    if (q == NULL || k->c->closing || k->tried + 1 >= k->o->naddrs)
        return 0;
    k->req = NULL;
    if (conn_start(k->c, k->o, q, k) < 0) {
        k->req = q;
        return 0;
    }
    conn_close(k);
    return 1;
}

/* A new connection to o carrying q; prev, when not NULL, is the connection
 * whose connect to the address before failed. Returns 0, or a negative code
 * with q untouched. */
static int conn_start(struct cr_h1 *c, struct origin *o, struct req *q,
                      const struct conn *prev)
{
    struct conn *k = calloc(1, sizeof(*k));
    struct addrinfo hints;
    int rc;

    if (k == NULL)
        return CR_ENOMEM;
    rc = uv_tcp_init(c->loop, &k->tcp);
    if (rc < 0) {
        free(k);
        return CR_EHTTP;
    }
    uv_timer_init(c->loop, &k->timer);
    k->c = c;
    k->o = o;
    k->tcp.data = k;
    k->timer.data = k;
    k->connect.data = k;
    k->wr.data = k;
    k->gai.data = k;
    k->open_handles = 2;
    cr_buf_init(&k->wout, TLS_OUT_MAX);
    cr_buf_init(&k->wpend, TLS_OUT_MAX);
    (void)uv_tcp_nodelay(&k->tcp, 1);
    (void)uv_tcp_keepalive(&k->tcp, 1, KEEPALIVE_S);
    k->next = c->conns;
    if (c->conns)
        c->conns->prev = k;
    c->conns = k;
    k->req = q;
    k->first = prev ? prev->first : o->addr_first;
    k->tried = prev ? prev->tried + 1 : 0;
    if (prev || (o->naddrs > 0 && (o->is_ip || uv_now(c->loop) < o->addr_until))) {
        k->st = C_CONNECTING;
        arm(k);
        do_connect(k);
        return 0;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    k->st = C_RESOLVING;
    arm(k);
    rc = uv_getaddrinfo(c->loop, &k->gai, on_resolved, o->host, o->port, &hints);
    if (rc < 0) {
        /* Delivered from the timer, never from inside submit. */
        fail(k, CR_EHTTP, "could not resolve host %s: %s", o->host, uv_strerror(rc));
        uv_timer_start(&k->timer, on_timer, 0, 0);
    } else {
        k->resolving = 1;
    }
    return 0;
}

/* Puts the request on an idle connection to its origin, else a new one. */
static int place(struct cr_h1 *c, struct req *q)
{
    struct origin *o = q->o;
    struct conn *k = o->idle;
    uint64_t now = uv_now(c->loop);

    /* The stack is most recent first: from the first one idle too long on,
     * every connection below it is older still. */
    if (k && now - k->idle_since > IDLE_MAX_MS) {
        while (o->idle)
            conn_close(o->idle);
        k = NULL;
    }
    if (k == NULL)
        return conn_start(c, o, q, NULL);
    o->idle = k->next_idle;
    k->next_idle = NULL;
    c->nidle--;
    k->req = q;
    send_request(k);
    if (k->fin)
        uv_timer_start(&k->timer, on_timer, 0, 0); /* settled from the loop */
    return 0;
}

/* Ends the request on k as recorded (k->fin): k goes idle or closes, then the
 * request is sent again (once, when a reused connection failed it before any
 * answer) or its callback fires. */
static void settle(struct conn *k)
{
    struct cr_h1 *c = k->c;
    struct req *q = k->req;
    int err = k->fin_err;
    char detail[DETAIL_MAX];

    if (q == NULL || !k->fin)
        return;
    k->req = NULL;
    k->fin = 0;
    memcpy(detail, k->detail, sizeof(detail));
    uv_timer_stop(&k->timer);
    if (err == 0 && k->keep && !k->writing && k->st == C_BUSY && !c->closing &&
        (c->max_idle == 0 || c->nidle < c->max_idle)) {
        k->st = C_IDLE;
        k->idle_since = uv_now(c->loop);
        k->used = 1;
        k->next_idle = k->o->idle;
        k->o->idle = k;
        c->nidle++;
    } else {
        int retry = err == CR_ECLOSED && k->used && !q->got_bytes && !q->retried;

        conn_close(k);
        if (retry && !c->closing) {
            q->retried = 1;
            cr_buf_reset(&q->rbody);
            cr_buf_reset(&q->hdrs);
            q->hdr_state = 0;
            if (conn_start(c, q->o, q, NULL) == 0)
                return;
        }
    }
    deliver(c, q, err, detail);
}

/* ---- origins and request heads ---- */

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int same_ca(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Length of url's origin part when it starts with o's, else 0. */
static size_t origin_match(const struct origin *o, const char *url, const char *ca)
{
    size_t n = strlen(o->prefix);

    if (strncmp(url, o->prefix, n) != 0 || !same_ca(o->ca_file, ca))
        return 0;
    return url[n] == '/' || url[n] == '?' || url[n] == '\0' ? n : 0;
}

static void origin_free(struct origin *o)
{
    if (o->ctx)
        SSL_CTX_free(o->ctx);
    free(o->prefix);
    free(o->host);
    free(o->ca_file);
    free(o);
}

/* A new origin for url (already parsed into u). */
static int origin_new(struct cr_h1 *c, const char *url, const struct http_parser_url *u,
                      const char *ca, struct origin **out, char *err, size_t errlen)
{
    struct origin *o = calloc(1, sizeof(*o));
    size_t hlen = u->field_data[UF_HOST].len;
    const char *host = url + u->field_data[UF_HOST].off;
    size_t end;
    int rc = CR_ENOMEM;
    int port;
    int v6;

    if (o == NULL)
        return CR_ENOMEM;
    o->tls = u->field_data[UF_SCHEMA].len == 5;
    port = (u->field_set & (1 << UF_PORT)) ? u->port : (o->tls ? 443 : 80);
    end = u->field_data[UF_HOST].off + hlen;
    if (u->field_set & (1 << UF_PORT))
        end = u->field_data[UF_PORT].off + u->field_data[UF_PORT].len;
    else if (url[end] == ']')
        end++;
    o->prefix = dup_n(url, end);
    o->host = dup_n(host, hlen);
    o->ca_file = ca ? dup_n(ca, strlen(ca)) : NULL;
    if (o->prefix == NULL || o->host == NULL || (ca && o->ca_file == NULL))
        goto out;
    snprintf(o->port, sizeof(o->port), "%d", port);
    v6 = memchr(o->host, ':', hlen) != NULL;
    if (hlen + 9 >= sizeof(o->hostport)) {
        snprintf(err, errlen, "host name over %d bytes", HOSTPORT_MAX - 10);
        rc = CR_EINVAL;
        goto out;
    }
    if ((u->field_set & (1 << UF_PORT)) || v6)
        snprintf(o->hostport, sizeof(o->hostport), v6 ? "[%s]:%d" : "%s:%d", o->host, port);
    else
        snprintf(o->hostport, sizeof(o->hostport), "%s", o->host);
    if (v6 ? uv_ip6_addr(o->host, port, (struct sockaddr_in6 *)&o->addrs[0]) == 0
           : uv_ip4_addr(o->host, port, (struct sockaddr_in *)&o->addrs[0]) == 0) {
        o->is_ip = 1;
        o->naddrs = 1;
    } else if (v6) {
        snprintf(err, errlen, "bad IPv6 address '%s'", o->host);
        rc = CR_EINVAL;
        goto out;
    }
    if (o->tls) {
        rc = tls_context(o, err, errlen);
        if (rc < 0)
            goto out;
    }
    o->next = c->origins;
    c->origins = o;
    *out = o;
    o = NULL;
    rc = 0;
out:
    if (o)
        origin_free(o);
    return rc;
}

/* The origin of url and where its path starts. */
static int find_origin(struct cr_h1 *c, const char *url, const char *ca, struct origin **out,
                       const char **path, char *err, size_t errlen)
{
    struct http_parser_url u;
    struct origin *o;
    size_t n;
    int rc;

    if (c->last && (n = origin_match(c->last, url, ca)) > 0) {
        *out = c->last;
        *path = url + n;
        return 0;
    }
    for (o = c->origins; o; o = o->next) {
        if ((n = origin_match(o, url, ca)) > 0) {
            *out = c->last = o;
            *path = url + n;
            return 0;
        }
    }
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_HOST)) || !(u.field_set & (1 << UF_SCHEMA))) {
        snprintf(err, errlen, "not a URL");
        return CR_EINVAL;
    }
    rc = origin_new(c, url, &u, ca, &o, err, errlen);
    if (rc < 0)
        return rc;
    n = strlen(o->prefix);
    *out = c->last = o;
    *path = url + n;
    return 0;
}

static int header_given(const struct curl_slist *h, const char *name, size_t n)
{
    for (; h; h = h->next)
        if (strncasecmp(h->data, name, n) == 0)
            return 1;
    return 0;
}

/* The request line and headers: the adapter's header lines, Host, a
 * User-Agent, and the body's length; like libcurl, "Accept: * / *" and a form
 * content type when the adapter sets none. */
static int build_head(struct req *q, const struct cr_request *req, const char *path)
{
    struct cr_buf *b = &q->head;
    const struct curl_slist *h;
    size_t plen = strcspn(path, "#");
    size_t need = plen + strlen(q->o->hostport) + 256;
    int rc;

    for (h = req->headers; h; h = h->next)
        need += strlen(h->data) + 2;
    rc = cr_buf_reserve(b, need < b->max ? need : b->max);
    if (rc == 0)
        rc = cr_buf_appends(b, req->method);
    if (rc == 0)
        rc = cr_buf_append(b, " ", 1);
    if (rc == 0 && (plen == 0 || path[0] == '?'))
        rc = cr_buf_append(b, "/", 1);
    if (rc == 0)
        rc = cr_buf_append(b, path, plen);
    if (rc == 0)
        rc = cr_buf_appends(b, " HTTP/1.1\r\nHost: ");
    if (rc == 0)
        rc = cr_buf_appends(b, q->o->hostport);
    if (rc == 0)
        rc = cr_buf_appends(b, "\r\nUser-Agent: " AGENT "\r\n");
    if (rc == 0 && !header_given(req->headers, "Accept:", 7))
        rc = cr_buf_appends(b, "Accept: */*\r\n");
    for (h = req->headers; rc == 0 && h; h = h->next) {
        rc = cr_buf_appends(b, h->data);
        if (rc == 0)
            rc = cr_buf_append(b, "\r\n", 2);
    }
    if (rc == 0 && q->has_body) {
        char len[CR_NUM_MAX];

        if (!header_given(req->headers, "Content-Type:", 13))
            rc = cr_buf_appends(b, "Content-Type: application/x-www-form-urlencoded\r\n");
        if (rc == 0)
            rc = cr_buf_appends(b, "Content-Length: ");
        if (rc == 0)
            rc = cr_buf_appends(b, cr_fmt_i64(len, (int64_t)q->body.len));
        if (rc == 0)
            rc = cr_buf_append(b, "\r\n", 2);
    }
    if (rc == 0)
        rc = cr_buf_append(b, "\r\n", 2);
    return rc;
}

/* ---- the client ---- */

int cr_h1_init(uv_loop_t *loop, size_t max_idle, struct cr_h1 **out)
{
    struct cr_h1 *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        return CR_ENOMEM;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
    c->loop = loop;
    c->max_idle = max_idle;
    *out = c;
    return 0;
}

int cr_h1_accepts(const struct cr_request *req, const struct cr_http_target *t)
{
    const char *u = req->url.data;

    if (req->transport != CR_TRANSPORT_HTTP || t->http2 || req->userpwd || u == NULL)
        return 0;
    return strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0;
}

int cr_h1_submit(struct cr_h1 *c, struct cr_request *req, const struct cr_http_target *t,
                 cr_http_done_cb cb, void *ud)
{
    struct req *q = NULL;
    const char *path = NULL;
    char err[200];
    size_t max_response = t->max_response ? t->max_response : DEFAULT_MAX_RESPONSE;
    int rc = CR_EINVAL;

    if (c->closing) {
        rc = CR_ECANCELED;
        goto out;
    }
    if (cb == NULL || req->url.len == 0)
        goto out;
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    err[0] = '\0';
    rc = find_origin(c, req->url.data, t->ca_file, &q->o, &path, err, sizeof(err));
    if (rc < 0) {
        cr_warn("http: request to %s not sent: %s", req->url.data, err[0] ? err : cr_strerror(rc));
        goto out;
    }
    q->cb = cb;
    q->ud = ud;
    q->start_ns = uv_hrtime();
    q->connect_ms = t->connect_timeout_ms;
    q->deadline = t->timeout_ms > 0 ? uv_now(c->loop) + (uint64_t)t->timeout_ms : 0;
    q->has_body = strcmp(req->method, "GET") != 0;
    cr_buf_init(&q->head, HEAD_MAX);
    cr_buf_init(&q->rbody, max_response);
    cr_buf_init(&q->hdrs, HDRS_MAX);
    /* Take over the body; req is left empty. */
    q->body = req->body;
    cr_buf_init(&req->body, q->body.max);
    if (!q->has_body)
        cr_buf_reset(&q->body);
    rc = build_head(q, req, path);
    if (rc < 0) {
        cr_warn("http: request to %s not sent: its headers are over %d bytes", req->url.data,
                HEAD_MAX);
        goto out;
    }
    c->inflight++;
    rc = place(c, q);
    if (rc < 0) {
        c->inflight--;
        goto out;
    }
    q = NULL;
out:
    if (q)
        req_free(q);
    cr_request_release(req);
    return rc;
}

size_t cr_h1_inflight(const struct cr_h1 *c)
{
    return c->inflight;
}

void cr_h1_close(struct cr_h1 *c, void (*closed)(void *ud), void *ud)
{
    struct conn *k;

    if (c->closing)
        return;
    c->closing = 1;
    c->closed_cb = closed;
    c->closed_ud = ud;
    for (k = c->conns; k; k = k->next) {
        struct req *q = k->req;

        conn_close(k);
        if (q) {
            k->req = NULL;
            deliver(c, q, CR_ECANCELED, "request cancelled: http client closed");
        }
    }
    while (c->origins) {
        struct origin *o = c->origins;

        c->origins = o->next;
        origin_free(o);
    }
    c->last = NULL;
    if (c->conns == NULL) {
        free(c);
        if (closed)
            closed(ud);
    }
}
