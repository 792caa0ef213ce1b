/* crier-audit: reads crier:receipts, crier:replies and crier:events through a
 * consumer group and stores them in SQL (SQLite or PostgreSQL). One batch is in
 * flight at a time: read (XREADGROUP), look up what the entries need (the
 * resident's language, the job's hash), write in one transaction on the libuv
 * thread pool, and only then XACK. A crash at any point leaves the entries
 * pending; they are read again ("0") and written again, which changes nothing. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "audit.h"
#include "conf.h"
#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"
#include "redis.h"

#define KEY_MAX 128
#define STATS_INTERVAL_MS 10000
#define RETRY_MIN_MS 100
#define MEMBER_SEGS_MAX 256 /* audience segments looked up per job */

enum work_kind { WORK_WRITE, WORK_RETAIN };

struct app {
    uv_loop_t *loop;
    struct cr_audit_config cfg;
    struct cr_redis *r;
    struct cr_store *db;
    char keys[CR_AS__COUNT][KEY_MAX];
    int history[CR_AS__COUNT]; /* 1: read our own pending entries ("0") first */
    int groups_ready;
    int groups_waiting;
    int reading;
    /* the batch in flight: looked up, written, acknowledged */
    struct cr_audit_batch batch;
    int have_batch;
    int lookups_left;
    int lookups_failed;
    int lookup_phase; /* 1: jobs and languages, 2: segment membership */
    int write_wanted; /* lookups done, waiting for the database */
    int acks_left;
    int acks_failed;
    /* the database, used by one work item at a time */
    uv_work_t work;
    int db_busy;
    enum work_kind work_kind;
    int work_rc;
    char work_err[512];
    long retained;
    int retain_wanted;
    long retry_ms;
    uv_timer_t retry_timer;
    uv_timer_t retain_timer;
    uv_timer_t stats_timer;
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    int stopping;
    int closed;
    /* counters for the log */
    unsigned long long stored[CR_AS__COUNT];
    unsigned long long stored_shown[CR_AS__COUNT];
    unsigned long long failures;
};

static struct app app_state;

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const stream_names[CR_AS__COUNT] = {"receipts", "replies", "events"};

static void pump(struct app *a);
static void maybe_db(struct app *a);
static void on_retry_timer(uv_timer_t *t);
static void create_groups(struct app *a);

static void close_all(struct app *a)
{
    if (a->closed)
        return;
    a->closed = 1;
    uv_close((uv_handle_t *)&a->retry_timer, NULL);
    uv_close((uv_handle_t *)&a->retain_timer, NULL);
    uv_close((uv_handle_t *)&a->stats_timer, NULL);
    uv_close((uv_handle_t *)&a->sig_term, NULL);
    uv_close((uv_handle_t *)&a->sig_int, NULL);
    cr_redis_close(a->r);
}

/* Stopping waits for the transaction and the acknowledgements in flight: what
 * is committed is acknowledged, what is not stays pending in Redis. */
static void maybe_done(struct app *a)
{
    if (a->stopping && !a->db_busy && a->acks_left == 0)
        close_all(a);
}

/* Something failed between reading and acknowledging: drop the batch (its
 * entries stay pending in Redis), read the pending entries again later. */
static void abandon(struct app *a, const char *why)
{
    size_t i;
    size_t n = 0;

    for (i = 0; i < CR_AS__COUNT; i++) {
        n += a->batch.n[i];
        a->history[i] = 1;
    }
    if (n)
        cr_warn("audit: batch of %zu entries: %s; they stay pending in Redis and are read again "
                "in %ld ms",
                n, why, a->retry_ms);
    cr_audit_batch_clear(&a->batch);
    a->have_batch = 0;
    a->write_wanted = 0;
    uv_timer_start(&a->retry_timer, on_retry_timer, (uint64_t)a->retry_ms, 0);
}

static void backoff(struct app *a)
{
    a->retry_ms = a->retry_ms < RETRY_MIN_MS ? RETRY_MIN_MS : a->retry_ms * 2;
    if (a->retry_ms > a->cfg.retry_max_ms)
        a->retry_ms = a->cfg.retry_max_ms;
}

/* ---- acknowledging -------------------------------------------------------------- */

static void on_acked(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct app *a = ud;
    size_t i;

    (void)r;
    if (reply == NULL || cr_reply_is_error(reply))
        a->acks_failed = 1;
    if (--a->acks_left > 0)
        return;
    for (i = 0; i < CR_AS__COUNT; i++)
        a->stored[i] += a->batch.n[i];
    if (a->acks_failed) {
        /* committed but not acknowledged: read again, written again, no change */
        for (i = 0; i < CR_AS__COUNT; i++)
            a->history[i] = 1;
        cr_warn("audit: acknowledging a stored batch failed; its entries will be read and "
                "stored again (no change to the database)");
    }
    cr_audit_batch_clear(&a->batch);
    a->have_batch = 0;
    maybe_done(a);
    pump(a);
}

static void ack_batch(struct app *a)
{
    size_t s;

    a->acks_left = 0;
    a->acks_failed = 0;
    for (s = 0; s < CR_AS__COUNT; s++) {
        size_t n = a->batch.n[s];
        const char **argv;
        size_t i;

        if (n == 0)
            continue;
        argv = malloc((n + 3) * sizeof(*argv));
        if (argv == NULL) {
            a->acks_failed = 1;
            continue;
        }
        argv[0] = "XACK";
        argv[1] = a->keys[s];
        argv[2] = a->cfg.group;
        for (i = 0; i < n; i++)
            argv[3 + i] = a->batch.e[s][i].id;
        if (cr_redis_argv(a->r, on_acked, a, 0, (int)(n + 3), argv, NULL) == 0)
            a->acks_left++;
        else
            a->acks_failed = 1;
        free(argv);
    }
    if (a->acks_left == 0) {
        a->acks_left = 1;
        on_acked(a->r, NULL, a);
    }
}

/* ---- the database (thread pool) ---------------------------------------------------- */

static void do_work(uv_work_t *w)
{
    struct app *a = w->data;
    long long cutoff;

    a->work_err[0] = '\0';
    a->work_rc = cr_store_reconnect(a->db);
    if (a->work_rc == 0 && a->work_kind == WORK_WRITE)
        a->work_rc = cr_audit_store(a->db, &a->batch);
    if (a->work_rc == 0 && a->work_kind == WORK_RETAIN) {
        cutoff = now_ms() - a->cfg.retention_days * 86400000LL;
        a->work_rc = cr_audit_retain(a->db, cutoff, a->cfg.retention_chunk, &a->retained);
    }
    if (a->work_rc != 0)
        cr_strlcpy(a->work_err, cr_store_errmsg(a->db), sizeof(a->work_err));
}

static void after_work(uv_work_t *w, int status)
{
    struct app *a = w->data;
    size_t n = a->batch.n[0] + a->batch.n[1] + a->batch.n[2];

    a->db_busy = 0;
    if (status != 0)
        a->work_rc = CR_ECANCELED;
    if (a->work_kind == WORK_RETAIN) {
        if (a->work_rc != 0) {
            cr_warn("audit: retention pass failed (%s); tried again at the next interval",
                    a->work_err);
            a->retain_wanted = 0;
        } else {
            if (a->retained > 0)
                cr_info("audit: retention deleted %ld rows older than %ld days", a->retained,
                        a->cfg.retention_days);
            /* a full chunk: more to delete, between the batches */
            a->retain_wanted = a->retained > 0;
        }
        maybe_done(a);
        maybe_db(a);
        return;
    }
    if (a->work_rc != 0) {
        a->failures++;
        backoff(a);
        cr_error("audit: storing a batch of %zu entries failed (%s); nothing acknowledged, "
                 "retry in %ld ms",
                 n, a->work_err, a->retry_ms);
        a->write_wanted = 1;
        if (a->stopping) {
            abandon(a, "not stored before shutdown");
            maybe_done(a);
            return;
        }
        uv_timer_start(&a->retry_timer, on_retry_timer, (uint64_t)a->retry_ms, 0);
        return;
    }
    a->retry_ms = 0;
    if (!cr_redis_ready(a->r)) {
        abandon(a, "stored, but Redis is not connected to acknowledge it");
        maybe_done(a);
        return;
    }
    ack_batch(a);
}

static void start_work(struct app *a, enum work_kind kind)
{
    a->db_busy = 1;
    a->work_kind = kind;
    a->work.data = a;
    if (uv_queue_work(a->loop, &a->work, do_work, after_work) != 0) {
        a->db_busy = 0;
        backoff(a);
        cr_error("audit: cannot queue database work; retry in %ld ms", a->retry_ms);
        if (kind == WORK_WRITE)
            a->write_wanted = 1;
        uv_timer_start(&a->retry_timer, on_retry_timer, (uint64_t)a->retry_ms, 0);
    }
}

/* Starts what waits for the database: the batch first, retention between batches. */
static void maybe_db(struct app *a)
{
    if (a->db_busy || a->closed)
        return;
    if (a->write_wanted && !uv_is_active((uv_handle_t *)&a->retry_timer)) {
        a->write_wanted = 0;
        start_work(a, WORK_WRITE);
    } else if (a->retain_wanted && !a->stopping && !a->write_wanted) {
        start_work(a, WORK_RETAIN);
    }
}

static void on_retry_timer(uv_timer_t *t)
{
    struct app *a = t->data;

    if (a->write_wanted)
        maybe_db(a);
    else
        pump(a);
}

static void on_retain_timer(uv_timer_t *t)
{
    struct app *a = t->data;

    a->retain_wanted = 1;
    maybe_db(a);
}

static void on_stats_timer(uv_timer_t *t)
{
    struct app *a = t->data;
    unsigned long long d[CR_AS__COUNT];
    size_t i;

    for (i = 0; i < CR_AS__COUNT; i++) {
        d[i] = a->stored[i] - a->stored_shown[i];
        a->stored_shown[i] = a->stored[i];
    }
    if (d[0] || d[1] || d[2])
        cr_info("audit: stored %llu receipts, %llu replies, %llu events in the last %d s "
                "(%llu, %llu, %llu in all)",
                d[0], d[1], d[2], STATS_INTERVAL_MS / 1000, a->stored[0], a->stored[1],
                a->stored[2]);
}

/* ---- lookups ------------------------------------------------------------------------- */

static void start_members(struct app *a);

static void lookups_done(struct app *a)
{
    if (a->lookups_failed) {
        backoff(a);
        abandon(a, "a lookup in Redis failed");
        return;
    }
    if (a->lookup_phase == 1) {
        /* membership needs the jobs' documents, which the first round read */
        a->lookup_phase = 2;
        start_members(a);
        return;
    }
    a->write_wanted = 1;
    maybe_db(a);
}

static void on_lang(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct app *a = &app_state;
    size_t i = (size_t)(uintptr_t)ud;

    (void)r;
    if (reply == NULL || cr_reply_is_error(reply))
        a->lookups_failed = 1;
    else if (i < a->batch.n[CR_AS_RECEIPTS]) {
        /* no lang field: "", the job's default language is the one used */
        char *lang = reply->type == REDIS_REPLY_STRING ? strndup(reply->str, reply->len)
                                                       : strdup("");

        if (lang == NULL)
            a->lookups_failed = 1;
        a->batch.e[CR_AS_RECEIPTS][i].lang = lang;
    }
    if (--a->lookups_left == 0)
        lookups_done(a);
}

static void on_job(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct app *a = &app_state;
    size_t i = (size_t)(uintptr_t)ud;
    struct cr_audit_job *j = i < a->batch.njobs ? &a->batch.jobs[i] : NULL;

    (void)r;
    if (reply == NULL || cr_reply_is_error(reply) || reply->type != REDIS_REPLY_ARRAY) {
        a->lookups_failed = 1;
    } else if (j && reply->elements > 0) {
        size_t k;

        j->kv = calloc(reply->elements, sizeof(*j->kv));
        if (j->kv == NULL) {
            a->lookups_failed = 1;
        } else {
            j->nkv = reply->elements;
            for (k = 0; k < reply->elements; k++) {
                const redisReply *e = reply->element[k];

                j->kv[k] = e->type == REDIS_REPLY_STRING ? strndup(e->str, e->len) : strdup("");
                if (j->kv[k] == NULL)
                    a->lookups_failed = 1;
            }
        }
    }
    if (--a->lookups_left == 0)
        lookups_done(a);
}

static int add_job(struct cr_audit_batch *b, const char *id)
{
    size_t i;
    struct cr_audit_job *nj;

    if (id == NULL || *id == '\0')
        return 0;
    for (i = 0; i < b->njobs; i++)
        if (strcmp(b->jobs[i].id, id) == 0)
            return 0;
    nj = realloc(b->jobs, (b->njobs + 1) * sizeof(*nj));
    if (nj == NULL)
        return CR_ENOMEM;
    b->jobs = nj;
    memset(&nj[b->njobs], 0, sizeof(*nj));
    nj[b->njobs].id = strdup(id);
    if (nj[b->njobs].id == NULL)
        return CR_ENOMEM;
    b->njobs++;
    return 0;
}

/* One SMISMEMBER in flight: a segment of a job's audience and the receipts
 * (indices into the batch, in argument order) whose residents it asks about. */
struct member_q {
    struct app *a;
    char *seg;
    size_t *idx;
    size_t n;
};

static void member_q_free(struct member_q *q)
{
    free(q->seg);
    free(q->idx);
    free(q);
}

static int append_seg(struct cr_audit_entry *e, const char *seg)
{
    size_t have = e->segs ? strlen(e->segs) : 0;
    size_t len = strlen(seg);
    char *ns = realloc(e->segs, have + len + 2);

    if (ns == NULL)
        return CR_ENOMEM;
    memcpy(ns + have, seg, len);
    ns[have + len] = '\n';
    ns[have + len + 1] = '\0';
    e->segs = ns;
    return 0;
}

static void on_members(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct member_q *q = ud;
    struct app *a = q->a;
    size_t k;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != q->n) {
        a->lookups_failed = 1;
    } else {
        for (k = 0; k < q->n; k++) {
            const redisReply *v = reply->element[k];

            if (v->type == REDIS_REPLY_INTEGER && v->integer == 1 &&
                q->idx[k] < a->batch.n[CR_AS_RECEIPTS] &&
                append_seg(&a->batch.e[CR_AS_RECEIPTS][q->idx[k]], q->seg) != 0)
                a->lookups_failed = 1;
        }
    }
    member_q_free(q);
    if (--a->lookups_left == 0)
        lookups_done(a);
}

static const char *job_kv(const struct cr_audit_job *j, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < j->nkv; i += 2)
        if (strcmp(j->kv[i], name) == 0)
            return j->kv[i + 1];
    return NULL;
}

/* Asks, for one segment of a job's audience, which of the residents its
 * receipts name (idx, n) are members now (SMISMEMBER). Returns 0 when sent. */
static int ask_members(struct app *a, const char *seg, const size_t *idx, size_t n)
{
    struct member_q *q = calloc(1, sizeof(*q));
    const char **argv = calloc(n + 2, sizeof(*argv));
    char key[KEY_MAX + 256];
    size_t k;
    int rc = CR_ENOMEM;

    if (q == NULL || argv == NULL)
        goto out;
    q->a = a;
    q->n = n;
    q->seg = strdup(seg);
    q->idx = malloc(n * sizeof(*q->idx));
    if (q->seg == NULL || q->idx == NULL)
        goto out;
    memcpy(q->idx, idx, n * sizeof(*idx));
    snprintf(key, sizeof(key), "%sseg:%s", a->cfg.prefix, seg);
    argv[0] = "SMISMEMBER";
    argv[1] = key;
    for (k = 0; k < n; k++)
        argv[2 + k] = cr_audit_field(&a->batch.e[CR_AS_RECEIPTS][idx[k]], "sub");
    rc = cr_redis_argv(a->r, on_members, q, 0, (int)(n + 2), argv, NULL);
    if (rc == 0)
        q = NULL; /* on_members frees it */
out:
    if (q)
        member_q_free(q);
    free(argv);
    return rc;
}

/* The second round of lookups: for each job of the batch whose document is
 * known, which of its audience segments each resident its receipts name is a
 * member of, stored with the message (message_segments) so that the
 * per-segment report needs no segment set once Redis has let it go. */
static void start_members(struct app *a)
{
    struct cr_audit_batch *b = &a->batch;
    size_t n = b->n[CR_AS_RECEIPTS];
    size_t *idx = calloc(n ? n : 1, sizeof(*idx));
    size_t j;

    a->lookups_left = 1; /* held until every command is sent */
    if (idx == NULL)
        a->lookups_failed = 1;
    for (j = 0; j < b->njobs && !a->lookups_failed; j++) {
        const char *doc = job_kv(&b->jobs[j], "doc");
        cJSON *root;
        const cJSON *segs;
        const cJSON *sg;
        size_t m = 0;
        size_t i;
        int nseg = 0;

        if (doc == NULL)
            continue; /* the job is gone: nothing to tell membership by */
        for (i = 0; i < n; i++) {
            struct cr_audit_entry *e = &b->e[CR_AS_RECEIPTS][i];
            const char *job = cr_audit_field(e, "job");
            const char *sub = cr_audit_field(e, "sub");

            if (job == NULL || strcmp(job, b->jobs[j].id) != 0 || sub == NULL || *sub == '\0')
                continue;
            if (e->segs == NULL && (e->segs = strdup("")) == NULL) {
                a->lookups_failed = 1;
                break;
            }
            idx[m++] = i;
        }
        if (m == 0 || a->lookups_failed)
            continue;
        root = cJSON_Parse(doc);
        segs = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(root, "audience"), "segments");
        cJSON_ArrayForEach(sg, segs)
        {
            if (!cJSON_IsString(sg) || nseg++ >= MEMBER_SEGS_MAX)
                continue;
            if (ask_members(a, sg->valuestring, idx, m) == 0)
                a->lookups_left++;
            else
                a->lookups_failed = 1;
        }
        cJSON_Delete(root);
    }
    free(idx);
    if (--a->lookups_left == 0)
        lookups_done(a);
}

/* Asks Redis for what the rows need beyond the entries: every job the batch
 * names (its document and counters) and each resident's language. */
static void start_lookups(struct app *a)
{
    struct cr_audit_batch *b = &a->batch;
    size_t s;
    size_t i;
    char key[KEY_MAX + 256];

    a->lookups_left = 1; /* held until every command is sent */
    a->lookups_failed = 0;
    a->lookup_phase = 1;
    for (s = 0; s < CR_AS__COUNT; s++)
        for (i = 0; i < b->n[s]; i++)
            if (add_job(b, cr_audit_field(&b->e[s][i], "job")) != 0)
                a->lookups_failed = 1;
    for (i = 0; i < b->njobs && !a->lookups_failed; i++) {
        snprintf(key, sizeof(key), "%sjob:%s", a->cfg.prefix, b->jobs[i].id);
        if (cr_redis_cmd(a->r, on_job, (void *)(uintptr_t)i, 0, "HGETALL %s", key) == 0)
            a->lookups_left++;
        else
            a->lookups_failed = 1;
    }
    for (i = 0; a->cfg.lookup_lang && i < b->n[CR_AS_RECEIPTS] && !a->lookups_failed; i++) {
        const char *sub = cr_audit_field(&b->e[CR_AS_RECEIPTS][i], "sub");

        if (sub == NULL || *sub == '\0')
            continue;
        snprintf(key, sizeof(key), "%ssub:%s", a->cfg.prefix, sub);
        if (cr_redis_cmd(a->r, on_lang, (void *)(uintptr_t)i, 0, "HGET %s lang", key) == 0)
            a->lookups_left++;
        else
            a->lookups_failed = 1;
    }
    if (--a->lookups_left == 0)
        lookups_done(a);
}

/* ---- reading ---------------------------------------------------------------------------- */

static enum cr_audit_stream stream_of(const struct app *a, const redisReply *name)
{
    size_t s;

    for (s = 0; s < CR_AS__COUNT; s++)
        if (name->type == REDIS_REPLY_STRING && strlen(a->keys[s]) == name->len &&
            memcmp(a->keys[s], name->str, name->len) == 0)
            return (enum cr_audit_stream)s;
    return CR_AS__COUNT;
}

/* Copies one stream's entries out of the reply into the batch. Entries whose
 * fields are gone (deleted from the stream while pending) are acknowledged
 * with the batch and store nothing. */
static int copy_entries(struct cr_audit_batch *b, enum cr_audit_stream s, const redisReply *list)
{
    size_t i;

    if (list->elements == 0)
        return 0;
    b->e[s] = calloc(list->elements, sizeof(*b->e[s]));
    if (b->e[s] == NULL)
        return CR_ENOMEM;
    for (i = 0; i < list->elements; i++) {
        const redisReply *ent = list->element[i];
        struct cr_audit_entry *e = &b->e[s][b->n[s]];
        const redisReply *f;
        size_t k;

        if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 2 ||
            ent->element[0]->type != REDIS_REPLY_STRING)
            continue;
        e->id = strndup(ent->element[0]->str, ent->element[0]->len);
        if (e->id == NULL)
            return CR_ENOMEM;
        b->n[s]++;
        f = ent->element[1];
        if (f->type != REDIS_REPLY_ARRAY || f->elements == 0)
            continue;
        e->kv = calloc(f->elements, sizeof(*e->kv));
        if (e->kv == NULL)
            return CR_ENOMEM;
        e->nkv = f->elements;
        for (k = 0; k < f->elements; k++) {
            const redisReply *v = f->element[k];

            e->kv[k] = v->type == REDIS_REPLY_STRING ? strndup(v->str, v->len) : strdup("");
            if (e->kv[k] == NULL)
                return CR_ENOMEM;
        }
    }
    return 0;
}

static void on_read(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct app *a = ud;
    int seen[CR_AS__COUNT] = {0};
    size_t total = 0;
    size_t i;
    int rc = 0;

    (void)r;
    a->reading = 0;
    if (a->stopping) {
        maybe_done(a);
        return;
    }
    if (reply && cr_reply_is_error(reply) && strncmp(reply->str, "NOGROUP", 7) == 0) {
        cr_warn("audit: group '%s' is gone (%s); creating it again", a->cfg.group, reply->str);
        create_groups(a);
        return;
    }
    if (reply == NULL || cr_reply_is_error(reply)) {
        backoff(a);
        if (reply)
            cr_warn("audit: XREADGROUP failed (%s); retry in %ld ms", reply->str, a->retry_ms);
        uv_timer_start(&a->retry_timer, on_retry_timer, (uint64_t)a->retry_ms, 0);
        return;
    }
    for (i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements && rc == 0; i++) {
        const redisReply *sr = reply->element[i];
        enum cr_audit_stream s;

        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2)
            continue;
        s = stream_of(a, sr->element[0]);
        if (s == CR_AS__COUNT || sr->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        seen[s] = 1;
        if (a->history[s] && sr->element[1]->elements == 0)
            a->history[s] = 0; /* our pending entries are all stored: new ones now */
        rc = copy_entries(&a->batch, s, sr->element[1]);
    }
    /* a history read names every stream; one missing has nothing pending */
    for (i = 0; i < CR_AS__COUNT; i++)
        if (a->history[i] && !seen[i] && reply->type == REDIS_REPLY_ARRAY)
            a->history[i] = 0;
    for (i = 0; i < CR_AS__COUNT; i++)
        total += a->batch.n[i];
    if (rc != 0) {
        backoff(a);
        abandon(a, "out of memory copying the entries");
        return;
    }
    if (total == 0) {
        cr_audit_batch_clear(&a->batch);
        pump(a);
        return;
    }
    a->have_batch = 1;
    start_lookups(a);
}

static void pump(struct app *a)
{
    char count[CR_NUM_MAX];
    char block[CR_NUM_MAX];
    const char *argv[16];
    int argc = 0;
    int any_history = 0;
    size_t s;

    if (a->stopping || a->reading || a->have_batch || !a->groups_ready || !cr_redis_ready(a->r) ||
        uv_is_active((uv_handle_t *)&a->retry_timer))
        return;
    for (s = 0; s < CR_AS__COUNT; s++)
        any_history |= a->history[s];
    cr_fmt_i64(count, a->cfg.batch);
    cr_fmt_i64(block, a->cfg.block_ms);
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = a->cfg.group;
    argv[argc++] = a->cfg.consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count;
    if (!any_history) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block;
    }
    argv[argc++] = "STREAMS";
    for (s = 0; s < CR_AS__COUNT; s++)
        argv[argc++] = a->keys[s];
    for (s = 0; s < CR_AS__COUNT; s++)
        argv[argc++] = a->history[s] ? "0" : ">";
    if (cr_redis_argv(a->r, on_read, a, any_history ? 0 : a->cfg.block_ms, argc, argv, NULL) == 0)
        a->reading = 1;
}

/* ---- connection and groups --------------------------------------------------------------- */

static void on_group(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct app *a = ud;

    (void)r;
    if (reply == NULL || (cr_reply_is_error(reply) && strncmp(reply->str, "BUSYGROUP", 9) != 0)) {
        cr_error("audit: XGROUP CREATE failed (%s); retry at the next connection",
                 reply ? reply->str : "connection lost");
        a->groups_waiting = -1000;
        return;
    }
    if (--a->groups_waiting != 0)
        return;
    if (!a->groups_ready)
        cr_info("audit: reading %s, %s and %s as group '%s' consumer '%s'", a->keys[0], a->keys[1],
                a->keys[2], a->cfg.group, a->cfg.consumer);
    a->groups_ready = 1;
    pump(a);
}

/* Creates the group on each stream (an existing one is kept); reading starts
 * once all three answered. Whatever was read and not acknowledged is read
 * again from this consumer's history first. */
static void create_groups(struct app *a)
{
    size_t s;

    a->groups_ready = 0;
    for (s = 0; s < CR_AS__COUNT; s++)
        a->history[s] = 1;
    a->groups_waiting = 0;
    for (s = 0; s < CR_AS__COUNT; s++)
        /* from "0": the group starts with what the streams still hold */
        if (cr_redis_cmd(a->r, on_group, a, 0, "XGROUP CREATE %s %s 0 MKSTREAM", a->keys[s],
                         a->cfg.group) == 0)
            a->groups_waiting++;
}

static void on_state(struct cr_redis *r, int connected, void *ud)
{
    struct app *a = ud;

    (void)r;
    if (!connected) {
        a->groups_ready = 0;
        return;
    }
    create_groups(a);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *a = h->data;

    cr_info("audit: signal %d: stopping after the batch in flight", signum);
    a->stopping = 1;
    uv_timer_stop(&a->retry_timer);
    if (a->have_batch && !a->db_busy && a->acks_left == 0)
        abandon(a, "not stored before shutdown");
    uv_timer_stop(&a->retry_timer);
    maybe_done(a);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: crier-audit -c config.json [--check]\n"
               "  Stores crier's receipts, replies and job events in SQLite or PostgreSQL.\n"
               "  --check  read the config, open the database, migrate its schema, and exit\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"check", no_argument, NULL, 'k'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    struct app *a = &app_state;
    struct cr_redis_opts ro;
    enum cr_log_level level;
    const char *path = NULL;
    char err[600];
    int check = 0;
    int opt;
    int rc;
    size_t s;

    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        if (opt == 'c')
            path = optarg;
        else if (opt == 'k')
            check = 1;
        else {
            usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (path == NULL) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (cr_audit_config_load(path, &a->cfg, err, sizeof(err)) != 0) {
        cr_error("config: %s; not starting", err);
        return 1;
    }
    if (cr_log_parse_level(a->cfg.log_level, &level) != 0) {
        cr_error("config: log_level: must be error, warn, info or debug; not starting");
        return 1;
    }
    cr_log_set_level(level);
    for (s = 0; s < CR_AS__COUNT; s++)
        snprintf(a->keys[s], sizeof(a->keys[s]), "%s%s", a->cfg.prefix, stream_names[s]);
    if (cr_store_open(a->cfg.db_kind, a->cfg.db_target, &a->db, err, sizeof(err)) != 0) {
        cr_error("audit: opening the %s database failed (%s); not starting",
                 a->cfg.db_kind == CR_STORE_SQLITE ? "SQLite" : "PostgreSQL", err);
        return 1;
    }
    rc = cr_audit_migrate(a->db);
    if (rc != 0) {
        cr_error("audit: creating or migrating the schema to version %d failed (%s); not "
                 "starting",
                 CR_AUDIT_SCHEMA_VERSION,
                 rc == CR_EUNSUPPORTED ? "the database is of a newer version than this build"
                                       : cr_store_errmsg(a->db));
        cr_store_close(a->db);
        return 1;
    }
    if (check) {
        printf("crier-audit: config and database ok (schema version %d)\n",
               CR_AUDIT_SCHEMA_VERSION);
        cr_store_close(a->db);
        cr_audit_config_release(&a->cfg);
        return 0;
    }
    a->loop = uv_default_loop();
    uv_timer_init(a->loop, &a->retry_timer);
    uv_timer_init(a->loop, &a->retain_timer);
    uv_timer_init(a->loop, &a->stats_timer);
    a->retry_timer.data = a->retain_timer.data = a->stats_timer.data = a;
    uv_signal_init(a->loop, &a->sig_term);
    uv_signal_init(a->loop, &a->sig_int);
    a->sig_term.data = a->sig_int.data = a;
    uv_signal_start(&a->sig_term, on_signal, SIGTERM);
    uv_signal_start(&a->sig_int, on_signal, SIGINT);
    uv_timer_start(&a->stats_timer, on_stats_timer, STATS_INTERVAL_MS, STATS_INTERVAL_MS);
    if (a->cfg.retention_days > 0)
        uv_timer_start(&a->retain_timer, on_retain_timer, 1000,
                       (uint64_t)a->cfg.retention_interval_s * 1000);
    memset(&ro, 0, sizeof(ro));
    ro.name = "audit";
    ro.host = a->cfg.redis_host;
    ro.port = (int)a->cfg.redis_port;
    ro.password = a->cfg.redis_password;
    ro.connect_timeout_ms = 5000;
    ro.command_timeout_ms = 10000;
    ro.reconnect_max_ms = 5000;
    if (cr_redis_init(a->loop, &ro, on_state, a, &a->r) != 0) {
        cr_error("audit: out of memory creating the Redis client; not starting");
        return 1;
    }
    cr_info("audit: storing into %s %s (schema version %d)",
            a->cfg.db_kind == CR_STORE_SQLITE ? "SQLite" : "PostgreSQL",
            a->cfg.db_kind == CR_STORE_SQLITE ? a->cfg.db_target : "(conninfo)",
            CR_AUDIT_SCHEMA_VERSION);
    uv_run(a->loop, UV_RUN_DEFAULT);
    cr_log_repeat_flush(1); /* what repeated lines counted and did not write yet */
    cr_info("audit: stopped; stored %llu receipts, %llu replies, %llu events", a->stored[0],
            a->stored[1], a->stored[2]);
    uv_loop_close(a->loop);
    cr_store_close(a->db);
    cr_audit_batch_clear(&a->batch);
    cr_audit_config_release(&a->cfg);
    return 0;
}
