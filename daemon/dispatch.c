/* The dispatcher (see dispatch.h). Each provider has four FIFO queues, one per
 * priority; pump() fills its in-flight slots urgent first. A message to be
 * retried is parked in the durable retry set (retry.c brings it back). */
#include "dispatch.h"

#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "cr_error.h"
#include "cr_log.h"
#include "render.h"

#define RESPONSE_MAX (256 * 1024)
#define BODY_MAX (1024 * 1024)

struct queue {
    struct cr_msg *head;
    struct cr_msg *tail;
};

struct prov {
    struct cr_dispatch *dp;
    const struct cr_provider_conf *conf;
    struct cr_http_target target;
    struct queue q[CR_PRIO__COUNT];
    size_t queued;
    int inflight;
    int auth_busy; /* a credential fetch is under way: messages wait */
};

struct cr_dispatch {
    struct cr_daemon *d;
    struct prov prov[CR_MAX_PROVIDERS];
    size_t nprov;
    struct cr_render render;
    uint64_t rnd;
    size_t inflight;
    int stopped;
};

static void pump(struct prov *p);

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
        p->conf = &d->cfg->providers[i];
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

/* The provider for m: the channel's list in order from m->provider_ix, the
 * first whose adapter serves the subscriber's push platform. */
static struct prov *provider_for(struct cr_dispatch *dp, struct cr_msg *m)
{
    const struct cr_config *cfg = dp->d->cfg;
    size_t i;

    for (i = m->provider_ix; i < cfg->nchannel_providers[m->channel]; i++) {
        struct prov *p = &dp->prov[cfg->channel_providers[m->channel][i]];
        const char *want = p->conf->ops->platform;

        if (m->channel == CR_CH_PUSH && want &&
            strcmp(want, m->platform && *m->platform ? m->platform : "fcm") != 0)
            continue;
        m->provider_ix = (uint8_t)i;
        return p;
    }
    return NULL;
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
    pump(p);
}

/* ---- sending ---- */

struct send_ctx {
    struct prov *p;
    struct cr_msg *m;
};

static void finish(struct prov *p, struct cr_msg *m, enum cr_status st,
                   const struct cr_result *res, long latency_us, int suppress)
{
    cr_fanout_msg_done(m, st, p->conf->name, res, latency_us, suppress);
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

    if (m->attempt >= cfg->retry_max_attempts) {
        cr_warn("provider '%s' job %s: %s (%s); giving up after %d attempts", p->conf->name,
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
    cr_info("provider '%s' job %s: %s%s%s, retry in %lld ms (attempt %d/%d)", p->conf->name,
            m->batch->job_id, res->code, res->detail[0] ? " " : "", res->detail, (long long)delay,
            m->attempt, cfg->retry_max_attempts);
    cr_fanout_msg_park(m, now + delay, p->conf->name, res, latency_us);
}

static void on_done(void *ud, int err, const struct cr_response *resp, const char *detail,
                    long latency_us)
{
    struct send_ctx *sc = ud;
    struct prov *p = sc->p;
    struct cr_msg *m = sc->m;
    struct cr_dispatch *dp = p->dp;
    const struct cr_msg *one = NULL;
    struct cr_result res;

    free(sc);
    p->inflight--;
    dp->inflight--;
    memset(&res, 0, sizeof(res));
    res.retry_after_ms = -1;
    if (err == CR_ECANCELED) {
        cr_fanout_msg_returned(m); /* shutdown: not sent, the batch is handed back */
        return;
    }
    if (err < 0) {
        cr_result_set(&res, CR_OUT_RETRY, cr_errname(err), detail ? detail : cr_strerror(err));
    } else {
        one = m;
        p->conf->ops->classify(p->conf->state, (const struct cr_message *const *)&one, 1, resp,
                               &res);
    }
    switch (res.outcome) {
    case CR_OUT_DELIVERED:
        finish(p, m, CR_ST_DELIVERED, &res, latency_us, 0);
        break;
    case CR_OUT_SENT:
        finish(p, m, CR_ST_SENT, &res, latency_us, 0);
        break;
    case CR_OUT_SUPPRESS:
        cr_info("provider '%s' job %s: %s (%s); address suppressed on %s", p->conf->name,
                m->batch->job_id, res.code, res.detail, cr_channel_name(m->channel));
        finish(p, m, CR_ST_SUPPRESSED, &res, latency_us, 1);
        break;
    case CR_OUT_FAILED:
        cr_info("provider '%s' job %s: %s (%s); permanent failure, not retried", p->conf->name,
                m->batch->job_id, res.code, res.detail);
        finish(p, m, CR_ST_FAILED, &res, latency_us, 0);
        break;
    case CR_OUT_RETRY:
    default:
        if (dp->stopped) {
            cr_fanout_msg_returned(m);
            break;
        }
        retry_later(p, m, &res, latency_us);
        break;
    }
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
    if (rc == 0)
        rc = p->conf->ops->build(p->conf->state, &one, 1, &req);
    if (rc < 0) {
        cr_request_release(&req);
        cr_result_set(&res, CR_OUT_FAILED, rc == CR_EINVAL ? "invalid_message" : cr_errname(rc),
                      rc == CR_EINVAL ? "message cannot be sent to this address"
                                      : cr_strerror(rc));
        cr_warn("provider '%s' job %s sub %s: %s; failed", p->conf->name, m->batch->job_id,
                m->sub->id, res.detail);
        finish(p, m, CR_ST_FAILED, &res, 0, 0);
        return;
    }
    sc = malloc(sizeof(*sc));
    if (sc == NULL) {
        cr_request_release(&req);
        cr_result_set(&res, CR_OUT_RETRY, "ENOMEM", "out of memory");
        retry_later(p, m, &res, 0);
        return;
    }
    sc->p = p;
    sc->m = m;
    m->state = CR_MSG_INFLIGHT;
    m->attempt++;
    p->inflight++;
    dp->inflight++;
    rc = cr_http_submit(dp->d->http, &req, &p->target, on_done, sc);
    if (rc < 0) {
        free(sc);
        p->inflight--;
        dp->inflight--;
        cr_result_set(&res, CR_OUT_RETRY, cr_errname(rc), cr_strerror(rc));
        retry_later(p, m, &res, 0);
    }
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

static void pump(struct prov *p)
{
    while (!p->dp->stopped && !p->auth_busy && p->inflight < p->conf->max_inflight) {
        struct cr_msg *m = next_msg(p);

        if (m == NULL)
            return;
        if (m->batch->jc->cancelled) {
            cr_fanout_msg_done(m, CR_ST_CANCELLED, p->conf->name, NULL, 0, 0);
            continue;
        }
        if (m->batch->jc->job.expires_at_ms > 0 && cr_now_ms() >= m->batch->jc->job.expires_at_ms) {
            cr_fanout_msg_done(m, CR_ST_EXPIRED, p->conf->name, NULL, 0, 0);
            continue;
        }
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

size_t cr_dispatch_queued(const struct cr_dispatch *dp, size_t provider_ix)
{
    return provider_ix < dp->nprov ? dp->prov[provider_ix].queued : 0;
}

int cr_dispatch_provider_inflight(const struct cr_dispatch *dp, size_t provider_ix)
{
    return provider_ix < dp->nprov ? dp->prov[provider_ix].inflight : 0;
}

size_t cr_dispatch_waiting_retries(const struct cr_dispatch *dp)
{
    return dp->d->retry_waiting;
}

const char *cr_dispatch_circuit(const struct cr_dispatch *dp, size_t provider_ix)
{
    (void)dp;
    (void)provider_ix;
    return "closed";
}

void cr_dispatch_free(struct cr_dispatch *dp)
{
    cr_render_release(&dp->render);
    free(dp);
}
