/* crier's Redis connection (see redis.h): a libuv stream (TCP or unix socket)
 * carrying the Redis protocol, inside TLS run over two memory BIOs when asked;
 * hiredis only parses replies and formats commands. One uv timer serves the
 * connect and command watchdogs and the reconnect backoff. */
#include "redis.h"

#include <limits.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "cr_error.h"
#include "cr_log.h"
#include "cr_secret.h"

#define TICK_MS 100
#define READ_CHUNK (64 * 1024)    /* one read from the socket, reused */
#define BACKOFF_BASE_MS 100       /* first reconnect within this, doubling */
#define LOG_KEY_MAX CR_LOG_REPEAT_KEY_MAX /* what cr_log_repeat compares of a key */
#define OUT_MAX ((size_t)1 << 30) /* bytes queued on a connection and not written */
#define BUF_KEEP (1024 * 1024)    /* a larger buffer is freed once empty */
#define SPARE_MAX 256             /* finished command records kept for reuse */
#define REASON_MAX 256
#define ADDRS_MAX 8 /* addresses of one name tried in turn */

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

/* One command in flight. Replies on a connection come back in order, so the
 * list is a FIFO and only its head can be the oldest. */
struct pending {
    cr_redis_cb cb;
    void *ud;
    uint64_t deadline_ms;
    int probe; /* cr_redis_probe: a refusal of this command is only its answer */
    struct pending *next;
};

/* One connection: its stream handle, TLS state, reply parser and buffers.
 * Owned by its cr_redis while r is set; once dropped (r NULL) it lives on only
 * until its handle's close callback frees it. */
struct conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_connect_t creq;
    uv_write_t wreq;
    struct cr_redis *r;
    int is_tcp;
    int writing; /* wreq in flight with wire */
    int tls_up;  /* TLS handshake done */
    int told;    /* misplaced already called for this connection */
    SSL *ssl;    /* NULL = plain; owns rbio and wbio */
    BIO *rbio;   /* bytes from the server, for SSL_read */
    BIO *wbio;   /* bytes SSL_write produced, for the socket */
    redisReader *reader;
    struct buf out;  /* commands formatted and not handed to the socket yet */
    struct buf wire; /* bytes wreq is writing */
    char rbuf[READ_CHUNK];
};

/* A name lookup under way in libuv's thread pool; r NULL once abandoned. */
struct lookup {
    uv_getaddrinfo_t req;
    struct cr_redis *r;
};

enum state {
    ST_IDLE,       /* no connection; reconnect_at_ms says when to try */
    ST_CONNECTING, /* name lookup, TCP connect, TLS handshake */
    ST_HELLO,      /* AUTH and ROLE sent */
    ST_READY,
};

struct cr_redis {
    uv_loop_t *loop;
    char *name;
    char *host;
    char *path;
    char *username;
    char *password;
    int port;
    SSL_CTX *tls;   /* NULL = plain */
    char *tls_name; /* server_name; NULL = the address's host */
    int check_role;
    cr_redis_resolve_cb resolve;
    cr_redis_misplaced_cb misplaced;
    void *hook_ud;
    cr_redis_push_cb push;
    long connect_timeout_ms;
    long command_timeout_ms;
    long reconnect_max_ms;
    cr_redis_state_cb state_cb;
    void *ud;

    struct cr_redis_addr addr; /* of the current or last attempt */
    char peer[300];
    struct conn *conn;
    struct lookup *lookup;
    struct sockaddr_storage addrs[ADDRS_MAX]; /* what the host name resolved to */
    int naddrs;
    int next_addr; /* the one being tried */
    enum state state;
    int doomed;         /* an error reply ends the connection after its callback */
    int role_unchecked; /* check_role, but ROLE was not allowed: trusted unseen */
    int subscribed;     /* a SUBSCRIBE was answered: messages go to push */
    int closing;
    int nopen; /* handles not closed yet: r is freed when none are left */
    uint64_t connect_deadline_ms;
    uint64_t reconnect_at_ms;
    uint64_t ready_since_ms;
    int attempt; /* failed attempts since the connection was last good */
    uint64_t rnd;
    unsigned long nerrors;
    char reason[REASON_MAX];
    char key_fail[LOG_KEY_MAX]; /* log key of the last failure line ("" = none) */
    char key_ok[LOG_KEY_MAX];   /* of the last "connected" line, likewise when flapping */

    struct pending *head;
    struct pending *tail;
    struct pending *spare;
    size_t npending;
    size_t nspare;

    uv_timer_t timer;
    uv_prepare_t flusher; /* writes what the loop iteration queued, once */
};

static void start_connect(struct cr_redis *r);
static void fail(struct cr_redis *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pump(struct conn *c);

static uint64_t now_ms(const struct cr_redis *r)
{
    return uv_now(r->loop);
}

/* ---- log lines, with repeats summed up ---------------------------------- */

/* Logs "redis '<name>' <peer>: <what>" folded by the log (cr_log_repeat)
 * under a key naming the connection, the line and the peer: the same line of
 * this connection again within the window is counted and summed up with the
 * count, a different one is written at once. key (LOG_KEY_MAX bytes) keeps
 * the key, for cr_log_repeat_end when the connection is closed. */
static void say(struct cr_redis *r, char *key, enum cr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(struct cr_redis *r, char *key, enum cr_log_level level, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (snprintf(key, LOG_KEY_MAX, "redis '%s' %s @ %s", r->name, what, r->peer) >= LOG_KEY_MAX)
        key[LOG_KEY_MAX - 1] = '\0'; /* cut: the log compares keys on what is kept */
    cr_log_repeat(level, key, "redis '%s' %s: %s", r->name, r->peer, what);
}

/* ---- buffers and command records ---------------------------------------- */

static int buf_reserve(struct buf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->cap - b->len >= more)
        return 0;
    cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return CR_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* An emptied buffer gives back memory a huge command made it take. */
static void buf_emptied(struct buf *b)
{
    b->len = 0;
    if (b->cap > BUF_KEEP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

static struct pending *take_record(struct cr_redis *r)
{
    struct pending *p = r->spare;

    if (p == NULL)
        return malloc(sizeof(*p));
    r->spare = p->next;
    r->nspare--;
    return p;
}

static void give_record(struct cr_redis *r, struct pending *p)
{
    if (r->nspare >= SPARE_MAX) {
        free(p);
        return;
    }
    p->next = r->spare;
    r->spare = p;
    r->nspare++;
}

static void append_pending(struct cr_redis *r, struct pending *p, cr_redis_cb cb, void *ud,
                           long allowance_ms)
{
    p->cb = cb;
    p->ud = ud;
    p->deadline_ms = now_ms(r) + (uint64_t)(r->command_timeout_ms + allowance_ms);
    p->probe = 0;
    p->next = NULL;
    if (r->tail)
        r->tail->next = p;
    else
        r->head = p;
    r->tail = p;
    r->npending++;
}

/* ---- dropping and reconnecting ------------------------------------------ */

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    if (c->ssl)
        SSL_free(c->ssl);
    if (c->reader)
        redisReaderFree(c->reader);
    free(c->out.p);
    free(c->wire.p);
    free(c);
}

/* Lets go of the connection and of a lookup under way; their callbacks, when
 * they come, find r gone. */
static void detach(struct cr_redis *r)
{
    struct conn *c = r->conn;

    if (r->lookup) {
        r->lookup->r = NULL;
        uv_cancel((uv_req_t *)&r->lookup->req);
        r->lookup = NULL;
    }
    if (c) {
        r->conn = NULL;
        c->r = NULL;
        uv_close(&c->h.handle, on_conn_closed);
    }
}

static void schedule_reconnect(struct cr_redis *r)
{
    int64_t delay;

    if (r->closing)
        return;
    if (r->attempt < INT_MAX)
        r->attempt++;
    delay = cr_backoff_delay(r->attempt, -1, BACKOFF_BASE_MS, r->reconnect_max_ms,
                             cr_rand_next(&r->rnd));
    r->reconnect_at_ms = now_ms(r) + (uint64_t)delay;
}

/* Ends the connection: every command waiting gets NULL, then the state
 * callback hears of the loss (when it had been ready), then a reconnect is
 * scheduled after the backoff. Callbacks may close r. */
static void drop(struct cr_redis *r)
{
    struct pending *list = r->head;
    int was_ready = r->state == ST_READY;

    detach(r);
    r->state = ST_IDLE;
    r->doomed = 0;
    r->subscribed = 0;
    r->head = NULL;
    r->tail = NULL;
    r->npending = 0;
    while (list) {
        struct pending *p = list;
        cr_redis_cb cb = p->cb;
        void *ud = p->ud;

        list = p->next;
        give_record(r, p);
        if (cb)
            cb(r, NULL, ud);
    }
    if (r->closing)
        return;
    if (was_ready && r->state_cb)
        r->state_cb(r, 0, r->ud);
    if (r->state == ST_IDLE && r->reconnect_at_ms == 0)
        schedule_reconnect(r);
}

/* A failure: it becomes the reason for being down, is counted and logged
 * (repeats summed up), and the connection is dropped and retried with backoff. */
static void fail(struct cr_redis *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    r->nerrors++;
    say(r, r->key_fail, CR_LOG_WARN, "%s; reconnecting with backoff (at most %ld ms)", r->reason,
        r->reconnect_max_ms);
    r->reconnect_at_ms = 0;
    drop(r);
}

/* Tells the hook that this server is not a writable primary, once per connection. */
static void tell_misplaced(struct cr_redis *r, const char *why)
{
    if (r->conn == NULL || r->conn->told || r->misplaced == NULL)
        return;
    r->conn->told = 1;
    r->misplaced(r, why, r->hook_ud);
}

static void become_ready(struct cr_redis *r)
{
    r->state = ST_READY;
    r->ready_since_ms = now_ms(r);
    r->reason[0] = '\0';
    say(r, r->key_ok, CR_LOG_INFO, "connected%s%s%s", r->tls ? " over TLS" : "",
        r->check_role && !r->role_unchecked ? ", primary" : "", r->username ? ", ACL user" : "");
    if (r->state_cb)
        r->state_cb(r, 1, r->ud);
}

/* ---- sending ------------------------------------------------------------ */

static void on_flush(uv_prepare_t *h);

/* Commands queued during this loop iteration go out together, in one write,
 * before the loop next waits for I/O. */
static void kick(struct cr_redis *r)
{
    uv_prepare_start(&r->flusher, on_flush);
}

/* Writes v in decimal at p; returns the end. */
static char *put_count(char *p, size_t v)
{
    char tmp[24];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* The most bytes format_argv writes for these arguments. */
static size_t argv_bound(int argc, const char **argv, const size_t *lens)
{
    size_t need = 1 + 20 + 2;
    int i;

    for (i = 0; i < argc; i++)
        need += 1 + 20 + 2 + (lens ? lens[i] : strlen(argv[i])) + 2;
    return need;
}

/* The command in the protocol's multi-bulk form, written straight into the
 * connection's output buffer at p (hiredis formats each argument with a
 * printf-like routine, costly for the record script's thousands of
 * arguments). Returns the length written. */
static size_t format_argv(int argc, const char **argv, const size_t *lens, char *out)
{
    char *p = out;
    int i;

    *p++ = '*';
    p = put_count(p, (size_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    for (i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);

        *p++ = '$';
        p = put_count(p, n);
        *p++ = '\r';
        *p++ = '\n';
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    return (size_t)(p - out);
}

/* Queues an argument vector on the connection, whatever its state. */
static int send_argv(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms, int argc,
                     const char **argv, const size_t *lens)
{
    struct conn *c = r->conn;
    struct pending *p;
    size_t need;

    if (c == NULL || r->closing)
        return CR_ECLOSED;
    need = argv_bound(argc, argv, lens);
    if (need > OUT_MAX - c->out.len)
        return CR_ETOOBIG;
    if (buf_reserve(&c->out, need) < 0)
        return CR_ENOMEM;
    p = take_record(r);
    if (p == NULL)
        return CR_ENOMEM;
    c->out.len += format_argv(argc, argv, lens, c->out.p + c->out.len);
    append_pending(r, p, cb, ud, allowance_ms);
    kick(r);
    return 0;
}

static int send_formatted(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms,
                          const char *fmt, va_list ap)
{
    struct conn *c = r->conn;
    struct pending *p = NULL;
    char *cmd = NULL;
    int len;
    int rc = CR_ENOMEM;

    if (c == NULL || r->closing)
        return CR_ECLOSED;
    len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0)
        goto out;
    if ((size_t)len > OUT_MAX - c->out.len) {
        rc = CR_ETOOBIG;
        goto out;
    }
    if (buf_reserve(&c->out, (size_t)len) < 0)
        goto out;
    p = take_record(r);
    if (p == NULL)
        goto out;
    memcpy(c->out.p + c->out.len, cmd, (size_t)len);
    c->out.len += (size_t)len;
    append_pending(r, p, cb, ud, allowance_ms);
    kick(r);
    rc = 0;
out:
    if (cmd)
        redisFreeCommand(cmd);
    return rc;
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;

    c->writing = 0;
    if (c->r == NULL)
        return;
    if (status < 0) {
        fail(c->r, "connection lost: write failed: %s", uv_strerror(status));
        return;
    }
    buf_emptied(&c->wire);
    pump(c);
}

/* Hands c->wire to the socket: what the kernel takes now, the rest by uv_write. */
static void start_write(struct conn *c)
{
    uv_buf_t b = uv_buf_init(c->wire.p, (unsigned int)c->wire.len);
    int n = uv_try_write(&c->h.stream, &b, 1);
    int rc;

    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0) {
        fail(c->r, "connection lost: write failed: %s", uv_strerror(n));
        return;
    }
    if ((size_t)n == c->wire.len) {
        buf_emptied(&c->wire);
        return;
    }
    b = uv_buf_init(c->wire.p + n, (unsigned int)(c->wire.len - (size_t)n));
    c->wreq.data = c;
    rc = uv_write(&c->wreq, &c->h.stream, &b, 1, on_written);
    if (rc < 0) {
        fail(c->r, "connection lost: write failed: %s", uv_strerror(rc));
        return;
    }
    c->writing = 1;
}

/* Text for a TLS failure: the certificate's verdict when it was refused,
 * else OpenSSL's first error. Clears OpenSSL's error queue (shared with
 * libcurl on this thread). */
static void tls_failure(struct conn *c, const char *op, char *out, size_t cap)
{
    long v = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_get_error();
    char es[200];

    if (v != X509_V_OK) {
        snprintf(out, cap, "TLS: certificate verify failed (%s)", X509_verify_cert_error_string(v));
    } else if (e != 0) {
        ERR_error_string_n(e, es, sizeof(es));
        snprintf(out, cap, "TLS: %s failed: %s", op, es);
    } else {
        snprintf(out, cap, "TLS: %s failed", op);
    }
    ERR_clear_error();
}

static void tls_fail(struct conn *c, const char *op)
{
    char why[REASON_MAX];

    tls_failure(c, op, why, sizeof(why));
    fail(c->r, "%s", why);
}

/* Moves queued commands towards the socket: plain, the output buffer becomes
 * the one being written; TLS, it is encrypted into wbio whose bytes are then
 * written. Nothing happens while a write is under way; its end pumps again. */
static void pump(struct conn *c)
{
    if (c->ssl) {
        size_t n;

        if (c->tls_up && c->out.len > 0) {
            ERR_clear_error();
            if (SSL_write(c->ssl, c->out.p, (int)c->out.len) <= 0) {
                tls_fail(c, "write");
                return;
            }
            buf_emptied(&c->out);
        }
        if (c->writing)
            return;
        n = BIO_ctrl_pending(c->wbio);
        if (n == 0)
            return;
        if (buf_reserve(&c->wire, n) < 0) {
            fail(c->r, "out of memory writing");
            return;
        }
        c->wire.len = (size_t)BIO_read(c->wbio, c->wire.p, (int)n);
    } else {
        struct buf t;

        if (c->writing || c->out.len == 0)
            return;
        t = c->wire;
        c->wire = c->out;
        c->out = t;
        c->out.len = 0;
    }
    start_write(c);
}

static void on_flush(uv_prepare_t *h)
{
    struct cr_redis *r = h->data;

    uv_prepare_stop(h);
    if (r->conn && r->conn->out.len > 0)
        pump(r->conn);
}

/* ---- receiving ---------------------------------------------------------- */

/* An error reply that says this server cannot serve crier now: the caller
 * still gets the reply, then the connection is dropped and retried with
 * backoff instead of the caller retrying at once into the same error. */
static const struct {
    const char *prefix;
    int misplaced;
    const char *what;
} fatal_errors[] = {
    {"READONLY", 1, "replica (READONLY)"},
    {"MASTERDOWN", 1, "replica without its primary (MASTERDOWN)"},
    {"LOADING", 0, "still loading its data (LOADING)"},
    {"NOAUTH", 0, "AUTH required (NOAUTH)"},
    {"NOPERM", 0, "ACL user lacks a permission (NOPERM)"},
    {"MOVED", 0, "Redis Cluster is not supported (MOVED)"},
    {"ASK", 0, "Redis Cluster is not supported (ASK)"},
    {"CROSSSLOT", 0, "Redis Cluster is not supported (CROSSSLOT)"},
    {"CLUSTERDOWN", 0, "Redis Cluster is not supported (CLUSTERDOWN)"},
};

static int fatal_error(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < sizeof(fatal_errors) / sizeof(fatal_errors[0]); i++) {
        size_t n = strlen(fatal_errors[i].prefix);

        if (len >= n && memcmp(s, fatal_errors[i].prefix, n) == 0 && (len == n || s[n] == ' '))
            return (int)i;
    }
    return -1;
}

static int is_kind(const redisReply *m, const char *a, const char *b)
{
    const redisReply *k;

    if (m->type != REDIS_REPLY_ARRAY || m->elements < 3)
        return 0;
    k = m->element[0];
    if (k->type != REDIS_REPLY_STRING)
        return 0;
    return strcmp(k->str, a) == 0 || strcmp(k->str, b) == 0;
}

/* One reply: to the push hook when it is a message of a subscription, else to
 * the oldest command waiting. */
static void deliver(struct conn *c, redisReply *reply)
{
    struct cr_redis *r = c->r;
    struct pending *p = r->head;
    cr_redis_cb cb;
    void *ud;
    int fatal = -1;
    int probe;

    if (r->push && (p == NULL || (r->subscribed && is_kind(reply, "message", "pmessage")))) {
        if (r->state == ST_READY)
            r->push(r, reply, r->ud);
        freeReplyObject(reply);
        return;
    }
    if (p == NULL) {
        freeReplyObject(reply);
        fail(r, "protocol error: a reply with no command waiting for it");
        return;
    }
    r->head = p->next;
    if (r->head == NULL)
        r->tail = NULL;
    r->npending--;
    cb = p->cb;
    ud = p->ud;
    probe = p->probe;
    give_record(r, p);
    if (r->state == ST_READY) {
        if (reply->type == REDIS_REPLY_ERROR) {
            fatal = fatal_error(reply->str, reply->len);
            if (fatal >= 0 && probe && strncmp(reply->str, "NOPERM", 6) == 0)
                fatal = -1; /* only this command is refused: the connection serves on */
            if (fatal >= 0)
                r->doomed = 1; /* the callback sees the connection as not ready */
        } else {
            if (is_kind(reply, "subscribe", "psubscribe"))
                r->subscribed = 1;
        }
    }
    if (cb)
        cb(r, reply, ud);
    if (fatal >= 0 && c->r == r) {
        char err[120];

        snprintf(err, sizeof(err), "%.*s", (int)(reply->len < 100 ? reply->len : 100), reply->str);
        if (fatal_errors[fatal].misplaced)
            tell_misplaced(r, fatal_errors[fatal].what);
        if (c->r == r)
            fail(r, "%s: %s", fatal_errors[fatal].what, err);
    }
    freeReplyObject(reply);
}

/* Parses bytes from the server and delivers each complete reply. Returns 0,
 * or -1 when the connection was dropped meanwhile. */
static int feed(struct conn *c, const char *data, size_t n)
{
    if (redisReaderFeed(c->reader, data, n) != REDIS_OK) {
        fail(c->r, "protocol error: %s", c->reader->errstr);
        return -1;
    }
    for (;;) {
        void *reply = NULL;

        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            fail(c->r, "protocol error: %s", c->reader->errstr);
            return -1;
        }
        if (reply == NULL)
            return 0;
        deliver(c, reply);
        if (c->r == NULL)
            return -1;
    }
}

static void transport_up(struct cr_redis *r);

static void tls_handshake(struct conn *c)
{
    int rc;
    int err;

    ERR_clear_error();
    rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->tls_up = 1;
        pump(c); /* the handshake's last flight */
        if (c->r != NULL)
            transport_up(c->r);
        return;
    }
    err = SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        pump(c);
        return;
    }
    tls_fail(c, "handshake");
}

static void tls_read(struct conn *c, size_t n)
{
    if (BIO_write(c->rbio, c->rbuf, (int)n) != (int)n) {
        fail(c->r, "out of memory reading");
        return;
    }
    if (!c->tls_up) {
        tls_handshake(c);
        if (c->r == NULL || !c->tls_up)
            return;
    }
    for (;;) {
        int k;
        int err;

        ERR_clear_error();
        k = SSL_read(c->ssl, c->rbuf, sizeof(c->rbuf));
        if (k > 0) {
            if (feed(c, c->rbuf, (size_t)k) < 0)
                return;
            continue;
        }
        err = SSL_get_error(c->ssl, k);
        if (err == SSL_ERROR_WANT_READ)
            break;
        if (err == SSL_ERROR_ZERO_RETURN)
            fail(c->r, "connection lost: TLS closed by the server");
        else
            tls_fail(c, "read");
        return;
    }
    pump(c); /* TLS may have answers of its own to write */
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct conn *c = h->data;

    (void)hint;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;

    (void)b;
    if (c->r == NULL || n == 0)
        return;
    if (n < 0) {
        if (n == UV_EOF)
            fail(c->r, "connection lost: closed by the server");
        else
            fail(c->r, "connection lost: %s", uv_strerror((int)n));
        return;
    }
    if (c->ssl)
        tls_read(c, (size_t)n);
    else
        feed(c, c->rbuf, (size_t)n);
}

/* ---- connecting --------------------------------------------------------- */

static void on_role(struct cr_redis *r, redisReply *reply, void *ud)
{
    const char *role = "unknown";
    char why[96];

    (void)ud;
    if (reply == NULL || r->state != ST_HELLO)
        return;
    if (reply->type == REDIS_REPLY_ERROR && (strncmp(reply->str, "NOPERM", 6) == 0 ||
                                             strncmp(reply->str, "ERR unknown command", 19) == 0)) {
        /* ROLE is an @admin command a least-privilege ACL user (or a managed
         * service) may not have: a replica then shows itself by READONLY. */
        say(r, r->key_fail, CR_LOG_WARN,
            "cannot check that this is the primary (ROLE refused: %.100s); using it, a replica "
            "will be noticed by its READONLY answers",
            reply->str);
        r->role_unchecked = 1;
        become_ready(r);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        fail(r, "ROLE refused: %s", reply->str);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_STRING)
        role = reply->element[0]->str;
    if (strcmp(role, "master") == 0) {
        become_ready(r);
        return;
    }
    snprintf(why, sizeof(why), "replica (ROLE %.60s)", role);
    tell_misplaced(r, why);
    if (r->state == ST_HELLO)
        fail(r, "%s", why);
}

static void on_auth(struct cr_redis *r, redisReply *reply, void *ud)
{
    (void)ud;
    if (reply == NULL || r->state != ST_HELLO)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        fail(r, "AUTH refused: %.150s", reply->str);
        return;
    }
    if (!r->check_role)
        become_ready(r);
}

/* The byte stream is up (and TLS agreed): AUTH, then ROLE, pipelined. */
static void transport_up(struct cr_redis *r)
{
    const char *argv[3];
    int argc = 0;
    int rc = 0;

    r->state = ST_HELLO;
    r->role_unchecked = 0;
    if (r->password) {
        argv[argc++] = "AUTH";
        if (r->username)
            argv[argc++] = r->username;
        argv[argc++] = r->password;
        rc = send_argv(r, on_auth, NULL, 0, argc, argv, NULL);
    }
    if (rc == 0 && r->check_role) {
        argv[0] = "ROLE";
        rc = send_argv(r, on_role, NULL, 0, 1, argv, NULL);
    }
    if (rc < 0) {
        fail(r, "could not send AUTH/ROLE: %s", cr_strerror(rc));
        return;
    }
    if (!r->password && !r->check_role)
        become_ready(r);
}

static int is_ip_literal(const char *s)
{
    unsigned char tmp[16];

    return uv_inet_pton(AF_INET, s, tmp) == 0 || uv_inet_pton(AF_INET6, s, tmp) == 0;
}

static int tls_start(struct conn *c)
{
    struct cr_redis *r = c->r;
    const char *name = r->tls_name ? r->tls_name : r->addr.host;

    if (name[0] == '\0')
        return CR_EINVAL; /* a unix socket with no host: tls.server_name names the server */
    ERR_clear_error();
    c->ssl = SSL_new(r->tls);
    if (c->ssl == NULL)
        return CR_ENOMEM;
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        c->rbio = NULL;
        c->wbio = NULL;
        return CR_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both from here */
    SSL_set_connect_state(c->ssl);
    if (is_ip_literal(name)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
            return CR_EINVAL;
    } else if (SSL_set_tlsext_host_name(c->ssl, name) != 1 || SSL_set1_host(c->ssl, name) != 1) {
        return CR_ENOMEM;
    }
    tls_handshake(c);
    return 0;
}

static void open_conn(struct cr_redis *r, const struct sockaddr *sa);

static void on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    struct cr_redis *r = c->r;
    int rc;

    if (r == NULL)
        return; /* dropped meanwhile */
    if (status < 0 && c->is_tcp && r->next_addr + 1 < r->naddrs) {
        /* "localhost" may be ::1 first while Redis listens on 127.0.0.1 only */
        detach(r);
        r->next_addr++;
        open_conn(r, (const struct sockaddr *)&r->addrs[r->next_addr]);
        return;
    }
    if (status < 0) {
        fail(r, "connect failed: %s", uv_strerror(status));
        return;
    }
    if (c->is_tcp) {
        uv_tcp_nodelay(&c->h.tcp, 1);
        uv_tcp_keepalive(&c->h.tcp, 1, 60);
    }
    rc = uv_read_start(&c->h.stream, on_alloc, on_read);
    if (rc < 0) {
        fail(r, "connect failed: cannot read: %s", uv_strerror(rc));
        return;
    }
    if (r->tls == NULL) {
        transport_up(r);
        return;
    }
    rc = tls_start(c);
    if (rc < 0)
        fail(r, "TLS: cannot start: %s", cr_strerror(rc));
}

/* Opens the stream to sa (TCP) or to the unix socket of r->addr (sa NULL). */
static void open_conn(struct cr_redis *r, const struct sockaddr *sa)
{
    struct conn *c = calloc(1, sizeof(*c));
    int rc;

    if (c != NULL)
        c->reader = redisReaderCreate();
    if (c == NULL || c->reader == NULL) {
        free(c);
        fail(r, "connect failed: out of memory");
        return;
    }
    c->is_tcp = sa != NULL;
    rc = sa ? uv_tcp_init(r->loop, &c->h.tcp) : uv_pipe_init(r->loop, &c->h.pipe, 0);
    if (rc < 0) {
        redisReaderFree(c->reader);
        free(c);
        fail(r, "connect failed: %s", uv_strerror(rc));
        return;
    }
    c->h.handle.data = c;
    c->r = r;
    c->creq.data = c;
    r->conn = c;
    if (sa) {
        rc = uv_tcp_connect(&c->creq, &c->h.tcp, sa, on_connected);
        if (rc < 0)
            fail(r, "connect failed: %s", uv_strerror(rc));
    } else {
        uv_pipe_connect(&c->creq, &c->h.pipe, r->addr.path, on_connected);
    }
}

static void on_lookup(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct lookup *lk = req->data;
    struct cr_redis *r = lk->r;

    free(lk);
    if (r != NULL) {
        const struct addrinfo *ai;

        r->lookup = NULL;
        r->naddrs = 0;
        r->next_addr = 0;
        for (ai = status < 0 ? NULL : res; ai != NULL && r->naddrs < ADDRS_MAX; ai = ai->ai_next) {
            if (ai->ai_addrlen <= sizeof(r->addrs[0]) &&
                (ai->ai_family == AF_INET || ai->ai_family == AF_INET6))
                memcpy(&r->addrs[r->naddrs++], ai->ai_addr, ai->ai_addrlen);
        }
        if (r->naddrs == 0)
            fail(r, "cannot resolve '%s': %s", r->addr.host,
                 uv_strerror(status < 0 ? status : UV_EAI_NONAME));
        else
            open_conn(r, (const struct sockaddr *)&r->addrs[0]);
    }
    uv_freeaddrinfo(res);
}

static void set_peer(struct cr_redis *r)
{
    if (r->addr.path[0])
        snprintf(r->peer, sizeof(r->peer), "%s", r->addr.path);
    else if (strchr(r->addr.host, ':'))
        snprintf(r->peer, sizeof(r->peer), "[%s]:%d", r->addr.host, r->addr.port);
    else
        snprintf(r->peer, sizeof(r->peer), "%s:%d", r->addr.host, r->addr.port);
}

static int pick_address(struct cr_redis *r)
{
    struct cr_redis_addr a;
    int rc;

    memset(&a, 0, sizeof(a));
    if (r->resolve) {
        rc = r->resolve(r->hook_ud, &a);
        if (rc < 0)
            return rc;
        a.host[sizeof(a.host) - 1] = '\0';
        a.path[sizeof(a.path) - 1] = '\0';
    } else {
        snprintf(a.host, sizeof(a.host), "%s", r->host);
        a.port = r->port;
        if (r->path)
            snprintf(a.path, sizeof(a.path), "%s", r->path);
    }
    r->addr = a;
    set_peer(r);
    return 0;
}

static void start_connect(struct cr_redis *r)
{
    struct addrinfo hints;
    struct lookup *lk;
    int rc;

    r->reconnect_at_ms = 0;
    r->state = ST_CONNECTING;
    r->connect_deadline_ms = now_ms(r) + (uint64_t)r->connect_timeout_ms;
    rc = pick_address(r);
    if (rc < 0) {
        fail(r, "no address known for the primary (%s)", cr_strerror(rc));
        return;
    }
    if (r->addr.path[0]) {
        open_conn(r, NULL);
        return;
    }
    r->naddrs = 0;
    r->next_addr = 0;
    if (uv_ip4_addr(r->addr.host, r->addr.port, (struct sockaddr_in *)&r->addrs[0]) == 0 ||
        uv_ip6_addr(r->addr.host, r->addr.port, (struct sockaddr_in6 *)&r->addrs[0]) == 0) {
        r->naddrs = 1;
        open_conn(r, (const struct sockaddr *)&r->addrs[0]);
        return;
    }
    lk = calloc(1, sizeof(*lk));
    if (lk == NULL) {
        fail(r, "cannot resolve '%s': out of memory", r->addr.host);
        return;
    }
    lk->r = r;
    lk->req.data = lk;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    {
        char port[16];

        snprintf(port, sizeof(port), "%d", r->addr.port);
        rc = uv_getaddrinfo(r->loop, &lk->req, on_lookup, r->addr.host, port, &hints);
    }
    if (rc < 0) {
        free(lk);
        fail(r, "cannot resolve '%s': %s", r->addr.host, uv_strerror(rc));
        return;
    }
    r->lookup = lk;
}

static void on_tick(uv_timer_t *t)
{
    struct cr_redis *r = t->data;
    uint64_t now = now_ms(r);

    /* the summaries of ended windows, also in a process with no log timer */
    cr_log_repeat_flush(0);
    if (r->state == ST_CONNECTING && now >= r->connect_deadline_ms) {
        fail(r, "connect timed out after %ld ms", r->connect_timeout_ms);
        return;
    }
    if (r->head && now >= r->head->deadline_ms) {
        fail(r, "no reply within %ld ms (command timeout)", r->command_timeout_ms);
        return;
    }
    if (r->state == ST_IDLE && !r->closing && now >= r->reconnect_at_ms) {
        start_connect(r);
        return;
    }
    /* Up and answering for a while: the next failure starts the backoff afresh.
     * Not sooner, so that a server that accepts and then fails every
     * connection (LOADING, MOVED...) meets a growing backoff. */
    if (r->state == ST_READY && r->attempt > 0 &&
        now - r->ready_since_ms >= (uint64_t)r->reconnect_max_ms)
        r->attempt = 0;
}

/* ---- TLS context -------------------------------------------------------- */

/* Builds the client TLS context: peer verification always on, CA from
 * ca_file or the system's paths, optional client certificate. Returns 0 and
 * *out, or CR_ECONFIG with *key naming the option at fault and err saying why. */
static int tls_context(const struct cr_redis_tls *tls, SSL_CTX **out, const char **key, char *err,
                       size_t cap)
{
    SSL_CTX *ctx;
    int rc = CR_ECONFIG;
    char es[200];

    ERR_clear_error();
    *key = "tls";
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, cap, "cannot create a TLS context");
        goto out;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (tls->ca_file) {
        *key = "ca_file";
        if (SSL_CTX_load_verify_locations(ctx, tls->ca_file, NULL) != 1)
            goto bad;
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        goto bad;
    }
    if ((tls->cert_file == NULL) != (tls->key_file == NULL)) {
        *key = tls->cert_file ? "key_file" : "cert_file";
        snprintf(err, cap, "cert_file and key_file go together");
        goto out;
    }
    if (tls->cert_file) {
        *key = "cert_file";
        if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert_file) != 1)
            goto bad;
        *key = "key_file";
        if (SSL_CTX_use_PrivateKey_file(ctx, tls->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
            goto bad;
    }
    *out = ctx;
    ctx = NULL;
    rc = 0;
    goto out;
bad:
    ERR_error_string_n(ERR_peek_last_error(), es, sizeof(es));
    snprintf(err, cap, "%s", es);
out:
    ERR_clear_error();
    if (ctx)
        SSL_CTX_free(ctx);
    return rc;
}

int cr_redis_tls_check(const struct cr_redis_tls *tls, const char **key, char *err, size_t cap)
{
    SSL_CTX *ctx = NULL;
    int rc;

    rc = tls_context(tls, &ctx, key, err, cap);
    if (ctx)
        SSL_CTX_free(ctx);
    return rc;
}

/* ---- the API ------------------------------------------------------------ */

static void free_redis(struct cr_redis *r)
{
    while (r->spare) {
        struct pending *p = r->spare;

        r->spare = p->next;
        free(p);
    }
    if (r->tls)
        SSL_CTX_free(r->tls);
    free(r->name);
    free(r->host);
    free(r->path);
    free(r->username);
    cr_free_secret(r->password);
    free(r->tls_name);
    free(r);
}

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL)
        return 0;
    *out = strdup(s);
    return *out ? 0 : CR_ENOMEM;
}

int cr_redis_init(uv_loop_t *loop, const struct cr_redis_opts *opts, cr_redis_state_cb state_cb,
                  void *ud, struct cr_redis **out)
{
    struct cr_redis *r = calloc(1, sizeof(*r));
    int rc = CR_ENOMEM;

    if (r == NULL)
        return CR_ENOMEM;
    if (dup_opt(opts->name ? opts->name : "redis", &r->name) < 0 ||
        dup_opt(opts->host ? opts->host : "127.0.0.1", &r->host) < 0 ||
        dup_opt(opts->path, &r->path) < 0 || dup_opt(opts->username, &r->username) < 0 ||
        dup_opt(opts->password, &r->password) < 0 ||
        dup_opt(opts->tls.server_name, &r->tls_name) < 0)
        goto out;
    if (opts->tls.enabled) {
        const char *key;
        char err[256];

        rc = tls_context(&opts->tls, &r->tls, &key, err, sizeof(err));
        if (rc < 0) {
            cr_error("redis '%s': tls.%s: %s; not connecting", r->name, key, err);
            goto out;
        }
    }
    r->loop = loop;
    r->port = opts->port;
    r->check_role = opts->check_role;
    r->resolve = opts->resolve;
    r->misplaced = opts->misplaced;
    r->hook_ud = opts->hook_ud;
    r->push = opts->push;
    r->connect_timeout_ms = opts->connect_timeout_ms;
    r->command_timeout_ms = opts->command_timeout_ms;
    r->reconnect_max_ms = opts->reconnect_max_ms > 0 ? opts->reconnect_max_ms : 1;
    r->state_cb = state_cb;
    r->ud = ud;
    r->rnd = uv_hrtime() ^ (uint64_t)(uintptr_t)r;
    snprintf(r->reason, sizeof(r->reason), "connecting");
    snprintf(r->addr.host, sizeof(r->addr.host), "%s", r->host);
    r->addr.port = r->port;
    if (r->path)
        snprintf(r->addr.path, sizeof(r->addr.path), "%s", r->path);
    set_peer(r);
    uv_timer_init(loop, &r->timer);
    uv_prepare_init(loop, &r->flusher);
    r->timer.data = r;
    r->flusher.data = r;
    r->nopen = 2;
    uv_timer_start(&r->timer, on_tick, TICK_MS, TICK_MS);
    start_connect(r);
    *out = r;
    r = NULL;
    rc = 0;
out:
    if (r)
        free_redis(r);
    return rc;
}

int cr_redis_ready(const struct cr_redis *r)
{
    return r->state == ST_READY && !r->doomed && !r->closing && r->conn != NULL;
}

int cr_redis_cmd(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms, const char *fmt,
                 ...)
{
    va_list ap;
    int rc;

    if (!cr_redis_ready(r))
        return CR_ECLOSED;
    va_start(ap, fmt);
    rc = send_formatted(r, cb, ud, allowance_ms, fmt, ap);
    va_end(ap);
    return rc;
}

int cr_redis_probe(struct cr_redis *r, cr_redis_cb cb, void *ud, const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (!cr_redis_ready(r))
        return CR_ECLOSED;
    va_start(ap, fmt);
    rc = send_formatted(r, cb, ud, 0, fmt, ap);
    va_end(ap);
    if (rc == 0)
        r->tail->probe = 1;
    return rc;
}

int cr_redis_argv(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms, int argc,
                  const char **argv, const size_t *argvlen)
{
    if (!cr_redis_ready(r))
        return CR_ECLOSED;
    return send_argv(r, cb, ud, allowance_ms, argc, argv, argvlen);
}

size_t cr_redis_pending(const struct cr_redis *r)
{
    return r->npending;
}

void cr_redis_reset(struct cr_redis *r)
{
    if (r->closing)
        return;
    if (r->state == ST_IDLE) {
        /* waiting out a backoff: the address it failed on may be the old
         * primary's, so the next attempt (re-resolving) is made at once */
        r->reconnect_at_ms = now_ms(r);
        return;
    }
    say(r, r->key_fail, CR_LOG_WARN, "dropping the connection on request; reconnecting");
    r->reconnect_at_ms = 0;
    drop(r);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct cr_redis *r = h->data;

    if (--r->nopen == 0)
        free_redis(r);
}

void cr_redis_close(struct cr_redis *r)
{
    if (r->closing)
        return;
    r->closing = 1;
    drop(r);
    if (r->key_fail[0] != '\0')
        cr_log_repeat_end(r->key_fail);
    if (r->key_ok[0] != '\0')
        cr_log_repeat_end(r->key_ok);
    uv_timer_stop(&r->timer);
    uv_prepare_stop(&r->flusher);
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->flusher, on_handle_closed);
}

const char *cr_redis_down_reason(const struct cr_redis *r)
{
    if (cr_redis_ready(r))
        return NULL;
    if (r->closing)
        return "closed";
    return r->reason[0] ? r->reason : "connecting";
}

unsigned long cr_redis_error_count(const struct cr_redis *r)
{
    return r->nerrors;
}

const char *cr_redis_peer(const struct cr_redis *r)
{
    return r->peer;
}

const char *cr_redis_name(const struct cr_redis *r)
{
    return r->name;
}

int cr_reply_is_error(const redisReply *reply)
{
    return reply == NULL || reply->type == REDIS_REPLY_ERROR;
}

long long cr_reply_int(const redisReply *reply)
{
    if (reply == NULL)
        return 0;
    if (reply->type == REDIS_REPLY_INTEGER)
        return reply->integer;
    if (reply->type == REDIS_REPLY_STRING && reply->str)
        return strtoll(reply->str, NULL, 10);
    return 0;
}
