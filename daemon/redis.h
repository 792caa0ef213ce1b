/* An async Redis connection on the libuv loop (hiredis 0.14) with what hiredis
 * lacks: a connect timeout, a per-command watchdog, and reconnection with
 * capped backoff. Callers learn of (re)connections through a state callback. */
#ifndef CR_REDIS_H
#define CR_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

struct cr_redis;

/* A command's reply: reply is NULL when the command failed (connection lost,
 * watchdog fired, client closing). The reply is freed after the call: copy out
 * what is needed. */
typedef void (*cr_redis_cb)(struct cr_redis *r, redisReply *reply, void *ud);

/* Called when the connection becomes ready (connected 1, after AUTH) or is lost (0). */
typedef void (*cr_redis_state_cb)(struct cr_redis *r, int connected, void *ud);

struct cr_redis_opts {
    const char *name;         /* for log lines: "commands", "reader" */
    const char *host;
    int port;
    const char *password;     /* NULL = no AUTH */
    long connect_timeout_ms;
    long command_timeout_ms;  /* a reply later than this (plus the command's own
                                 allowance) drops and re-opens the connection */
    long reconnect_max_ms;
};

/* Creates the client and starts connecting. Strings in opts are copied.
 * Returns 0 and *out, or CR_ENOMEM. */
int cr_redis_init(uv_loop_t *loop, const struct cr_redis_opts *opts, cr_redis_state_cb state_cb,
                  void *ud, struct cr_redis **out);

/* Nonzero when commands can be sent now. */
int cr_redis_ready(const struct cr_redis *r);

/* Sends a command (hiredis format: %s, %b, %d...). allowance_ms extends the
 * watchdog for commands that block on purpose (XREADGROUP BLOCK). Returns 0 and
 * cb fires exactly once later, or CR_ECLOSED (not connected) / CR_ENOMEM and cb
 * never fires. */
int cr_redis_cmd(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms,
                 const char *fmt, ...);

/* As cr_redis_cmd with an argument vector (lengths may be NULL for C strings). */
int cr_redis_argv(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms, int argc,
                  const char **argv, const size_t *argvlen);

/* Commands sent and not answered yet. */
size_t cr_redis_pending(const struct cr_redis *r);

/* Drops the connection now (pending callbacks fire with NULL) and reconnects
 * after the backoff. For tests and for protocol errors. */
void cr_redis_reset(struct cr_redis *r);

/* Closes for good: pending callbacks fire with NULL, no reconnection, and r is
 * freed once its handles are closed. */
void cr_redis_close(struct cr_redis *r);

/* Helpers for reading replies: nonzero when reply is an error (or NULL). */
int cr_reply_is_error(const redisReply *reply);

/* Integer value of an integer or numeric string reply; 0 otherwise. */
long long cr_reply_int(const redisReply *reply);

#endif
