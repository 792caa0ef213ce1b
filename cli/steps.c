/* A job's escalation steps and confirmations as crierctl shows them: the
 * steps are read from the job hash's "esc" field, and a step's messages are
 * the counters of its channels (no channel is used by two steps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_buf.h"
#include "ctl.h"

const int cr_ctl_ttd_bounds[CTL_TTD_NBOUNDS] = {1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};

/* The upper bound (s) of the bucket holding the q-th share of step k's
 * deliveries: -1 none, 0 beyond the last bound. */
static long ttd_quantile(const struct ctl_job *job, int k, double q)
{
    long long total = 0, seen = 0;
    long long want;
    int b;

    for (b = 0; b <= CTL_TTD_NBOUNDS; b++)
        total += job->ttd_le[k][b];
    if (total <= 0)
        return -1;
    want = (long long)(q * (double)total + 0.999999);
    if (want < 1)
        want = 1;
    for (b = 0; b < CTL_TTD_NBOUNDS; b++) {
        seen += job->ttd_le[k][b];
        if (seen >= want)
            return cr_ctl_ttd_bounds[b];
    }
    return 0;
}

void cr_ctl_ttd(const struct ctl_job *job, int k, double *mean_s, long *p50, long *p95)
{
    *mean_s = -1;
    *p50 = *p95 = -1;
    if (k < 0 || k > 3 || job->ttd_n[k] <= 0)
        return;
    *mean_s = (double)job->ttd_ms[k] / (double)job->ttd_n[k] / 1000.0;
    *p50 = ttd_quantile(job, k, 0.50);
    *p95 = ttd_quantile(job, k, 0.95);
}

/* "<=5s", ">3600s" or "-" into out. */
static void fmt_bound(char *out, size_t n, long b)
{
    if (b < 0)
        snprintf(out, n, "-");
    else if (b == 0)
        snprintf(out, n, ">%ds", cr_ctl_ttd_bounds[CTL_TTD_NBOUNDS - 1]);
    else
        snprintf(out, n, "<=%lds", b);
}

/* "  to delivery mean 3.2s p50 <=5s p95 <=10s" (or nothing delivered). */
static void render_ttd(struct cr_buf *o, const struct ctl_job *job, int k)
{
    double mean;
    long p50, p95;
    char a[32], b[32];

    cr_ctl_ttd(job, k, &mean, &p50, &p95);
    if (mean < 0) {
        cr_buf_appends(o, "  to delivery -");
        return;
    }
    fmt_bound(a, sizeof(a), p50);
    fmt_bound(b, sizeof(b), p95);
    cr_buf_appendf(o, "  to delivery mean %.1fs p50 %s p95 %s (%lld)", mean, a, b,
                   job->ttd_n[k]);
}

int cr_ctl_steps(const struct ctl_job *job, struct ctl_step *steps, int max)
{
    const char *p = job->esc;
    int n = 0;

    while (*p && n < max) {
        char *end = NULL;
        long a = strtol(p, &end, 10);
        unsigned long c;

        if (end == p || *end != ':')
            break;
        p = end + 1;
        c = strtoul(p, &end, 10);
        if (end == p || *end != ':' || (end[1] != 'd' && end[1] != 'c'))
            break;
        steps[n].after_s = a;
        steps[n].channels = (unsigned)c;
        steps[n].confirmed = end[1] == 'c';
        n++;
        p = end + 2;
        if (*p == ',')
            p++;
    }
    return n;
}

void cr_ctl_step_counts(const struct ctl_job *job, const struct ctl_step *s,
                        long long st[CR_ST__COUNT], long long *confirmed)
{
    int ch;
    int i;

    memset(st, 0, sizeof(long long) * CR_ST__COUNT);
    *confirmed = 0;
    for (ch = 0; ch < CR_CH__COUNT; ch++) {
        if (!(s->channels & CR_CH_BIT(ch)))
            continue;
        for (i = 0; i < CR_ST__COUNT; i++)
            st[i] += job->ch[ch][i];
        *confirmed += job->confirmed_ch[ch];
    }
}

static void channel_list(char *out, size_t outlen, unsigned set)
{
    size_t n = 0;
    int ch;

    out[0] = '\0';
    for (ch = 0; ch < CR_CH__COUNT && n < outlen; ch++) {
        if (set & CR_CH_BIT(ch)) {
            int w = snprintf(out + n, outlen - n, "%s%s", n ? "," : "",
                             cr_channel_name((enum cr_channel)ch));

            if (w < 0)
                break;
            n += (size_t)w;
        }
    }
}

void cr_ctl_steps_render(struct cr_buf *o, const struct ctl_job *job)
{
    struct ctl_step steps[CTL_STEPS_MAX];
    int n = cr_ctl_steps(job, steps, CTL_STEPS_MAX);
    int ch;
    int i;

    if (job->confirm) {
        cr_buf_appendf(o, "confirmed %lld", job->confirmed);
        for (ch = 0; ch < CR_CH__COUNT; ch++)
            cr_buf_appendf(o, "  %s %lld", cr_channel_name((enum cr_channel)ch),
                           job->confirmed_ch[ch]);
        cr_buf_appends(o, "\n");
    }
    if (n > 0) {
        cr_buf_appends(o, "step 0  the job's channels");
        render_ttd(o, job, 0);
        cr_buf_appends(o, "\n");
    }
    for (i = 0; i < n; i++) {
        long long st[CR_ST__COUNT];
        long long conf;
        long long msgs = 0;
        char chans[32];
        char when[32];
        int k;

        cr_ctl_step_counts(job, &steps[i], st, &conf);
        for (k = 0; k < CR_ST__COUNT; k++)
            msgs += st[k];
        channel_list(chans, sizeof(chans), steps[i].channels);
        if (job->step_ms[i + 1] > 0)
            cr_ctl_fmt_time(job->step_ms[i + 1], 0, when, sizeof(when));
        else
            snprintf(when, sizeof(when), "%s", "not yet");
        cr_buf_appendf(o,
                       "step %d  after %lds to %s unless %s  ran %s  messages %lld  sent %lld  "
                       "delivered %lld  failed %lld  confirmed %lld",
                       i + 1, steps[i].after_s, chans, steps[i].confirmed ? "confirmed" : "delivered",
                       when, msgs, st[CR_ST_SENT], st[CR_ST_DELIVERED],
                       st[CR_ST_FAILED] + st[CR_ST_BOUNCED], conf);
        render_ttd(o, job, i + 1);
        cr_buf_appends(o, "\n");
    }
}

void cr_ctl_steps_header(const struct ctl_job *job)
{
    struct ctl_step steps[CTL_STEPS_MAX];
    int n = cr_ctl_steps(job, steps, CTL_STEPS_MAX);
    int i;

    if (job->confirm)
        fputs(",confirmed", stdout);
    for (i = 1; i <= n; i++)
        printf(",step%d_messages,step%d_sent,step%d_delivered,step%d_failed", i, i, i, i);
    for (i = 0; i <= n && n > 0; i++)
        printf(",step%d_ttd_n,step%d_ttd_mean_s,step%d_ttd_p50_s,step%d_ttd_p95_s", i, i, i, i);
}

/* One step's time-to-delivery cells: count, mean, p50, p95 (bucket bounds;
 * "inf" beyond the last), empty when nothing was delivered. */
static void ttd_cells(const struct ctl_job *job, int k)
{
    double mean;
    long p50, p95;

    cr_ctl_ttd(job, k, &mean, &p50, &p95);
    if (mean < 0) {
        printf(",0,,,");
        return;
    }
    printf(",%lld,%.3f", job->ttd_n[k], mean);
    if (p50 == 0)
        printf(",inf");
    else
        printf(",%ld", p50);
    if (p95 == 0)
        printf(",inf");
    else
        printf(",%ld", p95);
}

void cr_ctl_steps_cells(const struct ctl_job *job, const long long ch[][CR_ST__COUNT],
                        long long confirmed, int total)
{
    struct ctl_step steps[CTL_STEPS_MAX];
    int n = cr_ctl_steps(job, steps, CTL_STEPS_MAX);
    int i;

    if (job->confirm) {
        if (confirmed >= 0)
            printf(",%lld", confirmed);
        else
            putchar(',');
    }
    for (i = 0; i < n; i++) {
        long long msgs = 0, sent = 0, delivered = 0, failed = 0;
        int c;
        int k;

        for (c = 0; c < CR_CH__COUNT; c++) {
            if (!(steps[i].channels & CR_CH_BIT(c)))
                continue;
            for (k = 0; k < CR_ST__COUNT; k++)
                msgs += ch[c][k];
            sent += ch[c][CR_ST_SENT];
            delivered += ch[c][CR_ST_DELIVERED];
            failed += ch[c][CR_ST_FAILED] + ch[c][CR_ST_BOUNCED];
        }
        printf(",%lld,%lld,%lld,%lld", msgs, sent, delivered, failed);
    }
    for (i = 0; i <= n && n > 0; i++) {
        if (total)
            ttd_cells(job, i);
        else
            printf(",,,,");
    }
}

long long cr_ctl_confirmed_in(struct ctl *ctl, const char *jobkey, const char *seg)
{
    char key[CR_KEY_MAX + 32];
    const char *argv[3];
    redisReply *r;
    long long n = -1;
    int code;

    snprintf(key, sizeof(key), "%s:confirmed:segments", jobkey);
    argv[0] = "HGET";
    argv[1] = key;
    argv[2] = seg;
    r = cr_ctl_cmdv(ctl, 3, argv, NULL, &code);
    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING)
        n = strtoll(r->str, NULL, 10);
    else if (r->type == REDIS_REPLY_NIL)
        n = 0;
    freeReplyObject(r);
    return n;
}
