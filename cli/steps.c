/* A job's escalation steps and confirmations as crierctl shows them: the
 * steps are read from the job hash's "esc" field, and a step's messages are
 * the counters of its channels (no channel is used by two steps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_buf.h"
#include "ctl.h"

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
                       "delivered %lld  failed %lld  confirmed %lld\n",
                       i + 1, steps[i].after_s, chans, steps[i].confirmed ? "confirmed" : "delivered",
                       when, msgs, st[CR_ST_SENT], st[CR_ST_DELIVERED],
                       st[CR_ST_FAILED] + st[CR_ST_BOUNCED], conf);
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
}

void cr_ctl_steps_cells(const struct ctl_job *job, const long long ch[][CR_ST__COUNT],
                        long long confirmed)
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
