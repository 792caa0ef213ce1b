/* The dashboard (see dashboard.h): the page served from memory, and the
 * /api/v1 answers it works from, read from Redis on the commands connection
 * with small pipelines; the event stream polls the same queries every half
 * second while a client is connected and sends only what changed. The router
 * (api.c) checks the caller's token and role before handing a request here. */
#include "dashboard.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "assets.h"
#include "cr_buf.h"
#include "audit_trim.h"
#include "cr_error.h"
#include "cr_log.h"
#include "escalate.h"
#include "fleet.h"
#include "job.h"
#include "tokens.h"

#define JSON_MAX (4 * 1024 * 1024) /* one answer */
#define EVENTS_SCAN "5000"         /* crier:events entries read for one job's timeline */
#define FLEET_SCAN "64"            /* nodes read from the heartbeat index */
#define FLEET_RECENT_MS 60000
#define POLL_MS 500                   /* the event stream's refresh */
#define KEEPALIVE_MS 15000            /* a comment line when nothing changed for this long */
#define REPORT_MAX (16 * 1024 * 1024) /* a report's CSV */
#define REPORT_TIMEOUT_MS 120000
#define REPORTS_MAX 2 /* report processes at once */

struct stream {
    struct cr_dash *a;
    struct cr_httpd_conn *conn;
    struct stream *prev, *next;
    int64_t last_sent_ms;
};

struct cr_dash {
    struct cr_daemon *d;
    const struct cr_dashboard_conf *conf; /* NULL: no dashboard */
    struct stream *streams;
    int nstreams;
    uv_timer_t poll;
    int polling;     /* a poll's queries are under way */
    char *last_jobs; /* the last "jobs" and "fleet" documents sent */
    char *last_fleet;
    struct report *reports; /* crierctl report processes running */
    int nreports;
    int handles; /* open uv handles (the poll timer, report processes) */
    int freeing;
};

/* ---- answers ---- */

static void answer(struct cr_httpd_req *req, int status, const char *ctype, const char *extra,
                   const char *body, size_t len)
{
    char hdrs[512];

    snprintf(hdrs, sizeof hdrs,
             "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n%s",
             extra != NULL ? extra : "");
    cr_httpd_respond(req, status, ctype, hdrs, body, len);
}

static void json_text(struct cr_httpd_req *req, int status, const char *text)
{
    answer(req, status, "application/json", NULL, text, strlen(text));
}

static const char *status_code(int status)
{
    switch (status) {
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 409:
        return "conflict";
    case 501:
        return "not_available";
    case 502:
        return "report_failed";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

/* {"code": "...", "error": "<what>"} as the router answers its refusals;
 * what holds no quote or backslash. */
static void json_error(struct cr_httpd_req *req, int status, const char *extra, const char *what)
{
    char body[384];
    int n = snprintf(body, sizeof body, "{\"code\":\"%s\",\"error\":\"%s\"}\n", status_code(status),
                     what);

    answer(req, status, "application/json", extra, body, n > 0 ? (size_t)n : 0);
}

/* Answers the document and frees it. */
static void json_doc(struct cr_httpd_req *req, cJSON *doc)
{
    char *text = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;

    cJSON_Delete(doc);
    if (text == NULL) {
        json_error(req, 500, NULL, "out of memory");
        return;
    }
    json_text(req, 200, text);
    free(text);
}

/* ---- reading job hashes ---- */

static const char *const job_fields[] = {"state",        "priority", "targeted",   "batches",
                                         "batches_done", "expanded", "created_ms", "started_ms",
                                         "completed_ms", "messages", "send_at_ms"};
#define NJOB_FIELDS (sizeof(job_fields) / sizeof(job_fields[0]))
#define NFIELDS (NJOB_FIELDS + CR_ST__COUNT)

static long long to_ll(const char *s)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0')
        return 0;
    v = strtoll(s, &end, 10);
    return *end == '\0' ? v : 0;
}

static int finished(const char *st)
{
    return strcmp(st, "completed") == 0 || strcmp(st, "cancelled") == 0 ||
           strcmp(st, "expired") == 0;
}

/* A job's summary from its hash fields (vals[i] for job_fields, then one per
 * status; NULL when absent): state, progress, messages done, rate and ETA. */
static cJSON *job_summary(const char *id, const char *const *vals, int64_t now_ms)
{
    cJSON *o = cJSON_CreateObject();
    const char *state = vals[0] ? vals[0] : "unknown";
    long long targeted = to_ll(vals[2]), batches = to_ll(vals[3]), bdone = to_ll(vals[4]);
    long long started = to_ll(vals[7]), completed = to_ll(vals[8]);
    long long done = 0;
    double progress = -1, rate = 0, elapsed;
    size_t i;

    if (o == NULL)
        return NULL;
    for (i = 0; i < CR_ST__COUNT; i++)
        done += to_ll(vals[NJOB_FIELDS + i]);
    if (finished(state))
        progress = 1;
    else if (to_ll(vals[5]) == 1 && batches > 0)
        progress = bdone >= batches ? 0.99 : (double)bdone / (double)batches;
    elapsed = started > 0 ? (double)((completed > 0 ? completed : now_ms) - started) / 1000.0 : 0;
    if (elapsed > 0)
        rate = (double)done / elapsed;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "state", state);
    cJSON_AddStringToObject(o, "priority", vals[1] ? vals[1] : "normal");
    cJSON_AddNumberToObject(o, "targeted", (double)targeted);
    cJSON_AddNumberToObject(o, "batches", (double)batches);
    cJSON_AddNumberToObject(o, "batches_done", (double)bdone);
    cJSON_AddNumberToObject(o, "created_ms", (double)to_ll(vals[6]));
    cJSON_AddNumberToObject(o, "started_ms", (double)started);
    cJSON_AddNumberToObject(o, "completed_ms", (double)completed);
    cJSON_AddNumberToObject(o, "send_at_ms", (double)to_ll(vals[10]));
    if (vals[9] != NULL)
        cJSON_AddNumberToObject(o, "messages", (double)to_ll(vals[9]));
    else
        cJSON_AddNullToObject(o, "messages");
    cJSON_AddNumberToObject(o, "done", (double)done);
    for (i = 0; i < CR_ST__COUNT; i++)
        cJSON_AddNumberToObject(o, cr_status_name((enum cr_status)i),
                                (double)to_ll(vals[NJOB_FIELDS + i]));
    if (progress < 0)
        cJSON_AddNullToObject(o, "progress");
    else
        cJSON_AddNumberToObject(o, "progress", progress);
    cJSON_AddNumberToObject(o, "rate", rate);
    if (!finished(state) && progress > 0 && progress < 1 && elapsed > 0)
        cJSON_AddNumberToObject(o, "eta_ms", elapsed * 1000.0 * (1 - progress) / progress);
    else
        cJSON_AddNullToObject(o, "eta_ms");
    return o;
}

/* ---- queries: each ends in done(a, ud, doc) with doc owned by the callee
 * (NULL when Redis failed) ---- */

typedef void (*query_done)(struct cr_dash *a, void *ud, cJSON *doc);

struct list_q {
    struct cr_dash *a;
    query_done done;
    void *ud;
    char **ids;
    cJSON **rows;
    size_t n;
    size_t outstanding;
    int failed;
    int64_t now_ms;
};

struct list_slot {
    struct list_q *q;
    size_t i;
};

static void list_finish(struct list_q *q)
{
    cJSON *doc = NULL;
    cJSON *arr;
    size_t i;

    if (!q->failed) {
        doc = cJSON_CreateObject();
        cJSON_AddNumberToObject(doc, "now_ms", (double)q->now_ms);
        arr = cJSON_AddArrayToObject(doc, "jobs");
        for (i = 0; arr != NULL && i < q->n; i++) {
            if (q->rows[i] != NULL) {
                cJSON_AddItemToArray(arr, q->rows[i]);
                q->rows[i] = NULL;
            }
        }
    }
    for (i = 0; i < q->n; i++) {
        cJSON_Delete(q->rows[i]);
        free(q->ids[i]);
    }
    free(q->rows);
    free(q->ids);
    q->done(q->a, q->ud, doc);
    free(q);
}

static void on_list_job(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct list_slot *s = ud;
    struct list_q *q = s->q;
    const char *vals[NFIELDS];
    size_t k;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != NFIELDS) {
        q->failed |= reply == NULL;
    } else if (reply->element[0]->type == REDIS_REPLY_STRING) {
        for (k = 0; k < NFIELDS; k++)
            vals[k] = reply->element[k]->type == REDIS_REPLY_STRING ? reply->element[k]->str : NULL;
        q->rows[s->i] = job_summary(q->ids[s->i], vals, q->now_ms);
    }
    free(s);
    if (--q->outstanding == 0)
        list_finish(q);
}

static void on_list_ids(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct list_q *q = ud;
    const char *argv[2 + NFIELDS];
    char key[CR_KEY_MAX];
    size_t i, k;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        q->failed = 1;
        list_finish(q);
        return;
    }
    q->ids = calloc(reply->elements + 1, sizeof(*q->ids));
    q->rows = calloc(reply->elements + 1, sizeof(*q->rows));
    if (q->ids == NULL || q->rows == NULL) {
        q->failed = 1;
        list_finish(q);
        return;
    }
    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING)
            continue;
        q->ids[q->n] = strdup(reply->element[i]->str);
        if (q->ids[q->n] == NULL)
            break;
        q->n++;
    }
    argv[0] = "HMGET";
    for (k = 0; k < NJOB_FIELDS; k++)
        argv[2 + k] = job_fields[k];
    for (k = 0; k < CR_ST__COUNT; k++)
        argv[2 + NJOB_FIELDS + k] = cr_status_name((enum cr_status)k);
    q->outstanding = 1; /* held until every command is sent */
    for (i = 0; i < q->n; i++) {
        struct list_slot *s = malloc(sizeof(*s));

        if (s == NULL || cr_key_for(&q->a->d->keys, "job", q->ids[i], key, sizeof key) != 0) {
            free(s);
            q->failed = 1;
            break;
        }
        s->q = q;
        s->i = i;
        argv[1] = key;
        if (cr_redis_argv(q->a->d->rc, on_list_job, s, 0, (int)(2 + NFIELDS), argv, NULL) != 0) {
            free(s);
            q->failed = 1;
            break;
        }
        q->outstanding++;
    }
    if (--q->outstanding == 0)
        list_finish(q);
}

/* The newest jobs (dashboard.recent_jobs) with their summaries. */
static void query_jobs(struct cr_dash *a, query_done done, void *ud)
{
    struct list_q *q = calloc(1, sizeof(*q));
    char stop[24];

    if (q == NULL) {
        done(a, ud, NULL);
        return;
    }
    q->a = a;
    q->done = done;
    q->ud = ud;
    q->now_ms = cr_now_ms();
    snprintf(stop, sizeof stop, "%d", a->conf->recent_jobs - 1);
    if (cr_redis_cmd(a->d->rc, on_list_ids, q, 0, "ZRANGE %s 0 %s REV", a->d->keys.recent, stop) !=
        0) {
        free(q);
        done(a, ud, NULL);
    }
}

struct fleet_q {
    struct cr_dash *a;
    query_done done;
    void *ud;
    int64_t now_ms;
};

static void on_fleet_docs(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct fleet_q *q = ud;
    cJSON *doc = NULL;
    cJSON *nodes;
    size_t i;

    (void)r;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
        doc = cJSON_CreateObject();
        cJSON_AddNumberToObject(doc, "now_ms", (double)q->now_ms);
        cJSON_AddNumberToObject(doc, "ttl_ms", CR_FLEET_TTL_MS);
        nodes = cJSON_AddArrayToObject(doc, "nodes");
        for (i = 0; nodes != NULL && i < reply->elements; i++) {
            cJSON *n;

            if (reply->element[i]->type != REDIS_REPLY_STRING)
                continue; /* expired: the node is gone */
            n = cJSON_Parse(reply->element[i]->str);
            if (cJSON_IsObject(n))
                cJSON_AddItemToArray(nodes, n);
            else
                cJSON_Delete(n);
        }
    }
    q->done(q->a, q->ud, doc);
    free(q);
}

static void on_fleet_ids(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct fleet_q *q = ud;
    const char **argv = NULL;
    char(*keys)[CR_KEY_MAX] = NULL;
    size_t i, n = 0;
    int rc = -1;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        goto out;
    if (reply->elements == 0) {
        redisReply none = {.type = REDIS_REPLY_ARRAY};

        on_fleet_docs(r, &none, q);
        return;
    }
    argv = calloc(reply->elements + 1, sizeof(*argv));
    keys = calloc(reply->elements, sizeof(*keys));
    if (argv == NULL || keys == NULL)
        goto out;
    argv[n++] = "MGET";
    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type == REDIS_REPLY_STRING &&
            cr_key_for(&q->a->d->keys, "fleet", reply->element[i]->str, keys[i], CR_KEY_MAX) == 0)
            argv[n++] = keys[i];
    }
    rc = cr_redis_argv(q->a->d->rc, on_fleet_docs, q, 0, (int)n, argv, NULL);
out:
    free(argv);
    free(keys);
    if (rc != 0) {
        q->done(q->a, q->ud, NULL);
        free(q);
    }
}

/* Every node with a live heartbeat, as the heartbeats say. */
static void query_fleet(struct cr_dash *a, query_done done, void *ud)
{
    struct fleet_q *q = calloc(1, sizeof(*q));
    char since[24];

    if (q == NULL) {
        done(a, ud, NULL);
        return;
    }
    q->a = a;
    q->done = done;
    q->ud = ud;
    q->now_ms = cr_now_ms();
    snprintf(since, sizeof since, "%lld", (long long)(q->now_ms - FLEET_RECENT_MS));
    if (cr_redis_cmd(a->d->rc, on_fleet_ids, q, 0, "ZRANGEBYSCORE %s %s +inf LIMIT 0 %s",
                     a->d->keys.fleet, since, FLEET_SCAN) != 0) {
        free(q);
        done(a, ud, NULL);
    }
}

/* ---- one job ---- */

struct job_q {
    struct cr_dash *a;
    struct cr_httpd_req *req;
    char id[CR_JOB_ID_MAX + 1];
    cJSON *doc;
    int64_t now_ms;
};

static int cmp_reason(const cJSON *const *x, const cJSON *const *y)
{
    double a = cJSON_GetObjectItem(*x, "count")->valuedouble;
    double b = cJSON_GetObjectItem(*y, "count")->valuedouble;

    return a < b ? 1 : a > b ? -1 : 0;
}

static int qsort_reason(const void *x, const void *y)
{
    return cmp_reason(x, y);
}

/* The job's counters by channel and its failure reasons from HGETALL h. The
 * hash's "doc" (the job as posted) is not returned: its audience may name
 * subscribers. */
static cJSON *job_detail(const char *id, const redisReply *h, int64_t now_ms)
{
    const char *vals[NFIELDS];
    cJSON *job;
    cJSON *chans;
    cJSON *reasons;
    cJSON **rv = NULL;
    size_t nr = 0;
    size_t i, k;
    int c;

    for (k = 0; k < NFIELDS; k++)
        vals[k] = NULL;
    for (i = 0; i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str;

        for (k = 0; k < NJOB_FIELDS; k++)
            if (strcmp(f, job_fields[k]) == 0)
                vals[k] = h->element[i + 1]->str;
        for (k = 0; k < CR_ST__COUNT; k++)
            if (strcmp(f, cr_status_name((enum cr_status)k)) == 0)
                vals[NJOB_FIELDS + k] = h->element[i + 1]->str;
    }
    job = job_summary(id, vals, now_ms);
    if (job == NULL)
        return NULL;
    chans = cJSON_AddObjectToObject(job, "channels");
    for (c = 0; chans != NULL && c < CR_CH__COUNT; c++) {
        cJSON *one = cJSON_CreateObject();
        int any = 0;

        for (k = 0; one != NULL && k < CR_ST__COUNT; k++) {
            char f[64];
            long long n = 0;

            snprintf(f, sizeof f, "%s:%s", cr_status_name((enum cr_status)k),
                     cr_channel_name((enum cr_channel)c));
            for (i = 0; i + 1 < h->elements; i += 2)
                if (strcmp(h->element[i]->str, f) == 0)
                    n = to_ll(h->element[i + 1]->str);
            any |= n > 0;
            cJSON_AddNumberToObject(one, cr_status_name((enum cr_status)k), (double)n);
        }
        if (any)
            cJSON_AddItemToObject(chans, cr_channel_name((enum cr_channel)c), one);
        else
            cJSON_Delete(one);
    }
    rv = calloc(h->elements / 2 + 1, sizeof(*rv));
    for (i = 0; rv != NULL && i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str;
        const char *colon;
        char st[24];

        if (strncmp(f, "reason:", 7) != 0)
            continue;
        colon = strchr(f + 7, ':');
        if (colon == NULL || (size_t)(colon - f - 7) >= sizeof st)
            continue;
        memcpy(st, f + 7, (size_t)(colon - f - 7));
        st[colon - f - 7] = '\0';
        rv[nr] = cJSON_CreateObject();
        if (rv[nr] == NULL)
            break;
        cJSON_AddStringToObject(rv[nr], "status", st);
        cJSON_AddStringToObject(rv[nr], "code", colon + 1);
        cJSON_AddNumberToObject(rv[nr], "count", (double)to_ll(h->element[i + 1]->str));
        nr++;
    }
    if (nr > 1)
        qsort(rv, nr, sizeof(*rv), qsort_reason);
    reasons = cJSON_CreateArray();
    for (i = 0; i < nr; i++)
        cJSON_AddItemToArray(reasons, rv[i]);
    free(rv);
    cJSON_AddItemToObject(job, "reasons", reasons);
    return job;
}

static const char *field(const redisReply *f, const char *name)
{
    size_t i;

    for (i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING && strcmp(f->element[i]->str, name) == 0)
            return f->element[i + 1]->type == REDIS_REPLY_STRING ? f->element[i + 1]->str : NULL;
    return NULL;
}

static const int ttd_bounds[] = {1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
#define NTTD_BOUNDS (sizeof(ttd_bounds) / sizeof(ttd_bounds[0]))

static long long hash_ll(const redisReply *h, const char *name)
{
    return to_ll(field(h, name));
}

/* {"n","mean_ms","p50_s","p95_s"} of step k's time to delivery (escalate.h
 * CR_TTD_LUA): percentiles as the upper bound of the histogram bucket that
 * holds them, null beyond the last bound or when nothing was delivered. */
static cJSON *step_ttd(const redisReply *h, int k)
{
    long long bucket[NTTD_BOUNDS + 1];
    long long n, total = 0;
    const double qs[2] = {0.50, 0.95};
    const char *names[2] = {"p50_s", "p95_s"};
    char f[48];
    cJSON *o = cJSON_CreateObject();
    size_t b;
    int q;

    if (o == NULL)
        return NULL;
    snprintf(f, sizeof f, "step:%d:ttd_n", k);
    n = hash_ll(h, f);
    cJSON_AddNumberToObject(o, "n", (double)n);
    snprintf(f, sizeof f, "step:%d:ttd_ms", k);
    if (n > 0)
        cJSON_AddNumberToObject(o, "mean_ms", (double)hash_ll(h, f) / (double)n);
    else
        cJSON_AddNullToObject(o, "mean_ms");
    for (b = 0; b <= NTTD_BOUNDS; b++) {
        if (b < NTTD_BOUNDS)
            snprintf(f, sizeof f, "step:%d:ttd_le:%d", k, ttd_bounds[b]);
        else
            snprintf(f, sizeof f, "step:%d:ttd_le:inf", k);
        bucket[b] = hash_ll(h, f);
        total += bucket[b];
    }
    for (q = 0; q < 2; q++) {
        long long want = (long long)(qs[q] * (double)total + 0.999999);
        long long seen = 0;
        int bound = -1;

        for (b = 0; total > 0 && b < NTTD_BOUNDS; b++) {
            seen += bucket[b];
            if (seen >= want) {
                bound = ttd_bounds[b];
                break;
            }
        }
        if (bound > 0)
            cJSON_AddNumberToObject(o, names[q], bound);
        else
            cJSON_AddNullToObject(o, names[q]);
    }
    return o;
}

static cJSON *channel_names(unsigned set)
{
    cJSON *a = cJSON_CreateArray();
    int c;

    for (c = 0; a != NULL && c < CR_CH__COUNT; c++)
        if (set & CR_CH_BIT(c))
            cJSON_AddItemToArray(a, cJSON_CreateString(cr_channel_name((enum cr_channel)c)));
    return a;
}

/* Adds "steps" (the job's own channels as step 0, then each escalation step:
 * when it ran, its messages by status over its channels, confirmations, time
 * to delivery) and "confirmations" (total, by channel, by way) to job, from
 * the job hash h. Nothing for a job with neither steps nor confirmations. */
static void add_steps(cJSON *job, const redisReply *h)
{
    const char *esc = field(h, "esc");
    unsigned masks[1 + CR_ESC_STEPS_MAX] = {0};
    long after[1 + CR_ESC_STEPS_MAX] = {0};
    char unless[1 + CR_ESC_STEPS_MAX] = {0};
    unsigned later = 0;
    cJSON *steps;
    int n = 0;
    int k, c;

    if (hash_ll(h, "confirm") == 1) {
        cJSON *conf = cJSON_AddObjectToObject(job, "confirmations");
        cJSON *by = cJSON_AddObjectToObject(conf, "channels");
        cJSON *via = cJSON_AddObjectToObject(conf, "via");
        size_t i;

        cJSON_AddNumberToObject(conf, "total", (double)hash_ll(h, "confirmed"));
        for (c = 0; by != NULL && c < CR_CH__COUNT; c++) {
            char f[48];

            snprintf(f, sizeof f, "confirmed:%s", cr_channel_name((enum cr_channel)c));
            cJSON_AddNumberToObject(by, cr_channel_name((enum cr_channel)c),
                                    (double)hash_ll(h, f));
        }
        for (i = 0; via != NULL && h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
            const char *f = h->element[i]->str;

            if (f != NULL && strncmp(f, "confirmed_via:", 14) == 0)
                cJSON_AddNumberToObject(via, f + 14, (double)to_ll(h->element[i + 1]->str));
        }
    }
    while (esc != NULL && *esc != '\0' && n < CR_ESC_STEPS_MAX) {
        char *end = NULL;
        long a = strtol(esc, &end, 10);
        unsigned long m;

        if (end == esc || *end != ':')
            break;
        esc = end + 1;
        m = strtoul(esc, &end, 10);
        if (end == esc || *end != ':' || (end[1] != 'd' && end[1] != 'c'))
            break;
        n++;
        after[n] = a;
        masks[n] = (unsigned)m;
        unless[n] = end[1];
        later |= (unsigned)m;
        esc = end + 2;
        if (*esc == ',')
            esc++;
    }
    if (n == 0)
        return;
    /* step 0: the channels with messages that no later step owns */
    for (c = 0; c < CR_CH__COUNT; c++) {
        int st;

        if (later & CR_CH_BIT(c))
            continue;
        for (st = 0; st < CR_ST__COUNT; st++) {
            char f[64];

            snprintf(f, sizeof f, "%s:%s", cr_status_name((enum cr_status)st),
                     cr_channel_name((enum cr_channel)c));
            if (hash_ll(h, f) > 0)
                masks[0] |= CR_CH_BIT(c);
        }
    }
    steps = cJSON_AddArrayToObject(job, "steps");
    for (k = 0; steps != NULL && k <= n; k++) {
        cJSON *o = cJSON_CreateObject();
        long long by[CR_ST__COUNT] = {0};
        long long msgs = 0, conf = 0;
        char f[64];
        int st;

        if (o == NULL)
            break;
        cJSON_AddItemToArray(steps, o);
        cJSON_AddNumberToObject(o, "step", k);
        cJSON_AddItemToObject(o, "channels", channel_names(masks[k]));
        if (k > 0) {
            long long ran;

            cJSON_AddNumberToObject(o, "after_s", (double)after[k]);
            cJSON_AddStringToObject(o, "unless", unless[k] == 'c' ? "confirmed" : "delivered");
            snprintf(f, sizeof f, "step:%d:ms", k);
            ran = hash_ll(h, f);
            if (ran > 0)
                cJSON_AddNumberToObject(o, "ran_ms", (double)ran);
            else
                cJSON_AddNullToObject(o, "ran_ms");
        }
        for (c = 0; c < CR_CH__COUNT; c++) {
            if (!(masks[k] & CR_CH_BIT(c)))
                continue;
            for (st = 0; st < CR_ST__COUNT; st++) {
                snprintf(f, sizeof f, "%s:%s", cr_status_name((enum cr_status)st),
                         cr_channel_name((enum cr_channel)c));
                by[st] += hash_ll(h, f);
            }
            snprintf(f, sizeof f, "confirmed:%s", cr_channel_name((enum cr_channel)c));
            conf += hash_ll(h, f);
        }
        for (st = 0; st < CR_ST__COUNT; st++)
            msgs += by[st];
        cJSON_AddNumberToObject(o, "messages", (double)msgs);
        cJSON_AddNumberToObject(o, "sent", (double)by[CR_ST_SENT]);
        cJSON_AddNumberToObject(o, "delivered", (double)by[CR_ST_DELIVERED]);
        cJSON_AddNumberToObject(o, "failed", (double)(by[CR_ST_FAILED] + by[CR_ST_BOUNCED]));
        cJSON_AddNumberToObject(o, "confirmed", (double)conf);
        cJSON_AddItemToObject(o, "to_delivery", step_ttd(h, k));
    }
}

/* The job's lifecycle from crier:events, and the messages done over time
 * (started = 0, each progress event, completed = all) for the chart. */
static void on_job_events(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct job_q *q = ud;
    cJSON *events = cJSON_AddArrayToObject(q->doc, "events");
    cJSON *series = cJSON_AddArrayToObject(q->doc, "series");
    size_t i;

    (void)r;
    for (i = 0; reply != NULL && reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        const redisReply *f;
        const char *job, *ev, *t;
        cJSON *o;

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
            continue;
        f = e->element[1];
        job = field(f, "job");
        ev = field(f, "event");
        t = field(f, "t_ms");
        if (job == NULL || ev == NULL || strcmp(job, q->id) != 0)
            continue;
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", ev);
        cJSON_AddNumberToObject(o, "t_ms", (double)to_ll(t));
        if (strcmp(ev, "progress") == 0) {
            char d[96];

            snprintf(d, sizeof d, "%s of %s batches",
                     field(f, "batches_done") ? field(f, "batches_done") : "?",
                     field(f, "batches") ? field(f, "batches") : "?");
            cJSON_AddStringToObject(o, "detail", d);
        } else if (field(f, "messages") != NULL) {
            char d[64];

            snprintf(d, sizeof d, "%s messages", field(f, "messages"));
            cJSON_AddStringToObject(o, "detail", d);
        }
        cJSON_AddItemToArray(events, o);
        if (series != NULL) {
            long long n = -1;

            if (strcmp(ev, "started") == 0)
                n = 0;
            else if (strcmp(ev, "progress") == 0)
                n = to_ll(field(f, "sent")) + to_ll(field(f, "delivered")) +
                    to_ll(field(f, "failed"));
            else if (finished(ev) && field(f, "messages") != NULL)
                n = to_ll(field(f, "messages"));
            if (n >= 0) {
                cJSON *pt = cJSON_CreateArray();

                cJSON_AddItemToArray(pt, cJSON_CreateNumber((double)to_ll(t)));
                cJSON_AddItemToArray(pt, cJSON_CreateNumber((double)n));
                cJSON_AddItemToArray(series, pt);
            }
        }
    }
    json_doc(q->req, q->doc);
    free(q);
}

static void on_job_hash(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct job_q *q = ud;
    cJSON *job;
    cJSON *created;
    char start[32];

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        json_error(q->req, 503, NULL, "redis unavailable");
        free(q);
        return;
    }
    if (reply->elements == 0) {
        json_error(q->req, 404, NULL, "no such job");
        free(q);
        return;
    }
    job = job_detail(q->id, reply, q->now_ms);
    q->doc = cJSON_CreateObject();
    if (job == NULL || q->doc == NULL) {
        cJSON_Delete(job);
        cJSON_Delete(q->doc);
        json_error(q->req, 500, NULL, "out of memory");
        free(q);
        return;
    }
    add_steps(job, reply);
    cJSON_AddItemToObject(q->doc, "job", job);
    cJSON_AddItemToObject(q->doc, "reasons", cJSON_DetachItemFromObject(job, "reasons"));
    created = cJSON_GetObjectItem(job, "created_ms");
    snprintf(start, sizeof start, "%lld", created != NULL ? (long long)created->valuedouble : 0LL);
    if (cr_redis_cmd(q->a->d->rc, on_job_events, q, 0, "XRANGE %s %s + COUNT %s",
                     q->a->d->keys.events, start, EVENTS_SCAN) != 0)
        on_job_events(r, NULL, q);
}

/* ---- the cancel ---- */

/* As `crierctl cancel`: KEYS[1] job hash, KEYS[2] events, KEYS[3] escalate
 * set; ARGV[1] id, ARGV[2] now. The job's next escalation step is made due
 * now, so that the step runner ends the job at once. */
static const char cancel_lua[] = CR_AUDIT_TRIM_LUA CR_ESC_DUE_NOW_LUA
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return {0, ''} end\n"
    "if st == 'completed' or st == 'cancelled' or st == 'expired' then return {1, st} end\n"
    "if st == 'cancelling' then return {3, st} end\n"
    "redis.call('HSET', KEYS[1], 'state', 'cancelling')\n"
    "xadd_kept(KEYS[2], " CR_EVENTS_MAXLEN ", 'job', ARGV[1],\n"
    "  'event', 'cancel_requested', 't_ms', ARGV[2])\n"
    "esc_due_now(KEYS[3], KEYS[1], ARGV[1], ARGV[2])\n"
    "return {2, st}\n";

struct cancel_q {
    struct cr_httpd_req *req;
    char id[CR_JOB_ID_MAX + 1];
    char who[CR_TOKEN_NAME_MAX + 1];
};

static void on_cancel(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cancel_q *q = ud;
    long long v;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        json_error(q->req, 503, NULL, "redis unavailable");
    } else {
        v = cr_reply_int(reply->element[0]);
        if (v == 0) {
            json_error(q->req, 404, NULL, "no such job");
        } else if (v == 1) {
            json_error(q->req, 409, NULL, "the job has already finished");
        } else {
            cr_info("api: job %s: cancel requested by dashboard token '%s'", q->id, q->who);
            json_text(q->req, 200,
                      v == 2 ? "{\"result\":\"requested\"}\n"
                             : "{\"result\":\"already requested\"}\n");
        }
    }
    free(q);
}

/* ---- the report (the same CSV as `crierctl report`) ---- */

struct report {
    struct cr_dash *a;
    struct report *next; /* a->reports */
    struct cr_httpd_req *req;
    uv_process_t proc;
    uv_pipe_t out;
    uv_timer_t timer;
    struct cr_buf csv;
    int open; /* handles still to close */
    int exited;
    int64_t status;
    int eof;
    int over;
};

static void dash_unref(struct cr_dash *a);

static void report_handle_closed(uv_handle_t *h)
{
    struct report *rp = h->data;

    struct report **pp;

    if (--rp->open > 0)
        return;
    for (pp = &rp->a->reports; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rp) {
            *pp = rp->next;
            break;
        }
    }
    rp->a->nreports--;
    cr_buf_release(&rp->csv);
    dash_unref(rp->a);
    free(rp);
}

static void report_finish(struct report *rp)
{
    if (!rp->exited || !rp->eof)
        return;
    if (rp->req != NULL) {
        if (rp->status == 0 && !rp->over)
            answer(rp->req, 200, "text/csv; charset=utf-8", NULL, rp->csv.data ? rp->csv.data : "",
                   rp->csv.len);
        else if (rp->status == 4)
            json_error(rp->req, 404, NULL, "no such job");
        else
            json_error(rp->req, 502, NULL, "the report could not be made (see crierd's log)");
        rp->req = NULL;
    }
    uv_timer_stop(&rp->timer);
    uv_close((uv_handle_t *)&rp->proc, report_handle_closed);
    uv_close((uv_handle_t *)&rp->out, report_handle_closed);
    uv_close((uv_handle_t *)&rp->timer, report_handle_closed);
}

static void on_report_exit(uv_process_t *p, int64_t status, int sig)
{
    struct report *rp = p->data;

    rp->exited = 1;
    rp->status = sig != 0 ? -1 : status;
    if (rp->status != 0 && rp->status != 4)
        cr_warn("api: crierctl report exited with %lld (signal %d); answered 502",
                (long long)status, sig);
    report_finish(rp);
}

static void on_report_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char chunk[65536];

    (void)h;
    (void)hint;
    *buf = uv_buf_init(chunk, sizeof chunk);
}

static void on_report_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct report *rp = s->data;

    if (n < 0) {
        uv_read_stop(s);
        rp->eof = 1;
        report_finish(rp);
        return;
    }
    if (n > 0 && !rp->over && cr_buf_append(&rp->csv, buf->base, (size_t)n) < 0) {
        rp->over = 1;
        uv_process_kill(&rp->proc, SIGTERM);
    }
}

static void on_report_timeout(uv_timer_t *t)
{
    struct report *rp = t->data;

    cr_warn("api: crierctl report took over %d ms; stopped", REPORT_TIMEOUT_MS);
    rp->over = 1;
    uv_process_kill(&rp->proc, SIGTERM);
}

/* The crierctl to run: dashboard.crierctl, or the one beside crierd. */
static int crierctl_path(const struct cr_dash *a, char *out, size_t cap)
{
    size_t n = cap;
    char *slash;

    if (a->conf->crierctl != NULL) {
        snprintf(out, cap, "%s", a->conf->crierctl);
        return 0;
    }
    if (uv_exepath(out, &n) != 0)
        return CR_EIO;
    slash = strrchr(out, '/');
    if (slash == NULL || (size_t)(slash - out) + sizeof("/crierctl") > cap)
        return CR_ETOOBIG;
    memcpy(slash, "/crierctl", sizeof("/crierctl"));
    return 0;
}

/* ?by=<pattern> of a report request (crierctl report --by): segment name
 * characters and '*' only, so nothing reaches crierctl but a glob of segment
 * names. Returns 0 ("" when not given) or -1. */
static int report_by(const struct cr_httpd_req *req, char *out, size_t outlen)
{
    struct cr_form f;
    const char *v;
    size_t i, n;
    int rc = 0;

    out[0] = '\0';
    if (req->query == NULL || req->query[0] == '\0')
        return 0;
    if (cr_form_parse(req->query, strlen(req->query), &f) != 0)
        return -1;
    v = cr_form_get(&f, "by");
    n = v ? strlen(v) : 0;
    if (v != NULL && (n == 0 || n >= outlen))
        rc = -1;
    for (i = 0; rc == 0 && i < n; i++) {
        char c = v[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(":._-*+", c) != NULL))
            rc = -1;
    }
    if (rc == 0 && v != NULL)
        memcpy(out, v, n + 1);
    cr_form_release(&f);
    return rc;
}

static void report(struct cr_dash *a, struct cr_httpd_req *req, const char *id)
{
    const struct cr_config *cfg = a->d->cfg;
    char by[130];
    char exe[4096];
    char url[1024];
    char *args[8];
    char *env[2];
    struct uv_process_options_s o;
    uv_stdio_container_t io[3];
    struct report *rp;
    int rc;

    if (report_by(req, by, sizeof by) != 0) {
        json_error(req, 400, NULL, "by: a segment pattern such as demo:* (letters, digits, : . _ - + *)");
        return;
    }
    if (cfg->redis_tls.enabled) {
        json_error(req, 501, NULL,
                   "the report needs crierctl, which does not speak TLS: run "
                   "crierctl report on a host with a plain connection");
        return;
    }
    if (cfg->redis_password != NULL && strpbrk(cfg->redis_password, "@/?") != NULL) {
        json_error(req, 501, NULL,
                   "the Redis password holds @, / or ?, which CRIER_REDIS_URL "
                   "cannot carry: run crierctl report by hand");
        return;
    }
    if (a->nreports >= REPORTS_MAX) {
        json_error(req, 503, "Retry-After: 5\r\n", "reports are being made; try again shortly");
        return;
    }
    if (crierctl_path(a, exe, sizeof exe) != 0 || access(exe, X_OK) != 0) {
        cr_warn("api: report: no crierctl at '%s'; set dashboard.crierctl", exe);
        json_error(req, 501, NULL, "crierctl not found beside crierd (dashboard.crierctl)");
        return;
    }
    if (cfg->redis_path != NULL) {
        snprintf(url, sizeof url, "CRIER_REDIS_URL=unix://%s", cfg->redis_path);
    } else {
        /* where the commands connection is now: with Sentinel, the current primary */
        char where[300];

        if (cfg->redis_sentinel_master != NULL && cr_redis_ready(a->d->rc))
            snprintf(where, sizeof where, "%s", cr_redis_peer(a->d->rc));
        else
            snprintf(where, sizeof where, "%s:%d", cfg->redis_host ? cfg->redis_host : "127.0.0.1",
                     cfg->redis_port);
        snprintf(url, sizeof url, "CRIER_REDIS_URL=redis://%s%s%s%s%s",
                 cfg->redis_username ? cfg->redis_username : "",
                 cfg->redis_password || cfg->redis_username ? ":" : "",
                 cfg->redis_password ? cfg->redis_password : "",
                 cfg->redis_password || cfg->redis_username ? "@" : "", where);
    }
    rp = calloc(1, sizeof(*rp));
    if (rp == NULL) {
        json_error(req, 500, NULL, "out of memory");
        return;
    }
    rp->a = a;
    rp->req = req;
    cr_buf_init(&rp->csv, REPORT_MAX);
    args[0] = exe;
    args[1] = (char *)(uintptr_t) "--prefix";
    args[2] = (char *)(uintptr_t)cfg->prefix;
    args[3] = (char *)(uintptr_t) "report";
    args[4] = (char *)(uintptr_t)id;
    args[5] = by[0] ? (char *)(uintptr_t) "--by" : NULL;
    args[6] = by[0] ? by : NULL;
    args[7] = NULL;
    env[0] = url;
    env[1] = NULL;
    uv_pipe_init(a->d->loop, &rp->out, 0);
    uv_timer_init(a->d->loop, &rp->timer);
    rp->proc.data = rp->out.data = rp->timer.data = rp;
    memset(&o, 0, sizeof o);
    memset(io, 0, sizeof io);
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[1].data.stream = (uv_stream_t *)&rp->out;
    io[2].flags = UV_INHERIT_FD; /* its warnings go to crierd's log */
    io[2].data.fd = 2;
    o.file = exe;
    o.args = args;
    o.env = env;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = on_report_exit;
    rc = uv_spawn(a->d->loop, &rp->proc, &o);
    explicit_bzero(url, sizeof url);
    a->nreports++;
    a->handles++;
    rp->open = 3;
    rp->next = a->reports;
    a->reports = rp;
    if (rc != 0) {
        cr_warn("api: report: could not start %s: %s", exe, uv_strerror(rc));
        json_error(req, 502, NULL, "the report could not be made (see crierd's log)");
        rp->req = NULL;
        uv_close((uv_handle_t *)&rp->out, report_handle_closed);
        uv_close((uv_handle_t *)&rp->timer, report_handle_closed);
        rp->open = 2;
        return;
    }
    uv_read_start((uv_stream_t *)&rp->out, on_report_alloc, on_report_read);
    uv_timer_start(&rp->timer, on_report_timeout, REPORT_TIMEOUT_MS, 0);
}

/* ---- the event stream ---- */

static void stream_gone(void *ud)
{
    struct stream *s = ud;
    struct cr_dash *a = s->a;

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        a->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    a->nstreams--;
    free(s);
    if (a->nstreams == 0)
        uv_timer_stop(&a->poll);
}

/* Sends "event: <type>\ndata: <text>\n\n" to every stream (or to one). */
static void send_event(struct cr_dash *a, struct stream *only, const char *type, const char *text)
{
    struct stream *s, *next;
    struct cr_buf b;

    cr_buf_init(&b, JSON_MAX + 64);
    if (cr_buf_appendf(&b, "event: %s\ndata: %s\n\n", type, text) != 0) {
        cr_buf_release(&b);
        return;
    }
    for (s = only != NULL ? only : a->streams; s != NULL; s = next) {
        next = only != NULL ? NULL : s->next; /* s may be freed by a failed write */
        s->last_sent_ms = cr_now_ms();
        cr_httpd_stream_write(s->conn, b.data, b.len);
    }
    cr_buf_release(&b);
}

/* Keeps text as the last document of its kind and sends it when it changed. */
static void publish(struct cr_dash *a, char **last, const char *type, cJSON *doc)
{
    char *text;

    if (doc == NULL)
        return;
    text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (text == NULL)
        return;
    if (*last != NULL && strcmp(*last, text) == 0) {
        free(text);
        return;
    }
    free(*last);
    *last = text;
    send_event(a, NULL, type, text);
}

static void poll_fleet_done(struct cr_dash *a, void *ud, cJSON *doc)
{
    struct stream *s, *next;
    int64_t now = cr_now_ms();

    (void)ud;
    a->polling = 0;
    publish(a, &a->last_fleet, "fleet", doc); /* the heartbeats change every second */
    for (s = a->streams; s != NULL; s = next) {
        next = s->next;
        if (now - s->last_sent_ms >= KEEPALIVE_MS) {
            s->last_sent_ms = now;
            cr_httpd_stream_write(s->conn, ": keepalive\n\n", 13);
        }
    }
    dash_unref(a);
}

static void poll_jobs_done(struct cr_dash *a, void *ud, cJSON *doc)
{
    (void)ud;
    publish(a, &a->last_jobs, "jobs", doc);
    if (a->freeing) {
        a->polling = 0;
        dash_unref(a);
        return;
    }
    query_fleet(a, poll_fleet_done, NULL);
}

static void on_poll(uv_timer_t *t)
{
    struct cr_dash *a = t->data;

    if (a->polling || a->nstreams == 0 || !cr_redis_ready(a->d->rc))
        return;
    a->polling = 1;
    a->handles++; /* the poll's queries hold a until they are done */
    query_jobs(a, poll_jobs_done, NULL);
}

static void events(struct cr_dash *a, struct cr_httpd_req *req, const char *arg)
{
    struct stream *s;

    (void)arg;
    if (a->nstreams >= a->conf->max_streams) {
        cr_warn("api: event stream refused: %d open, the most allowed (dashboard.max_streams)",
                a->nstreams);
        json_error(req, 503, "Retry-After: 10\r\n", "too many event streams");
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        json_error(req, 500, NULL, "out of memory");
        return;
    }
    s->a = a;
    s->conn = cr_httpd_stream_start(req, "text/event-stream",
                                    "X-Content-Type-Options: nosniff\r\nX-Accel-Buffering: no\r\n",
                                    stream_gone, s);
    if (s->conn == NULL) {
        free(s);
        return;
    }
    s->next = a->streams;
    if (a->streams != NULL)
        a->streams->prev = s;
    a->streams = s;
    a->nstreams++;
    s->last_sent_ms = cr_now_ms();
    cr_httpd_stream_write(s->conn, "retry: 2000\n\n", 13);
    /* what is known now, at once; then what changes */
    if (a->last_jobs != NULL)
        send_event(a, s, "jobs", a->last_jobs);
    if (a->last_fleet != NULL && a->streams == s)
        send_event(a, s, "fleet", a->last_fleet);
    if (!uv_is_active((uv_handle_t *)&a->poll)) {
        uv_timer_start(&a->poll, on_poll, 0, POLL_MS);
    }
}

/* ---- handlers ---- */

static void got_doc(struct cr_dash *a, void *ud, cJSON *doc)
{
    struct cr_httpd_req *req = ud;

    (void)a;
    if (doc == NULL)
        json_error(req, 503, NULL, "redis unavailable");
    else
        json_doc(req, doc);
}

static void list_jobs(struct cr_dash *a, struct cr_httpd_req *req, const char *arg)
{
    (void)arg;
    query_jobs(a, got_doc, req);
}

static void fleet(struct cr_dash *a, struct cr_httpd_req *req, const char *arg)
{
    (void)arg;
    query_fleet(a, got_doc, req);
}

static void one_job(struct cr_dash *a, struct cr_httpd_req *req, const char *id)
{
    struct job_q *q = calloc(1, sizeof(*q));
    char key[CR_KEY_MAX];

    if (q == NULL) {
        json_error(req, 500, NULL, "out of memory");
        return;
    }
    q->a = a;
    q->req = req;
    q->now_ms = cr_now_ms();
    snprintf(q->id, sizeof q->id, "%s", id);
    if (cr_key_for(&a->d->keys, "job", id, key, sizeof key) != 0 ||
        cr_redis_cmd(a->d->rc, on_job_hash, q, 0, "HGETALL %s", key) != 0) {
        free(q);
        json_error(req, 503, NULL, "redis unavailable");
    }
}

static void cancel(struct cr_dash *a, struct cr_httpd_req *req, const char *id, const char *who)
{
    struct cancel_q *q = calloc(1, sizeof(*q));
    char key[CR_KEY_MAX];
    char esc[CR_KEY_MAX];
    char now[24];

    if (q == NULL) {
        json_error(req, 500, NULL, "out of memory");
        return;
    }
    q->req = req;
    snprintf(q->id, sizeof q->id, "%s", id);
    snprintf(q->who, sizeof q->who, "%s", who ? who : "?");
    snprintf(now, sizeof now, "%lld", (long long)cr_now_ms());
    if (cr_key_for(&a->d->keys, "job", id, key, sizeof key) != 0 ||
        cr_key_for(&a->d->keys, "escalate", NULL, esc, sizeof esc) != 0 ||
        cr_redis_cmd(a->d->rc, on_cancel, q, 0, "EVAL %s 3 %s %s %s %s %s", cancel_lua, key,
                     a->d->keys.events, esc, id, now) != 0) {
        free(q);
        json_error(req, 503, NULL, "redis unavailable");
    }
}

static void asset(struct cr_httpd_req *req, const char *name)
{
    static const char csp[] =
        "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'\r\nX-Frame-Options: DENY\r\n";
    const char *ctype = "text/html; charset=utf-8";
    size_t i;

    if (strstr(name, ".css") != NULL)
        ctype = "text/css; charset=utf-8";
    else if (strstr(name, ".js") != NULL)
        ctype = "text/javascript; charset=utf-8";
    for (i = 0; i < cr_nassets; i++) {
        if (strcmp(cr_assets[i].name, name) == 0) {
            answer(req, 200, ctype, csp, (const char *)cr_assets[i].data, cr_assets[i].len);
            return;
        }
    }
    answer(req, 404, "text/plain; charset=utf-8", NULL, "not found\n", 10);
}

/* ---- the page ---- */

int cr_dash_page_owns(const char *path)
{
    return strcmp(path, "/dashboard") == 0 || strncmp(path, "/dashboard/", 11) == 0;
}

/* [A-Za-z0-9][A-Za-z0-9._-]*: an asset's name. */
static int asset_name_ok(const char *s)
{
    size_t i;

    if (s[0] == '\0' || s[0] == '.' || s[0] == '-' || strlen(s) > 64)
        return 0;
    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

void cr_dash_page(struct cr_dash *a, struct cr_httpd_req *req)
{
    const char *p = req->path;

    if (a == NULL || a->conf == NULL) {
        answer(req, 404, "text/plain; charset=utf-8", NULL, "no dashboard configured\n", 24);
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        answer(req, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
               "method not allowed\n", 19);
        return;
    }
    if (strcmp(p, "/dashboard") == 0)
        answer(req, 301, "text/plain; charset=utf-8", "Location: /dashboard/\r\n", "", 0);
    else if (strcmp(p, "/dashboard/") == 0)
        asset(req, "index.html");
    else if (asset_name_ok(p + 11))
        asset(req, p + 11);
    else
        answer(req, 404, "text/plain; charset=utf-8", NULL, "not found\n", 10);
}

/* ---- what the router hands over ---- */

/* The request comes from the page itself: its Origin names the host it was
 * sent to. A cross-site form or script carries another Origin (or, for a
 * form, none the browser lets it drop on POST). */
static int same_origin(const struct cr_httpd_req *req)
{
    const char *origin = cr_httpd_header(req, "Origin");
    const char *host = cr_httpd_header(req, "Host");
    const char *site = cr_httpd_header(req, "Sec-Fetch-Site");
    const char *h;

    if (site != NULL && strcmp(site, "same-origin") != 0)
        return 0;
    if (origin == NULL || host == NULL)
        return 0;
    h = strstr(origin, "://");
    return h != NULL && strcasecmp(h + 3, host) == 0;
}

int cr_dash_enabled(const struct cr_dash *a)
{
    return a != NULL && a->conf != NULL;
}

void cr_dash_whoami(struct cr_httpd_req *req, const char *name, int operator)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "name", name ? name : "");
    cJSON_AddStringToObject(o, "role", operator? "operator" : "viewer");
    json_doc(req, o);
}

void cr_dash_jobs(struct cr_dash *a, struct cr_httpd_req *req)
{
    list_jobs(a, req, NULL);
}

void cr_dash_job(struct cr_dash *a, struct cr_httpd_req *req, const char *id)
{
    one_job(a, req, id);
}

void cr_dash_report(struct cr_dash *a, struct cr_httpd_req *req, const char *id)
{
    report(a, req, id);
}

void cr_dash_cancel(struct cr_dash *a, struct cr_httpd_req *req, const char *id, const char *who)
{
    if (!same_origin(req)) {
        cr_warn("api: %s %s by token '%s' refused: not from the dashboard's own origin",
                req->method, req->path, who ? who : "?");
        json_error(req, 403, NULL, "cross-origin request refused");
        return;
    }
    cancel(a, req, id, who);
}

void cr_dash_fleet(struct cr_dash *a, struct cr_httpd_req *req)
{
    fleet(a, req, NULL);
}

void cr_dash_events(struct cr_dash *a, struct cr_httpd_req *req)
{
    events(a, req, NULL);
}

/* ---- life ---- */

int cr_dash_init(struct cr_daemon *d, struct cr_dash **out)
{
    struct cr_dash *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return CR_ENOMEM;
    a->d = d;
    a->conf = d->cfg->dashboard;
    uv_timer_init(d->loop, &a->poll);
    a->poll.data = a;
    a->handles = 1;
    *out = a;
    return 0;
}

static void dash_unref(struct cr_dash *a)
{
    if (--a->handles > 0)
        return;
    free(a->last_jobs);
    free(a->last_fleet);
    free(a);
}

static void on_poll_closed(uv_handle_t *h)
{
    dash_unref(h->data);
}

void cr_dash_free(struct cr_dash *a)
{
    struct report *rp;

    if (a == NULL)
        return;
    a->freeing = 1;
    while (a->streams != NULL) {
        struct stream *s = a->streams;

        cr_httpd_stream_end(s->conn);
        stream_gone(s);
    }
    for (rp = a->reports; rp != NULL; rp = rp->next) {
        if (!rp->exited)
            uv_process_kill(&rp->proc, SIGTERM); /* its exit closes its handles */
    }
    uv_timer_stop(&a->poll);
    uv_close((uv_handle_t *)&a->poll, on_poll_closed);
}
