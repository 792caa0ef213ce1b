/* crierctl report --by: the segments of reporting families (demo:age:*),
 * whether or not the job targeted them, and the residents who responded to
 * a job (replied, or answered its survey), so that reach can be shown per
 * community. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "report_by.h"
#include "store.h"

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Where the keys of one cr_ctl_report_by_segments call go. */
struct seg_sink {
    char **segs;
    size_t max;
    size_t *nsegs;
    size_t plen; /* strlen("<prefix>seg:") */
};

static int take_seg(void *ud, const char *key)
{
    struct seg_sink *k = ud;

    if (*k->nsegs == k->max) {
        fprintf(stderr, "crierctl report: --by: more than %zu segments\n", k->max);
        return CTL_EXIT_FAIL;
    }
    k->segs[*k->nsegs] = strdup(key + k->plen);
    if (k->segs[*k->nsegs] == NULL)
        return CTL_EXIT_FAIL;
    (*k->nsegs)++;
    return 0;
}

int cr_ctl_report_by_segments(struct ctl *ctl, const char *const *patterns, size_t n, char **segs,
                              size_t max, size_t *nsegs)
{
    char pattern[CR_KEY_MAX];
    struct seg_sink sink = {segs, max, nsegs, strlen(ctl->prefix) + 4};
    size_t i, first;
    int code;

    for (i = 0; i < n; i++) {
        snprintf(pattern, sizeof(pattern), "%sseg:%s", ctl->prefix, patterns[i]);
        first = *nsegs;
        code = cr_ctl_scan(ctl, pattern, "set", take_seg, &sink);
        if (code != 0)
            return code;
        qsort(segs + first, *nsegs - first, sizeof(*segs), name_cmp);
    }
    return 0;
}

/* Appends the members of a reply (SMEMBERS) or the fields of a hash whose
 * value is job (HGETALL) to *ids. */
static int take(redisReply *r, const char *job, char ***ids, size_t *n, size_t *cap)
{
    size_t i, step = job ? 2 : 1;

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i + step - 1 < r->elements; i += step) {
        if (job != NULL && strcmp(r->element[i + 1]->str, job) != 0)
            continue;
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 1024;
            char **nv = realloc(*ids, ncap * sizeof(*nv));

            if (nv == NULL)
                return CTL_EXIT_FAIL;
            *ids = nv;
            *cap = ncap;
        }
        (*ids)[*n] = strdup(r->element[i]->str);
        if ((*ids)[*n] == NULL)
            return CTL_EXIT_FAIL;
        (*n)++;
    }
    return 0;
}

int cr_ctl_report_responders(struct ctl *ctl, const char *job, const char *doc, char ***ids,
                             size_t *n)
{
    char key[CR_KEY_MAX];
    const char *argv[2];
    cJSON *root = cJSON_Parse(doc ? doc : "");
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(root, "survey");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(sv, "id");
    const cJSON *wave = cJSON_GetObjectItemCaseSensitive(sv, "wave");
    size_t cap = 0, k;
    int code = 0;

    *ids = NULL;
    *n = 0;
    for (k = 0; code == 0 && k < 3; k++) {
        redisReply *r;

        if (k == 0)
            snprintf(key, sizeof(key), "%sjob:%s:repliers", ctl->prefix, job);
        else if (k == 1)
            snprintf(key, sizeof(key), "%sjob:%s:respondents", ctl->prefix, job);
        else if (cJSON_IsString(sid) && cJSON_IsString(wave))
            snprintf(key, sizeof(key), "%ssurvey:%s:%s:resp", ctl->prefix, sid->valuestring,
                     wave->valuestring);
        else
            break;
        argv[0] = k < 2 ? "SMEMBERS" : "HGETALL";
        argv[1] = key;
        r = cr_ctl_cmdv(ctl, 2, argv, NULL, &code);
        if (r == NULL)
            break;
        code = take(r, k < 2 ? NULL : job, ids, n, &cap);
        freeReplyObject(r);
    }
    cJSON_Delete(root);
    return code;
}

struct db_take {
    char ***ids;
    size_t *n, cap;
    int fail;
};

static int db_take_row(void *ud, int ncols, const char *const *vals)
{
    struct db_take *t = ud;

    if (ncols < 1 || vals[0] == NULL || vals[0][0] == '\0')
        return 0;
    if (*t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 1024;
        char **nv = realloc(*t->ids, ncap * sizeof(*nv));

        if (nv == NULL)
            goto fail;
        *t->ids = nv;
        t->cap = ncap;
    }
    (*t->ids)[*t->n] = strdup(vals[0]);
    if ((*t->ids)[*t->n] == NULL)
        goto fail;
    (*t->n)++;
    return 0;
fail:
    t->fail = 1;
    return 1;
}

int cr_ctl_report_responders_db(struct cr_store *db, const char *job, char ***ids, size_t *n)
{
    struct db_take t = {ids, n, 0, 0};
    const char *p[1] = {job};

    *ids = NULL;
    *n = 0;
    if (cr_store_query(db,
                       "SELECT sub FROM replies WHERE job = $1 AND type = 'reply' "
                       "UNION SELECT sub FROM survey_answers WHERE job = $1 "
                       "UNION SELECT sub FROM wave_respondents WHERE job = $1",
                       1, p, db_take_row, &t) != 0) {
        fprintf(stderr,
                "crierctl report: reading job %s's responders from the audit database "
                "failed: %s\n",
                job, cr_store_errmsg(db));
        return CTL_EXIT_FAIL;
    }
    return t.fail ? CTL_EXIT_FAIL : 0;
}
