/* The answers of multi-question survey waves (schema version 3): each
 * resident's last step per question, last free text, and the job its first
 * answer of the wave came by, taken from the crier:replies entries of type
 * survey that carry a wave. Replays change nothing; a later entry wins. */
#include "audit.h"

#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_str.h"
#include "cr_types.h"

const char *const cr_audit_schema_v3[] = {
    "CREATE TABLE wave_answers (survey TEXT NOT NULL, wave TEXT NOT NULL, sub TEXT NOT NULL, "
    "question TEXT NOT NULL, step BIGINT NOT NULL, job TEXT, t_ms BIGINT NOT NULL, "
    "entry_ms BIGINT NOT NULL, entry_seq BIGINT NOT NULL, "
    "PRIMARY KEY (survey, wave, sub, question))",
    "CREATE TABLE wave_texts (survey TEXT NOT NULL, wave TEXT NOT NULL, sub TEXT NOT NULL, "
    "answer TEXT, job TEXT, t_ms BIGINT NOT NULL, entry_ms BIGINT NOT NULL, "
    "entry_seq BIGINT NOT NULL, PRIMARY KEY (survey, wave, sub))",
    "CREATE TABLE wave_respondents (survey TEXT NOT NULL, wave TEXT NOT NULL, "
    "sub TEXT NOT NULL, job TEXT, t_ms BIGINT NOT NULL, PRIMARY KEY (survey, wave, sub))",
    "CREATE INDEX wave_respondents_job ON wave_respondents (job)",
    "CREATE INDEX wave_answers_time ON wave_answers (t_ms)",
    "CREATE INDEX wave_texts_time ON wave_texts (t_ms)",
    "CREATE INDEX wave_respondents_time ON wave_respondents (t_ms)",
    NULL};

#define ANSWERS_MAX 64 /* question=step pairs read from one entry */

/* one row to upsert: the newest entry per key wins within a batch too,
 * since one statement may change a row only once */
struct row {
    const char *survey, *wave, *sub, *job, *t;
    char step[CR_NUM_MAX];
    char question_buf[128]; /* in the row: rows are sorted */
    char ems[CR_NUM_MAX], eseq[CR_NUM_MAX];
    const char *text; /* wave_texts: the answer, NULL withdrawn */
    size_t order;     /* the entry's place in the batch */
};

static int row_cmp(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;
    int c = strcmp(a->survey, b->survey);

    if (c == 0)
        c = strcmp(a->wave, b->wave);
    if (c == 0)
        c = strcmp(a->sub, b->sub);
    if (c == 0)
        c = strcmp(a->question_buf, b->question_buf);
    if (c == 0)
        c = a->order < b->order ? 1 : a->order > b->order ? -1 : 0; /* newest first */
    return c;
}

/* Splits a stream id into its ms and sequence parts. */
static void id_parts(const char *id, char *ms, char *seq)
{
    const char *dash = strchr(id, '-');
    size_t n = dash ? (size_t)(dash - id) : strlen(id);

    if (n >= CR_NUM_MAX)
        n = CR_NUM_MAX - 1;
    memcpy(ms, id, n);
    ms[n] = '\0';
    cr_strlcpy(seq, dash ? dash + 1 : "0", CR_NUM_MAX);
}

/* Keeps the first (newest) row of each key; returns the rows kept. */
static size_t newest(struct row *r, size_t n)
{
    size_t i, k = 0;

    if (n == 0)
        return 0;
    qsort(r, n, sizeof(*r), row_cmp);
    for (i = 0; i < n; i++) {
        if (k > 0 && strcmp(r[k - 1].survey, r[i].survey) == 0 &&
            strcmp(r[k - 1].wave, r[i].wave) == 0 && strcmp(r[k - 1].sub, r[i].sub) == 0 &&
            strcmp(r[k - 1].question_buf, r[i].question_buf) == 0)
            continue;
        if (k != i)
            r[k] = r[i];
        k++;
    }
    return k;
}

static const char answers_sql[] =
    "INSERT INTO wave_answers (survey, wave, sub, question, step, job, t_ms, entry_ms, "
    "entry_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    "ON CONFLICT (survey, wave, sub, question) DO UPDATE SET step = excluded.step, "
    "job = excluded.job, t_ms = excluded.t_ms, entry_ms = excluded.entry_ms, "
    "entry_seq = excluded.entry_seq WHERE excluded.entry_ms > wave_answers.entry_ms OR "
    "(excluded.entry_ms = wave_answers.entry_ms AND excluded.entry_seq > wave_answers.entry_seq)";

static const char texts_sql[] =
    "INSERT INTO wave_texts (survey, wave, sub, answer, job, t_ms, entry_ms, entry_seq) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (survey, wave, sub) DO UPDATE SET answer = excluded.answer, "
    "job = excluded.job, t_ms = excluded.t_ms, entry_ms = excluded.entry_ms, "
    "entry_seq = excluded.entry_seq WHERE excluded.entry_ms > wave_texts.entry_ms OR "
    "(excluded.entry_ms = wave_texts.entry_ms AND excluded.entry_seq > wave_texts.entry_seq)";

/* the first answer of the wave names the job it is attributed to (as the
 * survey's resp hash does in Redis): batches come in stream order */
static const char resp_sql[] =
    "INSERT INTO wave_respondents (survey, wave, sub, job, t_ms) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (survey, wave, sub) DO NOTHING";

static int put_rows(struct cr_store *s, struct row *r, size_t n, int texts)
{
    size_t i;

    n = newest(r, n);
    for (i = 0; i < n; i++) {
        const char *p[9];

        p[0] = r[i].survey;
        p[1] = r[i].wave;
        p[2] = r[i].sub;
        if (texts) {
            p[3] = r[i].text;
            p[4] = r[i].job;
            p[5] = r[i].t;
            p[6] = r[i].ems;
            p[7] = r[i].eseq;
            if (cr_store_exec(s, texts_sql, 8, p) != 0)
                return CR_EIO;
            continue;
        }
        p[3] = r[i].question_buf;
        p[4] = r[i].step;
        p[5] = r[i].job;
        p[6] = r[i].t;
        p[7] = r[i].ems;
        p[8] = r[i].eseq;
        if (cr_store_exec(s, answers_sql, 9, p) != 0)
            return CR_EIO;
    }
    return 0;
}

int cr_audit_store_waves(struct cr_store *s, const struct cr_audit_batch *b)
{
    size_t n = b->n[CR_AS_REPLIES];
    struct row *ans = NULL, *txt = NULL;
    size_t nans = 0, ntxt = 0, cap = 0, i;
    int rc = CR_ENOMEM;

    for (i = 0; i < n; i++) {
        const char *a = cr_audit_field(&b->e[CR_AS_REPLIES][i], "answers");

        for (cap++; a && *a; a++)
            cap += *a == ',';
    }
    ans = calloc(cap ? cap : 1, sizeof(*ans));
    txt = calloc(n ? n : 1, sizeof(*txt));
    if (ans == NULL || txt == NULL)
        goto out;
    rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        const struct cr_audit_entry *e = &b->e[CR_AS_REPLIES][i];
        const char *type = cr_audit_field(e, "type");
        const char *sv = cr_audit_field(e, "survey");
        const char *wave = cr_audit_field(e, "wave");
        const char *sub = cr_audit_field(e, "sub");
        const char *job = cr_audit_field(e, "job");
        const char *t = cr_audit_field(e, "t_ms");
        const char *a = cr_audit_field(e, "answers");
        const char *text = cr_audit_field(e, "text");
        const char *cleared = cr_audit_field(e, "text_cleared");
        const char *p[5];
        char ems[CR_NUM_MAX], eseq[CR_NUM_MAX];
        int k;

        if (type == NULL || strcmp(type, "survey") != 0 || sv == NULL || wave == NULL ||
            sub == NULL || *sub == '\0')
            continue; /* not an answer of a wave */
        id_parts(e->id, ems, eseq);
        if (t == NULL)
            t = ems;
        for (k = 0; a && *a && k < ANSWERS_MAX; k++) {
            const char *comma = strchr(a, ',');
            const char *eq = strchr(a, '=');
            size_t len = comma ? (size_t)(comma - a) : strlen(a);
            struct row *r = &ans[nans];

            if (eq && eq < a + len && (size_t)(eq - a) < sizeof(r->question_buf) &&
                (size_t)(a + len - eq - 1) < sizeof(r->step) && eq > a && a + len > eq + 1) {
                memcpy(r->question_buf, a, (size_t)(eq - a));
                r->question_buf[eq - a] = '\0';
                memcpy(r->step, eq + 1, (size_t)(a + len - eq - 1));
                r->step[a + len - eq - 1] = '\0';
                r->survey = sv;
                r->wave = wave;
                r->sub = sub;
                r->job = job;
                r->t = t;
                cr_strlcpy(r->ems, ems, sizeof(r->ems));
                cr_strlcpy(r->eseq, eseq, sizeof(r->eseq));
                r->order = i;
                nans++;
            }
            a = comma ? comma + 1 : a + len;
        }
        if (text != NULL || cleared != NULL) {
            struct row *r = &txt[ntxt++];

            r->survey = sv;
            r->wave = wave;
            r->sub = sub;
            r->job = job;
            r->t = t;
            r->text = text; /* NULL: withdrawn */
            cr_strlcpy(r->ems, ems, sizeof(r->ems));
            cr_strlcpy(r->eseq, eseq, sizeof(r->eseq));
            r->order = i;
        }
        p[0] = sv;
        p[1] = wave;
        p[2] = sub;
        p[3] = job;
        p[4] = t;
        if (cr_store_exec(s, resp_sql, 5, p) != 0)
            rc = CR_EIO;
    }
    if (rc == 0)
        rc = put_rows(s, ans, nans, 0);
    if (rc == 0)
        rc = put_rows(s, txt, ntxt, 1);
out:
    free(ans);
    free(txt);
    return rc;
}
