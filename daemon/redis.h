/* crier's own Redis connection on the libuv loop: TCP, unix socket or TLS
 * (OpenSSL over memory BIOs), hiredis's reader and formatter for the protocol,
 * with a connect timeout, a per-command watchdog, reconnection with jittered
 * backoff, and a reason for being down. Callers learn of (re)connections
 * through a state callback. */
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

/* Called when the connection becomes ready (connected 1, after AUTH and ROLE)
 * or is lost (0). */
typedef void (*cr_redis_state_cb)(struct cr_redis *r, int connected, void *ud);

struct cr_redis_tls { /* enabled 0 = plain TCP / unix socket */
    int enabled;
    const char *ca_file;   /* PEM CA bundle; NULL = system default paths */
    const char *cert_file; /* client certificate, NULL = none */
    const char *key_file;
    const char *server_name; /* name checked in the certificate and sent as SNI; NULL = host */
};

struct cr_redis_addr {
    char host[256];
    int port;
    char path[108]; /* path[0] != 0: a unix socket, host and port unused */
};

/* Asked before each connection attempt: 0 and *addr filled, or a negative CR_
 * error when no address is known now (retried after the backoff). */
typedef int (*cr_redis_resolve_cb)(void *ud, struct cr_redis_addr *addr);

/* The server is not a writable primary: ROLE answered other than "master", or
 * a reply was READONLY / MASTERDOWN. Called once per connection before it is
 * dropped and re-resolved; why is a short text for logs. */
typedef void (*cr_redis_misplaced_cb)(struct cr_redis *r, const char *why, void *ud);

/* A message that arrived with no command waiting (pub/sub after SUBSCRIBE);
 * msg is freed after the call. */
typedef void (*cr_redis_push_cb)(struct cr_redis *r, redisReply *msg, void *ud);

struct cr_redis_opts {
    const char *name; /* for log lines: "commands", "reader" */
    const char *host;
    int port;
    const char *path;     /* unix socket; NULL = TCP host:port */
    const char *username; /* ACL user: AUTH username password; NULL = AUTH password */
    const char *password; /* NULL = no AUTH */
    struct cr_redis_tls tls;
    int check_role;              /* after AUTH send ROLE; ready only when it says master
                                    (or refuses ROLE itself: NOPERM, unknown command,
                                    logged; READONLY replies then reveal a replica) */
    cr_redis_resolve_cb resolve; /* NULL = host/port/path above */
    cr_redis_misplaced_cb misplaced;
    void *hook_ud;         /* ud of resolve and misplaced */
    cr_redis_push_cb push; /* ud = the state_cb ud */
    long connect_timeout_ms;
    long command_timeout_ms; /* a reply later than this (plus the command's own
                                allowance) drops and re-opens the connection */
    long reconnect_max_ms;
};

/* Creates the client and starts connecting. Strings in opts are copied; the
 * TLS files are loaded now. Returns 0 and *out, or CR_ENOMEM, or CR_CONFIG
 * (a TLS file that does not load; logged). */
int cr_redis_init(uv_loop_t *loop, const struct cr_redis_opts *opts, cr_redis_state_cb state_cb,
                  void *ud, struct cr_redis **out);

/* Nonzero when commands can be sent now. */
int cr_redis_ready(const struct cr_redis *r);

/* Sends a command (hiredis format: %s, %b, %d...). allowance_ms extends the
 * watchdog for commands that block on purpose (XREADGROUP BLOCK). Returns 0 and
 * cb fires exactly once later, or CR_ECLOSED (not connected) / CR_ENOMEM and cb
 * never fires. */
int cr_redis_cmd(struct cr_redis *r, cr_redis_cb cb, void *ud, long allowance_ms, const char *fmt,
                 ...);

/* As cr_redis_cmd, for a command a least-privilege ACL user may lack (CONFIG
 * GET, INFO): a NOPERM answer reaches cb as the command's error and, unlike
 * for other commands, does not drop the connection. */
int cr_redis_probe(struct cr_redis *r, cr_redis_cb cb, void *ud, const char *fmt, ...);

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

/* Why the connection is not ready ("connection refused", "replica (ROLE
 * slave)", "AUTH refused: WRONGPASS ...", "TLS: certificate verify failed"),
 * NULL when ready. The text lives until the next state change. */
const char *cr_redis_down_reason(const struct cr_redis *r);

/* Errors seen since start (connect failures, error replies that force a reconnect). */
unsigned long cr_redis_error_count(const struct cr_redis *r);

/* The address of the current/last connection, for logs ("127.0.0.1:6380",
 * "/run/redis.sock"). */
const char *cr_redis_peer(const struct cr_redis *r);

/* The connection's name given in opts ("commands"). */
const char *cr_redis_name(const struct cr_redis *r);

/* Checks that the TLS options load (CA bundle, client certificate and key),
 * as cr_redis_init will. Returns 0, or CR_ECONFIG with *key naming the option
 * at fault ("ca_file", "cert_file", "key_file") and err (cap bytes) saying why. */
int cr_redis_tls_check(const struct cr_redis_tls *tls, const char **key, char *err, size_t cap);

/* Helpers for reading replies: nonzero when reply is an error (or NULL). */
int cr_reply_is_error(const redisReply *reply);

/* Integer value of an integer or numeric string reply; 0 otherwise. */
long long cr_reply_int(const redisReply *reply);

#endif
