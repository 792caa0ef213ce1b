/* The dispatcher (see dispatch.h). Each provider has four FIFO queues, one per
 * priority; pump() fills its in-flight slots urgent first, and for adapters
 * that take many recipients per request sends the run of messages at the head
 * of a queue that can share one rendering as one request. A message to be
 * retried is parked in the durable retry set (retry.c brings it back). */
#include "dispatch.h"

#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "breaker.h"
#include "fleet.h"
#include "limiter.h"
#include "metrics.h"
#include "scripts.h"
#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"
#include "render.h"
#include "sms.h"
#include "whatsapp_doc.h"

#define RESPONSE_MAX (256 * 1024)
#define BODY_MAX (1024 * 1024)
#define BATCH_BODY_MAX (16 * 1024 * 1024) /* SendGrid takes up to 30 MB per request */

struct queue {
    struct cr_msg *head;
    struct cr_msg *tail;
};

struct prov {
    struct cr_dispatch *dp;
    size_t ix;
    const struct cr_provider_conf *conf;
    struct cr_http_target target;
    struct queue q[CR_PRIO__COUNT];
    size_t queued;
    int requests;           /* requests to the provider under way (max_inflight) */
    int inflight;           /* messages sent and not yet written to the ledger: each holds a
                               slot of max_unrecorded from its request until that write */
    int auth_busy;          /* a credential fetch is under way: messages wait */
    struct cr_bucket bucket; /* this process's pace */
    long shared_tokens;     /* taken from the account-wide bucket in Redis, not yet spent */
    int shared_busy;        /* a tokens script call is under way */
    struct cr_breaker breaker;
    int64_t paused_until;   /* unix ms: the provider asked us to wait (Retry-After) */
    char rl_key[CR_KEY_MAX];
    char tier_key[CR_KEY_MAX]; /* whatsapp: the residents the number started conversations with */
    uv_timer_t wake;        /* pump again when a wait is over */
};

struct cr_dispatch {
    struct cr_daemon *d;
    struct prov prov[CR_MAX_PROVIDERS];
    size_t nprov;
    struct cr_render render;
    struct cr_message *bout;          /* a batch's renderings (CR_RENDER_BATCH_MAX, on first use) */
    const struct cr_message **bptr;   /* those that share the request */
    unsigned char *balone;            /* those that must go alone */
    uint64_t rnd;
    size_t inflight;
    int stopped;
    int closing;            /* timers still to close before freeing */
};

static void pump(struct prov *p);
static void note_health(struct prov *p, int failed);
static void take_back(struct prov *p);
static int fail_over(struct prov *p, struct cr_msg *m, const struct cr_result *res);

/* p may start another request: a request slot is free and another message
 * may go unrecorded. */
static int has_room(const struct prov *p)
{
    return p->requests < p->conf->max_inflight && p->inflight < p->conf->max_unrecorded;
}

static void on_wake(uv_timer_t *t)
{
    pump(t->data);
}

static void wake_in(struct prov *p, int64_t ms);

/* New work or a free slot for p. An adapter that batches is pumped once the
 * loop has handed out everything it had at hand (a whole fan-out batch, every
 * outcome of a flush), so that one request carries them together; the others
 * are pumped at once. */
static void kick(struct prov *p)
{
    if (p->dp->closing)
        return;
    if (p->conf->ops->max_batch > 1)
        wake_in(p, 0);
    else
        pump(p);
}

/* Pumps p again after ms (the earliest of the waits asked for). */
static void wake_in(struct prov *p, int64_t ms)
{
    uint64_t due = uv_now(p->dp->d->loop) + (uint64_t)(ms > 0 ? ms : 0);

    if (uv_is_active((uv_handle_t *)&p->wake) &&
        uv_timer_get_due_in(&p->wake) + uv_now(p->dp->d->loop) <= due)
        return;
    uv_timer_start(&p->wake, on_wake, (uint64_t)(ms > 0 ? ms : 0), 0);
}

int cr_dispatch_init(struct cr_daemon *d, struct cr_dispatch **out)
{
    struct cr_dispatch *dp = calloc(1, sizeof(*dp));
    size_t i;

    if (dp == NULL)
        return CR_ENOMEM;
    dp->d = d;
    dp->nprov = d->cfg->nproviders;
    for (i = 0; i < dp->nprov; i++) {
        struct prov *p = &dp->prov[i];

        p->dp = dp;
        p->ix = i;
        p->conf = &d->cfg->providers[i];
        cr_bucket_init(&p->bucket, p->conf->rate, p->conf->burst, cr_now_ms());
        cr_breaker_init(&p->breaker, p->conf->breaker_failures, p->conf->breaker_open_ms);
        cr_key_for(&d->keys, "ratelimit", p->conf->name, p->rl_key, sizeof(p->rl_key));
        cr_key_for(&d->keys, "tier", p->conf->name, p->tier_key, sizeof(p->tier_key));
        uv_timer_init(d->loop, &p->wake);
        p->wake.data = p;
        p->target.connect_timeout_ms = p->conf->connect_timeout_ms;
        p->target.timeout_ms = p->conf->timeout_ms;
        p->target.ca_file = p->conf->ca_file;
        p->target.max_response = RESPONSE_MAX;
        p->target.http2 = (p->conf->ops->flags & CR_PROVIDER_HTTP2) != 0;
    }
    cr_render_init(&dp->render, &d->cfg->limits);
    dp->rnd = uv_hrtime() ^ ((uint64_t)(uintptr_t)dp << 17);
    *out = dp;
    return 0;
}

size_t cr_dispatch_inflight(const struct cr_dispatch *dp)
{
    return dp->inflight;
}

/* ---- queues ---- */

static void q_push(struct queue *q, struct cr_msg *m)
{
    m->qnext = NULL;
    if (q->tail)
        q->tail->qnext = m;
    else
        q->head = m;
    q->tail = m;
}

static void q_push_front(struct queue *q, struct cr_msg *m)
{
    m->qnext = q->head;
    q->head = m;
    if (q->tail == NULL)
        q->tail = m;
}

static struct cr_msg *q_pop(struct queue *q)
{
    struct cr_msg *m = q->head;

    if (m) {
        q->head = m->qnext;
        if (q->head == NULL)
            q->tail = NULL;
        m->qnext = NULL;
    }
    return m;
}

/* Whether p takes new messages now: its circuit is closed, or its open period
 * is over and no probe is under way (the next message is the probe). */
static int in_rotation(const struct prov *p, int64_t now)
{
    const struct cr_breaker *b = &p->breaker;

    if (b->state == CR_BREAKER_CLOSED)
        return 1;
    if (b->state == CR_BREAKER_OPEN)
        return now >= b->open_until_ms;
    return !b->probing && p->queued == 0;
}

static int serves(const struct prov *p, const struct cr_msg *m)
{
    const char *want = p->conf->ops->platform;

    return m->channel != CR_CH_PUSH || want == NULL ||
           strcmp(want, m->platform && *m->platform ? m->platform : "fcm") == 0;
}

/* The provider for m: the channel's list in order from m->provider_ix, the
 * first that serves the subscriber's push platform and is in rotation; when
 * none is, the first that serves it (the message waits there). */
static struct prov *provider_for(struct cr_dispatch *dp, struct cr_msg *m)
{
    const struct cr_config *cfg = dp->d->cfg;
    struct prov *fallback = NULL;
    int64_t now = cr_now_ms();
    size_t fallback_ix = 0;
    size_t i;

    for (i = m->provider_ix; i < cfg->nchannel_providers[m->channel]; i++) {
        struct prov *p = &dp->prov[cfg->channel_providers[m->channel][i]];

        if (!serves(p, m))
            continue;
        if (fallback == NULL) {
            fallback = p;
            fallback_ix = i;
        }
        if (in_rotation(p, now)) {
            m->provider_ix = (uint8_t)i;
            return p;
        }
    }
    if (fallback)
        m->provider_ix = (uint8_t)fallback_ix;
    return fallback;
}

/* The circuit of p opened: its queued messages go to the channel's other
 * providers where one is in rotation. */
static void reroute_queued(struct prov *p)
{
    struct queue moved[CR_PRIO__COUNT];
    int q;

    memcpy(moved, p->q, sizeof(moved));
    memset(p->q, 0, sizeof(p->q));
    p->queued = 0;
    for (q = 0; q < CR_PRIO__COUNT; q++) {
        struct cr_msg *m;

        while ((m = q_pop(&moved[q])) != NULL) {
            m->provider_ix = 0;
            cr_dispatch_enqueue(p->dp, m);
        }
    }
}

void cr_dispatch_enqueue(struct cr_dispatch *dp, struct cr_msg *m)
{
    struct prov *p = provider_for(dp, m);
    struct cr_result res;

    if (p == NULL) {
        memset(&res, 0, sizeof(res));
        cr_result_set(&res, CR_OUT_FAILED, "no_provider", "no provider configured");
        cr_fanout_msg_done(m, CR_ST_FAILED, "", &res, 0, 0);
        return;
    }
    m->state = CR_MSG_QUEUED;
    q_push(&p->q[m->batch->prio], m);
    p->queued++;
    kick(p);
}

/* ---- sending ---- */

/* What classify is shown of a message: who and where, not the rendering
 * (gone by the time the answer comes). */
struct sent {
    struct cr_message msg;
    char ref[CR_JOB_ID_MAX + 48];
};

/* One request in flight, for n messages (1 unless the adapter batches). */
struct send_ctx {
    struct prov *p;
    size_t n;
    struct cr_msg **m;
    struct sent *sent;
    const struct cr_message **msgp;
    struct cr_result *res;
};

static void ctx_free(struct send_ctx *sc)
{
    free(sc);
}

/* One allocation: the context, then its n-element arrays (every element
 * size is a multiple of the pointer alignment). */
static struct send_ctx *ctx_new(struct prov *p, size_t n)
{
    size_t size = sizeof(struct send_ctx) + n * (sizeof(struct cr_msg *) + sizeof(struct sent) +
                                                 sizeof(struct cr_message *) +
                                                 sizeof(struct cr_result));
    struct send_ctx *sc = calloc(1, size);
    char *at;

    if (sc == NULL)
        return NULL;
    at = (char *)(sc + 1);
    sc->p = p;
    sc->n = n;
    sc->m = (struct cr_msg **)(void *)at;
    at += n * sizeof(*sc->m);
    sc->sent = (struct sent *)(void *)at;
    at += n * sizeof(*sc->sent);
    sc->msgp = (const struct cr_message **)(void *)at;
    at += n * sizeof(*sc->msgp);
    sc->res = (struct cr_result *)(void *)at;
    return sc;
}

/* Message i of the request is m, rendered as r. */
static void ctx_set(struct send_ctx *sc, size_t i, struct cr_msg *m, const struct cr_message *r)
{
    struct sent *s = &sc->sent[i];

    sc->m[i] = m;
    memset(&s->msg, 0, sizeof(s->msg));
    cr_strlcpy(s->ref, r->ref, sizeof(s->ref));
    s->msg.job_id = m->batch->job_id;
    s->msg.sub_id = m->sub->id;
    s->msg.ref = s->ref;
    s->msg.channel = m->channel;
    s->msg.priority = r->priority;
    s->msg.address = m->address;
    s->msg.platform = m->platform;
    s->msg.expires_at_ms = r->expires_at_ms;
    sc->msgp[i] = &s->msg;
}

/* The outcome of a message p sent: it keeps p's slot until it is written. */
static void finish(struct prov *p, struct cr_msg *m, enum cr_status st,
                   const struct cr_result *res, long latency_us, int suppress)
{
    cr_fanout_msg_done(m, st, p->conf->name, res, latency_us, suppress);
}

void cr_dispatch_release(struct cr_dispatch *dp, size_t provider_ix)
{
    struct prov *p;

    if (provider_ix >= dp->nprov)
        return;
    p = &dp->prov[provider_ix];
    p->inflight--;
    kick(p);
}

static void hold_slot(struct prov *p, struct cr_msg *m)
{
    m->slot_held = 1;
    m->slot_prov = (uint8_t)p->ix;
}

static void drop_slot(struct prov *p, struct cr_msg *m)
{
    m->slot_held = 0;
    p->inflight--;
}

/* The key under which a per-message event is folded in the log (cr_log_repeat):
 * its kind, the provider, the job and the provider's code, so that 300
 * messages failing over the same way give one line and a count. */
static const char *event_key(char *buf, size_t n, const char *kind, const struct prov *p,
                             const char *job, const char *code)
{
    snprintf(buf, n, "%s %s %s %s", kind, p->conf->name, job, code);
    return buf;
}

/* A retryable answer: park the message in the durable retry set until the
 * backoff (or the provider's Retry-After) has passed, or give up after the
 * last attempt or when the job would expire first. */
static void retry_later(struct prov *p, struct cr_msg *m, struct cr_result *res, long latency_us)
{
    struct cr_dispatch *dp = p->dp;
    const struct cr_config *cfg = dp->d->cfg;
    int64_t delay;
    int64_t now = cr_now_ms();
    int64_t expires = m->batch->jc->job.expires_at_ms;
    char key[160];

    if (m->attempt >= cfg->retry_max_attempts) {
        cr_log_repeat(CR_LOG_WARN,
                      event_key(key, sizeof key, "giveup", p, m->batch->job_id, res->code),
                      "provider '%s' job %s: %s (%s); giving up after %d attempts", p->conf->name,
                      m->batch->job_id, res->code, res->detail, m->attempt);
        finish(p, m, CR_ST_FAILED, res, latency_us, 0);
        return;
    }
    delay = cr_backoff_delay(m->attempt, res->retry_after_ms, cfg->retry_base_ms,
                             cfg->retry_max_ms, cr_rand_next(&dp->rnd));
    if (res->retry_after_ms > delay)
        delay = res->retry_after_ms; /* the provider's word is honoured exactly */
    if (expires > 0 && now + delay >= expires) {
        snprintf(res->code, sizeof(res->code), "expired");
        finish(p, m, CR_ST_EXPIRED, res, latency_us, 0);
        return;
    }
    cr_log_repeat(CR_LOG_INFO, event_key(key, sizeof key, "retry", p, m->batch->job_id, res->code),
                  "provider '%s' job %s: %s%s%s, retry in %lld ms (attempt %d/%d)", p->conf->name,
                  m->batch->job_id, res->code, res->detail[0] ? " " : "", res->detail,
                  (long long)delay, m->attempt, cfg->retry_max_attempts);
    cr_metrics_retry(dp->d->metrics, (int)p->ix);
    cr_fanout_msg_park(m, now + delay, p->conf->name, res, latency_us);
}

/* The outcome of message m of a request p answered (res), on its normal path:
 * finished, moved to another provider, or parked for a retry. m holds its
 * slot of p until its outcome is written. */
static void settle(struct prov *p, struct cr_msg *m, struct cr_result *res, int failed,
                   long latency_us)
{
    struct cr_dispatch *dp = p->dp;
    char key[160];

    if (res->outcome == CR_OUT_RETRY && !dp->stopped && failed) {
        drop_slot(p, m);
        if (fail_over(p, m, res))
            return;
        hold_slot(p, m);
        p->inflight++;
    }
    switch (res->outcome) {
    case CR_OUT_DELIVERED:
        finish(p, m, CR_ST_DELIVERED, res, latency_us, 0);
        break;
    case CR_OUT_SENT:
        if (m->channel == CR_CH_SMS)
            cr_metrics_sms_segments(dp->d->metrics, (int)p->ix, m->segments);
        finish(p, m, CR_ST_SENT, res, latency_us, 0);
        break;
    case CR_OUT_SUPPRESS:
        cr_log_repeat(CR_LOG_INFO,
                      event_key(key, sizeof key, "suppress", p, m->batch->job_id, res->code),
                      "provider '%s' job %s: %s (%s); address suppressed on %s", p->conf->name,
                      m->batch->job_id, res->code, res->detail, cr_channel_name(m->channel));
        finish(p, m, CR_ST_SUPPRESSED, res, latency_us, 1);
        break;
    case CR_OUT_FAILED:
        cr_log_repeat(CR_LOG_INFO,
                      event_key(key, sizeof key, "failed", p, m->batch->job_id, res->code),
                      "provider '%s' job %s: %s (%s); permanent failure, not retried",
                      p->conf->name, m->batch->job_id, res->code, res->detail);
        finish(p, m, CR_ST_FAILED, res, latency_us, 0);
        break;
    case CR_OUT_RETRY:
    default:
        if (dp->stopped) {
            drop_slot(p, m);
            cr_fanout_msg_returned(m);
            break;
        }
        retry_later(p, m, res, latency_us);
        break;
    }
}

/* A permanent refusal of a whole batch request says that something in it
 * cannot be sent, not that every message cannot: m goes back to the head of
 * its queue (to be sent by itself when alone, as it was refused without the
 * provider saying for which message) and gives up its slot until then. */
static void resend(struct prov *p, struct cr_msg *m, int alone)
{
    drop_slot(p, m);
    if (alone)
        m->solo = 1;
    else if (m->attempt > 0)
        m->attempt--; /* not judged: the attempt does not count */
    m->state = CR_MSG_QUEUED;
    q_push_front(&p->q[m->batch->prio], m);
    p->queued++;
}

/* Whether message i of a batch request goes back to its queue instead of
 * taking its outcome: it was not judged (another message made the provider
 * refuse the request), or the whole request was refused for good without the
 * provider saying for which message (judged 0: it is tried by itself). */
static int refused(const struct send_ctx *sc, size_t i, int judged)
{
    enum cr_outcome o = sc->res[i].outcome;

    if (sc->n < 2 || sc->p->dp->stopped)
        return 0;
    return o == CR_OUT_RESEND || (o == CR_OUT_FAILED && !judged);
}

/* The answer to a request for sc->n messages: one result per message from the
 * adapter (a transport error is a retry for all), then each its own path; a
 * batch refused for good is sent again one message at a time. */
static void on_done(void *ud, int err, const struct cr_response *resp, const char *detail,
                    long latency_us)
{
    struct send_ctx *sc = ud;
    struct prov *p = sc->p;
    struct cr_dispatch *dp = p->dp;
    int64_t pause = 0;
    size_t nrefused = 0;
    int judged = 0;
    int failed;
    size_t i;

    dp->inflight -= sc->n;
    p->requests--;
    for (i = 0; i < sc->n; i++)
        hold_slot(p, sc->m[i]); /* released when the outcome is written (cr_dispatch_release) */
    cr_metrics_latency(dp->d->metrics, (int)p->ix, latency_us);
    if (err == CR_ECANCELED) {
        for (i = 0; i < sc->n; i++) {
            drop_slot(p, sc->m[i]);
            cr_fanout_msg_returned(sc->m[i]); /* shutdown: not sent, the batch is handed back */
        }
        ctx_free(sc);
        return;
    }
    for (i = 0; i < sc->n; i++) {
        memset(&sc->res[i], 0, sizeof(sc->res[i]));
        sc->res[i].retry_after_ms = -1;
    }
    if (err < 0) {
        cr_result_set(&sc->res[0], CR_OUT_RETRY, cr_errname(err),
                      detail ? detail : cr_strerror(err));
        for (i = 1; i < sc->n; i++)
            sc->res[i] = sc->res[0];
    } else {
        p->conf->ops->classify(p->conf->state, sc->msgp, sc->n, resp, sc->res);
    }
    failed = err < 0 || resp->status >= 500;
    cr_metrics_answer(dp->d->metrics, (int)p->ix, err < 0 ? err : 0, err < 0 ? 0 : resp->status);
    note_health(p, failed);
    for (i = 0; i < sc->n; i++) {
        if (sc->res[i].outcome == CR_OUT_RETRY && sc->res[i].retry_after_ms > pause)
            pause = sc->res[i].retry_after_ms;
    }
    if (pause > 0) {
        /* the provider asked for a pause: nothing more goes to it until then */
        int64_t until = cr_now_ms() + pause;

        if (until > p->paused_until)
            p->paused_until = until;
    }
    if (sc->n > 1)
        cr_debug("provider '%s': request for %zu messages answered: %s %s", p->conf->name,
                 sc->n, sc->res[0].code, sc->res[0].detail);
    for (i = 0; i < sc->n; i++) {
        if (sc->res[i].outcome == CR_OUT_RESEND)
            judged = 1; /* the provider said which message it refused */
    }
    for (i = 0; i < sc->n; i++) {
        if (refused(sc, i, judged))
            nrefused++;
        else
            settle(p, sc->m[i], &sc->res[i], failed, latency_us);
    }
    if (nrefused > 0) {
        cr_info("provider '%s' job %s: a request for %zu messages was refused (%s %s); "
                "sending %zu of them again",
                p->conf->name, sc->m[0]->batch->job_id, sc->n, sc->res[0].code,
                sc->res[0].detail, nrefused);
        for (i = sc->n; i-- > 0;) {
            if (refused(sc, i, judged)) /* to the queue's head, in their order */
                resend(p, sc->m[i], sc->res[i].outcome == CR_OUT_FAILED);
        }
    }
    ctx_free(sc);
    pump(p);
}

static void on_auth(void *ud, int err, const struct cr_response *resp, const char *detail,
                    long latency_us)
{
    struct prov *p = ud;

    (void)latency_us;
    p->auth_busy = 0;
    p->dp->inflight--;
    if (err < 0 && err != CR_ECANCELED)
        cr_warn("provider '%s': credential request failed: %s", p->conf->name,
                detail ? detail : cr_strerror(err));
    else if (err == 0 && resp->status >= 300)
        cr_warn("provider '%s': credential request answered HTTP %ld", p->conf->name,
                resp->status);
    p->conf->ops->auth_done(p->conf->state, cr_now_ms(), err < 0 ? NULL : resp);
    if (err != CR_ECANCELED)
        pump(p);
}

/* Makes sure the adapter holds a credential before building. Returns 0 to go
 * on, 1 when m was put back to wait for a fetch, or a negative code. */
static int ensure_auth(struct prov *p, struct cr_msg *m)
{
    const struct cr_provider_ops *ops = p->conf->ops;
    struct cr_request req;
    int rc;

    if (ops->auth_request == NULL)
        return 0;
    cr_request_init(&req, BODY_MAX);
    req.now_ms = cr_now_ms();
    rc = ops->auth_request(p->conf->state, req.now_ms, &req);
    if (rc == CR_EAGAIN) {
        p->auth_busy = 1;
        p->dp->inflight++;
        cr_debug("provider '%s': fetching a credential", p->conf->name);
        if (cr_http_submit(p->dp->d->http, &req, &p->target, on_auth, p) < 0) {
            p->auth_busy = 0;
            p->dp->inflight--;
            ops->auth_done(p->conf->state, cr_now_ms(), NULL);
            return CR_EAGAIN;
        }
        rc = CR_EBUSY;
    } else {
        cr_request_release(&req);
    }
    if (rc == CR_EBUSY) {
        q_push_front(&p->q[m->batch->prio], m);
        p->queued++;
        return 1;
    }
    return rc;
}

/* A request's outcome as the circuit breaker sees it: a transport error or a
 * 5xx counts against the provider, any other answer shows it is alive. */
static void note_health(struct prov *p, int failed)
{
    enum cr_breaker_state before = p->breaker.state;
    enum cr_breaker_state after;

    if (!failed) {
        after = cr_breaker_success(&p->breaker);
        if (before != CR_BREAKER_CLOSED) {
            cr_info("provider '%s': answering again; back in rotation", p->conf->name);
            take_back(p);
            cr_fleet_kick(p->dp->d->fleet);
        }
        return;
    }
    after = cr_breaker_failure(&p->breaker, cr_now_ms());
    if (after == CR_BREAKER_OPEN)
        wake_in(p, p->breaker.open_ms); /* time for a probe, even with nothing queued here */
    if (after == CR_BREAKER_OPEN && before != CR_BREAKER_OPEN) {
        cr_warn("provider '%s': %d failures in a row; out of rotation for %ld ms, traffic moves "
                "to the channel's next provider",
                p->conf->name, p->breaker.threshold, p->breaker.open_ms);
        reroute_queued(p);
        cr_fleet_kick(p->dp->d->fleet); /* readers see it now, not at the next beat */
    } else if (after == CR_BREAKER_OPEN) {
        cr_warn("provider '%s': probe failed; out of rotation for %ld ms", p->conf->name,
                p->breaker.open_ms);
    }
}

/* A failed attempt moves at once to the channel's next provider in rotation,
 * when there is one, instead of waiting out a backoff. Returns 1 if moved. */
static int fail_over(struct prov *p, struct cr_msg *m, const struct cr_result *res)
{
    struct cr_dispatch *dp = p->dp;
    const struct cr_config *cfg = dp->d->cfg;
    int64_t now = cr_now_ms();
    char key[160];
    size_t i;

    if (m->attempt >= cfg->retry_max_attempts)
        return 0;
    for (i = 0; i < cfg->nchannel_providers[m->channel]; i++) {
        struct prov *q = &dp->prov[cfg->channel_providers[m->channel][i]];

        if (q == p || !serves(q, m) || !in_rotation(q, now))
            continue;
        cr_log_repeat(
            CR_LOG_INFO, event_key(key, sizeof key, "failover", p, m->batch->job_id, res->code),
            "provider '%s' job %s: %s; trying '%s' (attempt %d/%d)", p->conf->name,
            m->batch->job_id, res->code, q->conf->name, m->attempt + 1, cfg->retry_max_attempts);
        cr_metrics_failover(dp->d->metrics, (int)p->ix);
        m->provider_ix = (uint8_t)i;
        m->state = CR_MSG_QUEUED;
        q_push(&q->q[m->batch->prio], m);
        q->queued++;
        pump(q);
        return 1;
    }
    return 0;
}

/* ---- the account-wide rate limit, kept in Redis ---- */

static void on_tokens(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct prov *p = ud;

    (void)r;
    p->shared_busy = 0;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        long got = (long)cr_reply_int(reply->element[0]);
        long wait = (long)cr_reply_int(reply->element[1]);

        p->shared_tokens += got;
        if (got == 0) {
            wake_in(p, wait > 0 ? wait : 1);
            return;
        }
    } else {
        wake_in(p, 100); /* Redis unreachable: try again shortly */
        return;
    }
    if (!p->dp->closing)
        pump(p);
}

/* Asks the shared bucket for a block of tokens (a few milliseconds' worth). */
static void take_shared(struct prov *p)
{
    struct cr_daemon *d = p->dp->d;
    char rate[24];
    char burst[24];
    char now[24];
    char want[24];
    const char *argv[5];
    long block = p->conf->rate / 50;

    if (p->shared_busy)
        return;
    if (block < 1)
        block = 1;
    if (block > p->conf->max_inflight)
        block = p->conf->max_inflight;
    snprintf(rate, sizeof(rate), "%ld", p->conf->rate);
    snprintf(burst, sizeof(burst), "%ld", p->conf->burst > 0 ? p->conf->burst : p->conf->rate);
    snprintf(now, sizeof(now), "%lld", (long long)cr_now_ms());
    snprintf(want, sizeof(want), "%ld", block);
    argv[0] = p->rl_key;
    argv[1] = rate;
    argv[2] = burst;
    argv[3] = now;
    argv[4] = want;
    if (cr_script_call(d->rc, CR_SCRIPT_TOKENS, 1, 5, argv, NULL, on_tokens, p) == 0)
        p->shared_busy = 1;
    else
        wake_in(p, 100);
}

/* ---- the messaging tier, kept in Redis ---- */

#define TIER_WINDOW_MS (24LL * 3600 * 1000)

struct tier_ctx {
    struct prov *p;
    struct cr_msg *m;
};

/* Whether m starts a business-initiated conversation that p's messaging tier
 * must admit first: a whatsapp message outside the resident's service window
 * (a template) through a provider with a tier_limit that has not admitted it
 * yet (a message moved to another provider asks that one's tier). */
static int needs_tier(const struct prov *p, const struct cr_msg *m)
{
    size_t i;

    if (p->conf->tier_limit <= 0 || m->channel != CR_CH_WHATSAPP || m->tier_prov == p->ix + 1)
        return 0;
    for (i = 0; i + 1 < m->sub->nkv; i += 2) {
        if (strcmp(m->sub->kv[i], "whatsapp_last_inbound") == 0)
            return !cr_wa_window_open(m->sub->kv[i + 1], cr_now_ms());
    }
    return 1;
}

/* The tier is full until wait_ms from now: m waits in the retry set until a
 * place frees (spread over a little time so that the waiting messages do not
 * all come back at once), or fails with "tier_limit" when the job would
 * expire first. The wait is not an attempt. */
static void tier_full(struct prov *p, struct cr_msg *m, int64_t wait_ms)
{
    struct cr_dispatch *dp = p->dp;
    struct cr_result res;
    int64_t now = cr_now_ms();
    int64_t expires = m->batch->jc->job.expires_at_ms;
    int64_t spread = wait_ms / 20 < 60000 ? wait_ms / 20 : 60000;
    int64_t delay = wait_ms;
    char key[160];

    if (spread > 0)
        delay += (int64_t)(cr_rand_next(&dp->rnd) % (uint64_t)spread);
    memset(&res, 0, sizeof(res));
    cr_result_set(&res, CR_OUT_RETRY, "tier_limit",
                  "the number's messaging tier is used up for the moving 24 hours");
    if (expires > 0 && now + delay >= expires) {
        res.outcome = CR_OUT_FAILED;
        cr_log_repeat(CR_LOG_WARN,
                      event_key(key, sizeof key, "tier", p, m->batch->job_id, res.code),
                      "provider '%s' job %s: messaging tier of %ld residents a day used up, "
                      "no place frees before the job expires; failed (tier_limit)",
                      p->conf->name, m->batch->job_id, p->conf->tier_limit);
        finish(p, m, CR_ST_FAILED, &res, 0, 0);
        return;
    }
    res.retry_after_ms = delay;
    cr_log_repeat(CR_LOG_WARN, event_key(key, sizeof key, "tier", p, m->batch->job_id, res.code),
                  "provider '%s' job %s: messaging tier of %ld residents a day used up; "
                  "message parked for %lld s until a place frees",
                  p->conf->name, m->batch->job_id, p->conf->tier_limit, (long long)(delay / 1000));
    cr_fanout_msg_park(m, now + delay, p->conf->name, &res, 0);
}

/* The tier set's answer for one message: it goes (back to the head of its
 * queue, admitted), waits or fails (tier_full), or asks again shortly when
 * Redis did not answer. */
static void on_tier(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct tier_ctx *tc = ud;
    struct prov *p = tc->p;
    struct cr_msg *m = tc->m;
    struct cr_dispatch *dp = p->dp;

    (void)r;
    free(tc);
    p->requests--;
    dp->inflight--;
    if (cr_bucket_limited(&p->bucket)) { /* the token is spent when the message goes */
        cr_bucket_refund(&p->bucket);
        p->shared_tokens++;
    }
    if (dp->stopped) {
        cr_fanout_msg_returned(m);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        q_push_front(&p->q[m->batch->prio], m); /* Redis unreachable: ask again shortly */
        p->queued++;
        m->state = CR_MSG_QUEUED;
        if (p->paused_until < cr_now_ms() + 200)
            p->paused_until = cr_now_ms() + 200;
        wake_in(p, 200);
        return;
    }
    if (cr_reply_int(reply->element[0]) == 1) {
        m->tier_prov = (uint8_t)(p->ix + 1);
        m->state = CR_MSG_QUEUED;
        q_push_front(&p->q[m->batch->prio], m);
        p->queued++;
    } else {
        tier_full(p, m, (int64_t)cr_reply_int(reply->element[1]));
    }
    if (!dp->closing)
        pump(p);
}

/* Asks the tier set in Redis to admit m's resident; m waits out of the queue
 * (holding a request slot) until the answer. */
static void tier_check(struct prov *p, struct cr_msg *m)
{
    struct cr_dispatch *dp = p->dp;
    struct tier_ctx *tc = malloc(sizeof(*tc));
    char now[24];
    char win[24];
    char lim[24];
    const char *argv[5];

    if (tc == NULL) {
        q_push_front(&p->q[m->batch->prio], m);
        p->queued++;
        wake_in(p, 100);
        return;
    }
    tc->p = p;
    tc->m = m;
    snprintf(now, sizeof(now), "%lld", (long long)cr_now_ms());
    snprintf(win, sizeof(win), "%lld", (long long)TIER_WINDOW_MS);
    snprintf(lim, sizeof(lim), "%ld", p->conf->tier_limit);
    argv[0] = p->tier_key;
    argv[1] = now;
    argv[2] = win;
    argv[3] = lim;
    argv[4] = m->address;
    m->state = CR_MSG_INFLIGHT;
    p->requests++;
    dp->inflight++;
    if (cr_script_call(dp->d->rc, CR_SCRIPT_TIER, 1, 5, argv, NULL, on_tier, tc) < 0) {
        free(tc);
        p->requests--;
        dp->inflight--;
        m->state = CR_MSG_QUEUED;
        q_push_front(&p->q[m->batch->prio], m);
        p->queued++;
        if (p->paused_until < cr_now_ms() + 200)
            p->paused_until = cr_now_ms() + 200;
        wake_in(p, 200);
    }
}

/* Renders, builds and submits one message; a message that cannot be built is
 * a permanent failure (its content or address can never be sent). */
static void send_one(struct prov *p, struct cr_msg *m)
{
    struct cr_dispatch *dp = p->dp;
    struct cr_message msg;
    const struct cr_message *one = &msg;
    struct cr_request req;
    struct cr_result res;
    struct send_ctx *sc;
    char key[160];
    int rc;

    memset(&res, 0, sizeof(res));
    rc = ensure_auth(p, m);
    if (rc == 1)
        return;
    if (rc < 0) {
        cr_result_set(&res, CR_OUT_RETRY, "no_credential", "provider credential unavailable");
        m->attempt++;
        retry_later(p, m, &res, 0);
        return;
    }
    cr_request_init(&req, BODY_MAX);
    req.now_ms = cr_now_ms();
    rc = cr_render_message(&dp->render, m, &msg);
    if (rc == 0 && m->channel == CR_CH_SMS && msg.sms) {
        struct cr_sms_info si;

        if (cr_sms_measure(msg.sms, strlen(msg.sms), &si) == 0)
            m->segments = (uint8_t)(si.segments > 255 ? 255 : si.segments);
    }
    if (rc == 0)
        rc = p->conf->ops->build(p->conf->state, &one, 1, &req);
    if (rc < 0) {
        cr_request_release(&req);
        cr_result_set(&res, CR_OUT_FAILED, rc == CR_EINVAL ? "invalid_message" : cr_errname(rc),
                      rc == CR_EINVAL ? "message cannot be sent to this address"
                                      : cr_strerror(rc));
        cr_log_repeat(CR_LOG_WARN,
                      event_key(key, sizeof key, "invalid", p, m->batch->job_id, res.code),
                      "provider '%s' job %s sub %s: %s; failed", p->conf->name, m->batch->job_id,
                      m->sub->id, res.detail);
        finish(p, m, CR_ST_FAILED, &res, 0, 0);
        return;
    }
    sc = ctx_new(p, 1);
    if (sc == NULL) {
        cr_request_release(&req);
        cr_result_set(&res, CR_OUT_RETRY, "ENOMEM", "out of memory");
        retry_later(p, m, &res, 0);
        return;
    }
    ctx_set(sc, 0, m, &msg);
    m->state = CR_MSG_INFLIGHT;
    m->attempt++;
    p->inflight++;
    dp->inflight++;
    p->requests++;
    rc = cr_http_submit(dp->d->http, &req, &p->target, on_done, sc);
    if (rc < 0) {
        ctx_free(sc);
        p->inflight--;
        dp->inflight--;
        p->requests--;
        cr_result_set(&res, CR_OUT_RETRY, cr_errname(rc), cr_strerror(rc));
        retry_later(p, m, &res, 0);
    }
}

/* Takes one more rate token for a batch without waiting: 1, or 0 when none
 * is at hand now (the batch is sent as it is). */
static int take_token(struct prov *p, int64_t now)
{
    int64_t wait = 0;

    if (!cr_bucket_limited(&p->bucket))
        return 1;
    if (p->shared_tokens <= 0 || !cr_bucket_take(&p->bucket, now, &wait))
        return 0;
    p->shared_tokens--;
    return 1;
}

/* Messages taken for a batch that go by themselves instead (msgs[i] where
 * skip is NULL or skip[i] is set): each is sent while a request slot is free;
 * the rest go back to the head of their queue, in order, with their rate
 * tokens returned. */
static void send_alone(struct prov *p, struct cr_msg **msgs, size_t n, const unsigned char *skip)
{
    size_t i;
    size_t stop = n;

    for (i = 0; i < n && stop == n; i++) {
        if (skip != NULL && !skip[i])
            continue;
        if (p->requests < p->conf->max_inflight)
            send_one(p, msgs[i]);
        else
            stop = i;
    }
    for (i = n; i-- > stop;) {
        if (skip != NULL && !skip[i])
            continue;
        q_push_front(&p->q[msgs[i]->batch->prio], msgs[i]);
        p->queued++;
        if (cr_bucket_limited(&p->bucket)) {
            cr_bucket_refund(&p->bucket);
            p->shared_tokens++;
        }
    }
}

/* Scratch for batch renderings, on first use. Returns 0 or CR_ENOMEM. */
static int batch_room(struct cr_dispatch *dp)
{
    if (dp->bout == NULL)
        dp->bout = calloc(CR_RENDER_BATCH_MAX, sizeof(*dp->bout));
    if (dp->bptr == NULL)
        dp->bptr = calloc(CR_RENDER_BATCH_MAX, sizeof(*dp->bptr));
    if (dp->balone == NULL)
        dp->balone = calloc(CR_RENDER_BATCH_MAX, 1);
    return dp->bout && dp->bptr && dp->balone ? 0 : CR_ENOMEM;
}

/* For an adapter that batches: first (already taken from its queue, with its
 * rate token) and the messages right behind it in the same queue that can
 * share its rendering (same job, priority and translation; as many as the
 * adapter, max_unrecorded and the rate tokens allow) go in one request. A
 * message the batch cannot carry, or every message when the batch cannot be
 * rendered or built, is sent by itself. The request takes one request slot;
 * each message holds its own unrecorded slot. */
static void send_batch(struct prov *p, struct cr_msg *first)
{
    struct cr_dispatch *dp = p->dp;
    const struct cr_provider_ops *ops = p->conf->ops;
    struct queue *q = &p->q[first->batch->prio];
    struct cr_msg *msgs[CR_RENDER_BATCH_MAX];
    struct send_ctx *sc = NULL;
    struct cr_request req;
    struct cr_result res;
    int64_t now = cr_now_ms();
    size_t max = ops->max_batch;
    size_t n = 1;
    size_t k = 0;
    size_t i;
    int rc;

    if (max > CR_RENDER_BATCH_MAX)
        max = CR_RENDER_BATCH_MAX;
    if (p->conf->max_unrecorded - p->inflight < (int)max)
        max = (size_t)(p->conf->max_unrecorded - p->inflight);
    if (p->breaker.state != CR_BREAKER_CLOSED || first->solo || batch_room(dp) < 0)
        max = 1; /* a probe is one message */
    rc = ensure_auth(p, first);
    if (rc == 1)
        return; /* first waits for the credential at the head of its queue */
    if (rc < 0) {
        send_one(p, first); /* retried later without one */
        return;
    }
    msgs[0] = first;
    while (n < max && q->head != NULL && !q->head->solo && cr_render_same(first, q->head) &&
           take_token(p, now)) {
        msgs[n++] = q_pop(q);
        p->queued--;
    }
    if (n == 1) {
        send_one(p, first);
        return;
    }
    rc = cr_render_batch(&dp->render, msgs, n,
                         (ops->flags & CR_PROVIDER_SUBST) ? CR_SUBST_MAX_BYTES : 0, now,
                         dp->bout, dp->balone);
    if (rc < 0) {
        cr_debug("provider '%s' job %s: %zu messages cannot share a rendering (%s)",
                 p->conf->name, first->batch->job_id, n, cr_strerror(rc));
        goto one_by_one;
    }
    for (i = 0; i < n; i++) {
        if (!dp->balone[i])
            dp->bptr[k++] = &dp->bout[i];
    }
    if (k < 2)
        goto one_by_one;
    sc = ctx_new(p, k);
    if (sc == NULL)
        goto one_by_one;
    cr_request_init(&req, BATCH_BODY_MAX);
    req.now_ms = now;
    rc = ops->build(p->conf->state, dp->bptr, k, &req);
    if (rc < 0) {
        cr_request_release(&req);
        cr_info("provider '%s' job %s: a request for %zu messages cannot be built (%s); "
                "sending them one by one",
                p->conf->name, first->batch->job_id, k, cr_strerror(rc));
        goto one_by_one;
    }
    k = 0;
    for (i = 0; i < n; i++) {
        if (dp->balone[i])
            continue;
        ctx_set(sc, k++, msgs[i], &dp->bout[i]);
        msgs[i]->state = CR_MSG_INFLIGHT;
        msgs[i]->attempt++;
        p->inflight++;
        dp->inflight++;
    }
    p->requests++;
    rc = cr_http_submit(dp->d->http, &req, &p->target, on_done, sc);
    if (rc < 0) {
        p->requests--;
        memset(&res, 0, sizeof(res));
        cr_result_set(&res, CR_OUT_RETRY, cr_errname(rc), cr_strerror(rc));
        for (i = 0; i < k; i++) {
            p->inflight--;
            dp->inflight--;
            retry_later(p, sc->m[i], &res, 0);
        }
        ctx_free(sc);
    }
    /* what the request could not carry goes by itself, after it */
    send_alone(p, msgs, n, dp->balone);
    return;
one_by_one:
    ctx_free(sc);
    send_alone(p, msgs, n, NULL);
}

static struct cr_msg *next_msg(struct prov *p)
{
    int q;

    for (q = 0; q < CR_PRIO__COUNT; q++) {
        struct cr_msg *m = q_pop(&p->q[q]);

        if (m) {
            p->queued--;
            return m;
        }
    }
    return NULL;
}

/* p is back in rotation: what waits on the channel's later providers, which
 * took over its traffic, returns to it (earlier in the list = preferred). */
static void take_back(struct prov *p)
{
    const struct cr_config *cfg = p->dp->d->cfg;
    enum cr_channel ch = p->conf->ops->channel;
    size_t my_ix = cfg->nchannel_providers[ch];
    size_t moved = 0;
    size_t i;
    int q;

    for (i = 0; i < cfg->nchannel_providers[ch]; i++) {
        struct prov *o = &p->dp->prov[cfg->channel_providers[ch][i]];
        struct queue keep[CR_PRIO__COUNT];

        if (o == p) {
            my_ix = i;
            continue;
        }
        if (i < my_ix || o->queued == 0)
            continue;
        memset(keep, 0, sizeof(keep));
        for (q = 0; q < CR_PRIO__COUNT; q++) {
            struct cr_msg *m;

            while ((m = q_pop(&o->q[q])) != NULL) {
                if (!serves(p, m)) {
                    q_push(&keep[q], m);
                    continue;
                }
                o->queued--;
                m->provider_ix = (uint8_t)my_ix;
                q_push(&p->q[q], m);
                p->queued++;
                moved++;
            }
        }
        memcpy(o->q, keep, sizeof(keep));
    }
    if (moved)
        cr_info("provider '%s': %zu queued messages return to it", p->conf->name, moved);
    pump(p);
}

/* p's open period is over but nothing is queued on it (its traffic went to
 * other providers): take one message from another provider of the channel
 * to be the probe. Returns 1 when one was taken. */
static int take_probe(struct prov *p)
{
    const struct cr_config *cfg = p->dp->d->cfg;
    enum cr_channel ch = p->conf->ops->channel;
    int64_t now = cr_now_ms();
    size_t my_ix = 0;
    size_t i;
    int q;


    if (p->breaker.state != CR_BREAKER_OPEN)
        return 0;
    if (now < p->breaker.open_until_ms) {
        wake_in(p, p->breaker.open_until_ms - now + 1); /* the loop's clock ran a little early */
        return 0;
    }
    for (i = 0; i < cfg->nchannel_providers[ch]; i++) {
        if (cfg->channel_providers[ch][i] == (int)p->ix)
            my_ix = i;
    }
    for (i = 0; i < cfg->nchannel_providers[ch]; i++) {
        struct prov *o = &p->dp->prov[cfg->channel_providers[ch][i]];

        if (o == p || o->queued == 0)
            continue;
        for (q = 0; q < CR_PRIO__COUNT; q++) {
            struct cr_msg *m = o->q[q].head;

            if (m == NULL || !serves(p, m))
                continue;
            q_pop(&o->q[q]);
            o->queued--;
            m->provider_ix = (uint8_t)my_ix;
            q_push(&p->q[q], m);
            p->queued++;
            cr_info("provider '%s': out of rotation period over; probing with one message",
                    p->conf->name);
            return 1;
        }
    }
    return 0;
}

/* Whether p may send one more message now; when not, arranges to be pumped
 * again when it may. Consumes a rate token and the breaker's probe slot. */
static int may_send(struct prov *p)
{
    int64_t now = cr_now_ms();
    int64_t wait = 0;

    if (p->paused_until > now) {
        wake_in(p, p->paused_until - now);
        return 0;
    }
    if (p->breaker.state == CR_BREAKER_OPEN && now < p->breaker.open_until_ms) {
        wake_in(p, p->breaker.open_until_ms - now);
        return 0;
    }
    if (cr_bucket_limited(&p->bucket)) {
        if (p->shared_tokens <= 0) {
            take_shared(p);
            return 0;
        }
        if (!cr_bucket_take(&p->bucket, now, &wait)) {
            cr_metrics_ratelimit_wait(p->dp->d->metrics, (int)p->ix, (long)wait);
            wake_in(p, wait);
            return 0;
        }
        p->shared_tokens--;
    }
    return cr_breaker_allow(&p->breaker, now);
}

static void pump(struct prov *p)
{
    if (p->queued == 0 && !p->dp->stopped)
        take_probe(p);
    while (!p->dp->stopped && !p->auth_busy && has_room(p) && p->queued > 0) {
        struct cr_msg *m;

        if (!may_send(p))
            return;
        m = next_msg(p);
        if (m->batch->jc->cancelled) {
            cr_fanout_msg_done(m, CR_ST_CANCELLED, p->conf->name, NULL, 0, 0);
            continue;
        }
        if (m->batch->jc->job.expires_at_ms > 0 && cr_now_ms() >= m->batch->jc->job.expires_at_ms) {
            cr_fanout_msg_done(m, CR_ST_EXPIRED, p->conf->name, NULL, 0, 0);
            continue;
        }
        if (needs_tier(p, m))
            tier_check(p, m);
        else if (p->conf->ops->max_batch > 1)
            send_batch(p, m);
        else
            send_one(p, m);
    }
}

void cr_dispatch_stop(struct cr_dispatch *dp)
{
    size_t i;
    int q;

    dp->stopped = 1;
    for (i = 0; i < dp->nprov; i++) {
        for (q = 0; q < CR_PRIO__COUNT; q++) {
            struct cr_msg *m;

            while ((m = q_pop(&dp->prov[i].q[q])) != NULL)
                dp->prov[i].queued--;
        }
    }
}

int cr_dispatch_starving(const struct cr_dispatch *dp)
{
    int64_t now = cr_now_ms();
    size_t i;

    for (i = 0; i < dp->nprov; i++) {
        const struct prov *p = &dp->prov[i];

        if (p->queued == 0 && has_room(p) && in_rotation(p, now) &&
            p->paused_until <= now)
            return 1;
    }
    return 0;
}

size_t cr_dispatch_queued(const struct cr_dispatch *dp, size_t provider_ix)
{
    return provider_ix < dp->nprov ? dp->prov[provider_ix].queued : 0;
}

int cr_dispatch_provider_inflight(const struct cr_dispatch *dp, size_t provider_ix)
{
    return provider_ix < dp->nprov ? dp->prov[provider_ix].requests : 0;
}

size_t cr_dispatch_waiting_retries(const struct cr_dispatch *dp)
{
    return dp->d->retry_waiting;
}

const char *cr_dispatch_circuit(const struct cr_dispatch *dp, size_t provider_ix)
{
    if (provider_ix >= dp->nprov)
        return "closed";
    return cr_breaker_state_name(dp->prov[provider_ix].breaker.state);
}

void cr_dispatch_provider_now(const struct cr_dispatch *dp, size_t provider_ix, int64_t now_ms,
                              struct cr_dispatch_pnow *out)
{
    const struct prov *p;

    memset(out, 0, sizeof(*out));
    out->breaker = "closed";
    if (provider_ix >= dp->nprov)
        return;
    p = &dp->prov[provider_ix];
    out->breaker = cr_breaker_state_name(p->breaker.state);
    out->breaker_open = p->breaker.state != CR_BREAKER_CLOSED;
    out->requests = p->requests;
    out->queued = p->queued;
    out->paused_ms = p->paused_until > now_ms ? p->paused_until - now_ms : 0;
    out->refill_ms = cr_bucket_wait_ms(&p->bucket, now_ms);
    out->reopen_ms = (p->breaker.state == CR_BREAKER_OPEN && p->breaker.open_until_ms > now_ms)
                         ? p->breaker.open_until_ms - now_ms
                         : 0;
}

static void on_wake_closed(uv_handle_t *h)
{
    struct prov *p = h->data;
    struct cr_dispatch *dp = p->dp;

    if (--dp->closing == 0)
        free(dp);
}

void cr_dispatch_free(struct cr_dispatch *dp)
{
    size_t i;

    cr_render_release(&dp->render);
    free(dp->bout);
    free(dp->bptr);
    free(dp->balone);
    if (dp->nprov == 0) {
        free(dp);
        return;
    }
    dp->closing = (int)dp->nprov;
    for (i = 0; i < dp->nprov; i++) {
        uv_timer_stop(&dp->prov[i].wake);
        uv_close((uv_handle_t *)&dp->prov[i].wake, on_wake_closed);
    }
}
