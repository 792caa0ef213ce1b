/* crierctl survey: scores, trend and free-text answers of multi-question
 * surveys, computed from what crierd keeps (docs/engagement.md): the wave's
 * jobs and their receipts for the residents reached, the last answer of
 * each resident per question, and the segment sets for the cells. Cells
 * with fewer respondents than --min-cell are suppressed in every output. */
#include <cjson/cJSON.h>
#include <csv.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "store.h"

#define MAX_WAVES 64
#define MAX_JOBS 256 /* wave jobs of one survey */
#define MAX_Q 20
#define MAX_STEPS 10
#define MAX_BY 8
#define MAX_CELLS 4096
#define PAGE 10000

static const char help[] =
    "Usage: crierctl survey scores SURVEY [--wave W] --by PATTERN [--by PATTERN]...\n"
    "       crierctl survey trend SURVEY --by PATTERN [--csv]\n"
    "       crierctl survey answers SURVEY --wave W [--segment SEG]\n"
    "       (each also from the audit database: --config FILE, --sqlite PATH or\n"
    "       --postgresql CONNINFO)\n"
    "Scores of a multi-question survey per wave and per segment of the families\n"
    "given with --by (a pattern of segment names: area:*, demo:age:*), plus a row\n"
    "`all`. scores prints CSV, one row per (wave, segment): residents_reached\n"
    "(residents a wave job reached, from the receipts stream), respondents\n"
    "(residents with any answer), response_rate (respondents / reached),\n"
    "confidence (the mean of the question mean scores), change (from the previous\n"
    "wave of the same survey), then per question n, mean and the count of each\n"
    "step. Without --wave, every wave. trend prints the confidence per segment\n"
    "and wave as a table (--csv: CSV). answers prints the free-text answers of a\n"
    "wave (resident,answer), of one segment with --segment; they are never in\n"
    "scores or trend.\n"
    "A cell with fewer respondents than --min-cell (default: survey.min_cell of\n"
    "crier-audit's config with --config, else 10), or a question answered by\n"
    "fewer, is suppressed: suppressed=1 and its numbers left empty.\n"
    "From the audit database (crier-audit's schema version 4), residents reached\n"
    "are those with a stored message of a wave job whose status is sent or\n"
    "delivered, the answers and free texts those crier-audit stored; the --by\n"
    "cells are still Redis's segment sets (members now).\n" CTL_DB_HELP;

enum { OPT_WAVE = CTL_OPT__FIRST_FREE, OPT_BY, OPT_CSV, OPT_MIN_CELL, OPT_SEGMENT };

/* ---- subscriber ids, interned --------------------------------------------- */

struct ids {
    char **v; /* index -> id */
    size_t n, cap;
    size_t *tab; /* open addressing: index + 1, 0 empty */
    size_t tcap;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static long ids_find(const struct ids *t, const char *s)
{
    size_t k;

    if (t->tcap == 0)
        return -1;
    for (k = hash_str(s) & (t->tcap - 1); t->tab[k]; k = (k + 1) & (t->tcap - 1)) {
        if (strcmp(t->v[t->tab[k] - 1], s) == 0)
            return (long)(t->tab[k] - 1);
    }
    return -1;
}

/* The index of s, added when new; -1 out of memory. */
static long ids_add(struct ids *t, const char *s)
{
    long at = ids_find(t, s);
    size_t k, i;

    if (at >= 0)
        return at;
    if (t->n * 2 >= t->tcap) {
        size_t ncap = t->tcap ? t->tcap * 2 : 4096;
        size_t *nt = calloc(ncap, sizeof(*nt));

        if (nt == NULL)
            return -1;
        free(t->tab);
        t->tab = nt;
        t->tcap = ncap;
        for (i = 0; i < t->n; i++) {
            for (k = hash_str(t->v[i]) & (ncap - 1); nt[k]; k = (k + 1) & (ncap - 1))
                ;
            nt[k] = i + 1;
        }
    }
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 4096;
        char **nv = realloc(t->v, ncap * sizeof(*nv));

        if (nv == NULL)
            return -1;
        t->v = nv;
        t->cap = ncap;
    }
    t->v[t->n] = strdup(s);
    if (t->v[t->n] == NULL)
        return -1;
    for (k = hash_str(s) & (t->tcap - 1); t->tab[k]; k = (k + 1) & (t->tcap - 1))
        ;
    t->tab[k] = t->n + 1;
    return (long)t->n++;
}

static void ids_free(struct ids *t)
{
    size_t i;

    for (i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    free(t->tab);
}

/* ---- the survey's waves ----------------------------------------------------- */

struct question {
    char id[72];
    int nsteps;
    int score[MAX_STEPS];
};

struct wave {
    char name[72];
    char *jobs[MAX_JOBS];
    size_t njobs;
    struct question q[MAX_Q];
    size_t nq;
    int has_text;
};

struct cell {
    char name[160];
    size_t *members; /* sub indexes; NULL for `all` */
    size_t n;
};

struct survey {
    struct ctl *ctl;
    const char *id;
    struct wave waves[MAX_WAVES];
    size_t nwaves;
    struct ids subs;
    struct cell cells[MAX_CELLS];
    size_t ncells;
    long min_cell;
    struct cr_store *db; /* the audit database, or NULL: Redis */
};

static int wave_cmp(const void *a, const void *b)
{
    return strcmp(((const struct wave *)a)->name, ((const struct wave *)b)->name);
}

/* Takes a wave job's document: its wave and questions. */
static void take_doc(struct survey *sv, const char *jobid, const char *doc)
{
    cJSON *root = cJSON_Parse(doc);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "survey");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(s, "id");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(s, "wave");
    const cJSON *qs = cJSON_GetObjectItemCaseSensitive(s, "questions");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(root, "tags");
    const cJSON *q, *it;
    struct wave *wv = NULL;
    size_t i;

    if (!cJSON_IsString(id) || strcmp(id->valuestring, sv->id) != 0 || !cJSON_IsString(w) ||
        !cJSON_IsArray(qs) || cJSON_GetObjectItemCaseSensitive(tags, "crier_survey_job") != NULL ||
        strlen(w->valuestring) >= sizeof(wv->name))
        goto out;
    for (i = 0; i < sv->nwaves; i++) {
        if (strcmp(sv->waves[i].name, w->valuestring) == 0)
            wv = &sv->waves[i];
    }
    if (wv == NULL) {
        if (sv->nwaves == MAX_WAVES)
            goto out;
        wv = &sv->waves[sv->nwaves++];
        snprintf(wv->name, sizeof(wv->name), "%s", w->valuestring);
        cJSON_ArrayForEach(q, qs)
        {
            struct question *dq = &wv->q[wv->nq];
            const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q, "id");

            if (wv->nq == MAX_Q || !cJSON_IsString(qid))
                break;
            snprintf(dq->id, sizeof(dq->id), "%s", qid->valuestring);
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(q, "score"))
            {
                if (dq->nsteps < MAX_STEPS)
                    dq->score[dq->nsteps++] = it->valueint;
            }
            wv->nq++;
        }
        wv->has_text = cJSON_GetObjectItemCaseSensitive(s, "free_text") != NULL;
    }
    if (wv->njobs < MAX_JOBS)
        wv->jobs[wv->njobs] = strdup(jobid);
    if (wv->njobs < MAX_JOBS && wv->jobs[wv->njobs] != NULL)
        wv->njobs++;
out:
    cJSON_Delete(root);
}

static int on_job_key(void *ud, const char *key)
{
    struct survey *sv = ud;
    const char *argv[] = {"HGET", key, "doc"};
    int code = 0;
    redisReply *r = cr_ctl_cmdv(sv->ctl, 3, argv, NULL, &code);
    size_t plen = strlen(sv->ctl->prefix) + 4;

    if (r == NULL)
        return code;
    if (r->type == REDIS_REPLY_STRING && strstr(r->str, "\"questions\"") != NULL)
        take_doc(sv, key + plen, r->str);
    freeReplyObject(r);
    return 0;
}

static int on_seg_key(void *ud, const char *key)
{
    struct survey *sv = ud;
    const char *argv[] = {"SMEMBERS", key};
    struct cell *c;
    int code = 0;
    redisReply *r;
    size_t i, plen = strlen(sv->ctl->prefix) + 4;

    if (sv->ncells == MAX_CELLS)
        return 0;
    r = cr_ctl_cmdv(sv->ctl, 2, argv, NULL, &code);
    if (r == NULL)
        return code;
    c = &sv->cells[sv->ncells];
    snprintf(c->name, sizeof(c->name), "%s", key + plen);
    c->members = calloc(r->elements ? r->elements : 1, sizeof(size_t));
    if (c->members == NULL) {
        freeReplyObject(r);
        return CTL_EXIT_FAIL;
    }
    for (i = 0; i < r->elements; i++) {
        long at = ids_add(&sv->subs, r->element[i]->str);

        if (at < 0) {
            freeReplyObject(r);
            return CTL_EXIT_FAIL;
        }
        c->members[c->n++] = (size_t)at;
    }
    sv->ncells++;
    freeReplyObject(r);
    return 0;
}

static int cell_cmp(const void *a, const void *b)
{
    return strcmp(((const struct cell *)a)->name, ((const struct cell *)b)->name);
}

/* ---- one wave's data -------------------------------------------------------- */

struct wave_data {
    unsigned char *reached;    /* per sub */
    unsigned char *ans[MAX_Q]; /* per sub: step, 0 none */
    unsigned char *text;       /* per sub: a free text kept */
    size_t n;
};

static void wave_data_free(struct wave_data *wd)
{
    size_t q;

    free(wd->reached);
    for (q = 0; q < MAX_Q; q++)
        free(wd->ans[q]);
    free(wd->text);
    memset(wd, 0, sizeof(*wd));
}

/* Grows every per-sub array to the number of subs known. */
static int wave_data_fit(struct wave_data *wd, size_t n)
{
    unsigned char **arrs[MAX_Q + 2];
    size_t k, q;

    if (n <= wd->n)
        return 0;
    arrs[0] = &wd->reached;
    arrs[1] = &wd->text;
    for (q = 0; q < MAX_Q; q++)
        arrs[2 + q] = &wd->ans[q];
    for (k = 0; k < MAX_Q + 2; k++) {
        unsigned char *p = realloc(*arrs[k], n);

        if (p == NULL)
            return -1;
        memset(p + wd->n, 0, n - wd->n);
        *arrs[k] = p;
    }
    wd->n = n;
    return 0;
}

static int in_wave(const struct wave *w, const char *job)
{
    size_t i;

    for (i = 0; i < w->njobs; i++) {
        if (strcmp(w->jobs[i], job) == 0)
            return 1;
    }
    return 0;
}

/* Residents reached by the wave's jobs: a receipt entry of one of them with
 * status sent or delivered. */
static int load_reached(struct survey *sv, const struct wave *w, struct wave_data *wd)
{
    char key[CR_KEY_MAX];
    char start[64] = "-";
    int code = 0;

    snprintf(key, sizeof(key), "%sreceipts", sv->ctl->prefix);
    for (;;) {
        const char *argv[] = {"XRANGE", key, start, "+", "COUNT", "10000"};
        redisReply *r = cr_ctl_cmdv(sv->ctl, 6, argv, NULL, &code);
        size_t i;

        if (r == NULL)
            return code;
        for (i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            const char *job = cr_ctl_field(e->element[1], "job");
            const char *sub = cr_ctl_field(e->element[1], "sub");
            const char *st = cr_ctl_field(e->element[1], "status");
            long at;

            if (job == NULL || sub == NULL || st == NULL || !in_wave(w, job) ||
                (strcmp(st, "sent") != 0 && strcmp(st, "delivered") != 0))
                continue;
            at = ids_add(&sv->subs, sub);
            if (at < 0 || wave_data_fit(wd, sv->subs.n) != 0) {
                freeReplyObject(r);
                return CTL_EXIT_FAIL;
            }
            wd->reached[at] = 1;
        }
        if (r->elements < 10000) {
            freeReplyObject(r);
            return 0;
        }
        snprintf(start, sizeof(start), "(%s", r->element[r->elements - 1]->element[0]->str);
        freeReplyObject(r);
    }
}

static int load_answers(struct survey *sv, const struct wave *w, struct wave_data *wd)
{
    char key[CR_KEY_MAX];
    size_t q, i;
    int code = 0;

    for (q = 0; q <= w->nq; q++) {
        const char *argv[2];
        redisReply *r;

        if (q < w->nq)
            snprintf(key, sizeof(key), "%ssurvey:%s:%s:q:%s", sv->ctl->prefix, sv->id, w->name,
                     w->q[q].id);
        else
            snprintf(key, sizeof(key), "%ssurvey:%s:%s:text", sv->ctl->prefix, sv->id, w->name);
        argv[0] = "HGETALL";
        argv[1] = key;
        r = cr_ctl_cmdv(sv->ctl, 2, argv, NULL, &code);
        if (r == NULL)
            return code;
        for (i = 0; i + 1 < r->elements; i += 2) {
            long at = ids_add(&sv->subs, r->element[i]->str);
            long long step = 0;

            if (at < 0 || wave_data_fit(wd, sv->subs.n) != 0) {
                freeReplyObject(r);
                return CTL_EXIT_FAIL;
            }
            if (q == w->nq) {
                wd->text[at] = 1;
            } else if (cr_ctl_parse_ll(r->element[i + 1]->str, 1, w->q[q].nsteps, &step) == 0) {
                wd->ans[q][at] = (unsigned char)step;
            }
        }
        freeReplyObject(r);
    }
    return wave_data_fit(wd, sv->subs.n) == 0 ? 0 : CTL_EXIT_FAIL;
}

static void put_cell(const char *s)
{
    if (strpbrk(s, ",\"\r\n") != NULL)
        csv_fwrite(stdout, s, strlen(s));
    else
        fputs(s, stdout);
}

/* ---- the same from the audit database --------------------------------------- */

struct db_ctx {
    struct survey *sv;
    const struct wave *w;
    struct wave_data *wd;
    int what; /* 0 reached, 1 answers, 2 texts */
    int fail;
};

static int db_job_row(void *ud, int ncols, const char *const *vals)
{
    struct db_ctx *c = ud;

    if (ncols >= 2 && vals[0] && vals[1])
        take_doc(c->sv, vals[0], vals[1]);
    return 0;
}

static int db_sub_row(void *ud, int ncols, const char *const *vals)
{
    struct db_ctx *c = ud;
    long at;
    size_t q;
    long long step = 0;

    if (ncols < 1 || vals[0] == NULL || vals[0][0] == '\0')
        return 0;
    at = ids_add(&c->sv->subs, vals[0]);
    if (at < 0 || wave_data_fit(c->wd, c->sv->subs.n) != 0) {
        c->fail = 1;
        return 1;
    }
    if (c->what == 0) {
        c->wd->reached[at] = 1;
    } else if (c->what == 2) {
        c->wd->text[at] = 1;
    } else if (ncols >= 3 && vals[1] && vals[2]) {
        for (q = 0; q < c->w->nq; q++) {
            if (strcmp(c->w->q[q].id, vals[1]) == 0 &&
                cr_ctl_parse_ll(vals[2], 1, c->w->q[q].nsteps, &step) == 0)
                c->wd->ans[q][at] = (unsigned char)step;
        }
    }
    return 0;
}

static int db_query(struct survey *sv, struct db_ctx *c, const char *sql, int n,
                    const char *const *p, cr_store_row_cb cb)
{
    if (cr_store_query(sv->db, sql, n, p, cb, c) != 0) {
        fprintf(stderr, "crierctl survey: reading the audit database failed: %s\n",
                cr_store_errmsg(sv->db));
        return CTL_EXIT_FAIL;
    }
    return c->fail ? CTL_EXIT_FAIL : 0;
}

/* The wave jobs of the survey, as the audit database kept their documents. */
static int db_load_jobs(struct survey *sv)
{
    struct db_ctx c = {sv, NULL, NULL, 0, 0};

    return db_query(sv, &c, "SELECT id, doc FROM jobs WHERE doc LIKE '%\"questions\"%'", 0, NULL,
                    db_job_row);
}

/* Residents reached: a stored message of a wave job whose status is sent or
 * delivered; the last answer per question and the free texts kept. */
static int db_load_wave(struct survey *sv, const struct wave *w, struct wave_data *wd)
{
    struct db_ctx c = {sv, w, wd, 0, 0};
    const char *p[2];
    size_t j;
    int code = 0;

    for (j = 0; code == 0 && j < w->njobs; j++) {
        p[0] = w->jobs[j];
        code = db_query(sv, &c,
                        "SELECT sub FROM messages WHERE job = $1 AND status IN ('sent', "
                        "'delivered')",
                        1, p, db_sub_row);
    }
    p[0] = sv->id;
    p[1] = w->name;
    c.what = 1;
    if (code == 0)
        code = db_query(sv, &c,
                        "SELECT sub, question, step FROM wave_answers WHERE survey = $1 AND "
                        "wave = $2",
                        2, p, db_sub_row);
    c.what = 2;
    if (code == 0)
        code = db_query(sv, &c,
                        "SELECT sub FROM wave_texts WHERE survey = $1 AND wave = $2 AND "
                        "answer IS NOT NULL",
                        2, p, db_sub_row);
    if (code == 0 && wave_data_fit(wd, sv->subs.n) != 0)
        code = CTL_EXIT_FAIL;
    return code;
}

struct db_text {
    struct survey *sv;
    const char *segment;
    int code;
};

static int db_text_row(void *ud, int ncols, const char *const *vals)
{
    struct db_text *t = ud;

    if (ncols < 2 || vals[0] == NULL || vals[1] == NULL)
        return 0;
    if (t->segment != NULL) {
        char skey[CR_KEY_MAX];
        const char *sargv[3];
        redisReply *m;

        snprintf(skey, sizeof(skey), "%sseg:%s", t->sv->ctl->prefix, t->segment);
        sargv[0] = "SISMEMBER";
        sargv[1] = skey;
        sargv[2] = vals[0];
        m = cr_ctl_cmdv(t->sv->ctl, 3, sargv, NULL, &t->code);
        if (m == NULL)
            return 1;
        if (m->type != REDIS_REPLY_INTEGER || m->integer != 1) {
            freeReplyObject(m);
            return 0;
        }
        freeReplyObject(m);
    }
    put_cell(vals[0]);
    putchar(',');
    csv_fwrite(stdout, vals[1], strlen(vals[1]));
    putchar('\n');
    return 0;
}

/* ---- scores ----------------------------------------------------------------- */

struct score {
    int suppressed;
    long long reached, respondents;
    long long qn[MAX_Q];
    long long qsteps[MAX_Q][MAX_STEPS];
    double qmean[MAX_Q];
    double confidence;
    int has_confidence;
};

static void add_sub(const struct wave *w, const struct wave_data *wd, size_t s, struct score *sc)
{
    int any = wd->text[s];
    size_t q;

    sc->reached += wd->reached[s];
    for (q = 0; q < w->nq; q++) {
        int st = wd->ans[q][s];

        if (st > 0) {
            any = 1;
            sc->qn[q]++;
            sc->qsteps[q][st - 1]++;
        }
    }
    sc->respondents += any;
}

static void score_cell(const struct survey *sv, const struct wave *w, const struct wave_data *wd,
                       const struct cell *c, struct score *sc)
{
    size_t i, q, k;
    double sum = 0;
    int nmeans = 0;

    memset(sc, 0, sizeof(*sc));
    if (c->members == NULL) {
        for (i = 0; i < wd->n; i++)
            add_sub(w, wd, i, sc);
    } else {
        for (i = 0; i < c->n; i++) {
            if (c->members[i] < wd->n)
                add_sub(w, wd, c->members[i], sc);
        }
    }
    for (q = 0; q < w->nq; q++) {
        long long tot = 0;

        for (k = 0; k < (size_t)w->q[q].nsteps; k++)
            tot += sc->qsteps[q][k] * w->q[q].score[k];
        if (sc->qn[q] > 0) {
            sc->qmean[q] = (double)tot / (double)sc->qn[q];
            sum += sc->qmean[q];
            nmeans++;
        }
    }
    sc->has_confidence = nmeans > 0;
    sc->confidence = nmeans > 0 ? sum / nmeans : 0;
    sc->suppressed = sc->respondents < sv->min_cell;
}

static void print_header(const struct wave *w)
{
    size_t q;
    int k;

    printf("survey,wave,segment,suppressed,residents_reached,respondents,response_rate,"
           "confidence,change");
    for (q = 0; q < w->nq; q++) {
        printf(",%s:n,%s:mean", w->q[q].id, w->q[q].id);
        for (k = 0; k < w->q[q].nsteps; k++)
            printf(",%s:%d", w->q[q].id, k + 1);
    }
    printf("\n");
}

static void print_row(const struct survey *sv, const struct wave *w, const struct cell *c,
                      const struct score *sc, const struct score *prev)
{
    size_t q;
    int k;

    put_cell(sv->id);
    putchar(',');
    put_cell(w->name);
    putchar(',');
    put_cell(c->name);
    if (sc->suppressed) {
        printf(",1,,,,,");
        for (q = 0; q < w->nq; q++)
            for (k = 0; k < w->q[q].nsteps + 2; k++)
                putchar(',');
        putchar('\n');
        return;
    }
    printf(",0,%lld,%lld,", sc->reached, sc->respondents);
    if (sc->reached > 0)
        printf("%.3f", (double)sc->respondents / (double)sc->reached);
    putchar(',');
    if (sc->has_confidence)
        printf("%.2f", sc->confidence);
    putchar(',');
    if (sc->has_confidence && prev != NULL && !prev->suppressed && prev->has_confidence)
        printf("%.2f", sc->confidence - prev->confidence);
    for (q = 0; q < w->nq; q++) {
        if (sc->qn[q] < sv->min_cell) {
            for (k = 0; k < w->q[q].nsteps + 2; k++)
                putchar(',');
            continue;
        }
        printf(",%lld,%.2f", sc->qn[q], sc->qmean[q]);
        for (k = 0; k < w->q[q].nsteps; k++)
            printf(",%lld", sc->qsteps[q][k]);
    }
    putchar('\n');
}

/* ---- the command ------------------------------------------------------------ */

static int load(struct survey *sv, const char **by, size_t nby)
{
    char pattern[CR_KEY_MAX];
    size_t i;
    int code;

    snprintf(pattern, sizeof(pattern), "%sjob:*", sv->ctl->prefix);
    if (sv->db)
        code = db_load_jobs(sv);
    else
        code = cr_ctl_scan(sv->ctl, pattern, "hash", on_job_key, sv);
    if (code != 0)
        return code;
    if (sv->nwaves == 0) {
        fprintf(stderr, "crierctl survey: no job in %s carries survey '%s'\n",
                sv->db ? "the audit database" : "Redis", sv->id);
        return CTL_EXIT_NOTFOUND;
    }
    qsort(sv->waves, sv->nwaves, sizeof(sv->waves[0]), wave_cmp);
    snprintf(sv->cells[0].name, sizeof(sv->cells[0].name), "all");
    sv->ncells = 1;
    for (i = 0; i < nby; i++) {
        size_t first = sv->ncells;

        snprintf(pattern, sizeof(pattern), "%sseg:%s", sv->ctl->prefix, by[i]);
        code = cr_ctl_scan(sv->ctl, pattern, "set", on_seg_key, sv);
        if (code != 0)
            return code;
        qsort(&sv->cells[first], sv->ncells - first, sizeof(sv->cells[0]), cell_cmp);
    }
    return 0;
}

static void survey_free(struct survey *sv)
{
    size_t i, j;

    for (i = 0; i < sv->nwaves; i++)
        for (j = 0; j < sv->waves[i].njobs; j++)
            free(sv->waves[i].jobs[j]);
    for (i = 0; i < sv->ncells; i++)
        free(sv->cells[i].members);
    ids_free(&sv->subs);
}

/* The scores of every cell in every wave (scores[w * ncells + c]). */
static int score_all(struct survey *sv, struct score **out)
{
    struct score *scores = calloc(sv->nwaves * sv->ncells, sizeof(*scores));
    struct wave_data wd;
    size_t w, c;
    int code = 0;

    if (scores == NULL)
        return CTL_EXIT_FAIL;
    memset(&wd, 0, sizeof(wd));
    for (w = 0; code == 0 && w < sv->nwaves; w++) {
        if (sv->db) {
            code = db_load_wave(sv, &sv->waves[w], &wd);
        } else {
            code = load_reached(sv, &sv->waves[w], &wd);
            if (code == 0)
                code = load_answers(sv, &sv->waves[w], &wd);
        }
        for (c = 0; code == 0 && c < sv->ncells; c++)
            score_cell(sv, &sv->waves[w], &wd, &sv->cells[c], &scores[w * sv->ncells + c]);
        wave_data_free(&wd);
    }
    if (code != 0) {
        free(scores);
        return code;
    }
    *out = scores;
    return 0;
}

static int cmd_answers(struct survey *sv, const char *wave, const char *segment)
{
    char key[CR_KEY_MAX];
    const char *argv[2] = {"HGETALL", key};
    redisReply *r, *m = NULL;
    size_t i;
    int code = 0;

    if (sv->db) {
        struct db_text t = {sv, segment, 0};
        const char *p[2] = {sv->id, wave};

        printf("resident,answer\n");
        if (cr_store_query(sv->db,
                           "SELECT sub, answer FROM wave_texts WHERE survey = $1 AND wave = $2 "
                           "AND answer IS NOT NULL ORDER BY sub",
                           2, p, db_text_row, &t) != 0) {
            fprintf(stderr, "crierctl survey: reading the audit database failed: %s\n",
                    cr_store_errmsg(sv->db));
            return CTL_EXIT_FAIL;
        }
        return t.code;
    }
    snprintf(key, sizeof(key), "%ssurvey:%s:%s:text", sv->ctl->prefix, sv->id, wave);
    r = cr_ctl_cmdv(sv->ctl, 2, argv, NULL, &code);
    if (r == NULL)
        return code;
    printf("resident,answer\n");
    for (i = 0; i + 1 < r->elements; i += 2) {
        if (segment != NULL) {
            const char *sargv[3];
            char skey[CR_KEY_MAX];

            snprintf(skey, sizeof(skey), "%sseg:%s", sv->ctl->prefix, segment);
            sargv[0] = "SISMEMBER";
            sargv[1] = skey;
            sargv[2] = r->element[i]->str;
            m = cr_ctl_cmdv(sv->ctl, 3, sargv, NULL, &code);
            if (m == NULL)
                break;
            if (m->type != REDIS_REPLY_INTEGER || m->integer != 1) {
                freeReplyObject(m);
                continue;
            }
            freeReplyObject(m);
        }
        put_cell(r->element[i]->str);
        putchar(',');
        csv_fwrite(stdout, r->element[i + 1]->str, r->element[i + 1]->len);
        putchar('\n');
    }
    freeReplyObject(r);
    return code;
}

static int cmd_trend(struct survey *sv, const struct score *scores, int csv)
{
    size_t w, c;

    if (csv) {
        printf("segment");
        for (w = 0; w < sv->nwaves; w++) {
            putchar(',');
            put_cell(sv->waves[w].name);
        }
        printf(",change\n");
    } else {
        printf("%-28s", "segment");
        for (w = 0; w < sv->nwaves; w++)
            printf(" %10s", sv->waves[w].name);
        printf(" %10s\n", "change");
    }
    for (c = 0; c < sv->ncells; c++) {
        const struct score *last = NULL, *prev = NULL;

        if (csv)
            put_cell(sv->cells[c].name);
        else
            printf("%-28s", sv->cells[c].name);
        for (w = 0; w < sv->nwaves; w++) {
            const struct score *sc = &scores[w * sv->ncells + c];
            char v[32] = "";

            if (!sc->suppressed && sc->has_confidence)
                snprintf(v, sizeof(v), "%.2f", sc->confidence);
            else if (sc->suppressed)
                snprintf(v, sizeof(v), "%s", csv ? "" : "*");
            if (csv)
                printf(",%s", v);
            else
                printf(" %10s", v);
            prev = last;
            last = sc;
        }
        {
            char v[32] = "";

            if (last && prev && !last->suppressed && !prev->suppressed && last->has_confidence &&
                prev->has_confidence)
                snprintf(v, sizeof(v), "%+.2f", last->confidence - prev->confidence);
            if (csv)
                printf(",%s\n", v);
            else
                printf(" %10s\n", v);
        }
    }
    if (!csv)
        printf("* fewer than %ld respondents: suppressed\n", sv->min_cell);
    return 0;
}

int cr_ctl_survey(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {
        CTL_COMMON_LONGOPTS,
        CTL_DB_LONGOPTS,
        {"wave", required_argument, NULL, OPT_WAVE},
        {"by", required_argument, NULL, OPT_BY},
        {"csv", no_argument, NULL, OPT_CSV},
        {"min-cell", required_argument, NULL, OPT_MIN_CELL},
        {"segment", required_argument, NULL, OPT_SEGMENT},
        {NULL, 0, NULL, 0},
    };
    struct survey *sv = calloc(1, sizeof(*sv));
    struct score *scores = NULL;
    struct ctl_db dbopt;
    const char *by[MAX_BY];
    const char *wave = NULL, *segment = NULL, *sub;
    size_t nby = 0, w, c;
    long long v;
    int csv = 0;
    int code = CTL_EXIT_FAIL;
    int ok, opt;

    if (sv == NULL)
        return CTL_EXIT_FAIL;
    sv->ctl = ctl;
    sv->min_cell = -1;
    memset(&dbopt, 0, sizeof(dbopt));
    for (;;) {
        opt = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, opts, NULL);
        if (opt == -1)
            break;
        if (opt == OPT_WAVE) {
            wave = optarg;
        } else if (opt == OPT_BY && nby < MAX_BY) {
            by[nby++] = optarg;
        } else if (opt == OPT_CSV) {
            csv = 1;
        } else if (cr_ctl_db_opt(&dbopt, opt, optarg)) {
            continue;
        } else if (opt == OPT_SEGMENT) {
            segment = optarg;
        } else if (opt == OPT_MIN_CELL) {
            if (cr_ctl_parse_ll(optarg, 1, 1000000, &v) != 0) {
                fprintf(stderr, "crierctl survey: --min-cell '%s' is not a number 1 to 1000000\n",
                        optarg);
                code = CTL_EXIT_USAGE;
                goto out;
            }
            sv->min_cell = (long)v;
        } else {
            code = cr_ctl_opt_other(ctl, opt, optarg, help);
            if (code >= 0)
                goto out;
        }
    }
    sub = optind < argc ? argv[optind] : "";
    ok = optind == argc - 2 && !(dbopt.config && dbopt.target) &&
         ((strcmp(sub, "scores") == 0) || (strcmp(sub, "trend") == 0 && wave == NULL) ||
          (strcmp(sub, "answers") == 0 && wave != NULL && nby == 0));
    code = cr_ctl_begin(ctl, ok, help);
    if (code != 0)
        goto out;
    sv->id = argv[optind + 1];
    if (cr_ctl_db_given(&dbopt)) {
        code = cr_ctl_db_open(ctl, &dbopt, &sv->db);
        if (code != 0)
            goto out;
    }
    if (sv->min_cell < 0)
        sv->min_cell = cr_ctl_db_min_cell(&dbopt);
    if (sv->db && strcmp(sub, "answers") != 0 && nby > 0)
        fprintf(stderr, "crierctl survey: residents reached and answers from the audit "
                        "database; the --by cells are Redis's segment sets (members now)\n");
    if (strcmp(sub, "answers") == 0) {
        code = cmd_answers(sv, wave, segment);
        goto out;
    }
    code = load(sv, by, nby);
    if (code == 0)
        code = score_all(sv, &scores);
    if (code != 0)
        goto out;
    if (strcmp(sub, "trend") == 0) {
        code = cmd_trend(sv, scores, csv);
        goto out;
    }
    code = CTL_EXIT_NOTFOUND;
    for (w = 0; w < sv->nwaves; w++) {
        if (wave != NULL && strcmp(wave, sv->waves[w].name) != 0)
            continue;
        if (code != 0)
            print_header(&sv->waves[w]);
        code = 0;
        for (c = 0; c < sv->ncells; c++)
            print_row(sv, &sv->waves[w], &sv->cells[c], &scores[w * sv->ncells + c],
                      w > 0 ? &scores[(w - 1) * sv->ncells + c] : NULL);
    }
    if (code != 0)
        fprintf(stderr, "crierctl survey: survey '%s' has no wave '%s'\n", sv->id, wave);
out:
    free(scores);
    cr_store_close(sv->db);
    survey_free(sv);
    free(sv);
    return code;
}
