/* Process metrics (see metrics.h): fixed arrays sized once from the provider
 * count, bumped by the pipeline, and written out in the Prometheus text
 * format 0.0.4 with the gauges read from the modules at scrape time. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_trim.h"
#include "cr_error.h"
#include "daemon.h"
#include "dispatch.h"
#include "httpd.h"
#include "replicas.h"
#include "sentinel.h"

#ifndef CR_VERSION
#define CR_VERSION "dev"
#endif

#define HOOK_SERIES_MAX 64 /* distinct (hook, outcome) pairs kept */
#define NCH (CR_CH__COUNT + 1) /* the channels and "none" (a resident skipped) */

/* Upper bounds (seconds) of the latency histogram's buckets; +Inf follows. */
static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define NBOUNDS (sizeof(bounds) / sizeof(bounds[0]))

struct hist {
    uint64_t bucket[NBOUNDS]; /* not cumulative; summed when written */
    uint64_t count;
    double sum;
};

/* The last WIN_S seconds per provider, one slot a second, for the fleet
 * heartbeat: what a person watching wants now, not totals since start. */
#define WIN_S 10
#define LAT_SAMPLES 256 /* newest request latencies kept per provider */

struct win_slot {
    int64_t sec;
    uint32_t msgs;
    uint32_t err[CR_ERRCLASS__COUNT];
    uint32_t failovers;
    uint32_t waits;
};

struct win {
    struct win_slot slot[WIN_S];
    uint32_t lat_us[LAT_SAMPLES];
    int64_t lat_sec[LAT_SAMPLES];
    size_t lat_next;
};

struct hook_series {
    char hook[16];
    char outcome[24];
    uint64_t n;
};

struct cr_metrics {
    size_t nprov;
    uint64_t *msgs;     /* [(nprov + 1) * NCH * CR_ST__COUNT], row nprov = no provider */
    struct hist *lat;   /* [nprov] */
    uint64_t *retries;  /* [nprov] */
    uint64_t *segments; /* [nprov] SMS segments accepted */
    double *wait_s;     /* [nprov] */
    struct hook_series hooks[HOOK_SERIES_MAX];
    size_t nhooks;
    uint64_t hooks_dropped; /* pairs beyond HOOK_SERIES_MAX */
    uint64_t record_gaps;
    struct win *win;    /* [nprov] */
    uint64_t *errs;     /* [nprov * CR_ERRCLASS__COUNT] */
    int64_t now_s;      /* set by cr_metrics_tick */
    struct cr_metrics_backlog backlog;
};

int cr_metrics_init(size_t nproviders, struct cr_metrics **out)
{
    struct cr_metrics *m = calloc(1, sizeof(*m));
    size_t np = nproviders > 0 ? nproviders : 1;

    if (m == NULL)
        return CR_ENOMEM;
    m->nprov = nproviders;
    m->msgs = calloc((np + 1) * NCH * CR_ST__COUNT, sizeof(*m->msgs));
    m->lat = calloc(np, sizeof(*m->lat));
    m->retries = calloc(np, sizeof(*m->retries));
    m->segments = calloc(np, sizeof(*m->segments));
    m->wait_s = calloc(np, sizeof(*m->wait_s));
    m->win = calloc(np, sizeof(*m->win));
    m->errs = calloc(np * CR_ERRCLASS__COUNT, sizeof(*m->errs));
    if (m->msgs == NULL || m->lat == NULL || m->retries == NULL || m->segments == NULL ||
        m->wait_s == NULL || m->win == NULL || m->errs == NULL) {
        cr_metrics_free(m);
        return CR_ENOMEM;
    }
    *out = m;
    return 0;
}

void cr_metrics_free(struct cr_metrics *m)
{
    if (m == NULL)
        return;
    free(m->msgs);
    free(m->lat);
    free(m->retries);
    free(m->segments);
    free(m->wait_s);
    free(m->win);
    free(m->errs);
    free(m);
}

void cr_metrics_record_gaps(struct cr_metrics *m, uint64_t n)
{
    m->record_gaps += n;
}

static int prov_ok(const struct cr_metrics *m, int provider_ix)
{
    return provider_ix >= 0 && (size_t)provider_ix < m->nprov;
}

/* The slot of this second in provider_ix's window (caller checked the index). */
static struct win_slot *slot_now(struct cr_metrics *m, int provider_ix)
{
    struct win_slot *w = &m->win[provider_ix].slot[(uint64_t)m->now_s % WIN_S];

    if (w->sec != m->now_s) {
        memset(w, 0, sizeof(*w));
        w->sec = m->now_s;
    }
    return w;
}

void cr_metrics_tick(struct cr_metrics *m, int64_t now_ms)
{
    if (m != NULL && now_ms / 1000 > m->now_s)
        m->now_s = now_ms / 1000;
}

void cr_metrics_answer(struct cr_metrics *m, int provider_ix, int err, long status)
{
    enum cr_errclass c;

    if (m == NULL || !prov_ok(m, provider_ix))
        return;
    if (err < 0)
        c = CR_ERRCLASS_TRANSPORT;
    else if (status == 429)
        c = CR_ERRCLASS_THROTTLED;
    else if (status >= 500)
        c = CR_ERRCLASS_SERVER;
    else if (status >= 400)
        c = CR_ERRCLASS_CLIENT;
    else
        return;
    m->errs[(size_t)provider_ix * CR_ERRCLASS__COUNT + c]++;
    slot_now(m, provider_ix)->err[c]++;
}

void cr_metrics_failover(struct cr_metrics *m, int provider_ix)
{
    if (m != NULL && prov_ok(m, provider_ix))
        slot_now(m, provider_ix)->failovers++;
}

const char *cr_errclass_name(enum cr_errclass c)
{
    static const char *const names[] = {"transport", "throttled", "server", "client"};

    return (unsigned)c < CR_ERRCLASS__COUNT ? names[c] : "unknown";
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

void cr_metrics_window(const struct cr_metrics *m, int provider_ix, struct cr_metrics_win *out)
{
    uint32_t lat[LAT_SAMPLES];
    const struct win *w;
    size_t i, n = 0;
    uint64_t msgs = 0;
    int c;

    memset(out, 0, sizeof(*out));
    if (m == NULL || !prov_ok(m, provider_ix))
        return;
    w = &m->win[provider_ix];
    for (i = 0; i < WIN_S; i++) {
        const struct win_slot *s = &w->slot[i];

        if (s->sec <= m->now_s - WIN_S || s->sec > m->now_s)
            continue;
        msgs += s->msgs;
        out->failovers += s->failovers;
        out->waits += s->waits;
        for (c = 0; c < CR_ERRCLASS__COUNT; c++)
            out->err[c] += s->err[c];
        if (s->sec >= m->now_s - 1) {
            out->recent_failovers += s->failovers;
            out->recent_waits += s->waits;
        }
    }
    out->rate = (double)msgs / WIN_S;
    for (i = 0; i < LAT_SAMPLES; i++) {
        if (w->lat_sec[i] > m->now_s - WIN_S && w->lat_sec[i] <= m->now_s)
            lat[n++] = w->lat_us[i];
    }
    out->samples = n;
    if (n > 0) {
        qsort(lat, n, sizeof(lat[0]), cmp_u32);
        out->p50_ms = lat[(n - 1) / 2] / 1000.0;
        out->p99_ms = lat[(n * 99 + 99) / 100 - 1] / 1000.0;
    }
}

void cr_metrics_set_backlog(struct cr_metrics *m, const struct cr_metrics_backlog *b)
{
    if (m != NULL)
        m->backlog = *b;
}

void cr_metrics_message(struct cr_metrics *m, enum cr_channel ch, int provider_ix,
                        enum cr_status st)
{
    size_t row;

    if (m == NULL || (unsigned)ch >= NCH || (unsigned)st >= CR_ST__COUNT)
        return;
    row = prov_ok(m, provider_ix) ? (size_t)provider_ix : m->nprov;
    m->msgs[(row * NCH + (size_t)ch) * CR_ST__COUNT + (size_t)st]++;
    if (row < m->nprov)
        slot_now(m, provider_ix)->msgs++;
}

void cr_metrics_latency(struct cr_metrics *m, int provider_ix, long latency_us)
{
    struct hist *h;
    double s;
    size_t i;

    if (m == NULL || !prov_ok(m, provider_ix))
        return;
    h = &m->lat[provider_ix];
    s = latency_us > 0 ? (double)latency_us / 1e6 : 0.0;
    for (i = 0; i < NBOUNDS && s > bounds[i]; i++)
        ;
    if (i < NBOUNDS)
        h->bucket[i]++;
    h->count++;
    h->sum += s;
    {
        struct win *w = &m->win[provider_ix];
        size_t k = w->lat_next++ % LAT_SAMPLES;

        w->lat_us[k] = latency_us > 0 ? (uint32_t)(latency_us > UINT32_MAX ? UINT32_MAX : latency_us)
                                      : 0;
        w->lat_sec[k] = m->now_s;
    }
}

void cr_metrics_sms_segments(struct cr_metrics *m, int provider_ix, unsigned n)
{
    if (m && provider_ix >= 0 && (size_t)provider_ix < m->nprov)
        m->segments[provider_ix] += n;
}

void cr_metrics_retry(struct cr_metrics *m, int provider_ix)
{
    if (m != NULL && prov_ok(m, provider_ix))
        m->retries[provider_ix]++;
}

void cr_metrics_ratelimit_wait(struct cr_metrics *m, int provider_ix, long wait_ms)
{
    if (m != NULL && prov_ok(m, provider_ix) && wait_ms > 0) {
        m->wait_s[provider_ix] += (double)wait_ms / 1000.0;
        slot_now(m, provider_ix)->waits++;
    }
}

void cr_metrics_webhook(struct cr_metrics *m, const char *hook, const char *outcome)
{
    struct hook_series *hs;
    size_t i;

    if (m == NULL || hook == NULL || outcome == NULL)
        return;
    for (i = 0; i < m->nhooks; i++) {
        hs = &m->hooks[i];
        if (strncmp(hs->hook, hook, sizeof(hs->hook)) == 0 &&
            strncmp(hs->outcome, outcome, sizeof(hs->outcome)) == 0) {
            hs->n++;
            return;
        }
    }
    if (m->nhooks >= HOOK_SERIES_MAX) {
        m->hooks_dropped++;
        return;
    }
    hs = &m->hooks[m->nhooks++];
    snprintf(hs->hook, sizeof(hs->hook), "%s", hook);
    snprintf(hs->outcome, sizeof(hs->outcome), "%s", outcome);
    hs->n = 1;
}

uint64_t cr_metrics_messages(const struct cr_metrics *m, enum cr_channel ch, enum cr_status st)
{
    uint64_t n = 0;
    size_t row;

    if (m == NULL || (unsigned)ch >= NCH || (unsigned)st >= CR_ST__COUNT)
        return 0;
    for (row = 0; row <= m->nprov; row++)
        n += m->msgs[(row * NCH + (size_t)ch) * CR_ST__COUNT + (size_t)st];
    return n;
}

int cr_metrics_provider_index(const struct cr_config *cfg, const char *name)
{
    const struct cr_provider_conf *pc;

    if (cfg == NULL || name == NULL)
        return -1;
    pc = cr_config_provider(cfg, name);
    return pc == NULL ? -1 : (int)(pc - cfg->providers);
}

/* ---- exposition ---------------------------------------------------------- */

/* A label value with \, " and newline escaped as the format requires. */
static int label(struct cr_buf *out, const char *v)
{
    int rc = 0;

    for (; rc == 0 && *v != '\0'; v++) {
        if (*v == '\\')
            rc = cr_buf_append(out, "\\\\", 2);
        else if (*v == '"')
            rc = cr_buf_append(out, "\\\"", 2);
        else if (*v == '\n')
            rc = cr_buf_append(out, "\\n", 2);
        else
            rc = cr_buf_append(out, v, 1);
    }
    return rc;
}

static int head(struct cr_buf *out, const char *name, const char *type, const char *help)
{
    return cr_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A metric of one value and no labels: its head, then the value. */
static int scalar(struct cr_buf *out, const char *name, const char *type, const char *help,
                  unsigned long long v)
{
    int rc = head(out, name, type, help);

    return rc == 0 ? cr_buf_appendf(out, "%s %llu\n", name, v) : rc;
}

static unsigned long v_redis_up(const struct cr_redis *r)
{
    return r != NULL && cr_redis_ready(r);
}

static unsigned long v_redis_errors(const struct cr_redis *r)
{
    return r != NULL ? cr_redis_error_count(r) : 0;
}

/* One line per Redis connection of the daemon. */
static int redis_conns(struct cr_buf *out, const struct cr_daemon *d, const char *name,
                       unsigned long (*value)(const struct cr_redis *))
{
    static const char *const conns[] = {"commands", "reader", "urgent"};
    const struct cr_redis *rs[3] = {NULL, NULL, NULL};
    int rc = 0;
    size_t i;

    if (d != NULL) {
        rs[0] = d->rc;
        rs[1] = d->rb;
        rs[2] = d->ru;
    }
    for (i = 0; i < 3 && rc == 0; i++)
        rc = cr_buf_appendf(out, "%s{conn=\"%s\"} %lu\n", name, conns[i], value(rs[i]));
    return rc;
}

static const char *prov_name(const struct cr_daemon *d, size_t i)
{
    if (d != NULL && d->cfg != NULL && i < d->cfg->nproviders && d->cfg->providers[i].name)
        return d->cfg->providers[i].name;
    return "unknown";
}

static int render_messages(const struct cr_metrics *m, const struct cr_daemon *d,
                           struct cr_buf *out)
{
    size_t row;
    int ch, st;
    int rc;

    rc = head(out, "crier_messages_total", "counter",
              "Messages that reached a final status, by channel, provider and status.");
    for (row = 0; rc == 0 && row <= m->nprov; row++) {
        for (ch = 0; rc == 0 && ch < NCH; ch++) {
            for (st = 0; rc == 0 && st < CR_ST__COUNT; st++) {
                uint64_t n = m->msgs[(row * NCH + (size_t)ch) * CR_ST__COUNT + (size_t)st];

                if (n == 0)
                    continue;
                rc = cr_buf_appendf(out, "crier_messages_total{channel=\"%s\",provider=\"",
                                    ch < CR_CH__COUNT ? cr_channel_name((enum cr_channel)ch)
                                                      : "none");
                if (rc == 0)
                    rc = label(out, row < m->nprov ? prov_name(d, row) : "none");
                if (rc == 0)
                    rc = cr_buf_appendf(out, "\",status=\"%s\"} %llu\n",
                                        cr_status_name((enum cr_status)st), (unsigned long long)n);
            }
        }
    }
    return rc;
}

static int render_latency(const struct cr_metrics *m, const struct cr_daemon *d,
                          struct cr_buf *out)
{
    size_t i, b;
    int rc;

    rc = head(out, "crier_provider_request_duration_seconds", "histogram",
              "Time from handing a request to the provider to its complete answer or failure.");
    for (i = 0; rc == 0 && i < m->nprov; i++) {
        const struct hist *h = &m->lat[i];
        uint64_t cum = 0;

        for (b = 0; rc == 0 && b < NBOUNDS; b++) {
            cum += h->bucket[b];
            rc = cr_buf_appends(out, "crier_provider_request_duration_seconds_bucket{provider=\"");
            if (rc == 0)
                rc = label(out, prov_name(d, i));
            if (rc == 0)
                rc = cr_buf_appendf(out, "\",le=\"%g\"} %llu\n", bounds[b], (unsigned long long)cum);
        }
        if (rc == 0)
            rc = cr_buf_appends(out, "crier_provider_request_duration_seconds_bucket{provider=\"");
        if (rc == 0)
            rc = label(out, prov_name(d, i));
        if (rc == 0)
            rc = cr_buf_appendf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
        if (rc == 0)
            rc = cr_buf_appends(out, "crier_provider_request_duration_seconds_sum{provider=\"");
        if (rc == 0)
            rc = label(out, prov_name(d, i));
        if (rc == 0)
            rc = cr_buf_appendf(out, "\"} %.6f\n", h->sum);
        if (rc == 0)
            rc = cr_buf_appends(out, "crier_provider_request_duration_seconds_count{provider=\"");
        if (rc == 0)
            rc = label(out, prov_name(d, i));
        if (rc == 0)
            rc = cr_buf_appendf(out, "\"} %llu\n", (unsigned long long)h->count);
    }
    return rc;
}

/* One sample per provider: "name{provider="p"} value". */
static int per_provider(struct cr_buf *out, const struct cr_daemon *d, size_t nprov,
                        const char *name, const char *type, const char *help,
                        double (*value)(const struct cr_metrics *, const struct cr_daemon *,
                                        size_t),
                        const struct cr_metrics *m)
{
    size_t i;
    int rc = head(out, name, type, help);

    for (i = 0; rc == 0 && i < nprov; i++) {
        rc = cr_buf_appendf(out, "%s{provider=\"", name);
        if (rc == 0)
            rc = label(out, prov_name(d, i));
        if (rc == 0)
            rc = cr_buf_appendf(out, "\"} %.15g\n", value(m, d, i));
    }
    return rc;
}

static double v_segments(const struct cr_metrics *m, const struct cr_daemon *d, size_t i)
{
    (void)d;
    return (double)m->segments[i];
}

static double v_retries(const struct cr_metrics *m, const struct cr_daemon *d, size_t i)
{
    (void)d;
    return (double)m->retries[i];
}

static double v_wait(const struct cr_metrics *m, const struct cr_daemon *d, size_t i)
{
    (void)d;
    return m->wait_s[i];
}

static double v_queued(const struct cr_metrics *m, const struct cr_daemon *d, size_t i)
{
    (void)m;
    return (d != NULL && d->dispatch != NULL) ? (double)cr_dispatch_queued(d->dispatch, i) : 0;
}

static double v_inflight(const struct cr_metrics *m, const struct cr_daemon *d, size_t i)
{
    (void)m;
    return (d != NULL && d->dispatch != NULL) ? (double)cr_dispatch_provider_inflight(d->dispatch, i)
                                              : 0;
}

static int render_circuits(const struct cr_metrics *m, const struct cr_daemon *d,
                           struct cr_buf *out)
{
    static const char *const states[] = {"closed", "open", "half_open"};
    size_t i, k;
    int rc;

    rc = head(out, "crier_circuit_state", "gauge",
              "1 for the state each provider's circuit breaker is in, 0 for the others.");
    for (i = 0; rc == 0 && i < m->nprov; i++) {
        const char *now = (d != NULL && d->dispatch != NULL) ? cr_dispatch_circuit(d->dispatch, i)
                                                             : "closed";

        for (k = 0; rc == 0 && k < sizeof(states) / sizeof(states[0]); k++) {
            rc = cr_buf_appends(out, "crier_circuit_state{provider=\"");
            if (rc == 0)
                rc = label(out, prov_name(d, i));
            if (rc == 0)
                rc = cr_buf_appendf(out, "\",state=\"%s\"} %d\n", states[k],
                                    now != NULL && strcmp(now, states[k]) == 0);
        }
    }
    return rc;
}

static int render_errors(const struct cr_metrics *m, const struct cr_daemon *d,
                         struct cr_buf *out)
{
    size_t i;
    int c;
    int rc;

    rc = head(out, "crier_provider_errors_total", "counter",
              "Provider requests that failed, by class: transport (no answer), throttled (429), "
              "server (5xx), client (other 4xx).");
    for (i = 0; rc == 0 && i < m->nprov; i++) {
        for (c = 0; rc == 0 && c < CR_ERRCLASS__COUNT; c++) {
            rc = cr_buf_appends(out, "crier_provider_errors_total{provider=\"");
            if (rc == 0)
                rc = label(out, prov_name(d, i));
            if (rc == 0)
                rc = cr_buf_appendf(out, "\",class=\"%s\"} %llu\n",
                                    cr_errclass_name((enum cr_errclass)c),
                                    (unsigned long long)m->errs[i * CR_ERRCLASS__COUNT + (size_t)c]);
        }
    }
    return rc;
}

/* The stream backlog as last read from Redis by the fleet heartbeat; -1
 * (never read) is left out. */
static int render_backlog(const struct cr_metrics *m, struct cr_buf *out)
{
    const struct cr_metrics_backlog *b = &m->backlog;
    int rc = 0;
    int p;

    if (!b->known)
        return 0;
    rc = head(out, "crier_batches_pending", "gauge",
              "Batches read by a crierd and not acknowledged yet, per priority stream "
              "(the whole fleet's, read from Redis).");
    for (p = 0; rc == 0 && p < CR_PRIO__COUNT; p++)
        rc = cr_buf_appendf(out, "crier_batches_pending{priority=\"%s\"} %lld\n",
                            cr_priority_name((enum cr_priority)p), b->pending[p]);
    if (rc == 0)
        rc = head(out, "crier_batches_lag", "gauge",
                  "Batches in each priority stream not read by any crierd yet.");
    for (p = 0; rc == 0 && p < CR_PRIO__COUNT; p++)
        rc = cr_buf_appendf(out, "crier_batches_lag{priority=\"%s\"} %lld\n",
                            cr_priority_name((enum cr_priority)p), b->lag[p]);
    if (rc == 0)
        rc = head(out, "crier_intake_lag", "gauge",
                  "Jobs in the intake stream not read by any crierd yet.");
    if (rc == 0)
        rc = cr_buf_appendf(out, "crier_intake_lag %lld\n", b->intake_lag);
    if (rc == 0)
        rc = head(out, "crier_intake_pending", "gauge",
                  "Jobs read from the intake stream and not acknowledged yet.");
    if (rc == 0)
        rc = cr_buf_appendf(out, "crier_intake_pending %lld\n", b->intake_pending);
    if (rc == 0)
        rc = head(out, "crier_retry_set_size", "gauge",
                  "Messages parked in the retry set (the whole fleet's, read from Redis).");
    if (rc == 0)
        rc = cr_buf_appendf(out, "crier_retry_set_size %lld\n", b->retry_set);
    if (rc == 0)
        rc = head(out, "crier_fleet_nodes", "gauge",
                  "crierd processes with a live heartbeat in Redis.");
    if (rc == 0)
        rc = cr_buf_appendf(out, "crier_fleet_nodes %lld\n", b->fleet_nodes);
    return rc;
}

static int render_hooks(const struct cr_metrics *m, struct cr_buf *out)
{
    size_t i;
    int rc;

    rc = head(out, "crier_webhook_requests_total", "counter",
              "Requests to /hooks/*, /u/ and /s/ by hook and outcome.");
    for (i = 0; rc == 0 && i < m->nhooks; i++) {
        rc = cr_buf_appends(out, "crier_webhook_requests_total{hook=\"");
        if (rc == 0)
            rc = label(out, m->hooks[i].hook);
        if (rc == 0)
            rc = cr_buf_appends(out, "\",outcome=\"");
        if (rc == 0)
            rc = label(out, m->hooks[i].outcome);
        if (rc == 0)
            rc = cr_buf_appendf(out, "\"} %llu\n", (unsigned long long)m->hooks[i].n);
    }
    return rc;
}

/* Sentinel's view, only when redis.sentinel is configured. */
static int render_sentinel(const struct cr_sentinel *s, struct cr_buf *out)
{
    int rc = scalar(out, "crier_redis_failovers_total", "counter",
                    "Times the Redis primary named by Sentinel changed (failovers followed).",
                    cr_sentinel_failovers(s));
    if (rc == 0)
        rc = scalar(out, "crier_redis_sentinel_primary_known", "gauge",
                    "1 while a Sentinel has named the Redis primary.",
                    cr_sentinel_down_reason(s) == NULL);
    if (rc == 0)
        rc = scalar(out, "crier_redis_sentinel_subscribed", "gauge",
                    "1 while +switch-master is followed on a Sentinel.", cr_sentinel_subscribed(s));
    return rc;
}

int cr_metrics_render(const struct cr_metrics *m, const struct cr_daemon *d, struct cr_buf *out)
{
    int rc;

    if (m == NULL)
        return CR_EINVAL;
    rc = render_messages(m, d, out);
    if (rc == 0)
        rc = render_latency(m, d, out);
    if (rc == 0)
        rc = per_provider(out, d, m->nprov, "crier_retries_total", "counter",
                          "Messages scheduled for another attempt.", v_retries, m);
    if (rc == 0)
        rc = per_provider(out, d, m->nprov, "crier_sms_segments_total", "counter",
                          "SMS segments accepted by the provider (what SMS costs).", v_segments,
                          m);
    if (rc == 0)
        rc = per_provider(out, d, m->nprov, "crier_ratelimit_wait_seconds_total", "counter",
                          "Time messages waited for the provider's rate limit.", v_wait, m);
    if (rc == 0)
        rc = per_provider(out, d, m->nprov, "crier_queue_depth", "gauge",
                          "Messages queued for the provider and not sent yet.", v_queued, m);
    if (rc == 0)
        rc = per_provider(out, d, m->nprov, "crier_inflight", "gauge",
                          "Requests sent to the provider and not answered yet.", v_inflight, m);
    if (rc == 0)
        rc = scalar(out, "crier_retry_waiting", "gauge", "Messages waiting for a retry.",
                    (d != NULL && d->dispatch != NULL) ? cr_dispatch_waiting_retries(d->dispatch)
                                                       : (size_t)0);
    if (rc == 0)
        rc = render_circuits(m, d, out);
    if (rc == 0)
        rc = render_errors(m, d, out);
    if (rc == 0)
        rc = render_backlog(m, out);
    if (rc == 0)
        rc = render_hooks(m, out);
    if (rc == 0)
        rc = scalar(out, "crier_webhook_series_dropped_total", "counter",
                    "Webhook counts not kept because the series cap was reached.",
                    m->hooks_dropped);
    if (rc == 0)
        rc = head(out, "crier_redis_connected", "gauge",
                  "1 while the Redis connection is ready (commands, reader, urgent).");
    if (rc == 0)
        rc = redis_conns(out, d, "crier_redis_connected", v_redis_up);
    if (rc == 0)
        rc = head(out, "crier_redis_up", "gauge",
                  "1 while the Redis connection is ready; 0 while down (see /readyz for why).");
    if (rc == 0)
        rc = redis_conns(out, d, "crier_redis_up", v_redis_up);
    if (rc == 0)
        rc = head(out, "crier_redis_errors_total", "counter",
                  "Redis connection failures and error replies that forced a reconnect.");
    if (rc == 0)
        rc = redis_conns(out, d, "crier_redis_errors_total", v_redis_errors);
    if (rc == 0 && d != NULL && d->sentinel != NULL)
        rc = render_sentinel(d->sentinel, out);
    if (rc == 0)
        rc = scalar(out, "crier_redis_wait_short_total", "counter",
                    "WAITs answered by fewer replicas than redis.wait_replicas asks for.",
                    cr_replicas_short_total(d ? d->replicas : NULL));
    if (rc == 0)
        rc = scalar(out, "crier_redis_wait_degraded", "gauge",
                    "1 while the last WAIT fell short: slots are freed without waiting for "
                    "replicas until they are back in step.",
                    cr_replicas_degraded(d ? d->replicas : NULL, NULL, 0));
    if (rc == 0)
        rc = scalar(out, "crier_record_gaps_total", "counter",
                    "Outcomes found missing from the ledger when their batch was acknowledged "
                    "(Redis lost writes it had acknowledged); written again.",
                    m->record_gaps);
    if (rc == 0)
        rc = scalar(out, "crier_http_connections", "gauge", "Open connections to the listener.",
                    (d != NULL && d->httpd != NULL) ? cr_httpd_connections(d->httpd) : (size_t)0);
    if (rc == 0)
        rc = cr_audit_trim_render(d != NULL ? d->audit_trim : NULL, out);
    if (rc == 0)
        rc = head(out, "crier_build_info", "gauge", "Always 1; the labels name the build.");
    if (rc == 0)
        rc = cr_buf_appends(out, "crier_build_info{version=\"" CR_VERSION "\"} 1\n");
    return rc;
}
