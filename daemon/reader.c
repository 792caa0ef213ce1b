/* Reading work out of the streams (see reader.h). The blocking connection
 * waits (XREADGROUP BLOCK, COUNT 1) on every stream that has room, so that a
 * new job or urgent batch wakes the daemon at once; the command connection
 * then fills the remaining room with non-blocking reads. */
#include "reader.h"

#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "cr_error.h"
#include "cr_log.h"
#include "fanout.h"
#include "intake.h"

#define NSTREAMS (1 + CR_PRIO__COUNT) /* jobs, then batches by priority */
#define RECOVER_PAGE 100
#define RECOVER_EVERY 4 /* claim timer ticks between sweeps of this consumer's pending list */
#define PAUSE_BASE_MS 100 /* first pause after a read answered with an error, doubling */

struct cr_reader {
    struct cr_daemon *d;
    const char *streams[NSTREAMS];
    int blocking;             /* a blocking read is under way */
    int pulling[NSTREAMS];    /* a non-blocking read is under way */
    int recovering[NSTREAMS]; /* own pending entries being read back */
    char recover_from[NSTREAMS][32];
    int claiming;
    int stopped;
    unsigned ticks;
    int paused;        /* a read failed: no new reads until pause_timer fires */
    int read_failures; /* reads answered with an error in a row */
    uint64_t rnd;
    int nopen;         /* timers not closed yet */
    uv_timer_t claim_timer;
    uv_timer_t pause_timer;
    uv_timer_t recover_timer; /* a failed step's next attempt, sooner than the sweep */
    uint64_t recover_at;      /* loop ms it is armed for, 0 = idle */
};

struct pull_ctx {
    struct cr_reader *r;
    int stream;
    int kind; /* 0 = new entries, 1 = recovery page, 2 = autoclaim */
};

static void issue_blocking(struct cr_reader *r);
static void create_groups(struct cr_reader *r);

static void on_pause_over(uv_timer_t *t)
{
    struct cr_reader *r = t->data;

    r->paused = 0;
    cr_reader_kick(r);
}

/* A read was answered with an error (a missing group after Redis lost its
 * data, an out-of-memory Redis...): reads wait out a backoff with jitter
 * instead of going straight back into the same error. */
static void read_failed(struct cr_reader *r, const char *what, const char *err)
{
    int64_t delay;

    if (r->read_failures < 1000)
        r->read_failures++;
    delay = cr_backoff_delay(r->read_failures, -1, PAUSE_BASE_MS,
                             r->d->cfg->redis_reconnect_max_ms, cr_rand_next(&r->rnd));
    if (r->read_failures == 1 || r->read_failures % 10 == 0)
        cr_error("redis: %s failed: %s; reading again in %lld ms (failure %d in a row)", what,
                 err, (long long)delay, r->read_failures);
    if (strncmp(err, "NOGROUP", 7) == 0)
        create_groups(r);
    if (r->paused || r->stopped)
        return;
    r->paused = 1;
    uv_timer_start(&r->pause_timer, on_pause_over, (uint64_t)delay, 0);
}

static int stream_has_room(const struct cr_reader *r, int s)
{
    if (r->d->stopping || r->stopped)
        return 0;
    if (s == 0)
        return cr_intake_has_room(r->d->intake);
    return cr_fanout_has_room(r->d->fanout, (enum cr_priority)(s - 1));
}

static const char *field(const redisReply *fields, const char *name, size_t *len)
{
    size_t i;

    if (fields == NULL || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i];
        const redisReply *v = fields->element[i + 1];

        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0 &&
            v->type == REDIS_REPLY_STRING) {
            if (len)
                *len = v->len;
            return v->str;
        }
    }
    return NULL;
}

static void on_acked(struct cr_redis *rc, redisReply *reply, void *ud)
{
    (void)rc;
    (void)reply;
    (void)ud;
}

/* An entry whose fields are gone (deleted while pending): nothing to do but ack. */
static void ack_gone(struct cr_reader *r, int s, const char *id)
{
    cr_warn("stream %s entry %s: pending but deleted, acknowledging", r->streams[s], id);
    cr_redis_cmd(r->d->rc, on_acked, NULL, 0, "XACK %s %s %s", r->streams[s],
                 r->d->cfg->group, id);
}

static void take_entry(struct cr_reader *r, int s, const redisReply *e)
{
    const redisReply *id;
    const redisReply *fields;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2)
        return;
    id = e->element[0];
    fields = e->element[1];
    if (id->type != REDIS_REPLY_STRING || id->len >= 32)
        return;
    if (fields->type != REDIS_REPLY_ARRAY) {
        ack_gone(r, s, id->str);
        return;
    }
    if (s == 0) {
        size_t len = 0;
        const char *doc = field(fields, "job", &len);
        const char *resume = field(fields, "resume", NULL);
        struct cr_signed sg;

        if (cr_intake_has(r->d->intake, id->str))
            return;
        sg.key = field(fields, "key", NULL);
        sg.sig = field(fields, "sig", NULL);
        sg.ts = field(fields, "ts", NULL);
        if (doc == NULL && resume != NULL)
            cr_intake_resume(r->d->intake, id->str, resume);
        else
            cr_intake_take(r->d->intake, id->str, doc, len, &sg);
        return;
    }
    if (!cr_fanout_has(r->d->fanout, (enum cr_priority)(s - 1), id->str))
        cr_fanout_take(r->d->fanout, (enum cr_priority)(s - 1), id->str,
                       field(fields, "job", NULL), field(fields, "pos", NULL),
                       field(fields, "ids", NULL), field(fields, "step", NULL));
}

static int stream_index(const struct cr_reader *r, const char *name)
{
    int s;

    for (s = 0; s < NSTREAMS; s++) {
        if (strcmp(r->streams[s], name) == 0)
            return s;
    }
    return -1;
}

/* Takes every entry of an XREADGROUP reply; returns how many there were and
 * the last id seen (for recovery paging). */
static size_t take_reply(struct cr_reader *r, const redisReply *reply, char *last, size_t lastlen)
{
    size_t n = 0;
    size_t i;
    size_t j;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return 0;
    /* Urgent first: streams come back in the order asked, which is priority order. */
    for (i = 0; i < reply->elements; i++) {
        const redisReply *st = reply->element[i];
        int s;

        if (st->type != REDIS_REPLY_ARRAY || st->elements < 2 ||
            st->element[0]->type != REDIS_REPLY_STRING ||
            st->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        s = stream_index(r, st->element[0]->str);
        if (s < 0)
            continue;
        for (j = 0; j < st->element[1]->elements; j++) {
            const redisReply *e = st->element[1]->element[j];

            take_entry(r, s, e);
            if (last && e->type == REDIS_REPLY_ARRAY && e->elements > 0 &&
                e->element[0]->type == REDIS_REPLY_STRING)
                snprintf(last, lastlen, "%s", e->element[0]->str);
            n++;
        }
    }
    return n;
}

static void on_blocking(struct cr_redis *rb, redisReply *reply, void *ud)
{
    struct cr_reader *r = ud;

    (void)rb;
    r->blocking = 0;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        read_failed(r, "XREADGROUP", reply->str);
    } else if (reply) {
        r->read_failures = 0;
        take_reply(r, reply, NULL, 0);
    }
    if (reply != NULL)
        issue_blocking(r);
    cr_reader_kick(r);
}

static void issue_blocking(struct cr_reader *r)
{
    const char *argv[9 + 2 * NSTREAMS];
    char block[24];
    int argc = 0;
    int chosen[NSTREAMS];
    int n = 0;
    int s;

    if (r->blocking || r->paused || !cr_redis_ready(r->d->rb))
        return;
    for (s = 0; s < NSTREAMS; s++) {
        if (stream_has_room(r, s))
            chosen[n++] = s;
    }
    if (n == 0)
        return;
    snprintf(block, sizeof(block), "%ld", r->d->cfg->intake_block_ms);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = r->d->cfg->group;
    argv[argc++] = r->d->cfg->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = "1";
    argv[argc++] = "BLOCK";
    argv[argc++] = block;
    argv[argc++] = "STREAMS";
    for (s = 0; s < n; s++)
        argv[argc++] = r->streams[chosen[s]];
    for (s = 0; s < n; s++)
        argv[argc++] = ">";
    if (cr_redis_argv(r->d->rb, on_blocking, r, r->d->cfg->intake_block_ms, argc, argv, NULL) ==
        0)
        r->blocking = 1;
}

static int issue_pull(struct cr_reader *r, int s, int kind, long count);

static void on_pull(struct cr_redis *rc, redisReply *reply, void *ud)
{
    struct pull_ctx *pc = ud;
    struct cr_reader *r = pc->r;
    int s = pc->stream;
    int kind = pc->kind;
    size_t n;

    (void)rc;
    free(pc);
    if (kind == 0)
        r->pulling[s] = 0;
    if (reply == NULL) {
        if (kind == 1)
            r->recovering[s] = 0;
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char what[CR_KEY_MAX + 16];

        snprintf(what, sizeof(what), "reading %s", r->streams[s]);
        if (kind == 1)
            r->recovering[s] = 0;
        read_failed(r, what, reply->str);
        return;
    }
    r->read_failures = 0;
    if (kind == 2) {
        /* XAUTOCLAIM: [cursor, entries, deleted] */
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2) {
            size_t j;
            const redisReply *es = reply->element[1];

            for (j = 0; es->type == REDIS_REPLY_ARRAY && j < es->elements; j++)
                take_entry(r, s, es->element[j]);
            if (es->type == REDIS_REPLY_ARRAY && es->elements > 0)
                cr_info("stream %s: claimed %zu entries whose consumer stopped answering",
                        r->streams[s], es->elements);
        }
        return;
    }
    n = take_reply(r, reply, kind == 1 ? r->recover_from[s] : NULL, sizeof(r->recover_from[s]));
    if (kind == 1) {
        if (n < RECOVER_PAGE || issue_pull(r, s, 1, RECOVER_PAGE) < 0)
            r->recovering[s] = 0;
        return;
    }
    if (n > 0)
        cr_reader_kick(r);
}

/* Sends one read of stream s; returns 0 when sent (on_pull will answer). */
static int issue_pull(struct cr_reader *r, int s, int kind, long count)
{
    struct cr_redis *conn;
    struct pull_ctx *pc;
    char cnt[24];
    char idle[24];
    int rc;

    /* batch streams (s > 0) are read on their priority's connection */
    conn = s > 0 ? cr_daemon_conn(r->d, (enum cr_priority)(s - 1)) : r->d->rc;
    if (!cr_redis_ready(conn))
        return CR_ECLOSED;
    pc = malloc(sizeof(*pc));
    if (pc == NULL)
        return CR_ENOMEM;
    pc->r = r;
    pc->stream = s;
    pc->kind = kind;
    snprintf(cnt, sizeof(cnt), "%ld", count);
    if (kind == 2) {
        snprintf(idle, sizeof(idle), "%ld", r->d->cfg->reclaim_idle_ms);
        rc = cr_redis_cmd(conn, on_pull, pc, 0, "XAUTOCLAIM %s %s %s %s 0-0 COUNT %s",
                          r->streams[s], r->d->cfg->group, r->d->cfg->consumer, idle, cnt);
    } else {
        rc = cr_redis_cmd(conn, on_pull, pc, 0, "XREADGROUP GROUP %s %s COUNT %s STREAMS %s %s",
                          r->d->cfg->group, r->d->cfg->consumer, cnt, r->streams[s],
                          kind == 1 ? r->recover_from[s] : ">");
    }
    if (rc < 0) {
        free(pc);
        return rc;
    }
    if (kind == 0)
        r->pulling[s] = 1;
    return 0;
}

static long room_for(const struct cr_reader *r, int s)
{
    /* One at a time per stream keeps the reads exact and urgent streams first. */
    return stream_has_room(r, s) ? 1 : 0;
}

void cr_reader_kick(struct cr_reader *r)
{
    int s;

    if (r->stopped || r->d->stopping || r->paused)
        return;
    for (s = 0; s < NSTREAMS; s++) {
        if (!r->pulling[s] && room_for(r, s) > 0)
            issue_pull(r, s, 0, room_for(r, s));
    }
    issue_blocking(r);
}

static void on_group(struct cr_redis *rc, redisReply *reply, void *ud)
{
    (void)rc;
    (void)ud;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0)
        cr_error("redis: creating consumer group failed: %s", reply->str);
}

static void create_groups(struct cr_reader *r)
{
    int s;

    for (s = 0; s < NSTREAMS; s++)
        cr_redis_cmd(r->d->rc, on_group, r, 0, "XGROUP CREATE %s %s 0 MKSTREAM", r->streams[s],
                     r->d->cfg->group);
}

static void start_recovery(struct cr_reader *r)
{
    int s;

    if (r->stopped || r->d->stopping)
        return;
    for (s = 0; s < NSTREAMS; s++) {
        if (r->recovering[s])
            continue;
        snprintf(r->recover_from[s], sizeof(r->recover_from[s]), "0");
        if (issue_pull(r, s, 1, RECOVER_PAGE) == 0)
            r->recovering[s] = 1;
    }
}

/* Re-claims (XCLAIM ... JUSTID) every entry this crierd is working on, which
 * resets its idle time: a long job or a slow batch is never taken over by
 * another crierd while this one is alive and answering. */
static void heartbeat(struct cr_reader *r)
{
    enum { MAX_HELD = 1024 };
    const char *argv[6 + MAX_HELD];
    int s;

    for (s = 0; s < NSTREAMS; s++) {
        size_t n;

        if (s == 0)
            n = cr_intake_entries(r->d->intake, argv + 5, MAX_HELD);
        else
            n = cr_fanout_entries(r->d->fanout, (enum cr_priority)(s - 1), argv + 5, MAX_HELD);
        if (n == 0)
            continue;
        argv[0] = "XCLAIM";
        argv[1] = r->streams[s];
        argv[2] = r->d->cfg->group;
        argv[3] = r->d->cfg->consumer;
        argv[4] = "0";
        argv[5 + n] = "JUSTID";
        cr_redis_argv(r->d->rc, on_acked, NULL, 0, (int)(n + 6), argv, NULL);
    }
}

/* Extends the lease of the retry-set members this crierd has claimed, for the
 * same reason: a retry waiting for a paused or rate-limited provider must not
 * come due again and go out twice. */
static void renew_retries(struct cr_reader *r)
{
    enum { MAX_HELD = 1024 };
    const char *members[MAX_HELD];
    const char *argv[3 + 2 * MAX_HELD];
    char until[24];
    size_t n = cr_fanout_retry_members(r->d->fanout, members, MAX_HELD);
    size_t i;

    if (n == 0)
        return;
    snprintf(until, sizeof(until), "%lld", (long long)(cr_now_ms() + r->d->cfg->reclaim_idle_ms));
    argv[0] = "ZADD";
    argv[1] = r->d->keys.retry;
    argv[2] = "XX";
    for (i = 0; i < n; i++) {
        argv[3 + 2 * i] = until;
        argv[4 + 2 * i] = members[i];
    }
    cr_redis_argv(r->d->rc, on_acked, NULL, 0, (int)(3 + 2 * n), argv, NULL);
}

static void on_claim_timer(uv_timer_t *t)
{
    struct cr_reader *r = t->data;
    int s;

    if (!cr_redis_ready(r->d->rc))
        return;
    heartbeat(r);
    renew_retries(r);
    /* Now and then, take back anything delivered here but not taken (a reply
     * lost on a connection that a watchdog dropped). */
    if (++r->ticks % RECOVER_EVERY == 0)
        start_recovery(r);
    for (s = 0; s < NSTREAMS; s++) {
        if (stream_has_room(r, s))
            issue_pull(r, s, 2, s == 0 ? 4 : 2);
    }
}

void cr_reader_redis_state(struct cr_reader *r, int blocking_conn, int connected)
{
    if (!connected) {
        if (blocking_conn)
            r->blocking = 0;
        return;
    }
    /* A reply lost with either connection may have delivered entries to this
     * consumer that it never took: read them back from the pending list. */
    if (!blocking_conn)
        create_groups(r);
    start_recovery(r);
    cr_reader_kick(r);
}

static void on_recover_timer(uv_timer_t *t)
{
    struct cr_reader *r = t->data;

    r->recover_at = 0;
    if (cr_redis_ready(r->d->rc))
        start_recovery(r);
}

void cr_reader_recover_in(struct cr_reader *r, long ms)
{
    uint64_t at = uv_now(r->d->loop) + (uint64_t)(ms > 0 ? ms : 0);

    if (r->stopped || (r->recover_at != 0 && r->recover_at <= at))
        return;
    r->recover_at = at;
    uv_timer_start(&r->recover_timer, on_recover_timer, (uint64_t)(ms > 0 ? ms : 0), 0);
}

int cr_reader_init(struct cr_daemon *d, struct cr_reader **out)
{
    struct cr_reader *r = calloc(1, sizeof(*r));
    long every;
    int p;

    if (r == NULL)
        return CR_ENOMEM;
    r->d = d;
    r->streams[0] = d->keys.jobs;
    for (p = 0; p < CR_PRIO__COUNT; p++)
        r->streams[1 + p] = d->keys.batches[p];
    r->rnd = uv_hrtime() ^ (uint64_t)(uintptr_t)r;
    uv_timer_init(d->loop, &r->claim_timer);
    uv_timer_init(d->loop, &r->pause_timer);
    r->claim_timer.data = r;
    r->pause_timer.data = r;
    uv_timer_init(d->loop, &r->recover_timer);
    r->recover_timer.data = r;
    r->nopen = 3;
    every = d->cfg->reclaim_idle_ms / 4;
    if (every < 250)
        every = 250;
    uv_timer_start(&r->claim_timer, on_claim_timer, (uint64_t)every, (uint64_t)every);
    *out = r;
    return 0;
}

void cr_reader_stop(struct cr_reader *r)
{
    r->stopped = 1;
    uv_timer_stop(&r->claim_timer);
    uv_timer_stop(&r->pause_timer);
    uv_timer_stop(&r->recover_timer);
}

int cr_reader_busy(const struct cr_reader *r)
{
    int s;

    for (s = 0; s < NSTREAMS; s++) {
        if (r->pulling[s] || r->recovering[s])
            return 1;
    }
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct cr_reader *r = h->data;

    if (--r->nopen == 0)
        free(r);
}

void cr_reader_free(struct cr_reader *r)
{
    uv_timer_stop(&r->claim_timer);
    uv_timer_stop(&r->pause_timer);
    uv_timer_stop(&r->recover_timer);
    uv_close((uv_handle_t *)&r->claim_timer, on_timer_closed);
    uv_close((uv_handle_t *)&r->pause_timer, on_timer_closed);
    uv_close((uv_handle_t *)&r->recover_timer, on_timer_closed);
}
