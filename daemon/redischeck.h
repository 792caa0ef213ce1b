/* What crierd checks about the Redis it writes to: on the first connection,
 * the persistence and replication settings its guarantees rest on (warned
 * about, never refused; see docs/redis.md); on every connection, Redis's
 * run_id, to say in the log whether a reconnect met a restarted or another
 * server. */
#ifndef CR_REDISCHECK_H
#define CR_REDISCHECK_H

#include <stddef.h>

struct cr_daemon;
struct cr_redischeck;

/* The settings read back. Strings are "" when unknown. */
struct cr_redis_settings {
    char appendonly[16];
    char appendfsync[16];
    long min_replicas_to_write;  /* -1 unknown */
    long min_replicas_max_lag;   /* -1 unknown */
    char role[16];               /* "master", "slave" */
    long connected_replicas;     /* -1 unknown */
    int config_refused;          /* CONFIG GET answered with an error */
    char refusal[128];
};

/* Judges s against what crierd needs with wait_replicas: writes one line per
 * problem (each ending in '\n') into out (cap bytes, always terminated) and
 * returns how many. Pure: for the startup check and unit tests. */
int cr_redis_settings_judge(const struct cr_redis_settings *s, int wait_replicas, char *out,
                            size_t cap);

/* Creates the checker of d's commands connection. Returns 0 and *out, or
 * CR_ENOMEM. */
int cr_redischeck_init(struct cr_daemon *d, struct cr_redischeck **out);

/* Frees c; call after the commands connection is closed (its pending
 * callbacks have fired). */
void cr_redischeck_free(struct cr_redischeck *c);

/* The commands connection is ready: reads run_id (and, the first time, the
 * settings) asynchronously and logs what it finds. */
void cr_redischeck_connected(struct cr_redischeck *c);

#endif
