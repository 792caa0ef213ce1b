/* The answers of multi-question survey waves (schema version 4): each
 * resident's last step per question, last free text, and the job its first
 * answer of the wave came by, taken from the crier:replies entries of type
 * survey that carry a wave. Replays change nothing; a later entry wins. */
#include "audit.h"

#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_str.h"
#include "cr_types.h"

const char *const cr_audit_schema_v4[] = {
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
#define STEP_MAX 4     /* digits of a step */

/* One row of a wave table. One statement may change a row only once, so
 * each batch keeps one row per key: the newest entry's answer, the oldest
 * entry's attribution. */
struct row {
    const char *survey, *wave, *sub, *job, *t;
    const char *text;   /* wave_texts: the answer, NULL taken back */
    char question[128]; /* in the row: rows are sorted */
    char step[STEP_MAX + 1];
    char ems[CR_NUM_MAX], eseq[CR_NUM_MAX];
    size_t order; /* the entry's place in the batch */
};

static int key_cmp(const struct row *a, const struct row *b)
{
    int c = strcmp(a->survey, b->survey);

    if (c == 0)
        c = strcmp(a->wave, b->wave);
    if (c == 0)
        c = strcmp(a->sub, b->sub);
    if (c == 0)
        c = strcmp(a->question, b->question);
    return c;
}

static int newest_first(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;
    int c = key_cmp(a, b);

    return c ? c : a->order < b->order ? 1 : a->order > b->order ? -1 : 0;
}

static int oldest_first(const void *pa, const void *pb)
{
    const struct row *a = pa, *b = pb;
    int c = key_cmp(a, b);

    return c ? c : a->order < b->order ? -1 : a->order > b->order ? 1 : 0;
}

/* Sorts by key with cmp and keeps the first row of each key; returns the
 * rows kept. */
static size_t one_per_key(struct row *r, size_t n, int (*cmp)(const void *, const void *))
{
    size_t i, k = 0;

    if (n == 0)
        return 0;
    qsort(r, n, sizeof(*r), cmp);
    for (i = 0; i < n; i++) {
        if (k > 0 && key_cmp(&r[k - 1], &r[i]) == 0)
            continue;
        if (k != i)
            r[k] = r[i];
        k++;
    }
    return k;
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

static const char answers_head[] =
    "INSERT INTO wave_answers (survey, wave, sub, question, step, job, t_ms, entry_ms, "
    "entry_seq) VALUES ";
static const char answers_tail[] =
    " ON CONFLICT (survey, wave, sub, question) DO UPDATE SET step = excluded.step, "
    "job = excluded.job, t_ms = excluded.t_ms, entry_ms = excluded.entry_ms, "
    "entry_seq = excluded.entry_seq WHERE excluded.entry_ms > wave_answers.entry_ms OR "
    "(excluded.entry_ms = wave_answers.entry_ms AND excluded.entry_seq > wave_answers.entry_seq)";

static const char texts_head[] =
    "INSERT INTO wave_texts (survey, wave, sub, answer, job, t_ms, entry_ms, entry_seq) VALUES ";
static const char texts_tail[] =
    " ON CONFLICT (survey, wave, sub) DO UPDATE SET answer = excluded.answer, "
    "job = excluded.job, t_ms = excluded.t_ms, entry_ms = excluded.entry_ms, "
    "entry_seq = excluded.entry_seq WHERE excluded.entry_ms > wave_texts.entry_ms OR "
    "(excluded.entry_ms = wave_texts.entry_ms AND excluded.entry_seq > wave_texts.entry_seq)";

/* the first answer of the wave names the job it is attributed to (as the
 * survey's resp hash does in Redis): batches come in stream order */
static const char resp_head[] =
    "INSERT INTO wave_respondents (survey, wave, sub, job, t_ms) VALUES ";
static const char resp_tail[] = " ON CONFLICT (survey, wave, sub) DO NOTHING";

enum table { T_ANSWERS, T_TEXTS, T_RESP };

static int put_rows(struct cr_store *s, struct row *r, size_t n, enum table t)
{
    static const int ncols[] = {9, 8, 5};
    const char **v;
    size_t i;
    int rc;

    n = one_per_key(r, n, t == T_RESP ? oldest_first : newest_first);
    if (n == 0)
        return 0;
    v = calloc(n * (size_t)ncols[t], sizeof(*v));
    if (v == NULL)
        return CR_ENOMEM;
    for (i = 0; i < n; i++) {
        const char **p = v + i * (size_t)ncols[t];

        p[0] = r[i].survey;
        p[1] = r[i].wave;
        p[2] = r[i].sub;
        if (t == T_ANSWERS) {
            p[3] = r[i].question;
            p[4] = r[i].step;
            p[5] = r[i].job;
            p[6] = r[i].t;
            p[7] = r[i].ems;
            p[8] = r[i].eseq;
        } else if (t == T_TEXTS) {
            p[3] = r[i].text;
            p[4] = r[i].job;
            p[5] = r[i].t;
            p[6] = r[i].ems;
            p[7] = r[i].eseq;
        } else {
            p[3] = r[i].job;
            p[4] = r[i].t;
        }
    }
    rc = cr_audit_insert_rows(s,
                              t == T_ANSWERS ? answers_head
                              : t == T_TEXTS ? texts_head
                                             : resp_head,
                              t == T_ANSWERS ? answers_tail
                              : t == T_TEXTS ? texts_tail
                                             : resp_tail,
                              ncols[t], v, n);
    free(v);
    return rc;
}

/* A step as crierd writes it: 1 to STEP_MAX digits. */
static int is_step(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > STEP_MAX)
        return 0;
    for (i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* The row's common fields from entry i of the batch. */
static void fill(struct row *r, const char *sv, const char *wave, const char *sub, const char *job,
                 const char *t, const char *ems, const char *eseq, size_t i)
{
    r->survey = sv;
    r->wave = wave;
    r->sub = sub;
    r->job = job;
    r->t = t;
    cr_strlcpy(r->ems, ems, sizeof(r->ems));
    cr_strlcpy(r->eseq, eseq, sizeof(r->eseq));
    r->order = i;
}

int cr_audit_store_waves(struct cr_store *s, const struct cr_audit_batch *b)
{
    size_t n = b->n[CR_AS_REPLIES];
    struct row *ans = NULL, *txt = NULL, *resp = NULL;
    size_t nans = 0, ntxt = 0, nresp = 0, cap = 0, i;
    char(*ms)[CR_NUM_MAX] = calloc(n ? n : 1, sizeof(*ms));
    int rc = CR_ENOMEM;

    for (i = 0; i < n; i++) {
        const char *a = cr_audit_field(&b->e[CR_AS_REPLIES][i], "answers");
        size_t k = 1;

        for (; a && *a; a++)
            k += *a == ',';
        cap += k < ANSWERS_MAX ? k : ANSWERS_MAX;
    }
    ans = calloc(cap ? cap : 1, sizeof(*ans));
    txt = calloc(n ? n : 1, sizeof(*txt));
    resp = calloc(n ? n : 1, sizeof(*resp));
    if (ans == NULL || txt == NULL || resp == NULL || ms == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        const struct cr_audit_entry *e = &b->e[CR_AS_REPLIES][i];
        const char *type = cr_audit_field(e, "type");
        const char *sv = cr_audit_field(e, "survey");
        const char *wave = cr_audit_field(e, "wave");
        const char *sub = cr_audit_field(e, "sub");
        const char *job = cr_audit_field(e, "job");
        const char *t = cr_audit_field(e, "t_ms");
        const char *a = cr_audit_field(e, "answers");
        const char *text = cr_audit_field(e, "text");
        char ems[CR_NUM_MAX], eseq[CR_NUM_MAX];
        int k;

        if (type == NULL || strcmp(type, "survey") != 0 || sv == NULL || wave == NULL ||
            sub == NULL || *sub == '\0')
            continue; /* not an answer of a wave */
        id_parts(e->id, ems, eseq);
        if (t == NULL) {
            cr_strlcpy(ms[i], ems, sizeof(ms[i]));
            t = ms[i];
        }
        for (k = 0; a && *a && k < ANSWERS_MAX; k++) {
            const char *comma = strchr(a, ',');
            size_t len = comma ? (size_t)(comma - a) : strlen(a);
            const char *eq = memchr(a, '=', len);
            struct row *r = &ans[nans];

            if (eq && eq > a && (size_t)(eq - a) < sizeof(r->question) &&
                is_step(eq + 1, (size_t)(a + len - eq - 1))) {
                memcpy(r->question, a, (size_t)(eq - a));
                r->question[eq - a] = '\0';
                memcpy(r->step, eq + 1, (size_t)(a + len - eq - 1));
                r->step[a + len - eq - 1] = '\0';
                fill(r, sv, wave, sub, job, t, ems, eseq, i);
                nans++;
            }
            a = comma ? comma + 1 : a + len;
        }
        if (text != NULL || cr_audit_field(e, "text_cleared") != NULL) {
            fill(&txt[ntxt], sv, wave, sub, job, t, ems, eseq, i);
            txt[ntxt++].text = text; /* NULL: taken back */
        }
        fill(&resp[nresp++], sv, wave, sub, job, t, ems, eseq, i);
    }
    rc = put_rows(s, resp, nresp, T_RESP);
    if (rc == 0)
        rc = put_rows(s, ans, nans, T_ANSWERS);
    if (rc == 0)
        rc = put_rows(s, txt, ntxt, T_TEXTS);
out:
    free(ans);
    free(txt);
    free(resp);
    free(ms);
    return rc;
}
