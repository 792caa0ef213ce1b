/* The audit schema, its migrations, and the writer that turns a batch of
 * stream entries into rows (see audit.h). One SQL text serves SQLite and
 * PostgreSQL: text parameters, BIGINT and TEXT columns, ON CONFLICT upserts. */
#include "audit.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cr_buf.h"
#include "cr_error.h"
#include "cr_str.h"
#include "cr_types.h"
#include "job.h"

#define SQL_MAX (4 * 1024 * 1024)
#define PARAMS_MAX 8000  /* per statement: under SQLite's and libpq's limits */
#define WEBHOOK_ROWS 200 /* per upsert: one row may be changed once per statement */

/* ---- schema ----------------------------------------------------------------- */

static const char *const schema_v1[] = {
    "CREATE TABLE jobs (id TEXT PRIMARY KEY, doc TEXT, api_key TEXT, priority TEXT, "
    "state TEXT, created_ms BIGINT, started_ms BIGINT, completed_ms BIGINT, targeted BIGINT, "
    "messages BIGINT, counters TEXT, updated_ms BIGINT)",
    "CREATE TABLE segments_of_job (job TEXT NOT NULL, segment TEXT NOT NULL, "
    "kind TEXT NOT NULL, PRIMARY KEY (job, segment, kind))",
    "CREATE INDEX segments_of_job_segment ON segments_of_job (segment, job)",
    "CREATE TABLE messages (job TEXT NOT NULL, pos BIGINT NOT NULL, channel TEXT NOT NULL, "
    "sub TEXT, provider TEXT, status TEXT, attempts BIGINT, code TEXT, provider_id TEXT, "
    "latency_us BIGINT, sms_segments BIGINT, sent_ms BIGINT NOT NULL, delivered_ms BIGINT, "
    "updated_ms BIGINT, lang TEXT, entry TEXT, PRIMARY KEY (job, pos, channel))",
    "CREATE INDEX messages_sub_time ON messages (sub, sent_ms)",
    "CREATE INDEX messages_time ON messages (sent_ms)",
    "CREATE TABLE replies (id TEXT PRIMARY KEY, type TEXT, channel TEXT, job TEXT, sub TEXT, "
    "from_addr TEXT, body TEXT, address TEXT, option_no BIGINT, t_ms BIGINT NOT NULL)",
    "CREATE INDEX replies_job ON replies (job)",
    "CREATE INDEX replies_sub_time ON replies (sub, t_ms)",
    "CREATE INDEX replies_time ON replies (t_ms)",
    "CREATE TABLE survey_answers (id TEXT PRIMARY KEY, job TEXT, sub TEXT, "
    "option_no BIGINT NOT NULL, counted BIGINT, t_ms BIGINT NOT NULL)",
    "CREATE INDEX survey_answers_job ON survey_answers (job, option_no)",
    "CREATE INDEX survey_answers_time ON survey_answers (t_ms)",
    "CREATE TABLE job_events (id TEXT PRIMARY KEY, job TEXT, event TEXT, t_ms BIGINT NOT NULL)",
    "CREATE INDEX job_events_job ON job_events (job)",
    "CREATE INDEX job_events_time ON job_events (t_ms)",
    NULL};

/* Version 2: which of a job's segments each resident it reached was in when
 * the message was stored, so that per-segment figures need no Redis once the
 * segment sets have changed or gone. */
static const char *const schema_v2[] = {
    "CREATE TABLE message_segments (job TEXT NOT NULL, segment TEXT NOT NULL, "
    "sub TEXT NOT NULL, PRIMARY KEY (job, segment, sub))",
    NULL};

/* Version 3, escalation: the step each message belongs to, and for a
 * confirmation the message it confirms */
static const char *const schema_v3[] = {
    "ALTER TABLE messages ADD COLUMN step BIGINT", "ALTER TABLE replies ADD COLUMN pos BIGINT",
    "ALTER TABLE replies ADD COLUMN message_channel TEXT", NULL};

/* migrations[v - 1] takes a database from version v - 1 to v */
static const char *const *const migrations[CR_AUDIT_SCHEMA_VERSION] = {
    schema_v1, schema_v2, schema_v3, cr_audit_schema_v4};

static int max_int_cb(void *ud, int ncols, const char *const *vals)
{
    int *out = ud;

    if (ncols > 0 && vals[0])
        *out = (int)strtol(vals[0], NULL, 10);
    return 1;
}

int cr_audit_schema_version(struct cr_store *s, int *out)
{
    *out = 0;
    if (cr_store_exec(s, "CREATE TABLE IF NOT EXISTS crier_schema (version BIGINT NOT NULL)", 0,
                      NULL) != 0)
        return CR_EIO;
    return cr_store_query(s, "SELECT max(version) FROM crier_schema", 0, NULL, max_int_cb, out);
}

int cr_audit_migrate(struct cr_store *s)
{
    int version = 0;
    int rc = CR_EIO;
    int v;

    if (cr_store_exec(s, "BEGIN", 0, NULL) != 0)
        return CR_EIO;
    /* PostgreSQL: two crier-audit starting at once migrate one after the other */
    if (cr_store_kind(s) == CR_STORE_POSTGRESQL &&
        cr_store_exec(s, "SELECT pg_advisory_xact_lock(7303001)", 0, NULL) != 0)
        goto out;
    if (cr_audit_schema_version(s, &version) != 0)
        goto out;
    if (version > CR_AUDIT_SCHEMA_VERSION) {
        rc = CR_EUNSUPPORTED;
        goto out;
    }
    for (v = version; v < CR_AUDIT_SCHEMA_VERSION; v++) {
        const char *const *sql;
        char num[CR_NUM_MAX];
        const char *p[1];

        for (sql = migrations[v]; *sql; sql++)
            if (cr_store_exec(s, *sql, 0, NULL) != 0)
                goto out;
        p[0] = cr_fmt_i64(num, v + 1);
        if (cr_store_exec(s, "DELETE FROM crier_schema", 0, NULL) != 0 ||
            cr_store_exec(s, "INSERT INTO crier_schema (version) VALUES ($1)", 1, p) != 0)
            goto out;
    }
    rc = cr_store_exec(s, "COMMIT", 0, NULL) == 0 ? 0 : CR_EIO;
out:
    if (rc != 0)
        cr_store_exec(s, "ROLLBACK", 0, NULL); /* the first error stays in errmsg */
    return rc;
}

/* ---- entries ------------------------------------------------------------------ */

const char *cr_audit_field(const struct cr_audit_entry *e, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < e->nkv; i += 2)
        if (strcmp(e->kv[i], name) == 0)
            return e->kv[i + 1];
    return NULL;
}

static void free_kv(char **kv, size_t n)
{
    size_t i;

    if (kv == NULL)
        return;
    for (i = 0; i < n; i++)
        free(kv[i]);
    free(kv);
}

void cr_audit_batch_clear(struct cr_audit_batch *b)
{
    size_t s;
    size_t i;

    for (s = 0; s < CR_AS__COUNT; s++) {
        for (i = 0; i < b->n[s]; i++) {
            free(b->e[s][i].id);
            free(b->e[s][i].lang);
            free(b->e[s][i].segs);
            free_kv(b->e[s][i].kv, b->e[s][i].nkv);
        }
        free(b->e[s]);
    }
    for (i = 0; i < b->njobs; i++) {
        free(b->jobs[i].id);
        free_kv(b->jobs[i].kv, b->jobs[i].nkv);
    }
    free(b->jobs);
    memset(b, 0, sizeof(*b));
}

/* ---- multi-row inserts -------------------------------------------------------- */

/* Inserts nrows rows of ncols values (row-major, NULL = SQL NULL) with one
 * statement per PARAMS_MAX values: head is "INSERT INTO t (cols) VALUES ",
 * tail the ON CONFLICT clause. */
static int insert_rows(struct cr_store *s, const char *head, const char *tail, int ncols,
                       const char **vals, size_t nrows, size_t max_rows)
{
    struct cr_buf sql;
    size_t per = PARAMS_MAX / (size_t)ncols;
    size_t at = 0;
    int rc = 0;

    if (per > max_rows)
        per = max_rows;
    cr_buf_init(&sql, SQL_MAX);
    while (at < nrows && rc == 0) {
        size_t n = nrows - at < per ? nrows - at : per;
        size_t r;
        int c;
        int k = 1;

        cr_buf_reset(&sql);
        rc = cr_buf_appends(&sql, head);
        for (r = 0; r < n && rc == 0; r++) {
            rc = cr_buf_appends(&sql, r ? ",(" : "(");
            for (c = 0; c < ncols && rc == 0; c++)
                rc = cr_buf_appendf(&sql, c ? ",$%d" : "$%d", k++);
            if (rc == 0)
                rc = cr_buf_appends(&sql, ")");
        }
        if (rc == 0)
            rc = cr_buf_appends(&sql, tail);
        if (rc == 0)
            rc = cr_store_exec(s, cr_buf_cstr(&sql), (int)n * ncols, vals + at * (size_t)ncols);
        at += n;
    }
    cr_buf_release(&sql);
    return rc == 0 ? 0 : CR_EIO;
}

int cr_audit_insert_rows(struct cr_store *s, const char *head, const char *tail, int ncols,
                         const char **vals, size_t nrows)
{
    return insert_rows(s, head, tail, ncols, vals, nrows, (size_t)-1);
}

/* The ms part of a stream id ("1700000000000-3"), into out. */
static const char *id_ms(const char *id, char *out, size_t n)
{
    size_t i = 0;

    while (id[i] && id[i] != '-' && i + 1 < n) {
        out[i] = id[i];
        i++;
    }
    out[i] = '\0';
    return out;
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

#define MSG_COLS 17
static const char msg_head[] =
    "INSERT INTO messages (job, pos, channel, sub, provider, status, attempts, code, "
    "provider_id, latency_us, sms_segments, sent_ms, delivered_ms, updated_ms, lang, entry, "
    "step) VALUES ";
/* the outcome crierd recorded: the first row for the message */
static const char msg_tail_record[] = " ON CONFLICT (job, pos, channel) DO NOTHING";
/* a provider's receipt later: the message's final status */
static const char msg_tail_webhook[] =
    " ON CONFLICT (job, pos, channel) DO UPDATE SET status = excluded.status, "
    "code = excluded.code, "
    "provider_id = COALESCE(NULLIF(excluded.provider_id, ''), messages.provider_id), "
    "delivered_ms = COALESCE(excluded.delivered_ms, messages.delivered_ms), "
    "updated_ms = excluded.updated_ms";

static const char *job_field(const struct cr_audit_job *j, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < j->nkv; i += 2)
        if (strcmp(j->kv[i], name) == 0)
            return j->kv[i + 1];
    return NULL;
}

/* The documents of the batch's jobs, parsed when a receipt first needs one,
 * to tell the language each message was sent in. */
struct job_docs {
    const struct cr_audit_batch *b;
    struct cr_job *job; /* parallel to b->jobs */
    signed char *state; /* 0 not parsed yet, 1 parsed, -1 no usable document */
};

static const struct cr_job *job_doc(struct job_docs *d, const char *id)
{
    struct cr_job_limits lim;
    struct cr_job_error err;
    const char *doc;
    size_t i;

    for (i = 0; i < d->b->njobs && strcmp(d->b->jobs[i].id, id) != 0; i++)
        ;
    if (i == d->b->njobs)
        return NULL;
    if (d->state[i] == 0) {
        doc = job_field(&d->b->jobs[i], "doc");
        cr_job_limits_widest(&lim);
        d->state[i] = doc && cr_job_parse(doc, strlen(doc), &lim, &d->job[i], &err) == 0 ? 1 : -1;
    }
    return d->state[i] == 1 ? &d->job[i] : NULL;
}

/* The language a message of channel ch to a resident whose language is lang
 * was sent in, by the rule crierd sends by (cr_job_pick: a translation only
 * when it makes the whole message for that channel, else the job's default
 * language). NULL when not known: the resident's language was not looked up,
 * or there is no message (no channel). The resident's language when the
 * job's document is gone (its hash expired before the receipt was stored). */
static const char *lang_used(struct job_docs *d, const char *job, const char *channel,
                             const char *lang)
{
    const struct cr_job *j;
    enum cr_channel ch;

    if (lang == NULL || cr_channel_parse(channel, &ch) != 0)
        return NULL;
    j = job_doc(d, job);
    if (j == NULL)
        return lang[0] ? lang : NULL;
    return cr_job_row_lang(j, cr_job_pick(j, lang, ch));
}

/* The escalation step a message of channel belongs to ("0": the job's own
 * channels; no channel is in two steps), or NULL for a job without steps or
 * whose document is gone. */
static const char *step_used(struct job_docs *d, const char *job, const char *channel)
{
    static const char *const names[] = {"0", "1", "2", "3"};
    const struct cr_job *j;
    enum cr_channel ch;
    size_t k;

    if (cr_channel_parse(channel, &ch) != 0)
        return NULL;
    j = job_doc(d, job);
    if (j == NULL || j->esc.n == 0)
        return NULL;
    for (k = 0; k < j->esc.n && k + 1 < sizeof(names) / sizeof(names[0]); k++)
        if (j->esc.steps[k].channels & CR_CH_BIT(ch))
            return names[k + 1];
    return names[0];
}

static void job_docs_release(struct job_docs *d)
{
    size_t i;

    for (i = 0; d->state && i < d->b->njobs; i++)
        if (d->state[i] == 1)
            cr_job_release(&d->job[i]);
    free(d->job);
    free(d->state);
}

static int same_message(const char **a, const char **b)
{
    return strcmp(a[0], b[0]) == 0 && strcmp(a[1], b[1]) == 0 && strcmp(a[2], b[2]) == 0;
}

static int store_receipts(struct cr_store *s, const struct cr_audit_batch *b)
{
    size_t n = b->n[CR_AS_RECEIPTS];
    const char **rec = calloc(n ? n * MSG_COLS : 1, sizeof(*rec));
    const char **hook = calloc(n ? n * MSG_COLS : 1, sizeof(*hook));
    char(*ms)[CR_NUM_MAX] = calloc(n ? n : 1, sizeof(*ms));
    struct job_docs docs;
    size_t nrec = 0;
    size_t nhook = 0;
    size_t i;
    int rc = CR_ENOMEM;

    docs.b = b;
    docs.job = calloc(b->njobs ? b->njobs : 1, sizeof(*docs.job));
    docs.state = calloc(b->njobs ? b->njobs : 1, sizeof(*docs.state));
    if (rec == NULL || hook == NULL || ms == NULL || docs.job == NULL || docs.state == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        const struct cr_audit_entry *e = &b->e[CR_AS_RECEIPTS][i];
        const char *job = cr_audit_field(e, "job");
        const char *pos = cr_audit_field(e, "pos");
        const char *ch = cr_audit_field(e, "channel");
        const char *st = or_empty(cr_audit_field(e, "status"));
        const char *src = cr_audit_field(e, "source");
        const char *t = cr_audit_field(e, "t_ms");
        const char **r;

        if (job == NULL || pos == NULL || ch == NULL)
            continue; /* not an outcome of a message: nothing to store */
        if (t == NULL)
            t = id_ms(e->id, ms[i], sizeof(ms[i]));
        if (src && strcmp(src, "webhook") == 0) {
            size_t j;

            /* one statement may change a row once: a second receipt for the same
             * message (none are expected) goes into the next statement */
            for (j = nhook - nhook % WEBHOOK_ROWS; j < nhook; j++)
                if (same_message(hook + j * MSG_COLS, (const char *[]){job, pos, ch}))
                    break;
            if (j < nhook) {
                rc =
                    insert_rows(s, msg_head, msg_tail_webhook, MSG_COLS, hook, nhook, WEBHOOK_ROWS);
                if (rc != 0)
                    goto out;
                nhook = 0;
            }
            r = hook + nhook++ * MSG_COLS;
        } else {
            r = rec + nrec++ * MSG_COLS;
        }
        r[0] = job;
        r[1] = pos;
        r[2] = ch;
        r[3] = or_empty(cr_audit_field(e, "sub"));
        r[4] = cr_audit_field(e, "provider");
        r[5] = st;
        r[6] = cr_audit_field(e, "attempt");
        r[7] = cr_audit_field(e, "code");
        r[8] = cr_audit_field(e, "provider_id");
        r[9] = cr_audit_field(e, "latency_us");
        r[10] = cr_audit_field(e, "segments");
        r[11] = t;
        r[12] = strcmp(st, "delivered") == 0 ? t : NULL;
        r[13] = t;
        r[14] = lang_used(&docs, job, ch, e->lang);
        r[15] = e->id;
        r[16] = step_used(&docs, job, ch);
    }
    /* crierd records an outcome before any receipt for it can follow */
    rc = insert_rows(s, msg_head, msg_tail_record, MSG_COLS, rec, nrec, (size_t)-1);
    if (rc == 0)
        rc = insert_rows(s, msg_head, msg_tail_webhook, MSG_COLS, hook, nhook, WEBHOOK_ROWS);
out:
    job_docs_release(&docs);
    free(rec);
    free(hook);
    free(ms);
    return rc;
}

/* message_segments: (job, segment, sub) for each segment named in a
 * receipt's looked-up membership (a resident's channels repeat it: the
 * duplicates change nothing). */
static int store_members(struct cr_store *s, const struct cr_audit_batch *b)
{
    size_t n = b->n[CR_AS_RECEIPTS];
    const char **vals = NULL;
    char **owned = NULL;
    size_t nrows = 0;
    size_t cap = 0;
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        const char *p = b->e[CR_AS_RECEIPTS][i].segs;

        for (; p && *p; p++)
            cap += *p == '\n';
    }
    if (cap == 0)
        return 0;
    vals = calloc(cap * 3, sizeof(*vals));
    owned = calloc(cap, sizeof(*owned));
    rc = CR_ENOMEM;
    if (vals == NULL || owned == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        const struct cr_audit_entry *e = &b->e[CR_AS_RECEIPTS][i];
        const char *job = cr_audit_field(e, "job");
        const char *sub = cr_audit_field(e, "sub");
        const char *p = e->segs;

        while (p && *p && job && sub && *sub) {
            const char *nl = strchr(p, '\n');

            if (nl == NULL)
                break;
            owned[nrows] = strndup(p, (size_t)(nl - p));
            if (owned[nrows] == NULL)
                goto out;
            vals[nrows * 3] = job;
            vals[nrows * 3 + 1] = owned[nrows];
            vals[nrows * 3 + 2] = sub;
            nrows++;
            p = nl + 1;
        }
    }
    rc = insert_rows(s, "INSERT INTO message_segments (job, segment, sub) VALUES ",
                     " ON CONFLICT (job, segment, sub) DO NOTHING", 3, vals, nrows, (size_t)-1);
out:
    for (i = 0; owned && i < nrows; i++)
        free(owned[i]);
    free(owned);
    free(vals);
    return rc;
}

static int store_replies(struct cr_store *s, const struct cr_audit_batch *b)
{
    size_t n = b->n[CR_AS_REPLIES];
    const char **rep = calloc(n ? n * 12 : 1, sizeof(*rep));
    const char **ans = calloc(n ? n * 6 : 1, sizeof(*ans));
    char(*ms)[CR_NUM_MAX] = calloc(n ? n : 1, sizeof(*ms));
    size_t nans = 0;
    size_t i;
    int rc = CR_ENOMEM;

    if (rep == NULL || ans == NULL || ms == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        const struct cr_audit_entry *e = &b->e[CR_AS_REPLIES][i];
        const char *t = cr_audit_field(e, "t_ms");
        const char *opt = cr_audit_field(e, "option");
        const char **r = rep + i * 12;

        if (t == NULL)
            t = id_ms(e->id, ms[i], sizeof(ms[i]));
        r[0] = e->id;
        r[1] = cr_audit_field(e, "type");
        r[2] = cr_audit_field(e, "channel");
        r[3] = cr_audit_field(e, "job");
        r[4] = cr_audit_field(e, "sub");
        r[5] = cr_audit_field(e, "from");
        r[6] = cr_audit_field(e, "body");
        r[7] = cr_audit_field(e, "address");
        r[8] = opt;
        r[9] = t;
        r[10] = cr_audit_field(e, "pos"); /* a confirmation: the message it confirms */
        r[11] = cr_audit_field(e, "message_channel");
        if (opt) {
            const char **a = ans + nans++ * 6;

            a[0] = e->id;
            a[1] = r[3];
            a[2] = r[4];
            a[3] = opt;
            a[4] = cr_audit_field(e, "counted");
            a[5] = t;
        }
    }
    rc = insert_rows(s,
                     "INSERT INTO replies (id, type, channel, job, sub, from_addr, body, "
                     "address, option_no, t_ms, pos, message_channel) VALUES ",
                     " ON CONFLICT (id) DO NOTHING", 12, rep, n, (size_t)-1);
    if (rc == 0)
        rc = insert_rows(s,
                         "INSERT INTO survey_answers (id, job, sub, option_no, counted, t_ms) "
                         "VALUES ",
                         " ON CONFLICT (id) DO NOTHING", 6, ans, nans, (size_t)-1);
out:
    free(rep);
    free(ans);
    free(ms);
    return rc;
}

static int store_events(struct cr_store *s, const struct cr_audit_batch *b)
{
    size_t n = b->n[CR_AS_EVENTS];
    const char **ev = calloc(n ? n * 4 : 1, sizeof(*ev));
    char(*ms)[CR_NUM_MAX] = calloc(n ? n : 1, sizeof(*ms));
    size_t i;
    int rc = CR_ENOMEM;

    if (ev == NULL || ms == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        const struct cr_audit_entry *e = &b->e[CR_AS_EVENTS][i];
        const char *t = cr_audit_field(e, "t_ms");

        ev[i * 4] = e->id;
        ev[i * 4 + 1] = cr_audit_field(e, "job");
        ev[i * 4 + 2] = cr_audit_field(e, "event");
        ev[i * 4 + 3] = t ? t : id_ms(e->id, ms[i], sizeof(ms[i]));
    }
    rc = insert_rows(s, "INSERT INTO job_events (id, job, event, t_ms) VALUES ",
                     " ON CONFLICT (id) DO NOTHING", 4, ev, n, (size_t)-1);
out:
    free(ev);
    free(ms);
    return rc;
}

static int numeric(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* The job hash's counters (every numeric field) as one JSON object. */
static char *job_counters(const struct cr_audit_job *j)
{
    static const char *const skip[] = {"exp_src", "exp_step", "exp_cursor", "entry", NULL};
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;
    size_t i;

    if (o == NULL)
        return NULL;
    for (i = 0; i + 1 < j->nkv; i += 2) {
        const char *const *k;

        for (k = skip; *k && strcmp(*k, j->kv[i]) != 0; k++)
            ;
        if (*k == NULL && numeric(j->kv[i + 1]) &&
            cJSON_AddNumberToObject(o, j->kv[i], strtod(j->kv[i + 1], NULL)) == NULL)
            goto out;
    }
    out = cJSON_PrintUnformatted(o);
out:
    cJSON_Delete(o);
    return out;
}

static int store_segments(struct cr_store *s, const char *job, const char *doc)
{
    static const char *const kinds[] = {"segments", "require", "exclude"};
    static const char *const names[] = {"segment", "require", "exclude"};
    cJSON *root = doc ? cJSON_Parse(doc) : NULL;
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(root, "audience");
    int rc = 0;
    size_t k;

    for (k = 0; k < 3 && rc == 0; k++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(aud, kinds[k]);
        const cJSON *it;

        cJSON_ArrayForEach(it, arr)
        {
            const char *p[3];

            if (!cJSON_IsString(it))
                continue;
            p[0] = job;
            p[1] = it->valuestring;
            p[2] = names[k];
            rc = cr_store_exec(s,
                               "INSERT INTO segments_of_job (job, segment, kind) "
                               "VALUES ($1, $2, $3) ON CONFLICT (job, segment, kind) DO NOTHING",
                               3, p);
            if (rc != 0)
                break;
        }
    }
    cJSON_Delete(root);
    return rc;
}

static int store_jobs(struct cr_store *s, const struct cr_audit_batch *b, const char *now)
{
    size_t i;

    for (i = 0; i < b->njobs; i++) {
        const struct cr_audit_job *j = &b->jobs[i];
        const char *p[12];
        char *counters;
        int rc;

        if (j->kv == NULL) {
            /* the hash has expired: keep what an earlier event stored */
            p[0] = j->id;
            p[1] = now;
            if (cr_store_exec(s,
                              "INSERT INTO jobs (id, updated_ms) VALUES ($1, $2) "
                              "ON CONFLICT (id) DO NOTHING",
                              2, p) != 0)
                return CR_EIO;
            continue;
        }
        counters = job_counters(j);
        p[0] = j->id;
        p[1] = job_field(j, "doc");
        p[2] = job_field(j, "key");
        p[3] = job_field(j, "priority");
        p[4] = job_field(j, "state");
        p[5] = job_field(j, "created_ms");
        p[6] = job_field(j, "started_ms");
        p[7] = job_field(j, "completed_ms");
        p[8] = job_field(j, "targeted");
        p[9] = job_field(j, "messages");
        p[10] = counters;
        p[11] = now;
        rc = cr_store_exec(
            s,
            "INSERT INTO jobs (id, doc, api_key, priority, state, created_ms, started_ms, "
            "completed_ms, targeted, messages, counters, updated_ms) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (id) DO UPDATE SET doc = COALESCE(excluded.doc, jobs.doc), "
            "api_key = COALESCE(excluded.api_key, jobs.api_key), "
            "priority = COALESCE(excluded.priority, jobs.priority), state = excluded.state, "
            "created_ms = COALESCE(excluded.created_ms, jobs.created_ms), "
            "started_ms = COALESCE(excluded.started_ms, jobs.started_ms), "
            "completed_ms = COALESCE(excluded.completed_ms, jobs.completed_ms), "
            "targeted = COALESCE(excluded.targeted, jobs.targeted), "
            "messages = COALESCE(excluded.messages, jobs.messages), "
            "counters = COALESCE(excluded.counters, jobs.counters), "
            "updated_ms = excluded.updated_ms",
            12, p);
        free(counters);
        if (rc == 0)
            rc = store_segments(s, j->id, p[1]);
        if (rc != 0)
            return CR_EIO;
    }
    return 0;
}

int cr_audit_store(struct cr_store *s, const struct cr_audit_batch *b)
{
    char now[CR_NUM_MAX] = "0";
    size_t i;
    int rc = CR_EIO;

    /* the newest entry's time stands for "now": the writer reads no clock */
    for (i = 0; i < CR_AS__COUNT; i++)
        if (b->n[i] > 0) {
            char t[CR_NUM_MAX];

            id_ms(b->e[i][b->n[i] - 1].id, t, sizeof(t));
            if (strtoll(t, NULL, 10) > strtoll(now, NULL, 10))
                cr_strlcpy(now, t, sizeof(now));
        }
    if (cr_store_exec(s, "BEGIN", 0, NULL) != 0)
        return CR_EIO;
    if (store_jobs(s, b, now) != 0 || store_receipts(s, b) != 0 || store_members(s, b) != 0 ||
        store_replies(s, b) != 0 || cr_audit_store_waves(s, b) != 0 || store_events(s, b) != 0)
        goto out;
    rc = cr_store_exec(s, "COMMIT", 0, NULL) == 0 ? 0 : CR_EIO;
out:
    if (rc != 0)
        cr_store_exec(s, "ROLLBACK", 0, NULL); /* the first error stays in errmsg */
    return rc;
}

/* ---- retention ------------------------------------------------------------------ */

int cr_audit_retain(struct cr_store *s, long long cutoff_ms, long chunk, long *deleted)
{
    static const char *const tables[][2] = {{"messages", "sent_ms"},
                                            {"replies", "t_ms"},
                                            {"survey_answers", "t_ms"},
                                            {"job_events", "t_ms"},
                                            {"wave_answers", "t_ms"},
                                            {"wave_texts", "t_ms"},
                                            {"wave_respondents", "t_ms"},
                                            {"jobs", "COALESCE(created_ms, updated_ms)"}};
    char cut[CR_NUM_MAX];
    char lim[CR_NUM_MAX];
    const char *p[2];
    struct cr_buf sql;
    size_t i;
    int rc = CR_EIO;

    *deleted = 0;
    p[0] = cr_fmt_i64(cut, cutoff_ms);
    p[1] = cr_fmt_i64(lim, chunk);
    cr_buf_init(&sql, 1024);
    if (cr_store_exec(s, "BEGIN", 0, NULL) != 0)
        goto out_nobegin;
    for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        const char *rid = cr_store_rowid(s);

        cr_buf_reset(&sql);
        if (cr_buf_appendf(&sql,
                           "DELETE FROM %s WHERE %s IN (SELECT %s FROM %s WHERE %s < $1 LIMIT $2)",
                           tables[i][0], rid, rid, tables[i][0], tables[i][1]) != 0 ||
            cr_store_exec(s, cr_buf_cstr(&sql), 2, p) != 0)
            goto out;
        *deleted += cr_store_changes(s);
    }
    cr_buf_reset(&sql);
    /* a deleted job's segments go with it */
    if (cr_buf_appendf(
            &sql,
            "DELETE FROM segments_of_job WHERE %s IN (SELECT g.%s FROM segments_of_job g "
            "LEFT JOIN jobs j ON j.id = g.job WHERE j.id IS NULL LIMIT $1)",
            cr_store_rowid(s), cr_store_rowid(s)) != 0 ||
        cr_store_exec(s, cr_buf_cstr(&sql), 1, p + 1) != 0)
        goto out;
    *deleted += cr_store_changes(s);
    /* and who was in them */
    cr_buf_reset(&sql);
    if (cr_buf_appendf(
            &sql,
            "DELETE FROM message_segments WHERE %s IN (SELECT g.%s FROM message_segments g "
            "LEFT JOIN jobs j ON j.id = g.job WHERE j.id IS NULL LIMIT $1)",
            cr_store_rowid(s), cr_store_rowid(s)) != 0 ||
        cr_store_exec(s, cr_buf_cstr(&sql), 1, p + 1) != 0)
        goto out;
    *deleted += cr_store_changes(s);
    rc = cr_store_exec(s, "COMMIT", 0, NULL) == 0 ? 0 : CR_EIO;
out:
    if (rc != 0)
        cr_store_exec(s, "ROLLBACK", 0, NULL);
out_nobegin:
    cr_buf_release(&sql);
    return rc;
}
