/* cr_http against a small HTTP/1.1 server running on the same loop over real
 * loopback sockets: answers, connection reuse, refused, timeout, oversized
 * answers, close with requests in flight, and no callback from inside submit. */
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cr_error.h"
#include "http.h"
#include "test.h"

/* ---- the test server ---- */

enum srv_mode {
    SRV_OK,          /* 200 with a small body and a Retry-After header */
    SRV_SILENT,      /* reads requests, never answers */
    SRV_BIG,         /* 200 with an 8 KiB body announced by Content-Length */
    SRV_BIG_CHUNKED, /* 200 with an 8 KiB chunked body */
    SRV_CLOSE        /* 200, then closes the connection */
};

#define BIG_LEN 8192

struct srv_conn {
    uv_tcp_t tcp;
    http_parser parser;
    struct srv *srv;
    struct srv_conn *prev, *next;
    int closing;
    char rbuf[4096];
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    enum srv_mode mode;
    int port;
    int accepted;
    int requests;
    int open;          /* handles not yet through their close callback */
    struct srv_conn *conns;
};

static const char close_response[] = "HTTP/1.1 200 OK\r\n"
                                     "Connection: close\r\n"
                                     "Content-Length: 11\r\n"
                                     "\r\n"
                                     "{\"ok\":true}";

static const char ok_response[] = "HTTP/1.1 200 OK\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Retry-After:  7 \r\n"
                                  "X-Test: yes\r\n"
                                  "Content-Length: 11\r\n"
                                  "\r\n"
                                  "{\"ok\":true}";

static char big_response[BIG_LEN + 128];
static size_t big_response_len;
static char chunked_response[BIG_LEN + 128];
static size_t chunked_response_len;

static void build_big_responses(void)
{
    int n;

    n = snprintf(big_response, sizeof(big_response),
                 "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_LEN);
    memset(big_response + n, 'x', BIG_LEN);
    big_response_len = (size_t)n + BIG_LEN;
    n = snprintf(chunked_response, sizeof(chunked_response),
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", BIG_LEN);
    memset(chunked_response + n, 'y', BIG_LEN);
    memcpy(chunked_response + n + BIG_LEN, "\r\n0\r\n\r\n", 7);
    chunked_response_len = (size_t)n + BIG_LEN + 7;
}

static void srv_conn_closed(uv_handle_t *h)
{
    struct srv_conn *c = h->data;

    c->srv->open--;
    free(c);
}

static void srv_conn_close(struct srv_conn *c)
{
    struct srv *s = c->srv;

    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, srv_conn_closed);
}

static void srv_write_done(uv_write_t *w, int status)
{
    struct srv_conn *c = w->data;

    (void)status;
    if (c->srv->mode == SRV_CLOSE)
        srv_conn_close(c);
    free(w);
}

static int srv_on_message(http_parser *p)
{
    struct srv_conn *c = p->data;
    struct srv *s = c->srv;
    uv_write_t *w;
    uv_buf_t buf;

    s->requests++;
    switch (s->mode) {
    case SRV_OK:
        buf = uv_buf_init((char *)ok_response, sizeof(ok_response) - 1);
        break;
    case SRV_CLOSE:
        buf = uv_buf_init((char *)close_response, sizeof(close_response) - 1);
        break;
    case SRV_BIG:
        buf = uv_buf_init(big_response, (unsigned)big_response_len);
        break;
    case SRV_BIG_CHUNKED:
        buf = uv_buf_init(chunked_response, (unsigned)chunked_response_len);
        break;
    case SRV_SILENT:
    default:
        return 0;
    }
    w = malloc(sizeof(*w));
    if (w == NULL)
        return 0;
    w->data = c;
    if (uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, srv_write_done) < 0)
        free(w);
    return 0;
}

static const http_parser_settings srv_settings = {.on_message_complete = srv_on_message};

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct srv_conn *c = h->data;

    (void)hint;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void srv_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct srv_conn *c = st->data;
    size_t done;

    if (n < 0) {
        srv_conn_close(c);
        return;
    }
    done = http_parser_execute(&c->parser, &srv_settings, buf->base, (size_t)n);
    if (done != (size_t)n || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK)
        srv_conn_close(c);
}

static void srv_accept(uv_stream_t *l, int status)
{
    struct srv *s = l->data;
    struct srv_conn *c;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    c->tcp.data = c;
    s->open++;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        srv_conn_close(c);
        return;
    }
    s->accepted++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read);
}

static int bound_port(uv_tcp_t *t)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Binds 127.0.0.1 on a free port; listens unless listen_too is 0 (then
 * connects to the port are refused while it stays reserved). */
static int srv_start(struct srv *s, uv_loop_t *loop, enum srv_mode mode, int listen_too)
{
    struct sockaddr_in addr;

    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->mode = mode;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->open = 1;
    if (uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0) < 0)
        return -1;
    if (listen_too && uv_listen((uv_stream_t *)&s->listener, 256, srv_accept) < 0)
        return -1;
    s->port = bound_port(&s->listener);
    return s->port > 0 ? 0 : -1;
}

static void srv_listener_closed(uv_handle_t *h)
{
    struct srv *s = h->data;

    s->open--;
}

static void srv_stop(struct srv *s)
{
    while (s->conns)
        srv_conn_close(s->conns);
    uv_close((uv_handle_t *)&s->listener, srv_listener_closed);
}

/* ---- the client side ---- */

struct ctx;

struct call {
    struct ctx *ctx;
    int calls;
    int err;
    long status;
    long latency_us;
    char body[64];
    char retry_after[64];
    int has_retry_after;
    char headers[512];
    char detail[256];
};

struct ctx {
    uv_loop_t loop;
    uv_timer_t guard;
    int guard_fired;
    struct srv srv;
    struct cr_http *http;
    struct cr_http_target target;
    char url[64];
    int done;
    int in_submit;
    int cb_in_submit;
    int closed;
    /* load test */
    int to_submit;
    int ok;
    int failed;
    struct call one;
};

static void guard_fired(uv_timer_t *t)
{
    struct ctx *c = t->data;

    c->guard_fired = 1;
}

static int ctx_start(struct ctx *c, enum srv_mode mode, int listen_too)
{
    memset(c, 0, sizeof(*c));
    build_big_responses();
    if (uv_loop_init(&c->loop) < 0)
        return -1;
    uv_timer_init(&c->loop, &c->guard);
    c->guard.data = c;
    if (srv_start(&c->srv, &c->loop, mode, listen_too) < 0)
        return -1;
    snprintf(c->url, sizeof(c->url), "http://127.0.0.1:%d/send", c->srv.port);
    c->target.connect_timeout_ms = 2000;
    c->target.timeout_ms = 5000;
    c->target.max_response = 4096;
    if (cr_http_init(&c->loop, NULL, &c->http) < 0)
        return -1;
    return 0;
}

/* Runs the loop until *flag reaches want or 10 s pass; returns nonzero on success. */
static int run_until(struct ctx *c, const int *flag, int want)
{
    c->guard_fired = 0;
    uv_timer_start(&c->guard, guard_fired, 10000, 0);
    while (*flag < want && !c->guard_fired)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_timer_stop(&c->guard);
    return *flag >= want;
}

static void on_closed(void *ud)
{
    struct ctx *c = ud;

    c->closed++;
}

/* Closes client and server and the loop; returns 0 when nothing was left open. */
static int ctx_finish(struct ctx *c)
{
    if (c->http)
        cr_http_close(c->http, on_closed, c);
    c->http = NULL;
    srv_stop(&c->srv);
    uv_close((uv_handle_t *)&c->guard, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    if (c->closed != 1 || c->srv.open != 0)
        return -1;
    return uv_loop_close(&c->loop) == 0 ? 0 : -1;
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static void on_one(void *ud, int err, const struct cr_response *resp, const char *detail,
                   long latency_us)
{
    struct call *k = ud;

    if (k->ctx->in_submit)
        k->ctx->cb_in_submit++;
    k->calls++;
    k->err = err;
    k->latency_us = latency_us;
    copy_str(k->detail, sizeof(k->detail), detail);
    if (resp) {
        k->status = resp->status;
        copy_str(k->body, sizeof(k->body), resp->body);
        copy_str(k->headers, sizeof(k->headers), resp->headers);
        k->has_retry_after = resp->retry_after != NULL;
        copy_str(k->retry_after, sizeof(k->retry_after), resp->retry_after);
    }
    k->ctx->done++;
}

static int submit_to(struct ctx *c, const char *url, const char *body, cr_http_done_cb cb,
                     void *ud)
{
    struct cr_request req;
    int rc;

    cr_request_init(&req, 1024);
    if (cr_buf_appends(&req.url, url) < 0 || cr_buf_appends(&req.body, body) < 0) {
        cr_request_release(&req);
        return CR_ENOMEM;
    }
    req.headers = curl_slist_append(NULL, "Content-Type: application/json");
    req.headers = curl_slist_append(req.headers, "X-Crier-Test: 1");
    c->in_submit = 1;
    rc = cr_http_submit(c->http, &req, &c->target, cb, ud);
    c->in_submit = 0;
    /* Ownership moved in every case: req is empty now. */
    if (req.headers != NULL || req.url.data != NULL || req.body.data != NULL)
        return -999;
    return rc;
}

TEST(http_answer_with_body_headers_and_retry_after)
{
    struct ctx c;

    ASSERT_INT_EQ(ctx_start(&c, SRV_OK, 1), 0);
    c.one.ctx = &c;
    ASSERT_INT_EQ(submit_to(&c, c.url, "{\"to\":\"+447700900123\"}", on_one, &c.one), 0);
    ASSERT_INT_EQ(c.one.calls, 0);
    ASSERT_INT_EQ(cr_http_inflight(c.http), 1);
    ASSERT(run_until(&c, &c.done, 1));
    ASSERT_INT_EQ(c.one.calls, 1);
    ASSERT_INT_EQ(c.one.err, 0);
    ASSERT_INT_EQ(c.one.status, 200);
    ASSERT_STR_EQ(c.one.body, "{\"ok\":true}");
    ASSERT(c.one.has_retry_after);
    ASSERT_STR_EQ(c.one.retry_after, "7");
    ASSERT_STR_CONTAINS(c.one.headers, "X-Test: yes\r\n");
    ASSERT_STR_CONTAINS(c.one.headers, "Content-Type: application/json\r\n");
    ASSERT(strstr(c.one.headers, "HTTP/1.1") == NULL);
    ASSERT(c.one.latency_us > 0);
    ASSERT_INT_EQ(cr_http_inflight(c.http), 0);
    ASSERT_INT_EQ(c.srv.requests, 1);
    ASSERT_INT_EQ(c.cb_in_submit, 0);
    ASSERT_INT_EQ(ctx_finish(&c), 0);
}

static void on_load(void *ud, int err, const struct cr_response *resp, const char *detail,
                    long latency_us)
{
    struct ctx *c = ud;

    (void)detail;
    (void)latency_us;
    if (c->in_submit)
        c->cb_in_submit++;
    if (err == 0 && resp && resp->status == 200 && strcmp(resp->body, "{\"ok\":true}") == 0)
        c->ok++;
    else
        c->failed++;
    c->done++;
    /* Submitting from inside a callback is the dispatcher's normal pattern. */
    if (c->to_submit > 0) {
        c->to_submit--;
        if (submit_to(c, c->url, "{\"n\":1}", on_load, c) != 0)
            c->failed++;
    }
}

TEST(http_thousand_requests_reuse_connections)
{
    struct ctx c;
    int i;

    ASSERT_INT_EQ(ctx_start(&c, SRV_OK, 1), 0);
    c.to_submit = 1000 - 64;
    for (i = 0; i < 64; i++)
        ASSERT_INT_EQ(submit_to(&c, c.url, "{\"n\":1}", on_load, &c), 0);
    ASSERT_INT_EQ(cr_http_inflight(c.http), 64);
    ASSERT(run_until(&c, &c.done, 1000));
    ASSERT_INT_EQ(c.ok, 1000);
    ASSERT_INT_EQ(c.failed, 0);
    ASSERT_INT_EQ(c.srv.requests, 1000);
    ASSERT_INT_EQ(c.cb_in_submit, 0);
    /* Keep-alive: one connection per concurrent request at most. */
    ASSERT(c.srv.accepted >= 1);
    ASSERT(c.srv.accepted <= 64);
    ASSERT_INT_EQ(cr_http_inflight(c.http), 0);
    ASSERT_INT_EQ(ctx_finish(&c), 0);
}

TEST(http_refused_is_closed)
{
    struct ctx c;

    /* Bound but not listening: connects are refused, the port stays ours. */
    ASSERT_INT_EQ(ctx_start(&c, SRV_OK, 0), 0);
    c.one.ctx = &c;
    ASSERT_INT_EQ(submit_to(&c, c.url, "{}", on_one, &c.one), 0);
    ASSERT_INT_EQ(c.one.calls, 0);
    ASSERT(run_until(&c, &c.done, 1));
    ASSERT_INT_EQ(c.one.calls, 1);
    ASSERT_INT_EQ(c.one.err, CR_ECLOSED);
    ASSERT(c.one.detail[0] != '\0');
    ASSERT_INT_EQ(c.cb_in_submit, 0);
    ASSERT_INT_EQ(ctx_finish(&c), 0);
}

TEST(http_silent_server_times_out)
{
    struct ctx c;

    ASSERT_INT_EQ(ctx_start(&c, SRV_SILENT, 1), 0);
    c.target.timeout_ms = 300;
    c.one.ctx = &c;
    ASSERT_INT_EQ(submit_to(&c, c.url, "{}", on_one, &c.one), 0);
    ASSERT(run_until(&c, &c.done, 1));
    ASSERT_INT_EQ(c.one.calls, 1);
    ASSERT_INT_EQ(c.one.err, CR_ETIMEOUT);
    ASSERT(c.one.latency_us >= 250 * 1000);
    ASSERT(c.one.latency_us < 3000 * 1000);
    ASSERT_STR_CONTAINS(c.one.detail, "timed out");
    ASSERT_INT_EQ(c.srv.requests, 1);
    ASSERT_INT_EQ(ctx_finish(&c), 0);
}

TEST(http_oversized_answer_is_toobig_and_client_recovers)
{
    struct ctx c;
    struct call k2, k3;

    ASSERT_INT_EQ(ctx_start(&c, SRV_BIG, 1), 0);
    c.target.max_response = 1024;
    c.one.ctx = &c;
    ASSERT_INT_EQ(submit_to(&c, c.url, "{}", on_one, &c.one), 0);
    ASSERT(run_until(&c, &c.done, 1));
    ASSERT_INT_EQ(c.one.err, CR_ETOOBIG);
    ASSERT_STR_CONTAINS(c.one.detail, "1024");

    /* Without Content-Length the write callback has to stop it. */
    c.srv.mode = SRV_BIG_CHUNKED;
    memset(&k2, 0, sizeof(k2));
    k2.ctx = &c;
    ASSERT_INT_EQ(submit_to(&c, c.url, "{}", on_one, &k2), 0);
    ASSERT(run_until(&c, &c.done, 2));
    ASSERT_INT_EQ(k2.calls, 1);
    ASSERT_INT_EQ(k2.err, CR_ETOOBIG);

    /* The pooled handle is clean for the next request. */
    c.srv.mode = SRV_OK;
    memset(&k3, 0, sizeof(k3));
    k3.ctx = &c;
    ASSERT_INT_EQ(submit_to(&c, c.url, "{}", on_one, &k3), 0);
    ASSERT(run_until(&c, &c.done, 3));
    ASSERT_INT_EQ(k3.err, 0);
    ASSERT_INT_EQ(k3.status, 200);
    ASSERT_STR_EQ(k3.body, "{\"ok\":true}");
    ASSERT_INT_EQ(c.cb_in_submit, 0);
    ASSERT_INT_EQ(ctx_finish(&c), 0);
}

#define NCANCEL 10

TEST(http_close_cancels_everything_in_flight)
{
    struct ctx c;
    struct call k[NCANCEL];
    int i;

    ASSERT_INT_EQ(ctx_start(&c, SRV_SILENT, 1), 0);
    memset(k, 0, sizeof(k));
    for (i = 0; i < NCANCEL; i++) {
        k[i].ctx = &c;
        ASSERT_INT_EQ(submit_to(&c, c.url, "{}", on_one, &k[i]), 0);
    }
    /* Wait until every request is on the wire and waiting for its answer. */
    ASSERT(run_until(&c, &c.srv.requests, NCANCEL));
    ASSERT_INT_EQ(c.done, 0);
    cr_http_close(c.http, on_closed, &c);
    c.http = NULL;
    ASSERT_INT_EQ(c.done, NCANCEL);
    for (i = 0; i < NCANCEL; i++) {
        ASSERT_INT_EQ(k[i].calls, 1);
        ASSERT_INT_EQ(k[i].err, CR_ECANCELED);
    }
    ASSERT_INT_EQ(c.closed, 0); /* handles close on the loop */
    ASSERT_INT_EQ(ctx_finish(&c), 0);
    for (i = 0; i < NCANCEL; i++)
        ASSERT_INT_EQ(k[i].calls, 1);
}

TEST(http_submit_rejects_without_callback_and_frees_request)
{
    struct ctx c;

    ASSERT_INT_EQ(ctx_start(&c, SRV_OK, 1), 0);
    c.one.ctx = &c;
    /* Empty URL: refused at once, the callback never fires, nothing leaks. */
    ASSERT_INT_EQ(submit_to(&c, "", "{\"a\":1}", on_one, &c.one), CR_EINVAL);
    ASSERT_INT_EQ(cr_http_inflight(c.http), 0);
    ASSERT_INT_EQ(ctx_finish(&c), 0);
    ASSERT_INT_EQ(c.one.calls, 0);
}

TEST(http_server_closing_each_connection)
{
    struct ctx c;
    int i;

    /* Every answer closes its socket: curl keeps opening new ones, often on
     * the fd number of one whose poll handle is still closing. */
    ASSERT_INT_EQ(ctx_start(&c, SRV_CLOSE, 1), 0);
    c.to_submit = 300 - 8;
    for (i = 0; i < 8; i++)
        ASSERT_INT_EQ(submit_to(&c, c.url, "{\"n\":1}", on_load, &c), 0);
    ASSERT(run_until(&c, &c.done, 300));
    ASSERT_INT_EQ(c.ok, 300);
    ASSERT_INT_EQ(c.failed, 0);
    ASSERT_INT_EQ(c.srv.accepted, 300);
    ASSERT_INT_EQ(c.cb_in_submit, 0);
    ASSERT_INT_EQ(ctx_finish(&c), 0);
}

struct closer {
    struct ctx *ctx;
    int calls;
    int err;
};

static void on_close_from_cb(void *ud, int err, const struct cr_response *resp,
                             const char *detail, long latency_us)
{
    struct closer *k = ud;
    struct ctx *c = k->ctx;

    (void)resp;
    (void)detail;
    (void)latency_us;
    k->calls++;
    k->err = err;
    c->done++;
    /* The first answer shuts the client down from inside its callback. */
    if (c->http && err == 0) {
        struct cr_http *h = c->http;

        c->http = NULL;
        cr_http_close(h, on_closed, c);
    }
}

TEST(http_close_from_inside_a_callback)
{
    struct ctx c;
    struct closer k[4];
    int i;
    int ok = 0;
    int canceled = 0;

    ASSERT_INT_EQ(ctx_start(&c, SRV_OK, 1), 0);
    memset(k, 0, sizeof(k));
    for (i = 0; i < 4; i++) {
        k[i].ctx = &c;
        ASSERT_INT_EQ(submit_to(&c, c.url, "{}", on_close_from_cb, &k[i]), 0);
    }
    ASSERT(run_until(&c, &c.done, 4));
    for (i = 0; i < 4; i++) {
        ASSERT_INT_EQ(k[i].calls, 1);
        if (k[i].err == 0)
            ok++;
        else if (k[i].err == CR_ECANCELED)
            canceled++;
    }
    ASSERT(ok >= 1);
    ASSERT_INT_EQ(ok + canceled, 4);
    ASSERT_INT_EQ(ctx_finish(&c), 0);
}
