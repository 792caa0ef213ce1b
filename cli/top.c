/* crierctl top: live throughput per channel and per provider, counted from
 * the receipts stream read incrementally each refresh, beside the batch
 * queues and the jobs still in progress. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_buf.h"
#include "ctl.h"

#define SLOT_MS 100
#define SLOTS 100               /* 10 s of 100 ms slots */
#define MAX_ROWS 48             /* channels, providers and the total */
#define READ_PAGE "10000"
#define READ_PAGE_N 10000
#define READ_CAP 500000         /* receipts read per refresh; the rest next time */
#define RECENT_SCAN "49"        /* newest jobs looked at for the active list */
#define ACTIVE_SHOWN 10
#define REFRESH_MS 1000
#define FLEET_SCAN "64"         /* nodes read from the heartbeat index */
#define FLEET_RECENT_MS 60000   /* index entries newer than this; a gone node's key has expired */

static const char help[] =
    "Usage: crierctl top [options]\n"
    "Live throughput from <prefix>receipts: per channel and per provider, the\n"
    "outcomes per second over the last 1 s and 10 s, successes (delivered/sent),\n"
    "failures (failed/bounced), suppressed, other (expired/cancelled/skipped) and\n"
    "the average provider latency over 10 s; the length, pending entries and lag\n"
    "of the batch streams <prefix>batches:{urgent,high,normal,bulk}; and the jobs\n"
    "in progress among the newest in <prefix>jobs:recent; and the fleet: every\n"
    "crierd with a live heartbeat (<prefix>fleet:<consumer>) and, per provider,\n"
    "its state (ok, throttled, breaker_open, failing_over), requests in flight,\n"
    "messages per second over 10 s, p50/p99 latency, errors over 10 s and the\n"
    "time until its rate limit refills.\n"
    "Redrawn every second on a terminal; printed as plain blocks otherwise.\n"
    "\n"
    "Options:\n"
    "  -1, --once       one refresh and exit\n"
    "  -n, --count N    N refreshes and exit (default: until Ctrl-C)\n";

enum row_kind { ROW_TOTAL, ROW_CHANNEL, ROW_PROVIDER };

struct slot {
    int64_t id; /* entry ms / SLOT_MS */
    uint32_t n, ok, failed, suppressed, other, lat_n;
    uint64_t lat_us;
};

struct row {
    enum row_kind kind;
    char name[40];
    struct slot s[SLOTS];
};

struct top {
    struct row rows[MAX_ROWS];
    int nrows;
    char last[64];           /* newest receipt id read */
    long long read_total;
    int64_t now_ms;          /* Redis TIME at this refresh */
};

static struct row *find_row(struct top *t, enum row_kind kind, const char *name)
{
    struct row *r;
    int i;

    for (i = 0; i < t->nrows; i++)
        if (t->rows[i].kind == kind && strcmp(t->rows[i].name, name) == 0)
            return &t->rows[i];
    if (t->nrows == MAX_ROWS)
        return NULL; /* more providers than rows: counted in the total only */
    r = &t->rows[t->nrows++];
    r->kind = kind;
    snprintf(r->name, sizeof(r->name), "%s", name);
    return r;
}

static void count(struct row *r, int64_t slot, const char *status, long long lat_us)
{
    struct slot *s;

    if (r == NULL)
        return;
    s = &r->s[slot % SLOTS];
    if (s->id != slot) {
        memset(s, 0, sizeof(*s));
        s->id = slot;
    }
    s->n++;
    if (strcmp(status, "delivered") == 0 || strcmp(status, "sent") == 0)
        s->ok++;
    else if (strcmp(status, "failed") == 0 || strcmp(status, "bounced") == 0)
        s->failed++;
    else if (strcmp(status, "suppressed") == 0)
        s->suppressed++;
    else
        s->other++;
    if (lat_us > 0) {
        s->lat_n++;
        s->lat_us += (uint64_t)lat_us;
    }
}

static void take_entry(struct top *t, const redisReply *e)
{
    const redisReply *f;
    const char *ch;
    const char *prov;
    const char *st;
    int64_t slot;
    long long lat;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING)
        return;
    snprintf(t->last, sizeof(t->last), "%s", e->element[0]->str);
    t->read_total++;
    slot = cr_ctl_entry_ms(e->element[0]->str) / SLOT_MS;
    if (slot <= t->now_ms / SLOT_MS - SLOTS)
        return; /* older than the 10 s window */
    f = e->element[1];
    ch = cr_ctl_field(f, "channel");
    prov = cr_ctl_field(f, "provider");
    st = cr_ctl_field(f, "status");
    lat = cr_ctl_field_ll(f, "latency_us", 0);
    if (st == NULL)
        st = "";
    count(find_row(t, ROW_TOTAL, "all"), slot, st, lat);
    if (ch && *ch)
        count(find_row(t, ROW_CHANNEL, ch), slot, st, lat);
    if (prov && *prov)
        count(find_row(t, ROW_PROVIDER, prov), slot, st, lat);
}

/* Reads what was added to the receipts stream since the last refresh. */
static int read_receipts(struct ctl *ctl, struct top *t)
{
    const char *argv[6];
    redisReply *r;
    long long n = 0;
    size_t i;
    int code;

    argv[0] = "XREAD";
    argv[1] = "COUNT";
    argv[2] = READ_PAGE;
    argv[3] = "STREAMS";
    argv[4] = ctl->keys.receipts;
    while (n < READ_CAP) {
        const redisReply *entries;

        argv[5] = t->last;
        r = cr_ctl_cmdv(ctl, 6, argv, NULL, &code);
        if (r == NULL)
            return code;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
            r->element[0]->type != REDIS_REPLY_ARRAY || r->element[0]->elements != 2) {
            freeReplyObject(r);
            break; /* nil: nothing new */
        }
        entries = r->element[0]->element[1];
        for (i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++)
            take_entry(t, entries->element[i]);
        n += (long long)i;
        freeReplyObject(r);
        if (i < READ_PAGE_N)
            break;
    }
    return 0;
}

static void sum(const struct row *r, int64_t now_slot, int nslots, struct slot *out)
{
    int i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < SLOTS; i++) {
        const struct slot *s = &r->s[i];

        if (s->n == 0 || s->id > now_slot || s->id <= now_slot - nslots)
            continue;
        out->n += s->n;
        out->ok += s->ok;
        out->failed += s->failed;
        out->suppressed += s->suppressed;
        out->other += s->other;
        out->lat_n += s->lat_n;
        out->lat_us += s->lat_us;
    }
}

static void render_rows(struct cr_buf *o, const struct top *t, enum row_kind kind,
                        const char *title)
{
    int64_t now_slot = t->now_ms / SLOT_MS;
    struct slot one;
    struct slot ten;
    char lat[24];
    int i;

    cr_buf_appendf(o, "%-12s %9s %9s %9s %8s %8s %8s %9s\n", title, "1s/s", "10s/s", "ok/10s",
                   "failed", "suppr", "other", "latency");
    for (i = 0; i < t->nrows; i++) {
        const struct row *r = &t->rows[i];

        if (r->kind != kind)
            continue;
        sum(r, now_slot, 1000 / SLOT_MS, &one);
        sum(r, now_slot, SLOTS, &ten);
        if (ten.lat_n)
            snprintf(lat, sizeof(lat), "%.1fms", (double)ten.lat_us / ten.lat_n / 1000.0);
        else
            snprintf(lat, sizeof(lat), "-");
        cr_buf_appendf(o, "%-12s %9.1f %9.1f %9u %8u %8u %8u %9s\n", r->name, (double)one.n,
                       (double)ten.n / (SLOTS * SLOT_MS / 1000.0), ten.ok, ten.failed,
                       ten.suppressed, ten.other, lat);
    }
}

static int redis_time(struct ctl *ctl, int64_t *ms)
{
    const char *argv[1] = {"TIME"};
    redisReply *r;
    long long s = 0;
    long long us = 0;
    int code;

    r = cr_ctl_cmdv(ctl, 1, argv, NULL, &code);
    if (r == NULL)
        return code;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        cr_ctl_parse_ll(r->element[0]->str, 0, INT64_MAX / 1000, &s);
        cr_ctl_parse_ll(r->element[1]->str, 0, 999999, &us);
    }
    freeReplyObject(r);
    *ms = s > 0 ? s * 1000 + us / 1000 : cr_ctl_now_ms();
    return 0;
}

/* Sums "pending" and "lag" over the groups of an XINFO GROUPS reply. */
static void group_totals(const redisReply *g, long long *pending, long long *lag)
{
    size_t i;

    *pending = 0;
    *lag = 0;
    if (g->type != REDIS_REPLY_ARRAY)
        return;
    for (i = 0; i < g->elements; i++) {
        *pending += cr_ctl_field_ll(g->element[i], "pending", 0);
        *lag += cr_ctl_field_ll(g->element[i], "lag", 0);
    }
}

static int render_queues(struct ctl *ctl, struct cr_buf *o)
{
    const char *argv[3];
    redisReply *len;
    redisReply *groups;
    long long pending;
    long long lag;
    int p;
    int code;

    for (p = 0; p < CR_PRIO__COUNT; p++) {
        argv[0] = "XLEN";
        argv[1] = ctl->keys.batches[p];
        code = cr_ctl_pipe_append(ctl, 2, argv, NULL);
        if (code == 0) {
            argv[0] = "XINFO";
            argv[1] = "GROUPS";
            argv[2] = ctl->keys.batches[p];
            code = cr_ctl_pipe_append(ctl, 3, argv, NULL);
        }
        if (code != 0)
            return code;
    }
    cr_buf_appendf(o, "%-12s %9s %9s %9s\n", "QUEUE", "length", "pending", "lag");
    for (p = 0; p < CR_PRIO__COUNT; p++) {
        len = cr_ctl_pipe_read(ctl, &code);
        if (len == NULL)
            return code;
        groups = cr_ctl_pipe_read(ctl, &code);
        if (groups == NULL) {
            freeReplyObject(len);
            return code;
        }
        group_totals(groups, &pending, &lag); /* an error reply: no stream yet */
        cr_buf_appendf(o, "%-12s %9lld %9lld %9lld\n", cr_priority_name((enum cr_priority)p),
                       len->type == REDIS_REPLY_INTEGER ? len->integer : 0, pending, lag);
        freeReplyObject(len);
        freeReplyObject(groups);
    }
    return 0;
}

static const char *const job_fields[] = {"state",     "priority",     "targeted", "batches",
                                         "batches_done", "expanded",  "send_at_ms", "delivered", "sent",
                                         "failed",    "bounced",      "suppressed", "expired",
                                         "cancelled", "skipped"};
#define NJOB_FIELDS (sizeof(job_fields) / sizeof(job_fields[0]))

static long long num(const redisReply *r)
{
    long long v = 0;

    if (r && r->type == REDIS_REPLY_STRING)
        cr_ctl_parse_ll(r->str, INT64_MIN, INT64_MAX, &v);
    return v;
}

static void render_job(struct cr_buf *o, const char *id, const redisReply *h)
{
    struct ctl_job job;
    long long done = 0;
    double f;
    char bar[24];
    char pct[8];
    size_t i;

    memset(&job, 0, sizeof(job));
    snprintf(job.state, sizeof(job.state), "%s", h->element[0]->str);
    job.targeted = num(h->element[2]);
    job.batches = num(h->element[3]);
    job.batches_done = num(h->element[4]);
    job.expanded = num(h->element[5]) == 1;
    job.send_at_ms = num(h->element[6]);
    for (i = 7; i < NJOB_FIELDS; i++)
        done += num(h->element[i]);
    /* residents done of residents targeted, as `status` shows it: no share
     * while the audience is still expanding (it would go backwards) */
    f = cr_ctl_job_progress(&job);
    cr_ctl_bar(bar, sizeof(bar), f < 0.0 ? 0.0 : f, 20);
    if (f < 0.0)
        snprintf(pct, sizeof(pct), "  -");
    else
        snprintf(pct, sizeof(pct), "%3d%%", (int)(f * 100.0));
    cr_buf_appendf(o, "%-32s %-10s %-7s %s %s  ", id, job.state,
                   h->element[1]->type == REDIS_REPLY_STRING ? h->element[1]->str : "-", bar, pct);
    if (strcmp(job.state, "scheduled") == 0 && job.send_at_ms > 0) {
        int64_t in = job.send_at_ms - cr_ctl_now_ms();
        char due[32];
        char at[32];

        cr_ctl_fmt_duration(in > 0 ? in : 0, due, sizeof(due));
        cr_ctl_fmt_utc(job.send_at_ms, at, sizeof(at));
        cr_buf_appendf(o, "due in %s (at %s)", due, at);
    } else if (f < 0.0) {
        cr_buf_appendf(o, "expanding: %lld residents so far", job.targeted);
    }
    else
        cr_buf_appendf(o, "~%lld/%lld residents done", (long long)((double)job.targeted * f),
                       job.targeted);
    cr_buf_appendf(o, "  %lld messages\n", done);
}

static int render_active(struct ctl *ctl, struct cr_buf *o)
{
    const char *zargv[4] = {"ZREVRANGE", ctl->keys.recent, "0", RECENT_SCAN};
    const char *hargv[2 + NJOB_FIELDS];
    char key[CR_KEY_MAX];
    redisReply *z;
    redisReply *h;
    size_t i;
    size_t k;
    int shown = 0;
    int active = 0;
    int code;

    z = cr_ctl_cmdv(ctl, 4, zargv, NULL, &code);
    if (z == NULL)
        return code;
    hargv[0] = "HMGET";
    for (k = 0; k < NJOB_FIELDS; k++)
        hargv[2 + k] = job_fields[k];
    for (i = 0; z->type == REDIS_REPLY_ARRAY && i < z->elements; i++) {
        if (cr_key_for(&ctl->keys, "job", z->element[i]->str, key, sizeof(key)) < 0)
            snprintf(key, sizeof(key), "%s", ctl->keys.recent);
        hargv[1] = key;
        code = cr_ctl_pipe_append(ctl, (int)(2 + NJOB_FIELDS), hargv, NULL);
        if (code != 0)
            goto out;
    }
    cr_buf_appends(o, "ACTIVE JOBS\n");
    for (i = 0; z->type == REDIS_REPLY_ARRAY && i < z->elements; i++) {
        const char *st;

        h = cr_ctl_pipe_read(ctl, &code);
        if (h == NULL)
            goto out;
        if (h->type == REDIS_REPLY_ARRAY && h->elements == NJOB_FIELDS &&
            h->element[0]->type == REDIS_REPLY_STRING) {
            st = h->element[0]->str;
            if (strcmp(st, "completed") != 0 && strcmp(st, "cancelled") != 0 &&
                strcmp(st, "expired") != 0 && strcmp(st, "failed") != 0) {
                active++;
                if (shown < ACTIVE_SHOWN) {
                    render_job(o, z->element[i]->str, h);
                    shown++;
                }
            }
        }
        freeReplyObject(h);
    }
    if (active == 0)
        cr_buf_appends(o, "(none)\n");
    else if (active > shown)
        cr_buf_appendf(o, "... and %d more\n", active - shown);
    code = 0;
out:
    freeReplyObject(z);
    return code;
}

static double jnum(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

static const char *jstr(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : "-";
}

/* One node's heartbeat document: a line for the node, one per provider. */
static void render_node(struct cr_buf *o, const char *doc, int64_t now_ms)
{
    cJSON *root = cJSON_Parse(doc);
    const cJSON *p;
    char up[32];

    if (root == NULL)
        return;
    cr_ctl_fmt_duration((int64_t)(now_ms - (int64_t)jnum(root, "started_ms")), up, sizeof up);
    cr_buf_appendf(o, "%-24s up %-8s jobs %-4.0f batches %-4.0f in flight %-5.0f %s%s\n",
                   jstr(root, "node"), up, jnum(root, "jobs"), jnum(root, "batches"),
                   jnum(root, "inflight"), jstr(root, "version"),
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stopping")) ? " stopping"
                                                                                   : "");
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "providers"))
    {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(p, "errors_10s");
        const cJSON *x;
        double errs = 0;

        cJSON_ArrayForEach(x, e)
        {
            if (cJSON_IsNumber(x))
                errs += x->valuedouble;
        }
        cr_buf_appendf(o, "  %-14s %-13s %6.0f %8.1f %8.1f %8.1f %6.0f %8.0f\n", jstr(p, "name"),
                       jstr(p, "state"), jnum(p, "inflight"), jnum(p, "rate_10s"),
                       jnum(p, "p50_ms"), jnum(p, "p99_ms"), errs, jnum(p, "refill_ms"));
    }
    cJSON_Delete(root);
}

/* Every node with a live heartbeat: the index names them, their keys (with a
 * TTL) say which are still there. */
static int render_fleet(struct ctl *ctl, struct cr_buf *o, int64_t now_ms)
{
    char since[32];
    const char *zargv[7] = {"ZRANGEBYSCORE", ctl->keys.fleet, since, "+inf", "LIMIT", "0",
                            FLEET_SCAN};
    const char *gargv[2];
    char key[CR_KEY_MAX];
    redisReply *z;
    redisReply *g;
    size_t i;
    int live = 0;
    int code;

    snprintf(since, sizeof since, "%lld", (long long)(now_ms - FLEET_RECENT_MS));
    z = cr_ctl_cmdv(ctl, 7, zargv, NULL, &code);
    if (z == NULL)
        return code;
    gargv[0] = "GET";
    for (i = 0; z->type == REDIS_REPLY_ARRAY && i < z->elements; i++) {
        if (cr_key_for(&ctl->keys, "fleet", z->element[i]->str, key, sizeof(key)) < 0)
            snprintf(key, sizeof(key), "%s", ctl->keys.fleet);
        gargv[1] = key;
        code = cr_ctl_pipe_append(ctl, 2, gargv, NULL);
        if (code != 0)
            goto out;
    }
    cr_buf_appendf(o, "FLEET\n  %-14s %-13s %6s %8s %8s %8s %6s %8s\n", "PROVIDER", "STATE",
                   "flight", "msg/s", "p50ms", "p99ms", "err10s", "refillms");
    for (i = 0; z->type == REDIS_REPLY_ARRAY && i < z->elements; i++) {
        g = cr_ctl_pipe_read(ctl, &code);
        if (g == NULL)
            goto out;
        if (g->type == REDIS_REPLY_STRING) {
            render_node(o, g->str, now_ms);
            live++;
        }
        freeReplyObject(g);
    }
    if (live == 0)
        cr_buf_appends(o, "(no crierd has sent a heartbeat in the last few seconds)\n");
    code = 0;
out:
    freeReplyObject(z);
    return code;
}

static int refresh(struct ctl *ctl, struct top *t, struct cr_buf *o)
{
    char now[32];
    int code;

    code = redis_time(ctl, &t->now_ms);
    if (code != 0)
        return code;
    if (t->last[0] == '\0')
        snprintf(t->last, sizeof(t->last), "%lld-0", (long long)(t->now_ms - SLOTS * SLOT_MS));
    code = read_receipts(ctl, t);
    if (code != 0)
        return code;
    cr_ctl_fmt_time(t->now_ms, 1, now, sizeof(now));
    cr_buf_reset(o);
    cr_buf_appendf(o, "crier top  %s  redis %s  receipts read %lld\n", now, ctl->where,
                   t->read_total);
    render_rows(o, t, ROW_TOTAL, "TOTAL");
    render_rows(o, t, ROW_CHANNEL, "CHANNEL");
    render_rows(o, t, ROW_PROVIDER, "PROVIDER");
    code = render_queues(ctl, o);
    if (code == 0)
        code = render_active(ctl, o);
    if (code == 0)
        code = render_fleet(ctl, o, t->now_ms);
    return code;
}

int cr_ctl_top(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS,
                                         {"once", no_argument, NULL, '1'},
                                         {"count", required_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    struct top *t = NULL;
    struct cr_buf o;
    int64_t prev = 0;
    long long n = -1;
    long long i;
    int code = 0;
    int c;

    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "1n:", opts, NULL);
        if (c == -1)
            break;
        if (c == '1') {
            n = 1;
        } else if (c == 'n') {
            if (cr_ctl_parse_ll(optarg, 1, 1000000000, &n) < 0) {
                fprintf(stderr, "crierctl top: -n: '%s' is not a positive number\n", optarg);
                return CTL_EXIT_USAGE;
            }
        } else {
            code = cr_ctl_opt_other(ctl, c, optarg, help);
            if (code >= 0)
                return code;
        }
    }
    code = cr_ctl_begin(ctl, optind == argc, help);
    if (code != 0)
        return code;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        fprintf(stderr, "crierctl top: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    /* the channel rows are always shown, in the contract's order */
    find_row(t, ROW_TOTAL, "all");
    for (c = 0; c < CR_CH__COUNT; c++)
        find_row(t, ROW_CHANNEL, cr_channel_name((enum cr_channel)c));
    cr_buf_init(&o, 1024 * 1024);
    cr_ctl_catch_signals();
    for (i = 0; (n < 0 || i < n) && !cr_ctl_stop; i++) {
        if (i > 0)
            cr_ctl_sleep_ms(REFRESH_MS - (long)(cr_ctl_mono_ms() - prev));
        if (cr_ctl_stop)
            break;
        prev = cr_ctl_mono_ms();
        code = refresh(ctl, t, &o);
        if (code != 0)
            break;
        if (ctl->tty)
            printf("\033[H\033[2J%s", cr_buf_cstr(&o));
        else
            printf("%s%s", i > 0 ? "\n" : "", cr_buf_cstr(&o));
        fflush(stdout);
    }
    cr_buf_release(&o);
    free(t);
    return code;
}
