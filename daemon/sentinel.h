/* Finds the Redis primary through Sentinel, as the Redis "Sentinel client
 * spec" asks: Sentinels are asked in turn, the one that answered goes first
 * next time, +switch-master is followed on one of them, and every data
 * connection of this process moves to the new primary together. */
#ifndef CR_SENTINEL_H
#define CR_SENTINEL_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

#include "redis.h"

#define CR_SENTINEL_WATCH_MAX 8 /* data connections that follow the primary */
#define CR_SENTINEL_NODES_CAP 16 /* Sentinels known, configured or learnt */

struct cr_sentinel;

struct cr_sentinel_opts {
    const char *master;            /* the name in "sentinel monitor <name> ..." */
    const char *const *nodes;      /* "host:port" of each Sentinel, 1..CR_SENTINEL_NODES_CAP */
    size_t nnodes;
    const char *username;          /* ACL user on the Sentinels, NULL = none */
    const char *password;          /* NULL = no AUTH */
    struct cr_redis_tls tls;       /* for the Sentinel connections */
    long timeout_ms;               /* one Sentinel query, connect and answer */
    long retry_max_ms;             /* cap of the wait between rounds that found no primary */
};

/* Starts looking for the primary at once (nothing blocks: the Sentinels are
 * asked over cr_redis connections on loop) and subscribes to +switch-master on
 * one Sentinel. Strings in o are copied. Returns 0 and *out, CR_EINVAL (a node
 * that is not host:port) or CR_ENOMEM. Free with cr_sentinel_close. */
int cr_sentinel_init(uv_loop_t *loop, const struct cr_sentinel_opts *o, struct cr_sentinel **out);

/* Sets o's resolve, misplaced, hook_ud and check_role so that a data
 * connection opened with o connects to the primary Sentinel names, checks ROLE,
 * and asks for a new discovery when it finds a replica. */
void cr_sentinel_hooks(struct cr_sentinel *s, struct cr_redis_opts *o);

/* Adds r to the connections reset (cr_redis_reset) the moment the primary
 * changes. r stays the caller's; close s before r. Returns 0 or CR_ETOOBIG
 * past CR_SENTINEL_WATCH_MAX. */
int cr_sentinel_watch(struct cr_sentinel *s, struct cr_redis *r);

/* cr_redis_resolve_cb (ud = s): the primary last named by a Sentinel. When
 * none is known yet it starts a discovery and returns CR_EAGAIN; when the
 * address has not been confirmed lately, it is returned and a discovery is
 * started beside (at most one at a time, rounds spaced out). */
int cr_sentinel_resolve(void *ud, struct cr_redis_addr *addr);

/* cr_redis_misplaced_cb (ud = s): the connection found a replica or a
 * READONLY/MASTERDOWN error: ask the Sentinels again. */
void cr_sentinel_misplaced(struct cr_redis *r, const char *why, void *ud);

/* Stops: closes the Sentinel connections and timers, forgets the watched
 * connections (nothing is reset after this), and frees s once its handles are
 * closed. s must not be used after. */
void cr_sentinel_close(struct cr_sentinel *s);

/* The master name s was given. */
const char *cr_sentinel_master(const struct cr_sentinel *s);

/* Writes the primary's "host:port" to buf and returns 0, or CR_ENOTFOUND
 * (none known yet). */
int cr_sentinel_primary(const struct cr_sentinel *s, char *buf, size_t n);

/* Why no primary is known (e.g. "no Sentinel answered (3 asked)"), NULL
 * when one is. */
const char *cr_sentinel_down_reason(const struct cr_sentinel *s);

/* Times the primary changed since start (a failover seen by this process). */
unsigned long cr_sentinel_failovers(const struct cr_sentinel *s);

/* 1 while the +switch-master subscription is confirmed on some Sentinel. */
int cr_sentinel_subscribed(const struct cr_sentinel *s);

/* ---- pure parts, for the CLI and the unit tests ---- */

/* Parses "host:port" or "[v6addr]:port" into out (path empty). Returns 0 or
 * CR_EINVAL. */
int cr_sentinel_parse_node(const char *s, struct cr_redis_addr *out);

/* Writes "host:port" ("[host]:port" when host has a ':') into buf. */
void cr_sentinel_format_addr(const struct cr_redis_addr *a, char *buf, size_t n);

/* Nonzero when a and b name the same host and port. */
int cr_sentinel_same_addr(const struct cr_redis_addr *a, const struct cr_redis_addr *b);

/* Reads a +switch-master payload "<name> <old ip> <old port> <new ip> <new
 * port>". Returns 0 with *from and *to filled when it is about master,
 * CR_ENOTFOUND when it is about another master, CR_EPARSE when malformed. */
int cr_sentinel_parse_switch(const char *payload, size_t len, const char *master,
                             struct cr_redis_addr *from, struct cr_redis_addr *to);

/* Reads the reply of SENTINEL get-master-addr-by-name: 0 and *out, CR_ENOTFOUND
 * for the null reply (the Sentinel does not know the master), CR_EREDIS for an
 * error reply, CR_EPARSE otherwise. */
int cr_sentinel_parse_addr_reply(const redisReply *reply, struct cr_redis_addr *out);

/* Moves list[i] to the front, keeping the order of the others (the Sentinel
 * that answered is asked first next time). */
void cr_sentinel_promote(struct cr_redis_addr *list, size_t n, size_t i);

/* Reads the reply of SENTINEL sentinels <master> (an array of field/value
 * arrays with "ip" and "port") and appends the Sentinels not yet in list, up to
 * cap; returns how many were added. */
size_t cr_sentinel_merge_peers(const redisReply *reply, struct cr_redis_addr *list, size_t *n,
                               size_t cap);

#endif
