/* Async Redis with connect timeout, command watchdog and reconnection (see
 * redis.h). One uv timer serves both watchdogs and the reconnect backoff. */
#include "redis.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"

#define TICK_MS 100

/* One command in flight. Replies on a connection come back in order, so the
 * list is a FIFO and only its head can be the oldest. */
struct pending {
    struct cr_redis *r;
    cr_redis_cb cb;
    void *ud;
    uint64_t deadline_ms;
    struct pending *next;
    struct pending *prev;
};

struct cr_redis {
    uv_loop_t *loop;
    char *name;
    char *host;
    int port;
    char *password;
    long connect_timeout_ms;
    long command_timeout_ms;
    long reconnect_max_ms;
    cr_redis_state_cb state_cb;
    void *ud;

    redisAsyncContext *ac;
    int connecting;       /* ac exists, not ready yet */
    int ready;
    int closing;
    uint64_t connect_deadline_ms;
    uint64_t reconnect_at_ms; /* 0 = not waiting to reconnect */
    long backoff_ms;

    unsigned long nerrors;
    char peer[300];

    struct pending *head;
    struct pending *tail;
    size_t npending;

    uv_timer_t timer;
};

static void start_connect(struct cr_redis *r);
static void drop_connection(struct cr_redis *r, const char *why);

static uint64_t now_ms(struct cr_redis *r)
{
    return uv_now(r->loop);
}

static void schedule_reconnect(struct cr_redis *r)
{
    if (r->closing)
        return;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 100;
    if (r->backoff_ms > r->reconnect_max_ms)
        r->backoff_ms = r->reconnect_max_ms;
    r->reconnect_at_ms = now_ms(r) + (uint64_t)r->backoff_ms;
    cr_info("redis '%s' %s:%d: reconnecting in %ld ms", r->name, r->host, r->port, r->backoff_ms);
}

static void set_ready(struct cr_redis *r, int ready)
{
    if (r->ready == ready)
        return;
    r->ready = ready;
    if (r->state_cb)
        r->state_cb(r, ready, r->ud);
}

static void unlink_pending(struct cr_redis *r, struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        r->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        r->tail = p->prev;
    r->npending--;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    struct cr_redis *r = p->r;

    (void)ac;
    unlink_pending(r, p);
    if (p->cb)
        p->cb(r, reply, p->ud);
    free(p);
}

static void on_auth(struct cr_redis *r, redisReply *reply, void *ud)
{
    (void)ud;
    if (reply == NULL)
        return;
    if (cr_reply_is_error(reply)) {
        cr_error("redis '%s' %s:%d: AUTH refused (%s), retrying", r->name, r->host, r->port,
                 reply->str ? reply->str : "?");
        drop_connection(r, "authentication failed");
        return;
    }
    r->backoff_ms = 0;
    set_ready(r, 1);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct cr_redis *r = ac->data;

    r->connecting = 0;
    if (status != REDIS_OK) {
        cr_warn("redis '%s' %s:%d: connect failed: %s", r->name, r->host, r->port,
                ac->errstr[0] ? ac->errstr : "unknown error");
        r->ac = NULL; /* hiredis frees the context after this callback */
        schedule_reconnect(r);
        return;
    }
    cr_info("redis '%s' %s:%d: connected", r->name, r->host, r->port);
    if (r->password) {
        if (cr_redis_cmd(r, on_auth, NULL, 0, "AUTH %s", r->password) < 0)
            drop_connection(r, "could not send AUTH");
        return;
    }
    r->backoff_ms = 0;
    set_ready(r, 1);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct cr_redis *r = ac->data;

    r->ac = NULL;
    r->connecting = 0;
    if (status != REDIS_OK)
        cr_warn("redis '%s' %s:%d: connection lost: %s", r->name, r->host, r->port,
                ac->errstr[0] ? ac->errstr : "closed");
    set_ready(r, 0);
    schedule_reconnect(r);
}

static void start_connect(struct cr_redis *r)
{
    redisAsyncContext *ac;

    r->reconnect_at_ms = 0;
    ac = redisAsyncConnect(r->host, r->port);
    if (ac == NULL || ac->err) {
        cr_warn("redis '%s' %s:%d: connect failed: %s", r->name, r->host, r->port,
                ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_reconnect(r);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->connecting = 1;
    r->connect_deadline_ms = now_ms(r) + (uint64_t)r->connect_timeout_ms;
}

/* Frees the context: hiredis fires every pending callback with NULL, and the
 * disconnect callback when it had connected. */
static void drop_connection(struct cr_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    int was_connecting = r->connecting;

    if (ac == NULL)
        return;
    cr_warn("redis '%s' %s:%d: dropping connection: %s", r->name, r->host, r->port, why);
    r->ac = NULL;
    r->connecting = 0;
    redisAsyncFree(ac);
    set_ready(r, 0);
    if (was_connecting || r->reconnect_at_ms == 0)
        schedule_reconnect(r);
}

static void on_tick(uv_timer_t *t)
{
    struct cr_redis *r = t->data;
    uint64_t now = now_ms(r);

    if (r->connecting && now >= r->connect_deadline_ms) {
        drop_connection(r, "connect timed out");
        return;
    }
    if (r->head && now >= r->head->deadline_ms) {
        drop_connection(r, "command timed out");
        return;
    }
    if (r->ac == NULL && r->reconnect_at_ms && now >= r->reconnect_at_ms)
        start_connect(r);
}

int cr_redis_init(uv_loop_t *loop, const struct cr_redis_opts *opts, cr_redis_state_cb state_cb,
                  void *ud, struct cr_redis **out)
{
    struct cr_redis *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return CR_ENOMEM;
    r->loop = loop;
    r->name = strdup(opts->name ? opts->name : "redis");
    r->host = strdup(opts->host);
    r->password = opts->password ? strdup(opts->password) : NULL;
    if (r->name == NULL || r->host == NULL || (opts->password && r->password == NULL)) {
        free(r->name);
        free(r->host);
        free(r->password);
        free(r);
        return CR_ENOMEM;
    }
    r->port = opts->port;
    r->connect_timeout_ms = opts->connect_timeout_ms;
    r->command_timeout_ms = opts->command_timeout_ms;
    r->reconnect_max_ms = opts->reconnect_max_ms;
    r->state_cb = state_cb;
    r->ud = ud;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_tick, TICK_MS, TICK_MS);
    start_connect(r);
    *out = r;
    return 0;
}

int cr_redis_ready(const struct cr_redis *r)
{
    return r->ready && r->ac != NULL;
}

static struct pending *new_pending(struct cr_redis *r, cr_redis_cb cb, void *ud,
                                   long allowance_ms)
{
    struct pending *p = malloc(sizeof(*p));

    if (p == NULL)
        return NULL;
    p->r = r;
    p->cb = cb;
    p->ud = ud;
    p->deadline_ms = now_ms(r) + (uint64_t)(r->command_timeout_ms + allowance_ms);
    p->next = NULL;
    p->prev = r->tail;
    if (r->tail)
        r->tail->next = p;
    else
        r->head = p;
    r->tail = p;
    r->npending++;
    return p;
}

static int send_checked(struct cr_redis *r, struct pending *p, int rc)
{
    if (rc != REDIS_OK) {
        unlink_pending(r, p);
        free(p);
        return CR_ECLOSED;
    }
    return 0;
}

int cr_redis_cmd(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms,
                 const char *fmt, ...)
{
    struct pending *p;
    va_list ap;
    int rc;

    if (r->ac == NULL || r->closing || (!r->ready && r->connecting))
        return CR_ECLOSED;
    p = new_pending(r, cb, ud, allowance_ms);
    if (p == NULL)
        return CR_ENOMEM;
    va_start(ap, fmt);
    rc = redisvAsyncCommand(r->ac, on_reply, p, fmt, ap);
    va_end(ap);
    return send_checked(r, p, rc);
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

/* The command in the protocol's multi-bulk form, written straight into one
 * buffer (hiredis formats each argument with a printf-like routine, costly
 * for the record script's thousands of arguments). Returns the length, or 0
 * when out of memory;
 * *out is buf when the command fits in cap bytes, else malloc'd. */
static size_t format_argv(int argc, const char **argv, const size_t *lens, char *buf,
                          size_t cap, char **out)
{
    size_t need = 1 + 20 + 2;
    char *p;
    int i;

    for (i = 0; i < argc; i++)
        need += 1 + 20 + 2 + (lens ? lens[i] : strlen(argv[i])) + 2;
    *out = need <= cap ? buf : malloc(need);
    if (*out == NULL)
        return 0;
    p = *out;
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
    return (size_t)(p - *out);
}

int cr_redis_argv(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms, int argc,
                  const char **argv, const size_t *argvlen)
{
    char stack[4096];
    char *cmd;
    size_t len;
    struct pending *p;
    int rc;

    if (r->ac == NULL || r->closing || !r->ready)
        return CR_ECLOSED;
    len = format_argv(argc, argv, argvlen, stack, sizeof(stack), &cmd);
    if (len == 0)
        return CR_ENOMEM;
    p = new_pending(r, cb, ud, allowance_ms);
    if (p == NULL) {
        rc = CR_ENOMEM;
    } else {
        rc = redisAsyncFormattedCommand(r->ac, on_reply, p, cmd, len);
        rc = send_checked(r, p, rc);
    }
    if (cmd != stack)
        free(cmd);
    return rc;
}

size_t cr_redis_pending(const struct cr_redis *r)
{
    return r->npending;
}

void cr_redis_reset(struct cr_redis *r)
{
    drop_connection(r, "reset requested");
}

static void on_timer_closed(uv_handle_t *h)
{
    struct cr_redis *r = h->data;

    free(r->name);
    free(r->host);
    free(r->password);
    free(r);
}

void cr_redis_close(struct cr_redis *r)
{
    redisAsyncContext *ac = r->ac;

    r->closing = 1;
    r->ac = NULL;
    r->ready = 0;
    if (ac) {
        ac->onDisconnect = NULL;
        redisAsyncFree(ac);
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
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

const char *cr_redis_down_reason(const struct cr_redis *r)
{
    return r->ready ? NULL : "not connected";
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
