/* Job intake (see intake.h). */
#include "intake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "audit_trim.h"
#include "cr_error.h"
#include "sigs.h"
#include "cr_log.h"
#include "expander.h"
#include "fanout.h"
#include "job.h"
#include "jobctx.h"
#include "poison.h"
#include "reader.h"
#include "scripts.h"
#include "strikes.h"

#define DEAD_DOC_MAX (64 * 1024)
#define ACCEPT_KEYS 8 /* job, events, jobs, recent, scheduled, ledger, seen, dead */
#define ACCEPT_ARGS 18
#define STRIKE_BASE_MS 250 /* first wait after a failed step; doubled per failure */

struct item {
    struct cr_intake *in;
    char entry[32];
    char id[CR_JOB_ID_MAX + 1];
    struct cr_job job;
    int have_job;
    struct cr_jobctx *jc;   /* the job as the fan-out uses it, handed over once accepted */
    struct cr_first_page *pf; /* its audience's first page, read ahead of acceptance */
    char key[CR_KEY_ID_MAX + 1]; /* the integrator key that signed it, "" unsigned */
    long max_audience;        /* that key's audience cap, 0 none */
    struct item *next;
};

struct cr_intake {
    struct cr_daemon *d;
    struct item *items;
    size_t nitems;
    struct cr_strikes strikes; /* failures per entry, for bounded retries */
};

int cr_intake_init(struct cr_daemon *d, struct cr_intake **out)
{
    struct cr_intake *in = calloc(1, sizeof(*in));

    if (in == NULL)
        return CR_ENOMEM;
    in->d = d;
    *out = in;
    return 0;
}

int cr_intake_has_room(const struct cr_intake *in)
{
    return in->nitems < (size_t)in->d->cfg->intake_max_jobs;
}

static struct item **find(struct cr_intake *in, const char *entry)
{
    struct item **p;

    for (p = &in->items; *p; p = &(*p)->next) {
        if (strcmp((*p)->entry, entry) == 0)
            return p;
    }
    return NULL;
}

int cr_intake_has(const struct cr_intake *in, const char *entry)
{
    return find((struct cr_intake *)in, entry) != NULL;
}

size_t cr_intake_entries(const struct cr_intake *in, const char **out, size_t max)
{
    const struct item *it;
    size_t n = 0;

    for (it = in->items; it && n < max; it = it->next)
        out[n++] = it->entry;
    return n;
}

size_t cr_intake_active(const struct cr_intake *in)
{
    return in->nitems;
}

void cr_intake_release(struct cr_intake *in, const char *entry)
{
    struct item **p = find(in, entry);
    struct item *it;

    if (p == NULL)
        return;
    it = *p;
    *p = it->next;
    in->nitems--;
    if (it->have_job)
        cr_job_release(&it->job);
    if (it->jc)
        cr_jobctx_unref(it->jc);
    cr_first_page_drop(it->pf);
    free(it);
    cr_reader_kick(in->d->reader);
    cr_daemon_maybe_done(in->d);
}

static void on_dead_written(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct item *it = ud;

    (void)r;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        cr_error("job entry %s: writing the rejection failed (%s); it stays pending",
                 it->entry, reply ? reply->str : "connection lost");
    cr_intake_release(it->in, it->entry);
}

/* The rejected event is added to crier:events and trimmed by the audit-aware
 * policy (audit_trim.h), inside the MULTI. */
static const char xadd_lua[] = CR_AUDIT_XADD_LUA;

/* Rejects the entry: dead-letter stream, event, ack, in one transaction. */
static void reject(struct item *it, const char *doc, size_t len, const struct cr_job_error *err)
{
    struct cr_intake *in = it->in;
    struct cr_daemon *d = in->d;
    char now[24];
    int rc;

    cr_warn("job entry %s%s%s: rejected (%s): %s; moved to %s", it->entry, it->id[0] ? " id " : "",
            it->id, err->code, err->message, d->keys.dead);
    snprintf(now, sizeof(now), "%lld", (long long)cr_now_ms());
    if (len > DEAD_DOC_MAX)
        len = DEAD_DOC_MAX;
    rc = cr_redis_cmd(d->rc, NULL, NULL, 0, "MULTI");
    if (rc == 0 && it->key[0])
        rc = cr_redis_cmd(d->rc, NULL, NULL, 0,
                          "XADD %s * job %b error %s code %s entry %s key %s", d->keys.dead,
                          doc ? doc : "", doc ? len : (size_t)0, err->message, err->code,
                          it->entry, it->key);
    else if (rc == 0)
        rc = cr_redis_cmd(d->rc, NULL, NULL, 0, "XADD %s * job %b error %s code %s entry %s",
                          d->keys.dead, doc ? doc : "", doc ? len : (size_t)0, err->message,
                          err->code, it->entry);
    if (rc == 0)
        rc = cr_redis_cmd(d->rc, NULL, NULL, 0,
                          "EVAL %s 1 %s %s job %s event rejected t_ms %s code %s error %s "
                          "entry %s",
                          xadd_lua, d->keys.events, CR_EVENTS_MAXLEN, it->id, now, err->code,
                          err->message, it->entry);
    if (rc == 0)
        rc = cr_redis_cmd(d->rc, NULL, NULL, 0, "XACK %s %s %s", d->keys.jobs, d->cfg->group,
                          it->entry);
    if (rc == 0)
        rc = cr_redis_cmd(d->rc, on_dead_written, it, 0, "EXEC");
    if (rc < 0)
        cr_intake_release(in, it->entry);
}

struct giveup_ctx {
    struct cr_intake *in;
    char entry[32];
    char id[CR_JOB_ID_MAX + 1];
    char reason[480];
};

/* The job of a given-up step is marked failed; one without a record of its
 * own (its accept kept failing) goes to the dead-letter stream instead. */
static void on_given_up(void *ud, enum cr_poison_outcome outcome, const char *reason)
{
    struct giveup_ctx *g = ud;
    struct cr_daemon *d = g->in->d;
    char now[24];

    (void)reason;
    if (outcome == CR_POISON_NOJOB) {
        cr_warn("job entry %s id %s: rejected (step_failed): %s; moved to %s", g->entry, g->id,
                g->reason, d->keys.dead);
        snprintf(now, sizeof(now), "%lld", (long long)cr_now_ms());
        if (cr_redis_cmd(d->rc, NULL, NULL, 0, "MULTI") == 0) {
            cr_redis_cmd(d->rc, NULL, NULL, 0,
                         "XADD %s * job %s error %s code step_failed entry %s", d->keys.dead, "",
                         g->reason, g->entry);
            cr_redis_cmd(d->rc, NULL, NULL, 0,
                         "EVAL %s 1 %s %s job %s event rejected t_ms %s code step_failed "
                         "error %s entry %s",
                         xadd_lua, d->keys.events, CR_EVENTS_MAXLEN, g->id, now, g->reason,
                         g->entry);
            cr_redis_cmd(d->rc, NULL, NULL, 0, "XACK %s %s %s", d->keys.jobs, d->cfg->group,
                         g->entry);
            cr_redis_cmd(d->rc, NULL, NULL, 0, "EXEC");
        }
    }
    if (outcome != CR_POISON_UNKNOWN)
        cr_strikes_clear(&g->in->strikes, g->entry);
    cr_intake_release(g->in, g->entry);
    free(g);
}

/* Records that entry's step was given up for reason (the whole text): the
 * job fails with it, or the entry is dead-lettered. The entry stays held
 * until that is written. */
static void give_up(struct cr_intake *in, const char *entry, const char *id, const char *reason)
{
    struct cr_daemon *d = in->d;
    struct giveup_ctx *g = calloc(1, sizeof(*g));

    if (g == NULL) {
        cr_intake_release(in, entry);
        return;
    }
    g->in = in;
    snprintf(g->entry, sizeof(g->entry), "%s", entry);
    snprintf(g->id, sizeof(g->id), "%s", id);
    snprintf(g->reason, sizeof(g->reason), "%s", reason);
    if (cr_poison_fail_job(d, d->rc, id, d->keys.jobs, entry, NULL, NULL, g->reason, on_given_up,
                           g) < 0) {
        free(g);
        cr_intake_release(in, entry);
    }
}

/* When entry's step was given up already (its failure not recorded yet: the
 * connection dropped), records that instead of trying the step again.
 * Returns 1 when it did. */
static int given_up_before(struct cr_intake *in, const char *entry, const char *id)
{
    const char *reason = NULL;
    char why[480];

    if (cr_strikes_count(&in->strikes, entry, &reason) < CR_STRIKES_MAX)
        return 0;
    snprintf(why, sizeof(why), "gave up after %d attempts: %s", CR_STRIKES_MAX,
             reason ? reason : "?");
    give_up(in, entry, id, why);
    return 1;
}

void cr_intake_failed(struct cr_intake *in, const char *entry, const char *id, const char *reason,
                      int permanent)
{
    struct cr_daemon *d = in->d;
    long wait = STRIKE_BASE_MS;
    unsigned n;

    if (permanent) {
        give_up(in, entry, id, reason);
        return;
    }
    n = cr_strikes_add(&in->strikes, entry, reason, cr_now_ms(), STRIKE_BASE_MS,
                       d->cfg->reclaim_idle_ms, &wait);
    if (n < CR_STRIKES_MAX) {
        cr_warn("job %s (entry %s): %s; attempt %u of %d failed, next in %ld ms", id, entry, reason,
                n, CR_STRIKES_MAX, wait);
        cr_intake_release(in, entry);
        cr_reader_recover_in(d->reader, wait);
        return;
    }
    given_up_before(in, entry, id);
}

static void on_accepted(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct item *it = ud;
    struct cr_intake *in = it->in;
    struct cr_first_page *pf;
    long long verdict;

    (void)r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        char why[256];

        snprintf(why, sizeof(why), "storing the job failed (%s)", reply->str ? reply->str : "?");
        cr_intake_failed(in, it->entry, it->id, why, 0);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        cr_error("job %s (entry %s): storing the job failed (%s); it stays pending", it->id,
                 it->entry, reply && reply->str ? reply->str : "connection lost");
        cr_intake_release(in, it->entry);
        return;
    }
    cr_strikes_clear(&in->strikes, it->entry);
    verdict = cr_reply_int(reply->element[0]);
    if (verdict == 4 || verdict == 5) {
        const char *why = reply->element[1]->str ? reply->element[1]->str : "?";

        if (verdict == 4)
            cr_error("job %s (entry %s): failed: %s; nothing sent", it->id, it->entry, why);
        else
            cr_warn("job %s (entry %s): rejected (bad_key): %s; moved to %s", it->id, it->entry,
                    why, in->d->keys.dead);
        cr_intake_release(in, it->entry);
        return;
    }
    if (verdict == 3) {
        cr_info("job %s (entry %s): accepted, scheduled for later", it->id, it->entry);
        cr_intake_release(in, it->entry);
        return;
    }
    if (verdict == 0) {
        cr_info("job %s (entry %s): duplicate of a job already accepted (state %s); ignored",
                it->id, it->entry, reply->element[1]->str ? reply->element[1]->str : "?");
        cr_intake_release(in, it->entry);
        return;
    }
    if (verdict == 2)
        cr_info("job %s (entry %s): accepted, priority %s", it->id, it->entry,
                cr_priority_name(it->job.priority));
    else
        cr_info("job %s (entry %s): resuming (state %s)", it->id, it->entry,
                reply->element[1]->str ? reply->element[1]->str : "?");
    it->have_job = 0;
    if (it->jc) {
        /* its first batches find the job in hand instead of reading it back */
        cr_fanout_job_known(in->d->fanout, it->jc);
        cr_jobctx_unref(it->jc);
        it->jc = NULL;
    }
    pf = it->pf;
    it->pf = NULL;
    cr_expander_start(in->d->expander, it->entry, it->id, &it->job, verdict == 2, pf);
}

/* The first n names of l, space separated (segment names hold no space), in
 * a string the caller frees; NULL when out of memory. */
static char *join_names(const struct cr_strlist *l, size_t n)
{
    size_t i, len = 1;
    char *out, *p;

    for (i = 0; i < n; i++)
        len += strlen(l->v[i]) + 1;
    out = malloc(len);
    if (out == NULL)
        return NULL;
    p = out;
    for (i = 0; i < n; i++) {
        size_t k = strlen(l->v[i]);

        if (i > 0)
            *p++ = ' ';
        memcpy(p, l->v[i], k);
        p += k;
    }
    *p = '\0';
    return out;
}

/* Stores the job with the accept script. first: a job read for the first time
 * (not one resumed when due), whose first page is read ahead of the script. */
static void accept_job(struct item *it, const char *doc, size_t len, int first)
{
    struct cr_daemon *d = it->in->d;
    const struct cr_job *job = &it->job;
    size_t nsets = job->segments.n + job->require.n + job->exclude.n;
    size_t nkeys = ACCEPT_KEYS + nsets;
    size_t argc = nkeys + ACCEPT_ARGS;
    char key[CR_KEY_MAX];
    char ledger[CR_KEY_MAX + 8];
    char seen[CR_KEY_MAX + 8];
    char now[24];
    char send_at[24];
    char expires[24];
    char nseg[24];
    char nreq[24];
    char cap[24];
    char esc[CR_ESC_SPEC_MAX];
    char esc_key[CR_KEY_MAX];
    char esc_base[24];
    char esc_due[24];
    const char **argv = calloc(argc, sizeof(*argv));
    size_t *lens = calloc(argc, sizeof(*lens));
    char *sets = calloc(nsets + 1, CR_KEY_MAX);
    char *named = NULL;
    const char **a;
    size_t i;
    int rc = CR_ENOMEM;

    if (argv == NULL || lens == NULL || sets == NULL)
        goto out;
    cr_key_for(&d->keys, "job", it->id, key, sizeof(key));
    snprintf(ledger, sizeof(ledger), "%s:ledger", key);
    snprintf(seen, sizeof(seen), "%s:seen", key);
    if (it->jc == NULL) {
        struct cr_job_error err;

        memset(&err, 0, sizeof(err));
        if (cr_jobctx_create(&d->keys, it->id, doc, len, &d->cfg->limits, &it->jc, &err) < 0)
            it->jc = NULL; /* the fan-out reads the job back instead */
    }
    snprintf(now, sizeof(now), "%lld", (long long)cr_now_ms());
    snprintf(send_at, sizeof(send_at), "%lld", (long long)it->job.send_at_ms);
    snprintf(expires, sizeof(expires), "%lld", (long long)it->job.expires_at_ms);
    snprintf(nseg, sizeof(nseg), "%zu", job->segments.n);
    snprintf(nreq, sizeof(nreq), "%zu", job->require.n);
    argv[0] = key;
    argv[1] = d->keys.events;
    argv[2] = d->keys.jobs;
    argv[3] = d->keys.recent;
    argv[4] = d->keys.scheduled;
    argv[5] = ledger;
    argv[6] = seen;
    argv[7] = d->keys.dead;
    /* the audience sets, checked for their type before anything is written */
    for (i = 0; i < nsets; i++) {
        const char *name;

        if (i < job->segments.n)
            name = job->segments.v[i];
        else if (i < job->segments.n + job->require.n)
            name = job->require.v[i - job->segments.n];
        else
            name = job->exclude.v[i - job->segments.n - job->require.n];
        cr_key_for(&d->keys, "seg", name, sets + i * CR_KEY_MAX, CR_KEY_MAX);
        argv[ACCEPT_KEYS + i] = sets + i * CR_KEY_MAX;
    }
    snprintf(cap, sizeof(cap), "%ld", it->max_audience);
    a = argv + nkeys;
    a[0] = it->id;
    a[1] = it->entry;
    a[2] = cr_priority_name(job->priority);
    a[3] = now;
    a[4] = doc;
    a[5] = send_at;
    a[6] = expires;
    a[7] = d->cfg->group;
    a[8] = nseg;
    a[9] = nreq;
    a[10] = it->key; /* a signed job: its key, and the audience that key may reach */
    a[11] = cap;
    /* escalation steps count from the job's start: send_at, or now */
    cr_escalate_spec(&job->esc, esc, sizeof(esc));
    cr_key_for(&d->keys, "escalate", NULL, esc_key, sizeof(esc_key));
    {
        int64_t base = job->send_at_ms > cr_now_ms() ? job->send_at_ms : cr_now_ms();

        snprintf(esc_base, sizeof(esc_base), "%lld", (long long)base);
        snprintf(esc_due, sizeof(esc_due), "%lld",
                 (long long)(job->esc.n ? cr_escalate_first_due(&job->esc, base,
                                                                job->expires_at_ms)
                                        : 0));
    }
    a[12] = esc;
    a[13] = esc_key;
    a[14] = esc_base;
    a[15] = esc_due;
    a[16] = job->confirm ? "1" : "0";
    /* a job asking for confirmations keeps its audience segments, which each
     * confirmation is counted in (confirm.c), so as not to read the document */
    a[17] = "";
    if (job->confirm) {
        named = join_names(&job->segments, job->segments_named);
        if (named == NULL)
            goto out;
        a[17] = named;
    }
    for (i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    lens[nkeys + 4] = len;
    if (first && job->send_at_ms <= cr_now_ms())
        it->pf = cr_expander_prefetch(d->expander, job);
    rc = cr_script_call(cr_daemon_conn(d, job->priority), CR_SCRIPT_ACCEPT, (int)nkeys, (int)argc,
                        argv, lens, on_accepted, it);
out:
    free(argv);
    free(lens);
    free(sets);
    free(named);
    if (rc < 0)
        cr_intake_release(it->in, it->entry);
}

/* Checks who signed the entry (see cr_intake_take). Returns 0 (accepted as
 * far as signing goes; it->key set when signed), CR_EINVAL with err filled
 * (reject), or CR_ENOMEM. mac gets the signature of a signed entry. */
static int check_signed(struct item *it, const char *doc, size_t len, const struct cr_signed *sg,
                        unsigned char mac[CR_SIG_MAC_LEN], struct cr_job_error *err)
{
    static const struct cr_signed unsigned_entry = {NULL, NULL, NULL};
    const struct cr_config *cfg = it->in->d->cfg;
    const struct cr_integrator *who = NULL;
    int rc;

    if (sg == NULL)
        sg = &unsigned_entry;
    if (sg->key == NULL && sg->sig == NULL && sg->ts == NULL && !cfg->intake_require_signed)
        return 0; /* unsigned, and allowed to be */
    rc = cr_auth_verify(cfg->integrators, sg, doc, len, cr_now_ms(), cfg->intake_sig_window_s,
                        &who, mac, err);
    if (rc != 0)
        return rc;
    snprintf(it->key, sizeof(it->key), "%s", who->id);
    it->max_audience = who->max_audience;
    return 0;
}

void cr_intake_take(struct cr_intake *in, const char *entry, const char *doc, size_t len,
                    const struct cr_signed *sg)
{
    struct item *it = calloc(1, sizeof(*it));
    unsigned char mac[CR_SIG_MAC_LEN];
    struct cr_job_error err;
    int rc;

    if (in->d->stopping) {
        free(it);
        return; /* read while stopping: it stays pending and is taken back on restart */
    }
    if (it == NULL)
        return; /* stays pending; read again after the next reconnect */
    it->in = in;
    snprintf(it->entry, sizeof(it->entry), "%s", entry);
    it->next = in->items;
    in->items = it;
    in->nitems++;
    memset(&err, 0, sizeof(err));
    if (doc == NULL) {
        snprintf(err.code, sizeof(err.code), "missing_field");
        snprintf(err.message, sizeof(err.message),
                 "stream entry has no 'job' field holding the job document");
        reject(it, NULL, 0, &err);
        return;
    }
    rc = check_signed(it, doc, len, sg, mac, &err);
    if (rc == 0)
        rc = cr_job_parse(doc, len, &in->d->cfg->limits, &it->job, &err);
    if (rc == CR_ENOMEM) {
        /* not the document's fault: leave it pending, it is read again later */
        cr_error("job entry %s: out of memory while validating; left pending", entry);
        cr_intake_release(in, entry);
        return;
    }
    if (rc < 0) {
        reject(it, doc, len, &err);
        return;
    }
    it->have_job = 1;
    if (it->key[0]) {
        rc = cr_auth_scopes(cr_integrator_find(in->d->cfg->integrators, it->key), &it->job, &err);
        if (rc != 0) {
            reject(it, doc, len, &err);
            return;
        }
    }
    if (it->job.id[0]) {
        snprintf(it->id, sizeof(it->id), "%s", it->job.id);
    } else if (it->key[0]) {
        /* named by its signature, so that a replayed entry is the same job */
        char hex[33];

        cr_hex(mac, 16, hex);
        snprintf(it->id, sizeof(it->id), "s-%s", hex);
    } else {
        snprintf(it->id, sizeof(it->id), "job-%s", entry);
    }
    if (given_up_before(in, entry, it->id))
        return;
    accept_job(it, doc, len, 1);
}

struct resume_ctx {
    struct cr_intake *in;
    char entry[32];
    char id[CR_JOB_ID_MAX + 1];
};

static void on_resume_doc(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct resume_ctx *rc = ud;
    struct cr_intake *in = rc->in;
    struct item *it;
    struct cr_job_error err;

    (void)r;
    it = *find(in, rc->entry);
    if (cr_poison_reply(reply)) {
        cr_error("job %s (entry %s): due, but its record is not a hash (%s); acknowledged, "
                 "nothing sent",
                 rc->id, rc->entry, reply->str);
        cr_redis_cmd(in->d->rc, NULL, NULL, 0, "XACK %s %s %s", in->d->keys.jobs, in->d->cfg->group,
                     rc->entry);
        cr_intake_release(in, rc->entry);
    } else if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        cr_intake_release(in, rc->entry); /* stays pending; read again later */
    } else if (reply->type != REDIS_REPLY_STRING) {
        cr_warn("job %s (entry %s): due, but its record is gone; acknowledged", rc->id,
                rc->entry);
        cr_redis_cmd(in->d->rc, NULL, NULL, 0, "XACK %s %s %s", in->d->keys.jobs,
                     in->d->cfg->group, rc->entry);
        cr_intake_release(in, rc->entry);
    } else if (cr_job_parse(reply->str, reply->len, &in->d->cfg->limits, &it->job, &err) < 0) {
        char why[400];

        snprintf(why, sizeof(why), "its stored document is no longer valid (%s: %s)", err.code,
                 err.message);
        cr_intake_failed(in, rc->entry, rc->id, why, err.code[0] && strcmp(err.code, "no_memory"));
    } else {
        it->have_job = 1;
        snprintf(it->id, sizeof(it->id), "%s", rc->id);
        accept_job(it, reply->str, reply->len, 0);
    }
    free(rc);
}

void cr_intake_resume(struct cr_intake *in, const char *entry, const char *id)
{
    struct item *it;
    struct resume_ctx *rc;
    char key[CR_KEY_MAX];

    if (in->d->stopping || strlen(id) > CR_JOB_ID_MAX)
        return;
    it = calloc(1, sizeof(*it));
    rc = calloc(1, sizeof(*rc));
    if (it == NULL || rc == NULL) {
        free(it);
        free(rc);
        return;
    }
    it->in = in;
    snprintf(it->entry, sizeof(it->entry), "%s", entry);
    it->next = in->items;
    in->items = it;
    in->nitems++;
    rc->in = in;
    snprintf(rc->entry, sizeof(rc->entry), "%s", entry);
    snprintf(rc->id, sizeof(rc->id), "%s", id);
    if (given_up_before(in, entry, id)) {
        free(rc);
        return;
    }
    cr_key_for(&in->d->keys, "job", id, key, sizeof(key));
    if (cr_redis_cmd(in->d->rc, on_resume_doc, rc, 0, "HGET %s doc", key) < 0) {
        free(rc);
        cr_intake_release(in, entry);
    }
}

void cr_intake_free(struct cr_intake *in)
{
    while (in->items) {
        struct item *it = in->items;

        in->items = it->next;
        if (it->have_job)
            cr_job_release(&it->job);
        free(it);
    }
    free(in);
}
