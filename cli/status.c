/* crierctl status: one job's state, counters, rate, elapsed time, ETA and a
 * progress bar, printed once or followed until the job is finished (redrawn
 * in place on a terminal, one line per second otherwise). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cr_buf.h"
#include "cr_error.h"
#include "ctl.h"

#define BAR_WIDTH 40
#define RATE_WINDOW_MS 5000
#define MAX_SAMPLES 64
#define TTY_REFRESH_MS 250
#define LINE_EVERY_MS 1000
#define DEAD_SCAN 1000 /* newest dead letters searched for a rejected job */

static const char help[] =
    "Usage: crierctl status [options] ID\n"
    "Shows job ID from <prefix>job:<ID>: state, priority, residents targeted,\n"
    "counters per status and per channel, rate (messages/s over the last 5 s),\n"
    "elapsed time, an ETA and a progress bar: the share of the residents whose\n"
    "batches are done, out of residents targeted, once the audience is fully\n"
    "expanded (before that the number of residents is not known: the residents\n"
    "found so far are shown without a share); a scheduled job shows when it is due.\n"
    "On a terminal it redraws in place every 250 ms until the job is completed,\n"
    "cancelled, expired or failed (with its reason); otherwise it prints one block.\n"
    "\n"
    "Options:\n"
    "  -1, --once       print one block and exit, even on a terminal\n"
    "  -f, --follow     follow until the job is finished (one line per second when\n"
    "                   not on a terminal, then the final block); exit 0 when it\n"
    "                   completed, 1 when it was cancelled, expired or failed\n"
    "Exit 4 when no such job exists, 1 when it was rejected (found in <prefix>jobs:dead).\n";

struct sample {
    int64_t t;    /* monotonic ms */
    long long done;
    double frac;
};

struct samples {
    struct sample v[MAX_SAMPLES];
    int n;
};

/* What the block and the line show, computed from the hash and the samples. */
struct view {
    long long done;     /* messages with an outcome */
    double frac;        /* residents done / targeted; -1 = not known yet */
    int64_t due_ms;     /* a scheduled job: time until send_at; -1 = not scheduled */
    double rate;        /* messages per second */
    int64_t elapsed_ms;
    int64_t eta_ms;     /* -1 = unknown */
};

static void add_sample(struct samples *s, int64_t t, long long done, double frac)
{
    int i;
    int keep = 0;

    for (i = 0; i < s->n; i++)
        if (t - s->v[i].t <= RATE_WINDOW_MS)
            s->v[keep++] = s->v[i];
    s->n = keep;
    if (s->n == MAX_SAMPLES) {
        memmove(&s->v[0], &s->v[1], sizeof(s->v[0]) * (MAX_SAMPLES - 1));
        s->n--;
    }
    s->v[s->n].t = t;
    s->v[s->n].done = done;
    s->v[s->n].frac = frac;
    s->n++;
}

static void compute(const struct ctl_job *job, const struct samples *s, int64_t now_ms,
                    struct view *v)
{
    int64_t since = job->started_ms > 0 ? job->started_ms : job->created_ms;
    int completed = strcmp(job->state, "completed") == 0;
    const struct sample *a;
    const struct sample *b;
    double span;

    memset(v, 0, sizeof(*v));
    v->done = cr_ctl_job_done(job);
    v->eta_ms = -1;
    v->due_ms = -1;
    v->frac = cr_ctl_job_progress(job);
    if (completed) {
        int64_t run = job->completed_ms - since;

        v->elapsed_ms = run > 0 ? run : 0;
        v->rate = (double)v->done * 1000.0 / (double)(run > 0 ? run : 1);
        return;
    }
    if (strcmp(job->state, "scheduled") == 0 && job->send_at_ms > 0) {
        v->due_ms = job->send_at_ms > now_ms ? job->send_at_ms - now_ms : 0;
        return; /* nothing has run: no elapsed time, rate or ETA */
    }
    v->elapsed_ms = since > 0 && now_ms > since ? now_ms - since : 0;
    if (cr_ctl_job_finished(job) && job->completed_ms > since && since > 0)
        v->elapsed_ms = job->completed_ms - since;
    if (v->elapsed_ms > 0)
        v->rate = (double)v->done * 1000.0 / (double)v->elapsed_ms;
    if (s && s->n >= 2) {
        a = &s->v[0];
        b = &s->v[s->n - 1];
        span = (double)(b->t - a->t);
        if (span >= 1000.0) {
            v->rate = (double)(b->done - a->done) * 1000.0 / span;
            if (a->frac >= 0.0 && b->frac > a->frac)
                v->eta_ms = (int64_t)((1.0 - v->frac) / ((b->frac - a->frac) / span));
        }
    }
    if (v->eta_ms < 0 && v->frac > 0.0 && v->elapsed_ms > 0)
        v->eta_ms = (int64_t)((double)v->elapsed_ms * (1.0 - v->frac) / v->frac);
    /* while the audience is still being cut into batches the total is unknown */
    if (!job->expanded || cr_ctl_job_finished(job) || strcmp(job->state, "cancelling") == 0)
        v->eta_ms = -1;
}

static void counters(struct cr_buf *o, const long long *st, int with_skipped)
{
    int i;

    for (i = 0; i < CR_ST__COUNT; i++) {
        if (i == CR_ST_SKIPPED && !with_skipped)
            continue;
        cr_buf_appendf(o, "  %s %lld", cr_status_name((enum cr_status)i), st[i]);
    }
    cr_buf_appends(o, "\n");
}

/* "due in 3m20s (at 2026-11-22T09:00:00Z)", or "due now (at ...)". */
static void fmt_due(char *out, size_t outlen, const struct ctl_job *job, const struct view *v)
{
    char in[32];
    char at[32];

    cr_ctl_fmt_duration(v->due_ms, in, sizeof(in));
    cr_ctl_fmt_utc(job->send_at_ms, at, sizeof(at));
    if (v->due_ms > 0)
        snprintf(out, outlen, "due in %s (at %s)", in, at);
    else
        snprintf(out, outlen, "due now (at %s)", at);
}

/* The residents part of the progress line: residents done out of residents
 * targeted (never messages beside residents). */
static void fmt_residents(char *out, size_t outlen, const struct ctl_job *job,
                          const struct view *v)
{
    if (v->frac < 0.0)
        snprintf(out, outlen, "audience still expanding: %lld residents found so far",
                 job->targeted);
    else
        snprintf(out, outlen, "~%lld/%lld residents done",
                 (long long)((double)job->targeted * v->frac), job->targeted);
}

/* "45%" or "  -" while the share is not known. */
static void fmt_pct(char *out, size_t outlen, double frac)
{
    if (frac < 0.0)
        snprintf(out, outlen, "  -");
    else
        snprintf(out, outlen, "%3d%%", (int)(frac * 100.0));
}

/* The full block, one line per row, into o. */
static void render_block(struct cr_buf *o, const char *id, const struct ctl_job *job,
                         const struct view *v)
{
    char el[32];
    char eta[32];
    char created[32];
    char pct[8];
    char what[160];
    int ch;
    char bar[BAR_WIDTH + 3];

    cr_ctl_bar(bar, sizeof(bar), v->frac < 0.0 ? 0.0 : v->frac, BAR_WIDTH);
    cr_ctl_fmt_duration(v->elapsed_ms, el, sizeof(el));
    cr_ctl_fmt_duration(v->eta_ms, eta, sizeof(eta));
    cr_ctl_fmt_time(job->created_ms, 1, created, sizeof(created));
    fmt_pct(pct, sizeof(pct), v->frac);

    cr_buf_appendf(o, "job %s  state %s  priority %s  created %s\n", id, job->state,
                   job->priority, created);
    if (job->error[0])
        cr_buf_appendf(o, "error    %s\n", job->error);
    if (strcmp(job->state, "completed") == 0) {
        cr_buf_appendf(o, "%s 100%%  %lld residents, %lld messages\n", bar, job->targeted,
                       job->messages >= 0 ? job->messages : v->done);
    } else if (v->due_ms >= 0) {
        fmt_due(what, sizeof(what), job, v);
        cr_buf_appendf(o, "%s %s  scheduled: %s\n", bar, pct, what);
    } else {
        fmt_residents(what, sizeof(what), job, v);
        cr_buf_appendf(o, "%s %s  %s, %lld messages so far\n", bar, pct, what, v->done);
    }
    cr_buf_appendf(o, "targeted %lld  messages_done %lld", job->targeted, v->done);
    if (job->messages >= 0)
        cr_buf_appendf(o, "  messages %lld", job->messages);
    if (v->due_ms >= 0) {
        fmt_due(what, sizeof(what), job, v);
        cr_buf_appendf(o, "  %s\n", what);
    } else {
        cr_buf_appendf(o, "  elapsed %s  rate %.1f messages/s  eta %s\n", el, v->rate, eta);
    }
    cr_buf_appends(o, "status ");
    counters(o, job->st, 1);
    for (ch = 0; ch < CR_CH__COUNT; ch++) {
        cr_buf_appendf(o, "%-7s", cr_channel_name((enum cr_channel)ch));
        counters(o, job->ch[ch], 0);
    }
    cr_ctl_steps_render(o, job);
}

static void render_line(FILE *out, const char *id, const struct ctl_job *job,
                        const struct view *v)
{
    char now[32];
    char eta[32];
    char pct[8];
    char what[160];

    cr_ctl_fmt_time(cr_ctl_now_ms(), 0, now, sizeof(now));
    cr_ctl_fmt_duration(v->eta_ms, eta, sizeof(eta));
    fmt_pct(pct, sizeof(pct), v->frac);
    if (v->due_ms >= 0) {
        fmt_due(what, sizeof(what), job, v);
        fprintf(out, "%s %s %s %s\n", now, id, job->state, what);
    } else {
        if (strcmp(job->state, "completed") == 0)
            snprintf(what, sizeof(what), "%lld/%lld residents done", job->targeted,
                     job->targeted);
        else
            fmt_residents(what, sizeof(what), job, v);
        fprintf(out, "%s %s %s %s %s, %lld messages rate %.1f messages/s eta %s\n", now, id,
                job->state, pct, what, v->done, v->rate, eta);
    }
    fflush(out);
}

/* Redraws a block in place: back up over the previous one, clear each line. */
static int redraw(const struct cr_buf *block, int prev_lines)
{
    const char *p = cr_buf_cstr(block);
    const char *nl;
    int lines = 0;

    if (prev_lines > 0)
        printf("\033[%dA", prev_lines);
    while (*p) {
        nl = strchr(p, '\n');
        if (nl == NULL)
            nl = p + strlen(p);
        printf("\r\033[2K%.*s\n", (int)(nl - p), p);
        lines++;
        p = *nl ? nl + 1 : nl;
    }
    printf("\033[J");
    fflush(stdout);
    return lines;
}

/* Looks for the rejection of a job in the dead-letter stream: by intake entry
 * id when known (dead letters after it), else by the document's "id" among the
 * newest DEAD_SCAN. Prints it and returns 1 when found, 0 when not, or a
 * negative exit code (already printed) when Redis failed. */
static int find_rejection(struct ctl *ctl, const char *id, const char *entry)
{
    const char *argv[6];
    redisReply *r;
    size_t i;
    int code;
    int found = 0;

    if (entry) {
        argv[0] = "XRANGE";
        argv[1] = ctl->keys.dead;
        argv[2] = entry;
        argv[3] = "+";
    } else {
        argv[0] = "XREVRANGE";
        argv[1] = ctl->keys.dead;
        argv[2] = "+";
        argv[3] = "-";
    }
    argv[4] = "COUNT";
    argv[5] = "1000";
    r = cr_ctl_cmdv(ctl, 6, argv, NULL, &code);
    if (r == NULL)
        return -code;
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && !found; i++) {
        const redisReply *e = r->element[i];
        const redisReply *f;
        const char *v;

        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2)
            continue;
        f = e->element[1];
        if (entry) {
            v = cr_ctl_field(f, "entry");
            found = v && strcmp(v, entry) == 0;
        } else {
            cJSON *doc;
            const cJSON *jid;

            v = cr_ctl_field(f, "job");
            doc = v ? cJSON_Parse(v) : NULL;
            jid = cJSON_GetObjectItemCaseSensitive(doc, "id");
            found = cJSON_IsString(jid) && strcmp(jid->valuestring, id) == 0;
            cJSON_Delete(doc);
        }
        if (found) {
            const char *ec = cr_ctl_field(f, "code");
            const char *em = cr_ctl_field(f, "error");

            printf("job %s: rejected (%s): %s\n", id, ec ? ec : "?", em ? em : "?");
        }
    }
    freeReplyObject(r);
    return found;
}

/* Follows id until finished; interrupted is the exit code for Ctrl-C. */
static int follow(struct ctl *ctl, const char *id, const char *entry, int interrupted)
{
    struct samples s;
    struct ctl_job job;
    struct view v;
    struct cr_buf block;
    int64_t last_line = 0;
    int lines = 0;
    int said_waiting = 0;
    int code = interrupted;
    int rc;

    memset(&s, 0, sizeof(s));
    cr_buf_init(&block, 64 * 1024);
    cr_ctl_catch_signals();
    while (!cr_ctl_stop) {
        int64_t t = cr_ctl_mono_ms();

        rc = cr_ctl_job_load(ctl, id, &job);
        if (rc == CTL_EXIT_NOTFOUND) {
            rc = find_rejection(ctl, id, entry);
            if (rc < 0) {
                code = -rc;
                goto out;
            }
            if (rc == 1) {
                code = CTL_EXIT_FAIL;
                goto out;
            }
            if (!said_waiting) {
                fprintf(stderr, "crierctl %s: waiting for crierd to accept job %s\n", ctl->cmd,
                        id);
                said_waiting = 1;
            }
            cr_ctl_sleep_ms(TTY_REFRESH_MS);
            continue;
        }
        if (rc != 0) {
            code = rc;
            goto out;
        }
        compute(&job, NULL, cr_ctl_now_ms(), &v);
        add_sample(&s, t, v.done, v.frac);
        compute(&job, &s, cr_ctl_now_ms(), &v);
        if (ctl->tty) {
            cr_buf_reset(&block);
            render_block(&block, id, &job, &v);
            lines = redraw(&block, lines);
        } else if (cr_ctl_job_finished(&job) || t - last_line >= LINE_EVERY_MS) {
            render_line(stdout, id, &job, &v);
            last_line = t;
        }
        if (cr_ctl_job_finished(&job)) {
            if (!ctl->tty) {
                cr_buf_reset(&block);
                render_block(&block, id, &job, &v);
                fputs(cr_buf_cstr(&block), stdout);
            }
            code = strcmp(job.state, "completed") == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
            goto out;
        }
        cr_ctl_sleep_ms(TTY_REFRESH_MS - (long)(cr_ctl_mono_ms() - t));
    }
out:
    fflush(stdout);
    cr_buf_release(&block);
    return code;
}

int cr_ctl_follow(struct ctl *ctl, const char *id, const char *entry)
{
    return follow(ctl, id, entry, CTL_EXIT_FAIL);
}

int cr_ctl_status(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS,
                                         {"once", no_argument, NULL, '1'},
                                         {"follow", no_argument, NULL, 'f'},
                                         {NULL, 0, NULL, 0}};
    struct ctl_job job;
    struct view v;
    struct cr_buf block;
    const char *id;
    int once = 0;
    int follow_flag = 0;
    int code;
    int c;

    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "1f", opts, NULL);
        if (c == -1)
            break;
        if (c == '1') {
            once = 1;
        } else if (c == 'f') {
            follow_flag = 1;
        } else {
            code = cr_ctl_opt_other(ctl, c, optarg, help);
            if (code >= 0)
                return code;
        }
    }
    code = cr_ctl_begin(ctl, optind == argc - 1 && !(once && follow_flag), help);
    if (code != 0)
        return code;
    id = argv[optind];
    code = cr_ctl_job_load(ctl, id, &job);
    if (code == CTL_EXIT_NOTFOUND) {
        code = find_rejection(ctl, id, NULL);
        if (code < 0)
            return -code;
        if (code == 1)
            return CTL_EXIT_FAIL;
        fprintf(stderr, "crierctl status: no job '%s'\n", id);
        return CTL_EXIT_NOTFOUND;
    }
    if (code != 0)
        return code;
    if (follow_flag || (ctl->tty && !once))
        return follow(ctl, id, NULL, CTL_EXIT_OK);
    compute(&job, NULL, cr_ctl_now_ms(), &v);
    cr_buf_init(&block, 64 * 1024);
    render_block(&block, id, &job, &v);
    fputs(cr_buf_cstr(&block), stdout);
    cr_buf_release(&block);
    return CTL_EXIT_OK;
}
