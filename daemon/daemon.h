/* The crierd process: one libuv loop carrying three Redis connections (commands,
 * blocking reads, urgent reads), the outbound HTTP client and the modules of the job
 * pipeline. Modules reach each other through this struct; each owns its part. */
#ifndef CR_DAEMON_H
#define CR_DAEMON_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "keys.h"
#include "redis.h"

struct cr_reader;
struct cr_intake;
struct cr_expander;
struct cr_fanout;
struct cr_dispatch;
struct cr_httpd;
struct cr_metrics;
struct cr_retry;
struct cr_schedule;
struct cr_escalate;
struct cr_replicas;
struct cr_redischeck;
struct cr_fleet;
struct cr_sentinel;
struct cr_audit_trim;

struct cr_daemon {
    uv_loop_t *loop;
    const struct cr_config *cfg;
    struct cr_keys keys;
    struct cr_redis *rc;        /* commands, scripts, pipelined loads */
    struct cr_redis *rb;        /* XREADGROUP BLOCK only */
    struct cr_redis *ru;        /* urgent work up to its first messages (cr_daemon_conn) */
    struct cr_sentinel *sentinel; /* finds the primary; NULL without redis.sentinel */
    struct cr_http *http;
    struct cr_reader *reader;
    struct cr_intake *intake;
    struct cr_expander *expander;
    struct cr_fanout *fanout;
    struct cr_dispatch *dispatch;
    struct cr_httpd *httpd;     /* NULL when http.listen is off */
    struct cr_metrics *metrics;
    struct cr_retry *retry;
    struct cr_schedule *schedule;
    struct cr_escalate *escalate; /* runs due escalation steps */
    struct cr_replicas *replicas; /* NULL unless redis.wait_replicas > 0 */
    struct cr_redischeck *redischeck;
    struct cr_fleet *fleet;     /* the heartbeat in Redis */
    struct cr_audit_trim *audit_trim; /* the receipts' trim floor for the audit sink */
    size_t retry_waiting;       /* size of the retry set when last seen */
    int stopping;               /* SIGTERM seen: take no new work */
    int exit_code;
};

/* The connection for the steps of work of priority prio up to its first
 * messages (accepting, expanding, reading and loading batches): urgent work
 * has its own, so that it never waits behind the loads and writes a bulk job
 * keeps queued on rc. Writes of outcomes stay on rc. */
static inline struct cr_redis *cr_daemon_conn(const struct cr_daemon *d, enum cr_priority prio)
{
    return prio == CR_PRIO_URGENT ? d->ru : d->rc;
}

/* Wall-clock unix time in ms: read at the loop edge and passed down. */
int64_t cr_now_ms(void);

/* Called by modules when they may have become idle during shutdown; the daemon
 * exits once nothing is in flight. */
void cr_daemon_maybe_done(struct cr_daemon *d);

#endif
