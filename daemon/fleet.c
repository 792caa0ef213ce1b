/* The fleet heartbeat (see fleet.h): a timer on the loop builds this node's
 * document from the modules' state, writes it with a TTL, and reads the
 * stream backlog the /metrics page shows; a round starts only when the last
 * one's replies are all in, so a slow Redis never piles up commands. */
#include "fleet.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cr_error.h"
#include "cr_log.h"
#include "dispatch.h"
#include "expander.h"
#include "fanout.h"
#include "intake.h"
#include "metrics.h"

#ifndef CR_VERSION
#define CR_VERSION "dev"
#endif

#define PRUNE_MS 60000
#define FIRST_BEAT_MS                                                                              \
    100 /* soon after start (Redis is usually connected by then) */ /* index entries older than    \
                                                                       this are removed */

/* The replies of one round that the backlog needs, by slot. */
enum {
    Q_BATCHES,                             /* + priority: XINFO GROUPS of each batch stream */
    Q_INTAKE = Q_BATCHES + CR_PRIO__COUNT, /* XINFO GROUPS of the intake stream */
    Q_RETRY,                               /* ZCARD of the retry set */
    Q_NODES,                               /* ZCOUNT of live heartbeats */
    Q__COUNT
};

struct query {
    struct cr_fleet *f;
    int slot;
};

struct cr_fleet {
    struct cr_daemon *d;
    uv_timer_t timer;
    int64_t started_ms;
    uint64_t due;    /* uv_now when the tick was expected: the loop's lag */
    int outstanding; /* replies of the current round still to come */
    int stopped;
    int leaving; /* the UNLINK of this node's key is under way */
    int again;   /* a change came during a round: beat once it is done */
    int warned;  /* a refused command was logged at warn once */
    struct query q[Q__COUNT];
    struct cr_metrics_backlog next; /* being filled by the round */
    char key[CR_KEY_MAX];
};

static const char *node_state(const struct cr_dispatch_pnow *pn, const struct cr_metrics_win *w)
{
    if (pn->breaker_open)
        return "breaker_open";
    if (w->recent_failovers > 0)
        return "failing_over";
    if (pn->paused_ms > 0 || pn->refill_ms > 0 || w->recent_waits > 0)
        return "throttled";
    return "ok";
}

static cJSON *provider_doc(const struct cr_daemon *d, size_t i, int64_t now_ms)
{
    const struct cr_provider_conf *pc = &d->cfg->providers[i];
    struct cr_dispatch_pnow pn;
    struct cr_metrics_win w;
    cJSON *o = cJSON_CreateObject();
    cJSON *errs;
    int c;

    if (o == NULL)
        return NULL;
    cr_dispatch_provider_now(d->dispatch, i, now_ms, &pn);
    cr_metrics_window(d->metrics, (int)i, &w);
    cJSON_AddStringToObject(o, "name", pc->name);
    cJSON_AddStringToObject(o, "channel", cr_channel_name(pc->ops->channel));
    cJSON_AddStringToObject(o, "state", node_state(&pn, &w));
    cJSON_AddStringToObject(o, "breaker", pn.breaker);
    cJSON_AddNumberToObject(o, "inflight", pn.requests);
    cJSON_AddNumberToObject(o, "queued", (double)pn.queued);
    cJSON_AddNumberToObject(o, "rate_10s", w.rate);
    cJSON_AddNumberToObject(o, "p50_ms", w.p50_ms);
    cJSON_AddNumberToObject(o, "p99_ms", w.p99_ms);
    cJSON_AddNumberToObject(o, "failovers_10s", w.failovers);
    errs = cJSON_AddObjectToObject(o, "errors_10s");
    for (c = 0; errs != NULL && c < CR_ERRCLASS__COUNT; c++)
        cJSON_AddNumberToObject(errs, cr_errclass_name((enum cr_errclass)c), w.err[c]);
    cJSON_AddNumberToObject(o, "refill_ms",
                            (double)(pn.paused_ms > pn.refill_ms ? pn.paused_ms : pn.refill_ms));
    cJSON_AddNumberToObject(o, "reopen_ms", (double)pn.reopen_ms);
    return o;
}

int cr_fleet_doc(const struct cr_daemon *d, int64_t started_ms, int64_t now_ms, long loop_lag_ms,
                 struct cr_buf *out)
{
    char host[256] = "";
    cJSON *root = cJSON_CreateObject();
    cJSON *provs;
    char *text = NULL;
    int rc = CR_ENOMEM;
    size_t i;

    if (root == NULL)
        goto out;
    gethostname(host, sizeof host - 1);
    cJSON_AddStringToObject(root, "node", d->cfg->consumer);
    cJSON_AddStringToObject(root, "host", host);
    cJSON_AddNumberToObject(root, "pid", (double)getpid());
    cJSON_AddStringToObject(root, "version", CR_VERSION);
    cJSON_AddNumberToObject(root, "started_ms", (double)started_ms);
    cJSON_AddNumberToObject(root, "now_ms", (double)now_ms);
    cJSON_AddNumberToObject(root, "loop_lag_ms", (double)loop_lag_ms);
    cJSON_AddBoolToObject(root, "stopping", d->stopping != 0);
    cJSON_AddNumberToObject(root, "jobs",
                            (double)((d->intake ? cr_intake_active(d->intake) : 0) +
                                     (d->expander ? cr_expander_active(d->expander) : 0)));
    cJSON_AddNumberToObject(root, "batches", (double)(d->fanout ? cr_fanout_active(d->fanout) : 0));
    cJSON_AddNumberToObject(root, "inflight",
                            (double)(d->dispatch ? cr_dispatch_inflight(d->dispatch) : 0));
    provs = cJSON_AddArrayToObject(root, "providers");
    if (provs == NULL)
        goto out;
    for (i = 0; d->dispatch != NULL && i < d->cfg->nproviders; i++) {
        cJSON *p = provider_doc(d, i, now_ms);

        if (p == NULL)
            goto out;
        cJSON_AddItemToArray(provs, p);
    }
    text = cJSON_PrintUnformatted(root);
    if (text == NULL)
        goto out;
    rc = cr_buf_appends(out, text);
out:
    free(text);
    cJSON_Delete(root);
    return rc;
}

/* ---- the round ---- */

static void beat(struct cr_fleet *f, long lag_ms);

static void done_one(struct cr_fleet *f)
{
    if (--f->outstanding > 0 || f->stopped)
        return;
    f->next.known = 1;
    cr_metrics_set_backlog(f->d->metrics, &f->next);
    if (f->again) {
        f->again = 0;
        beat(f, 0);
    }
}

/* A command of the round was refused for another reason than a missing
 * stream (an ACL without it, say): said once at warn, then at debug. */
static void refused(struct cr_fleet *f, const redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || strncmp(reply->str, "NOPERM", 6) != 0)
        return;
    if (!f->warned)
        cr_warn("fleet %s: Redis refused a heartbeat command: %s; the fleet view and the backlog "
                "metrics miss this node's part (config/redis-users.acl lists what crierd needs)",
                f->key, reply->str);
    f->warned = 1;
}

/* Sums "pending" and "lag" over the groups of an XINFO GROUPS reply (an error
 * reply: the stream does not exist yet, nothing pending). */
static void groups(const redisReply *r, long long *pending, long long *lag)
{
    size_t i, k;

    *pending = *lag = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return;
    for (i = 0; i < r->elements; i++) {
        const redisReply *g = r->element[i];

        for (k = 0; g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2) {
            const redisReply *name = g->element[k];

            if (name->type != REDIS_REPLY_STRING && name->type != REDIS_REPLY_STATUS)
                continue;
            if (strcmp(name->str, "pending") == 0)
                *pending += cr_reply_int(g->element[k + 1]);
            else if (strcmp(name->str, "lag") == 0)
                *lag += cr_reply_int(g->element[k + 1]);
        }
    }
}

static void on_query(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct query *q = ud;
    struct cr_fleet *f = q->f;
    long long pending, lag;

    (void)r;
    refused(f, reply);
    if (q->slot < Q_INTAKE) {
        groups(reply, &pending, &lag);
        f->next.pending[q->slot - Q_BATCHES] = pending;
        f->next.lag[q->slot - Q_BATCHES] = lag;
    } else if (q->slot == Q_INTAKE) {
        groups(reply, &f->next.intake_pending, &f->next.intake_lag);
    } else if (q->slot == Q_RETRY) {
        f->next.retry_set = reply ? cr_reply_int(reply) : 0;
    } else {
        f->next.fleet_nodes = reply ? cr_reply_int(reply) : 0;
    }
    done_one(f);
}

static void on_written(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_fleet *f = ud;

    (void)r;
    refused(f, reply);
    if (reply == NULL || cr_reply_is_error(reply))
        cr_debug("fleet %s: heartbeat not written: %s; tried again next second", f->key,
                 reply ? reply->str : "no connection");
    done_one(f);
}

/* Sends argc words (at most 4) and counts the reply into slot. */
static void send_q(struct cr_fleet *f, int slot, int argc, const char *a0, const char *a1,
                   const char *a2, const char *a3)
{
    const char *argv[4] = {a0, a1, a2, a3};
    struct query *q = &f->q[slot];

    q->f = f;
    q->slot = slot;
    if (cr_redis_argv(f->d->rc, on_query, q, 0, argc, argv, NULL) == 0)
        f->outstanding++;
}

static void beat(struct cr_fleet *f, long lag_ms)
{
    struct cr_daemon *d = f->d;
    const struct cr_keys *k = &d->keys;
    int64_t now = cr_now_ms();
    struct cr_buf doc;
    char nowtxt[32];
    int p;

    cr_metrics_tick(d->metrics, now);
    if (f->outstanding > 0 || !cr_redis_ready(d->rc))
        return;
    cr_buf_init(&doc, CR_FLEET_DOC_MAX);
    if (cr_fleet_doc(d, f->started_ms, now, lag_ms, &doc) != 0) {
        cr_warn("fleet %s: heartbeat over %d bytes or out of memory; not written", f->key,
                CR_FLEET_DOC_MAX);
        cr_buf_release(&doc);
        return;
    }
    snprintf(nowtxt, sizeof nowtxt, "%lld", (long long)now);
    memset(&f->next, 0, sizeof(f->next));
    if (cr_redis_cmd(d->rc, on_written, f, 0, "SET %s %b PX %d", f->key, doc.data, doc.len,
                     CR_FLEET_TTL_MS) == 0)
        f->outstanding++;
    if (cr_redis_cmd(d->rc, on_written, f, 0, "ZADD %s %s %s", k->fleet, nowtxt,
                     d->cfg->consumer) == 0)
        f->outstanding++;
    if (cr_redis_cmd(d->rc, on_written, f, 0, "ZREMRANGEBYSCORE %s -inf %lld", k->fleet,
                     (long long)(now - PRUNE_MS)) == 0)
        f->outstanding++;
    cr_buf_release(&doc);
    for (p = 0; p < CR_PRIO__COUNT; p++)
        send_q(f, Q_BATCHES + p, 3, "XINFO", "GROUPS", k->batches[p], NULL);
    send_q(f, Q_INTAKE, 3, "XINFO", "GROUPS", k->jobs, NULL);
    send_q(f, Q_RETRY, 2, "ZCARD", k->retry, NULL, NULL);
    snprintf(nowtxt, sizeof nowtxt, "%lld", (long long)(now - CR_FLEET_TTL_MS));
    send_q(f, Q_NODES, 4, "ZCOUNT", k->fleet, nowtxt, "+inf");
}

static void on_tick(uv_timer_t *t)
{
    struct cr_fleet *f = t->data;
    uint64_t now = uv_now(t->loop);
    long lag = now > f->due ? (long)(now - f->due) : 0;

    f->due = now + CR_FLEET_PERIOD_MS;
    if (!f->stopped)
        beat(f, lag);
}

void cr_fleet_kick(struct cr_fleet *f)
{
    if (f == NULL || f->stopped)
        return;
    if (f->outstanding > 0)
        f->again = 1;
    else
        beat(f, 0);
}

int cr_fleet_init(struct cr_daemon *d, struct cr_fleet **out)
{
    struct cr_fleet *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return CR_ENOMEM;
    f->d = d;
    f->started_ms = cr_now_ms();
    if (cr_key_for(&d->keys, "fleet", d->cfg->consumer, f->key, sizeof f->key) != 0) {
        free(f);
        return CR_ETOOBIG;
    }
    uv_timer_init(d->loop, &f->timer);
    f->timer.data = f;
    f->due = uv_now(d->loop) + FIRST_BEAT_MS;
    uv_timer_start(&f->timer, on_tick, FIRST_BEAT_MS, CR_FLEET_PERIOD_MS);
    uv_unref((uv_handle_t *)&f->timer); /* never what keeps the loop alive */
    *out = f;
    return 0;
}

static void on_del(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_fleet *f = ud;

    (void)r;
    (void)reply;
    if (f->leaving && --f->leaving == 0)
        cr_daemon_maybe_done(f->d);
}

int cr_fleet_leaving(const struct cr_fleet *f)
{
    return f != NULL && f->leaving > 0;
}

void cr_fleet_stop(struct cr_fleet *f)
{
    struct cr_daemon *d;

    if (f == NULL || f->stopped)
        return;
    f->stopped = 1;
    d = f->d;
    uv_timer_stop(&f->timer);
    if (cr_redis_ready(d->rc)) {
        if (cr_redis_cmd(d->rc, on_del, f, 0, "UNLINK %s", f->key) == 0)
            f->leaving++;
        if (cr_redis_cmd(d->rc, on_del, f, 0, "ZREM %s %s", d->keys.fleet, d->cfg->consumer) == 0)
            f->leaving++;
    }
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cr_fleet_free(struct cr_fleet *f)
{
    if (f == NULL)
        return;
    f->stopped = 1;
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, on_closed);
}
