/* Multi-question surveys in the job document (see survey.h): one strict walk
 * when a job is accepted, so that reading the stored document back when a
 * resident answers can trust its shape. */
#include "survey.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "cr_str.h"
#include "job.h"

struct chk {
    char *code;
    size_t codelen;
    char *msg;
    size_t msglen;
};

static int refuse(struct chk *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct chk *c, const char *code, const char *fmt, ...)
{
    va_list ap;

    snprintf(c->code, c->codelen, "%s", code);
    va_start(ap, fmt);
    vsnprintf(c->msg, c->msglen, fmt, ap);
    va_end(ap);
    return CR_EINVAL;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Refuses any key of obj not in allowed. */
static int only_keys(struct chk *c, const cJSON *obj, const char *path, const char *const *allowed,
                     size_t n)
{
    const cJSON *it;
    size_t k;

    cJSON_ArrayForEach(it, obj)
    {
        for (k = 0; k < n; k++) {
            if (strcmp(it->string, allowed[k]) == 0)
                break;
        }
        if (k == n)
            return refuse(c, "unknown_field", "%s.%.40s: unknown field", path, it->string);
    }
    return 0;
}

static int valid_id(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= CR_MSURVEY_ID_MAX && s[0] != '.' && s[0] != '-' &&
           cr_chars_ok(s, n, CR_CHARS_LETTERS | CR_CHARS_DIGITS, "._-");
}

static int need_id(struct chk *c, const cJSON *obj, const char *path, const char *key)
{
    const cJSON *v = get(obj, key);

    if (v == NULL)
        return refuse(c, "missing_field", "%s.%s: required", path, key);
    if (!cJSON_IsString(v))
        return refuse(c, "bad_type", "%s.%s: must be a string", path, key);
    if (!valid_id(v->valuestring))
        return refuse(c, "bad_survey", "%s.%s: must be 1 to %d characters of A-Z a-z 0-9 . _ -",
                      path, key, CR_MSURVEY_ID_MAX);
    return 0;
}

static int need_text(struct chk *c, const cJSON *obj, const char *path, const char *key, size_t max)
{
    const cJSON *v = get(obj, key);

    if (v == NULL)
        return refuse(c, "missing_field", "%s.%s: required", path, key);
    if (!cJSON_IsString(v))
        return refuse(c, "bad_type", "%s.%s: must be a string", path, key);
    if (v->valuestring[0] == '\0')
        return refuse(c, "bad_survey", "%s.%s: must not be empty", path, key);
    if (strlen(v->valuestring) > max)
        return refuse(c, "too_long", "%s.%s: %zu bytes, over the limit of %zu", path, key,
                      strlen(v->valuestring), max);
    return 0;
}

/* A scale: 2..CR_MSURVEY_SCALE_MAX non-empty strings (exactly want when want > 0). */
static int check_scale(struct chk *c, const cJSON *q, const char *path, size_t want, size_t *n)
{
    const cJSON *sc = get(q, "scale");
    const cJSON *it;
    size_t i = 0;

    if (sc == NULL)
        return refuse(c, "missing_field", "%s.scale: required", path);
    if (!cJSON_IsArray(sc))
        return refuse(c, "bad_type", "%s.scale: must be an array of strings", path);
    *n = (size_t)cJSON_GetArraySize(sc);
    if (*n < 2 || *n > CR_MSURVEY_SCALE_MAX)
        return refuse(c, "bad_survey", "%s.scale: %zu steps given, a question needs 2 to %d", path,
                      *n, CR_MSURVEY_SCALE_MAX);
    if (want > 0 && *n != want)
        return refuse(c, "bad_survey", "%s.scale: %zu steps given, the survey's question has %zu",
                      path, *n, want);
    cJSON_ArrayForEach(it, sc)
    {
        if (!cJSON_IsString(it))
            return refuse(c, "bad_type", "%s.scale[%zu]: must be a string", path, i);
        if (it->valuestring[0] == '\0')
            return refuse(c, "bad_survey", "%s.scale[%zu]: must not be empty", path, i);
        if (strlen(it->valuestring) > CR_MSURVEY_STEP_MAX)
            return refuse(c, "too_long", "%s.scale[%zu]: %zu bytes, over the limit of %d", path, i,
                          strlen(it->valuestring), CR_MSURVEY_STEP_MAX);
        i++;
    }
    return 0;
}

static int check_question(struct chk *c, const cJSON *q, const char *path)
{
    static const char *const keys[] = {"id", "text", "scale", "score"};
    const cJSON *score, *it;
    size_t n, i = 0;
    int rc;

    if (!cJSON_IsObject(q))
        return refuse(c, "bad_type", "%s: must be an object", path);
    rc = only_keys(c, q, path, keys, 4);
    if (rc == 0)
        rc = need_id(c, q, path, "id");
    if (rc == 0)
        rc = need_text(c, q, path, "text", CR_MSURVEY_TEXT_MAX);
    if (rc == 0)
        rc = check_scale(c, q, path, 0, &n);
    if (rc != 0)
        return rc;
    score = get(q, "score");
    if (score == NULL)
        return refuse(c, "missing_field", "%s.score: required (a score 0 to 100 per step)", path);
    if (!cJSON_IsArray(score) || (size_t)cJSON_GetArraySize(score) != n)
        return refuse(c, "bad_survey", "%s.score: must be an array of %zu numbers, one per step",
                      path, n);
    cJSON_ArrayForEach(it, score)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 100 ||
            it->valuedouble != (double)(int)it->valuedouble)
            return refuse(c, "bad_survey", "%s.score[%zu]: must be a whole number 0 to 100", path,
                          i);
        i++;
    }
    return 0;
}

/* message.translations.<lang>.survey of a multi-question survey. */
static int check_translation(struct chk *c, const cJSON *tsv, const cJSON *sv, const char *lang)
{
    static const char *const keys[] = {"questions", "free_text"};
    static const char *const qkeys[] = {"id", "text", "scale"};
    const cJSON *qs = get(sv, "questions");
    const cJSON *tqs = get(tsv, "questions");
    const cJSON *q, *tq, *ft;
    char path[160];
    size_t i = 0, n;
    int rc;

    snprintf(path, sizeof(path), "message.translations.%.20s.survey", lang);
    if (!cJSON_IsObject(tsv))
        return refuse(c, "bad_type", "%s: must be an object", path);
    rc = only_keys(c, tsv, path, keys, 2);
    if (rc != 0)
        return rc;
    if (!cJSON_IsArray(tqs) || cJSON_GetArraySize(tqs) != cJSON_GetArraySize(qs))
        return refuse(c, "bad_survey", "%s.questions: must translate all %d questions, in order",
                      path, cJSON_GetArraySize(qs));
    for (q = qs->child, tq = tqs->child; q != NULL && tq != NULL; q = q->next, tq = tq->next, i++) {
        char qpath[200];
        const cJSON *tid = get(tq, "id");

        snprintf(qpath, sizeof(qpath), "%s.questions[%zu]", path, i);
        if (!cJSON_IsObject(tq))
            return refuse(c, "bad_type", "%s: must be an object", qpath);
        rc = only_keys(c, tq, qpath, qkeys, 3);
        if (rc == 0)
            rc = need_text(c, tq, qpath, "text", CR_MSURVEY_TEXT_MAX);
        if (rc == 0)
            rc = check_scale(c, tq, qpath, (size_t)cJSON_GetArraySize(get(q, "scale")), &n);
        if (rc != 0)
            return rc;
        if (tid != NULL &&
            (!cJSON_IsString(tid) || strcmp(tid->valuestring, get(q, "id")->valuestring) != 0))
            return refuse(c, "bad_survey", "%s.id: must be the survey's question id '%s'", qpath,
                          get(q, "id")->valuestring);
    }
    ft = get(tsv, "free_text");
    if (ft != NULL) {
        char fpath[200];

        snprintf(fpath, sizeof(fpath), "%s.free_text", path);
        if (get(sv, "free_text") == NULL)
            return refuse(c, "bad_survey", "%s: the survey has no free_text to translate", fpath);
        if (!cJSON_IsObject(ft))
            return refuse(c, "bad_type", "%s: must be an object", fpath);
        return need_text(c, ft, fpath, "text", CR_MSURVEY_TEXT_MAX);
    }
    return 0;
}

int cr_msurvey_is_multi(const cJSON *sv)
{
    return cJSON_IsObject(sv) && get(sv, "questions") != NULL;
}

int cr_msurvey_check(const cJSON *sv, const cJSON *trs, char *code, size_t codelen, char *msg,
                     size_t msglen)
{
    static const char *const keys[] = {"id", "wave", "questions", "free_text", "closes_at", "ask"};
    static const char *const fkeys[] = {"id", "text"};
    struct chk c = {code, codelen, msg, msglen};
    const cJSON *qs, *q, *ft, *ca, *ask, *t, *a;
    size_t i = 0, n;
    int64_t ms;
    int rc;

    rc = only_keys(&c, sv, "survey", keys, 6);
    if (rc == 0)
        rc = need_id(&c, sv, "survey", "id");
    if (rc == 0)
        rc = need_id(&c, sv, "survey", "wave");
    if (rc != 0)
        return rc;
    qs = get(sv, "questions");
    if (!cJSON_IsArray(qs))
        return refuse(&c, "bad_type", "survey.questions: must be an array of objects");
    n = (size_t)cJSON_GetArraySize(qs);
    if (n < 1 || n > CR_MSURVEY_QUESTIONS_MAX)
        return refuse(&c, "bad_survey", "survey.questions: %zu given, a survey needs 1 to %d", n,
                      CR_MSURVEY_QUESTIONS_MAX);
    cJSON_ArrayForEach(q, qs)
    {
        char path[64];

        snprintf(path, sizeof(path), "survey.questions[%zu]", i);
        rc = check_question(&c, q, path);
        if (rc != 0)
            return rc;
        for (a = qs->child; a != q; a = a->next) {
            if (strcmp(get(a, "id")->valuestring, get(q, "id")->valuestring) == 0)
                return refuse(&c, "bad_survey", "%s.id: '%s' is used by an earlier question", path,
                              get(q, "id")->valuestring);
        }
        i++;
    }
    ft = get(sv, "free_text");
    if (ft != NULL) {
        if (!cJSON_IsObject(ft))
            return refuse(&c, "bad_type", "survey.free_text: must be an object");
        rc = only_keys(&c, ft, "survey.free_text", fkeys, 2);
        if (rc == 0)
            rc = need_id(&c, ft, "survey.free_text", "id");
        if (rc == 0)
            rc = need_text(&c, ft, "survey.free_text", "text", CR_MSURVEY_TEXT_MAX);
        if (rc != 0)
            return rc;
        cJSON_ArrayForEach(q, qs)
        {
            if (strcmp(get(q, "id")->valuestring, get(ft, "id")->valuestring) == 0)
                return refuse(&c, "bad_survey", "survey.free_text.id: '%s' is a question's id",
                              get(ft, "id")->valuestring);
        }
    }
    ca = get(sv, "closes_at");
    if (ca != NULL && (!cJSON_IsString(ca) || cr_time_parse(ca->valuestring, &ms) != 0))
        return refuse(&c, "bad_time",
                      "survey.closes_at: must be an RFC 3339 time like 2026-12-31T23:59:59Z");
    ask = get(sv, "ask");
    if (ask != NULL) {
        int found = 0;

        if (!cJSON_IsString(ask))
            return refuse(&c, "bad_type", "survey.ask: must be a string");
        cJSON_ArrayForEach(q, qs) found |= strcmp(get(q, "id")->valuestring, ask->valuestring) == 0;
        if (ft != NULL)
            found |= strcmp(get(ft, "id")->valuestring, ask->valuestring) == 0;
        if (!found)
            return refuse(&c, "bad_survey", "survey.ask: '%.64s' is not a question of the survey",
                          ask->valuestring);
    }
    if (!cJSON_IsObject(trs))
        return 0;
    cJSON_ArrayForEach(t, trs)
    {
        const cJSON *tsv = get(t, "survey");

        if (tsv == NULL)
            continue;
        rc = check_translation(&c, tsv, sv, t->string);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int cr_msurvey_answered(const cJSON *ans, char names[][CR_MSURVEY_ID_MAX * 3 + 16], size_t *n,
                        char *code, size_t codelen, char *msg, size_t msglen)
{
    static const char *const keys[] = {"survey", "wave", "question", "options"};
    struct chk c = {code, codelen, msg, msglen};
    const cJSON *opts, *it;
    const char *p = "audience.answered";
    size_t i = 0;
    int rc;

    *n = 0;
    if (!cJSON_IsObject(ans))
        return refuse(&c, "bad_type", "%s: must be an object", p);
    rc = only_keys(&c, ans, p, keys, 4);
    if (rc == 0)
        rc = need_id(&c, ans, p, "survey");
    if (rc == 0)
        rc = need_id(&c, ans, p, "wave");
    if (rc == 0)
        rc = need_id(&c, ans, p, "question");
    if (rc != 0)
        return rc;
    opts = get(ans, "options");
    if (!cJSON_IsArray(opts) || cJSON_GetArraySize(opts) < 1 ||
        cJSON_GetArraySize(opts) > CR_MSURVEY_OPTIONS_MAX)
        return refuse(&c, "bad_survey",
                      "%s.options: must be an array of 1 to %d step numbers (1 = the first step)",
                      p, CR_MSURVEY_OPTIONS_MAX);
    cJSON_ArrayForEach(it, opts)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > CR_MSURVEY_SCALE_MAX ||
            it->valuedouble != (double)(int)it->valuedouble)
            return refuse(&c, "bad_survey", "%s.options[%zu]: must be a step number 1 to %d", p, i,
                          CR_MSURVEY_SCALE_MAX);
        snprintf(names[*n], sizeof(names[0]), "survey:%s:%s:%s:%d", get(ans, "survey")->valuestring,
                 get(ans, "wave")->valuestring, get(ans, "question")->valuestring, it->valueint);
        (*n)++;
        i++;
    }
    return 0;
}

/* ---- reading a stored document -------------------------------------------- */

/* The translation survey of trs best matching lang, and its tag. */
static const cJSON *best_translation(const cJSON *trs, const char *lang, const char **tag)
{
    const cJSON *t, *best = NULL;
    int best_score = 0;

    cJSON_ArrayForEach(t, trs)
    {
        int score = cr_lang_match(lang, t->string);

        if (score > best_score && cJSON_IsObject(get(t, "survey"))) {
            best_score = score;
            best = get(t, "survey");
            *tag = t->string;
        }
    }
    return best;
}

static void fill_scale(struct cr_msq *q, const cJSON *scale)
{
    const cJSON *it;
    size_t i = 0;

    cJSON_ArrayForEach(it, scale)
    {
        if (i < q->nscale && cJSON_IsString(it))
            q->scale[i] = it->valuestring;
        i++;
    }
}

int cr_msurvey_from_doc(const char *doc, size_t len, const char *lang, struct cr_msurvey *out)
{
    cJSON *root = cJSON_ParseWithLength(doc, len);
    int rc;

    if (root == NULL) {
        memset(out, 0, sizeof(*out));
        return CR_EPARSE;
    }
    rc = cr_msurvey_from_json(root, lang, out);
    if (rc != 0) {
        cJSON_Delete(root);
        return rc;
    }
    out->owned = root;
    return 0;
}

int cr_msurvey_from_json(const cJSON *root, const char *lang, struct cr_msurvey *out)
{
    const cJSON *sv, *qs, *q, *it, *msg, *trs, *tsv, *ft, *v;
    const char *tag = NULL;
    size_t i;
    int rc = CR_EPARSE;

    memset(out, 0, sizeof(*out));
    out->root = root;
    if (out->root == NULL)
        goto out;
    sv = get(out->root, "survey");
    rc = CR_ENOTFOUND;
    if (!cr_msurvey_is_multi(sv))
        goto out;
    rc = CR_EPARSE;
    qs = get(sv, "questions");
    v = get(sv, "id");
    out->id = cJSON_IsString(v) ? v->valuestring : NULL;
    v = get(sv, "wave");
    out->wave = cJSON_IsString(v) ? v->valuestring : NULL;
    if (out->id == NULL || out->wave == NULL || !cJSON_IsArray(qs))
        goto out;
    v = get(sv, "closes_at");
    if (cJSON_IsString(v) && cr_time_parse(v->valuestring, &out->closes_ms) != 0)
        goto out;
    cJSON_ArrayForEach(q, qs)
    {
        struct cr_msq *m;
        const cJSON *sc = get(q, "score");

        if (out->nq >= CR_MSURVEY_QUESTIONS_MAX)
            goto out;
        m = &out->q[out->nq];
        v = get(q, "id");
        m->id = cJSON_IsString(v) ? v->valuestring : NULL;
        v = get(q, "text");
        m->text = cJSON_IsString(v) ? v->valuestring : NULL;
        m->nscale = (size_t)cJSON_GetArraySize(get(q, "scale"));
        if (m->id == NULL || m->text == NULL || m->nscale < 1 || m->nscale > CR_MSURVEY_SCALE_MAX)
            goto out;
        fill_scale(m, get(q, "scale"));
        i = 0;
        cJSON_ArrayForEach(it, sc)
        {
            if (i < m->nscale)
                m->score[i] = it->valueint;
            i++;
        }
        out->nq++;
    }
    ft = get(sv, "free_text");
    if (cJSON_IsObject(ft) && cJSON_IsString(get(ft, "id")) && cJSON_IsString(get(ft, "text"))) {
        out->free_id = get(ft, "id")->valuestring;
        out->free_text = get(ft, "text")->valuestring;
    }
    out->ask = 0;
    v = get(sv, "ask");
    if (cJSON_IsString(v)) {
        for (i = 0; i < out->nq && strcmp(out->q[i].id, v->valuestring) != 0; i++)
            ;
        out->ask = i; /* nq: the free text (checked at intake) */
    }
    v = get(get(out->root, "tags"), "crier_survey_job");
    out->via = cJSON_IsString(v) ? v->valuestring : NULL;
    msg = get(out->root, "message");
    v = get(msg, "lang");
    snprintf(out->lang, sizeof(out->lang), "%s",
             cJSON_IsString(v) && strlen(v->valuestring) < sizeof(out->lang) ? v->valuestring
                                                                             : "en");
    trs = get(msg, "translations");
    tsv = (lang != NULL && cJSON_IsObject(trs)) ? best_translation(trs, lang, &tag) : NULL;
    if (tsv != NULL && strlen(tag) < sizeof(out->lang)) {
        snprintf(out->lang, sizeof(out->lang), "%s", tag);
        i = 0;
        cJSON_ArrayForEach(q, get(tsv, "questions"))
        {
            if (i < out->nq) {
                v = get(q, "text");
                if (cJSON_IsString(v))
                    out->q[i].text = v->valuestring;
                fill_scale(&out->q[i], get(q, "scale"));
            }
            i++;
        }
        v = get(get(tsv, "free_text"), "text");
        if (out->free_id != NULL && cJSON_IsString(v))
            out->free_text = v->valuestring;
    }
    rc = 0;
out:
    if (rc != 0)
        cr_msurvey_release(out);
    return rc;
}

void cr_msurvey_release(struct cr_msurvey *s)
{
    cJSON_Delete(s->owned);
    memset(s, 0, sizeof(*s));
}

static int step_of(const cJSON *scale, const char *s, size_t len)
{
    const cJSON *it;
    int i = 1;

    cJSON_ArrayForEach(it, scale)
    {
        size_t k;
        const char *o = cJSON_IsString(it) ? cr_str_trim(it->valuestring, &k) : "";

        if (cJSON_IsString(it) && k == len && len > 0 && strncasecmp(o, s, len) == 0)
            return i;
        i++;
    }
    return 0;
}

int cr_msurvey_match(const struct cr_msurvey *s, size_t qi, const char *text)
{
    const cJSON *sv = get(s->root, "survey");
    const cJSON *trs = get(get(s->root, "message"), "translations");
    const cJSON *q, *t;
    size_t len, i;
    const char *p = cr_str_trim(text ? text : "", &len);
    int all_digits = len > 0 && len <= 2;
    int m;

    if (qi >= s->nq)
        return 0;
    for (i = 0; i < len && all_digits; i++)
        all_digits = isdigit((unsigned char)p[i]) != 0;
    if (all_digits) {
        long v = strtol(p, NULL, 10);

        return (v >= 1 && (size_t)v <= s->q[qi].nscale) ? (int)v : 0;
    }
    q = cJSON_GetArrayItem(get(sv, "questions"), (int)qi);
    m = step_of(get(q, "scale"), p, len);
    cJSON_ArrayForEach(t, trs)
    {
        if (m != 0)
            break;
        q = cJSON_GetArrayItem(get(get(t, "survey"), "questions"), (int)qi);
        m = step_of(get(q, "scale"), p, len);
    }
    return m;
}

/* "<text>\n1 <step>\n2 <step>..." for question q of survey object sv, or
 * the free-text question's text when q is NULL and ft is given. */
static char *sms_text(const cJSON *q, const cJSON *ft)
{
    const cJSON *it;
    size_t cap, n = 0;
    char *s;
    int i = 1;

    if (q == NULL) {
        it = get(ft, "text");
        return cJSON_IsString(it) ? strdup(it->valuestring) : NULL;
    }
    cap = CR_MSURVEY_TEXT_MAX + CR_MSURVEY_SCALE_MAX * (CR_MSURVEY_STEP_MAX + 8) + 8;
    s = malloc(cap);
    if (s == NULL)
        return NULL;
    it = get(q, "text");
    n += (size_t)snprintf(s, cap, "%s", cJSON_IsString(it) ? it->valuestring : "");
    cJSON_ArrayForEach(it, get(q, "scale"))
    {
        if (n < cap && cJSON_IsString(it))
            n += (size_t)snprintf(s + n, cap - n, "\n%d %s", i, it->valuestring);
        i++;
    }
    return s;
}

char *cr_msurvey_followup(const struct cr_msurvey *s, size_t qi, const char *sub, const char *via,
                          const char *priority)
{
    const cJSON *sv = get(s->root, "survey");
    const cJSON *trs = get(get(s->root, "message"), "translations");
    const cJSON *t;
    cJSON *doc = cJSON_CreateObject();
    cJSON *aud, *subs, *ch, *msg, *nsv, *ntrs, *tags;
    char *text = NULL;
    char *out = NULL;

    if (doc == NULL)
        return NULL;
    nsv = cJSON_Duplicate(sv, 1);
    if (nsv == NULL)
        goto out;
    cJSON_DeleteItemFromObjectCaseSensitive(nsv, "ask");
    cJSON_AddItemToObject(doc, "survey", nsv);
    if (cJSON_AddStringToObject(nsv, "ask", qi < s->nq ? s->q[qi].id : s->free_id) == NULL)
        goto out;
    if (priority != NULL && cJSON_AddStringToObject(doc, "priority", priority) == NULL)
        goto out;
    aud = cJSON_AddObjectToObject(doc, "audience");
    subs = aud ? cJSON_AddArrayToObject(aud, "subscribers") : NULL;
    ch = cJSON_AddArrayToObject(doc, "channels");
    msg = cJSON_AddObjectToObject(doc, "message");
    tags = cJSON_AddObjectToObject(doc, "tags");
    if (subs == NULL || ch == NULL || msg == NULL || tags == NULL)
        goto out;
    cJSON_AddItemToArray(subs, cJSON_CreateString(sub));
    cJSON_AddItemToArray(ch, cJSON_CreateString("sms"));
    if (cJSON_AddStringToObject(tags, "crier_survey_job", via) == NULL ||
        cJSON_AddStringToObject(msg, "lang", s->lang) == NULL)
        goto out;
    text = sms_text(qi < s->nq ? cJSON_GetArrayItem(get(sv, "questions"), (int)qi) : NULL,
                    get(sv, "free_text"));
    if (text == NULL || cJSON_AddStringToObject(msg, "sms", text) == NULL)
        goto out;
    free(text);
    text = NULL;
    if (cJSON_IsObject(trs)) {
        ntrs = cJSON_AddObjectToObject(msg, "translations");
        if (ntrs == NULL)
            goto out;
        cJSON_ArrayForEach(t, trs)
        {
            const cJSON *tsv = get(t, "survey");
            cJSON *nt;

            if (!cJSON_IsObject(tsv) || (qi == s->nq && get(tsv, "free_text") == NULL))
                continue;
            text = sms_text(qi < s->nq ? cJSON_GetArrayItem(get(tsv, "questions"), (int)qi) : NULL,
                            get(tsv, "free_text"));
            nt = cJSON_AddObjectToObject(ntrs, t->string);
            if (text == NULL || nt == NULL || cJSON_AddStringToObject(nt, "sms", text) == NULL ||
                !cJSON_AddItemToObject(nt, "survey", cJSON_Duplicate(tsv, 1)))
                goto out;
            free(text);
            text = NULL;
        }
    }
    out = cJSON_PrintUnformatted(doc);
out:
    free(text);
    cJSON_Delete(doc);
    return out;
}
