/* Audience expansion (see expander.h). Source 0 is the job's explicit
 * subscriber list (cursor = offset), sources 1..n its segments (cursor = the
 * SSCAN cursor). An id is kept when it is in every require set and in no
 * exclude set; the expand script then drops ids already in the audience (its
 * seen set), so overlaps, SSCAN repeats and rescans add nobody twice. After
 * any interruption the current source is scanned again from the start: an
 * SSCAN cursor means nothing to a restarted Redis. */
#include "expander.h"

#include <stdlib.h>
#include <string.h>

#include "cr_buf.h"
#include "cr_error.h"
#include "cr_log.h"
#include "intake.h"
#include "poison.h"
#include "reader.h"
#include "scripts.h"

#define IDS_MAX (8u << 20)
#define FIRST_PAGE 32

struct expansion {
    struct cr_expander *x;
    char entry[32];
    char id[CR_JOB_ID_MAX + 1];
    char key[CR_KEY_MAX];
    char ledger[CR_KEY_MAX + 8];
    char seen[CR_KEY_MAX + 8];
    struct cr_job job;
    char **explicit_sorted; /* deduplicated explicit ids, for membership */
    size_t nexplicit;
    int src;
    char cursor[32];
    long long step;         /* expansion steps written: the check against a rival */
    int next_src;
    char next_cursor[32];
    char **chunk;           /* ids of the current page (owned) */
    size_t nchunk;
    unsigned char *keep;
    int replies;            /* filter replies still to come */
    int failed;
    char err[400];            /* a filter's Redis error ("" none) */
    char bad_key[CR_KEY_MAX]; /* an audience set of the wrong type ("" none) */
    const char *bad_what;     /* what it is to the job: "segment", "require set"... */
    unsigned pages;         /* pages taken so far in this process */
    struct expansion *next;
};

struct cr_expander {
    struct cr_daemon *d;
    struct expansion *list;
    size_t n;
};

static void step(struct expansion *e);

int cr_expander_init(struct cr_daemon *d, struct cr_expander **out)
{
    struct cr_expander *x = calloc(1, sizeof(*x));

    if (x == NULL)
        return CR_ENOMEM;
    x->d = d;
    *out = x;
    return 0;
}

size_t cr_expander_active(const struct cr_expander *x)
{
    return x->n;
}

static void free_chunk(struct expansion *e)
{
    size_t i;

    for (i = 0; i < e->nchunk; i++)
        free(e->chunk[i]);
    free(e->chunk);
    free(e->keep);
    e->chunk = NULL;
    e->keep = NULL;
    e->nchunk = 0;
}

static void finish_as(struct expansion *e, const char *failure);

static void finish(struct expansion *e)
{
    finish_as(e, NULL);
}

/* A Redis error (not a lost connection) stopped the expansion: the intake
 * counts it and gives the job up when it keeps failing for the same reason. */
static void finish_failed(struct expansion *e, const char *what, const redisReply *reply)
{
    char why[320];

    if (reply == NULL) {
        finish(e);
        return;
    }
    snprintf(why, sizeof(why), "%s (%s)", what, reply->str ? reply->str : "?");
    finish_as(e, why);
}

/* Frees e and hands its entry back: released, or counted as a failure. */
static void finish_as(struct expansion *e, const char *failure)
{
    struct cr_expander *x = e->x;
    struct expansion **p;
    char entry[32];
    char id[CR_JOB_ID_MAX + 1];

    for (p = &x->list; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    x->n--;
    memcpy(entry, e->entry, sizeof(entry));
    memcpy(id, e->id, sizeof(id));
    free_chunk(e);
    free(e->explicit_sorted);
    cr_job_release(&e->job);
    free(e);
    if (failure)
        cr_intake_failed(x->d->intake, entry, id, failure, 0);
    else
        cr_intake_release(x->d->intake, entry);
}

static void on_job_failed(void *ud, enum cr_poison_outcome outcome, const char *reason)
{
    (void)outcome;
    (void)reason;
    finish(ud);
}

/* An audience set holds another type: the job cannot be expanded as asked,
 * so it fails with the reason instead of being retried for ever. */
static void fail_poisoned(struct expansion *e, const char *key, const char *what)
{
    struct cr_daemon *d = e->x->d;

    if (cr_poison_fail_job(d, cr_daemon_conn(d, e->job.priority), e->id, d->keys.jobs, e->entry,
                           key, "set", what, on_job_failed, e) < 0)
        finish(e);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, deduplicated view of the explicit subscriber list (pointers into job). */
static int index_explicit(struct expansion *e)
{
    size_t i;
    size_t n = 0;

    if (e->job.subscribers.n == 0)
        return 0;
    e->explicit_sorted = malloc(e->job.subscribers.n * sizeof(char *));
    if (e->explicit_sorted == NULL)
        return CR_ENOMEM;
    memcpy(e->explicit_sorted, e->job.subscribers.v, e->job.subscribers.n * sizeof(char *));
    qsort(e->explicit_sorted, e->job.subscribers.n, sizeof(char *), cmp_str);
    for (i = 0; i < e->job.subscribers.n; i++) {
        if (n == 0 || strcmp(e->explicit_sorted[n - 1], e->explicit_sorted[i]) != 0)
            e->explicit_sorted[n++] = e->explicit_sorted[i];
    }
    e->nexplicit = n;
    return 0;
}

static void on_emitted(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct expansion *e = ud;
    long long rc;
    int done = e->next_src > (int)e->job.segments.n;

    (void)r;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply == NULL)
            cr_error("job %s: recording audience batch failed (connection lost); expansion "
                     "resumes later",
                     e->id);
        finish_failed(e, "recording an audience batch failed", reply);
        return;
    }
    rc = cr_reply_int(reply);
    if (rc == 0) {
        finish(e);
        return;
    }
    if (rc == -3) {
        cr_error("job %s: failed (a key it uses holds the wrong type; see its 'error' field)",
                 e->id);
        finish(e);
        return;
    }
    if (rc == -2) {
        cr_warn("job %s: another crierd is expanding this audience; leaving it to it", e->id);
        finish(e);
        return;
    }
    free_chunk(e);
    cr_reader_kick(e->x->d->reader);
    if (rc == -1 || done) {
        cr_info("job %s: audience expanded", e->id);
        finish(e);
        return;
    }
    e->step = rc;
    e->src = e->next_src;
    memcpy(e->cursor, e->next_cursor, sizeof(e->cursor));
    step(e);
}

/* Writes the kept ids of the page as one batch and moves the cursor. */
static void emit(struct expansion *e)
{
    struct cr_daemon *d = e->x->d;
    struct cr_buf ids;
    char step[24];
    char nsrc[16];
    char now[24];
    char ret[24];
    const char *argv[16];
    size_t kept = 0;
    size_t i;
    int done = e->next_src > (int)e->job.segments.n;

    cr_buf_init(&ids, IDS_MAX);
    for (i = 0; i < e->nchunk; i++) {
        if (!e->keep[i])
            continue;
        if ((kept && cr_buf_append(&ids, ",", 1) < 0) || cr_buf_appends(&ids, e->chunk[i]) < 0) {
            cr_buf_release(&ids);
            finish(e);
            return;
        }
        kept++;
    }
    snprintf(step, sizeof(step), "%lld", e->step);
    snprintf(nsrc, sizeof(nsrc), "%d", e->next_src);
    snprintf(now, sizeof(now), "%lld", (long long)cr_now_ms());
    snprintf(ret, sizeof(ret), "%ld", d->cfg->retention_s);
    argv[0] = e->key;
    argv[1] = d->keys.batches[e->job.priority];
    argv[2] = d->keys.events;
    argv[3] = d->keys.jobs;
    argv[4] = e->ledger;
    argv[5] = e->seen;
    argv[6] = e->id;
    argv[7] = step;
    argv[8] = nsrc;
    argv[9] = e->next_cursor;
    argv[10] = cr_buf_cstr(&ids);
    argv[11] = done ? "1" : "0";
    argv[12] = now;
    argv[13] = d->cfg->group;
    argv[14] = e->entry;
    argv[15] = ret;
    if (cr_script_call(cr_daemon_conn(d, e->job.priority), CR_SCRIPT_EXPAND, 6, 16, argv, NULL,
                       on_emitted, e) < 0)
        finish(e);
    cr_buf_release(&ids);
}

enum filter_kind { F_REQUIRE, F_EXCLUDE };

struct filter_ctx {
    struct expansion *e;
    enum filter_kind kind;
    char key[CR_KEY_MAX];
};

static void on_filter(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct filter_ctx *fc = ud;
    struct expansion *e = fc->e;
    size_t i;

    (void)r;
    if (cr_poison_reply(reply)) {
        if (!e->bad_key[0]) {
            snprintf(e->bad_key, sizeof(e->bad_key), "%s", fc->key);
            e->bad_what = fc->kind == F_REQUIRE ? "require set" : "exclude set";
        }
        e->failed = 1;
    } else if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != e->nchunk) {
        if (!e->failed && reply == NULL)
            cr_error("job %s: audience filter failed (connection lost)", e->id);
        if (reply && !e->err[0])
            snprintf(e->err, sizeof(e->err), "audience filter %s failed (%s)", fc->key,
                     reply->str ? reply->str : "unexpected reply");
        e->failed = 1;
    } else {
        for (i = 0; i < e->nchunk; i++) {
            int member = cr_reply_int(reply->element[i]) == 1;

            if ((fc->kind == F_REQUIRE) ? !member : member)
                e->keep[i] = 0;
        }
    }
    free(fc);
    if (--e->replies > 0)
        return;
    if (e->bad_key[0])
        fail_poisoned(e, e->bad_key, e->bad_what);
    else if (e->failed && e->err[0])
        finish_as(e, e->err);
    else if (e->failed)
        finish(e);
    else
        emit(e);
}

static int send_filter(struct expansion *e, const char *set_name, enum filter_kind kind)
{
    struct cr_daemon *d = e->x->d;
    struct filter_ctx *fc;
    const char **argv;
    char key[CR_KEY_MAX];
    size_t i;
    int rc = CR_ENOMEM;

    fc = malloc(sizeof(*fc));
    argv = malloc((e->nchunk + 2) * sizeof(char *));
    if (fc == NULL || argv == NULL)
        goto out;
    fc->e = e;
    fc->kind = kind;
    cr_key_for(&d->keys, "seg", set_name, key, sizeof(key));
    memcpy(fc->key, key, sizeof(fc->key));
    argv[0] = "SMISMEMBER";
    argv[1] = key;
    for (i = 0; i < e->nchunk; i++)
        argv[2 + i] = e->chunk[i];
    rc = cr_redis_argv(cr_daemon_conn(d, e->job.priority), on_filter, fc, 0, (int)e->nchunk + 2,
                       argv, NULL);
    if (rc == 0) {
        fc = NULL;
        e->replies++;
    }
out:
    free(fc);
    free(argv);
    return rc;
}

/* The page is in e->chunk: keep the ids in every require set and in no
 * exclude set (the expand script drops those already in the audience). */
static void filter(struct expansion *e)
{
    size_t i;
    int rc = 0;

    e->keep = malloc(e->nchunk ? e->nchunk : 1);
    if (e->keep == NULL) {
        finish(e);
        return;
    }
    memset(e->keep, 1, e->nchunk);
    e->replies = 1; /* held while sending, so no reply can finish the page early */
    if (e->nchunk > 0) {
        for (i = 0; rc == 0 && i < e->job.require.n; i++)
            rc = send_filter(e, e->job.require.v[i], F_REQUIRE);
        for (i = 0; rc == 0 && i < e->job.exclude.n; i++)
            rc = send_filter(e, e->job.exclude.v[i], F_EXCLUDE);
    }
    if (rc < 0)
        e->failed = 1;
    if (--e->replies > 0)
        return;
    if (e->failed)
        finish(e);
    else
        emit(e);
}

static int copy_page(struct expansion *e, char **ids, const size_t *lens, size_t n)
{
    size_t i;

    e->chunk = calloc(n ? n : 1, sizeof(char *));
    if (e->chunk == NULL)
        return CR_ENOMEM;
    for (i = 0; i < n; i++) {
        e->chunk[i] = strndup(ids[i], lens ? lens[i] : strlen(ids[i]));
        if (e->chunk[i] == NULL)
            return CR_ENOMEM;
        e->nchunk++;
    }
    return 0;
}

/* A segment page is in (from SSCAN, or prefetched): move on to filtering it. */
static void scanned(struct expansion *e, const char *cursor, char **ids, const size_t *lens,
                    size_t n)
{
    snprintf(e->next_cursor, sizeof(e->next_cursor), "%s", cursor);
    e->next_src = e->src;
    if (strcmp(e->next_cursor, "0") == 0)
        e->next_src = e->src + 1;
    if (copy_page(e, ids, lens, n) < 0) {
        finish(e);
        return;
    }
    filter(e);
}

static void on_scan(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct expansion *e = ud;
    const redisReply *members;
    char **ids = NULL;
    size_t *lens = NULL;
    size_t i;
    int rc = CR_ENOMEM;

    (void)r;
    if (cr_poison_reply(reply)) {
        char key[CR_KEY_MAX];

        cr_key_for(&e->x->d->keys, "seg", e->job.segments.v[e->src - 1], key, sizeof(key));
        fail_poisoned(e, key, "segment");
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        if (reply == NULL)
            cr_error("job %s: SSCAN failed (connection lost)", e->id);
        finish_failed(e, "reading a segment failed", reply);
        return;
    }
    members = reply->element[1];
    ids = calloc(members->elements + 1, sizeof(char *));
    lens = calloc(members->elements + 1, sizeof(size_t));
    if (ids && lens) {
        for (i = 0; i < members->elements; i++) {
            ids[i] = members->element[i]->str;
            lens[i] = members->element[i]->len;
        }
        rc = 0;
    }
    if (rc < 0)
        finish(e);
    else
        scanned(e, reply->element[0]->str, ids, lens, members->elements);
    free(ids);
    free(lens);
}

/* The first page is small so that the job's first messages leave at once;
 * later pages are full batches. */
static int first_page_size(const struct cr_daemon *d)
{
    return d->cfg->batch_size > FIRST_PAGE ? FIRST_PAGE : d->cfg->batch_size;
}

static int page_size(const struct expansion *e)
{
    return e->pages == 0 ? first_page_size(e->x->d) : e->x->d->cfg->batch_size;
}

/* ---- the first page, read while the job is accepted ---- */

enum { PF_WAITING, PF_READY, PF_FAILED };

struct cr_first_page {
    int state;
    int dropped;       /* given up while its answer was out: the answer frees it */
    char cursor[32];
    struct cr_strlist ids;
};

static void pf_free(struct cr_first_page *pf)
{
    cr_strlist_release(&pf->ids);
    free(pf);
}

static int pf_take(struct cr_first_page *pf, const redisReply *reply)
{
    const redisReply *members;
    size_t i;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY)
        return CR_EINVAL; /* the expansion's own SSCAN will say what is wrong */
    members = reply->element[1];
    pf->ids.v = calloc(members->elements + 1, sizeof(char *));
    if (pf->ids.v == NULL)
        return CR_ENOMEM;
    for (i = 0; i < members->elements; i++) {
        pf->ids.v[i] = strndup(members->element[i]->str, members->element[i]->len);
        if (pf->ids.v[i] == NULL)
            return CR_ENOMEM;
        pf->ids.n++;
    }
    snprintf(pf->cursor, sizeof(pf->cursor), "%s", reply->element[0]->str);
    return 0;
}

static void on_prefetched(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_first_page *pf = ud;

    (void)r;
    if (pf->dropped) {
        pf_free(pf);
        return;
    }
    pf->state = pf_take(pf, reply) == 0 ? PF_READY : PF_FAILED;
}

struct cr_first_page *cr_expander_prefetch(struct cr_expander *x, const struct cr_job *job)
{
    struct cr_daemon *d = x->d;
    struct cr_first_page *pf;
    char key[CR_KEY_MAX];

    if (job->subscribers.n > 0 || job->segments.n == 0)
        return NULL;
    pf = calloc(1, sizeof(*pf));
    if (pf == NULL)
        return NULL;
    cr_key_for(&d->keys, "seg", job->segments.v[0], key, sizeof(key));
    if (cr_redis_cmd(cr_daemon_conn(d, job->priority), on_prefetched, pf, 0,
                     "SSCAN %s 0 COUNT %d", key, first_page_size(d)) < 0) {
        free(pf);
        return NULL;
    }
    return pf;
}

void cr_first_page_drop(struct cr_first_page *pf)
{
    if (pf == NULL)
        return;
    if (pf->state == PF_WAITING)
        pf->dropped = 1;
    else
        pf_free(pf);
}

static void step(struct expansion *e)
{
    struct cr_daemon *d = e->x->d;
    int nseg = (int)e->job.segments.n;

    if (d->stopping) {
        finish(e);
        return;
    }
    if (e->src == 0 && e->nexplicit == 0) {
        /* no explicit list: straight to the first segment, so that the
         * first page is a segment's and no write is spent on nothing */
        e->src = 1;
        snprintf(e->cursor, sizeof(e->cursor), "0");
    }
    if (e->src == 0) {
        char *end = NULL;
        size_t off = (size_t)strtoull(e->cursor, &end, 10);
        size_t n = e->nexplicit > off ? e->nexplicit - off : 0;

        if (n > (size_t)page_size(e))
            n = (size_t)page_size(e);
        e->pages++;
        if (off + n >= e->nexplicit) {
            e->next_src = 1;
            snprintf(e->next_cursor, sizeof(e->next_cursor), "0");
        } else {
            e->next_src = 0;
            snprintf(e->next_cursor, sizeof(e->next_cursor), "%zu", off + n);
        }
        if (copy_page(e, e->explicit_sorted + off, NULL, n) < 0) {
            finish(e);
            return;
        }
        filter(e);
        return;
    }
    if (e->src > nseg) {
        /* nothing left: write the final (empty) step that marks it expanded */
        e->next_src = nseg + 1;
        snprintf(e->next_cursor, sizeof(e->next_cursor), "0");
        if (copy_page(e, NULL, NULL, 0) < 0) {
            finish(e);
            return;
        }
        filter(e);
        return;
    }
    {
        char key[CR_KEY_MAX];

        cr_key_for(&d->keys, "seg", e->job.segments.v[e->src - 1], key, sizeof(key));
        if (cr_redis_cmd(cr_daemon_conn(d, e->job.priority), on_scan, e, 0, "SSCAN %s %s COUNT %d",
                         key, e->cursor, page_size(e)) < 0)
            finish(e);
        e->pages++;
    }
}

static void on_state(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct expansion *e = ud;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        finish_failed(e, "reading the expansion's state failed", reply);
        return;
    }
    if (reply->element[2]->type == REDIS_REPLY_STRING && strcmp(reply->element[2]->str, "1") == 0) {
        /* expanded before a crash took the ack with it: ack now */
        cr_redis_cmd(e->x->d->rc, NULL, NULL, 0, "XACK %s %s %s", e->x->d->keys.jobs,
                     e->x->d->cfg->group, e->entry);
        finish(e);
        return;
    }
    e->src = (int)cr_reply_int(reply->element[0]);
    e->step = cr_reply_int(reply->element[1]);
    /* the current source again from its start: the seen set keeps what was
     * already added out, and a saved SSCAN cursor may be meaningless now */
    snprintf(e->cursor, sizeof(e->cursor), "0");
    step(e);
}

void cr_expander_start(struct cr_expander *x, const char *entry, const char *id,
                       struct cr_job *job, int fresh, struct cr_first_page *pf)
{
    struct cr_daemon *d = x->d;
    struct expansion *e = calloc(1, sizeof(*e));

    if (e == NULL) {
        cr_first_page_drop(pf);
        cr_job_release(job);
        cr_intake_release(d->intake, entry);
        return;
    }
    e->x = x;
    snprintf(e->entry, sizeof(e->entry), "%s", entry);
    snprintf(e->id, sizeof(e->id), "%s", id);
    cr_key_for(&d->keys, "job", id, e->key, sizeof(e->key));
    snprintf(e->ledger, sizeof(e->ledger), "%s:ledger", e->key);
    snprintf(e->seen, sizeof(e->seen), "%s:seen", e->key);
    e->job = *job;
    memset(job, 0, sizeof(*job));
    e->next = x->list;
    x->list = e;
    x->n++;
    if (index_explicit(e) < 0) {
        finish(e);
    } else if (fresh && pf && pf->state == PF_READY && e->nexplicit == 0 && !d->stopping) {
        /* source 1 from its start, the page read while the job was accepted */
        e->src = 1;
        snprintf(e->cursor, sizeof(e->cursor), "0");
        e->pages++;
        scanned(e, pf->cursor, pf->ids.v, NULL, pf->ids.n);
    } else if (fresh) {
        snprintf(e->cursor, sizeof(e->cursor), "0"); /* source 0, step 0: as accepted */
        step(e);
    } else if (cr_redis_cmd(cr_daemon_conn(d, e->job.priority), on_state, e, 0,
                            "HMGET %s exp_src exp_step expanded", e->key) < 0) {
        finish(e);
    }
    cr_first_page_drop(pf);
}

void cr_expander_free(struct cr_expander *x)
{
    while (x->list) {
        struct expansion *e = x->list;

        x->list = e->next;
        free_chunk(e);
        free(e->explicit_sorted);
        cr_job_release(&e->job);
        free(e);
    }
    free(x);
}
