/* Answers to multi-question surveys (see survey_page.h): the signed page
 * /s/<token> with every question at once, and SMS replies one question at a
 * time. Each answer is one Lua script call that keeps the resident's last
 * answer per question of the wave, so a replay or a change of mind never
 * counts anyone twice. */
#include "survey_page.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit_trim.h"
#include "cr_buf.h"
#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"
#include "metrics.h"
#include "page.h"
#include "survey.h"
#include "words.h"

#define PAGE_MAX (256 * 1024) /* a page with 20 questions of 10 steps fits */

/* ARGV: prefix, survey, wave, sub, job, channel, now_ms, seen key ("" none),
 * window_s, replies maxlen, follow-up job document ("" none), free-text
 * mode ("" keep, "set", "del"), free text (an SMS: its body, whatever the
 * mode), from ("" for the page), npairs, then question id and step number
 * pairs. Returns {done, changed}: done 0 for a replay. */
static const char answer_lua[] = CR_AUDIT_TRIM_LUA
    "local p, S, W, sub = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "if ARGV[8] ~= '' and not redis.call('SET', ARGV[8], '1', 'NX', 'EX', ARGV[9]) then return {0, 0} end\n"
    "local b = p .. 'survey:' .. S .. ':' .. W\n"
    "local seg = p .. 'seg:survey:' .. S .. ':' .. W .. ':'\n"
    "local n = tonumber(ARGV[15])\n"
    "local changed, given = 0, {}\n"
    "for i = 0, n - 1 do\n"
    "  local q, o = ARGV[16 + 2 * i], ARGV[17 + 2 * i]\n"
    "  local old = redis.call('HGET', b .. ':q:' .. q, sub)\n"
    "  if old ~= o then\n"
    "    redis.call('HSET', b .. ':q:' .. q, sub, o)\n"
    "    if old then redis.call('SREM', seg .. q .. ':' .. old, sub) end\n"
    "    redis.call('SADD', seg .. q .. ':' .. o, sub)\n"
    "    changed = changed + 1\n"
    "  end\n"
    "  given[#given + 1] = q .. '=' .. o\n"
    "end\n"
    "if ARGV[12] == 'set' then\n"
    "  if redis.call('HGET', b .. ':text', sub) ~= ARGV[13] then\n"
    "    redis.call('HSET', b .. ':text', sub, ARGV[13]); changed = changed + 1\n"
    "  end\n"
    "elseif ARGV[12] == 'del' then changed = changed + redis.call('HDEL', b .. ':text', sub) end\n"
    "redis.call('HSETNX', b .. ':resp', sub, ARGV[5])\n"
    "local e = {'type', 'survey', 'channel', ARGV[6], 'job', ARGV[5], 'sub', sub, 'survey', S,\n"
    "  'wave', W, 'answers', table.concat(given, ','), 'changed', tostring(changed), 't_ms', ARGV[7]}\n"
    "if ARGV[12] == 'set' then e[#e + 1] = 'text'; e[#e + 1] = ARGV[13]\n"
    "elseif ARGV[12] == 'del' then e[#e + 1] = 'text_cleared'; e[#e + 1] = '1' end\n"
    "if ARGV[14] ~= '' then\n"
    "  e[#e + 1] = 'from'; e[#e + 1] = ARGV[14]\n"
    "  if ARGV[13] ~= '' then e[#e + 1] = 'body'; e[#e + 1] = ARGV[13] end\n"
    "end\n"
    "xadd_kept(p .. 'replies', ARGV[10], unpack(e))\n"
    "if ARGV[11] ~= '' then redis.call('XADD', p .. 'jobs', '*', 'job', ARGV[11]) end\n"
    "return {1, changed}\n";

/* ARGV: prefix, survey, wave, sub, question ids... Returns the resident's
 * step per question ("" none) then the free text ("" none). */
static const char current_lua[] =
    "local b = ARGV[1] .. 'survey:' .. ARGV[2] .. ':' .. ARGV[3]\n"
    "local out = {}\n"
    "for i = 5, #ARGV do out[#out + 1] = redis.call('HGET', b .. ':q:' .. ARGV[i], ARGV[4]) or '' end\n"
    "out[#out + 1] = redis.call('HGET', b .. ':text', ARGV[4]) or ''\n"
    "return out\n";

struct answer {
    const char *sub;
    const char *job;
    const char *channel;
    const char *seen;
    const char *followup;
    const char *text_mode;
    const char *text;
    const char *from;
    const char *qid[CR_MSURVEY_QUESTIONS_MAX];
    int step[CR_MSURVEY_QUESTIONS_MAX];
    size_t n;
};

static int run_answer(struct cr_daemon *d, const struct cr_msurvey *s, const struct answer *a,
                      cr_redis_cb cb, void *ud)
{
    const char *argv[18 + 2 * CR_MSURVEY_QUESTIONS_MAX];
    char num[5][24];
    char steps[CR_MSURVEY_QUESTIONS_MAX][8];
    size_t i, argc = 0;

    snprintf(num[0], sizeof(num[0]), "%lld", (long long)cr_now_ms());
    snprintf(num[1], sizeof(num[1]), "%ld", d->cfg->webhooks_window_s);
    snprintf(num[2], sizeof(num[2]), "%ld", d->cfg->receipts_maxlen);
    snprintf(num[3], sizeof(num[3]), "%zu", a->n);
    argv[argc++] = "EVAL";
    argv[argc++] = answer_lua;
    argv[argc++] = "0";
    argv[argc++] = d->keys.prefix;
    argv[argc++] = s->id;
    argv[argc++] = s->wave;
    argv[argc++] = a->sub;
    argv[argc++] = a->job;
    argv[argc++] = a->channel;
    argv[argc++] = num[0];
    argv[argc++] = a->seen ? a->seen : "";
    argv[argc++] = num[1];
    argv[argc++] = num[2];
    argv[argc++] = a->followup ? a->followup : "";
    argv[argc++] = a->text_mode;
    argv[argc++] = a->text ? a->text : "";
    argv[argc++] = a->from ? a->from : "";
    argv[argc++] = num[3];
    for (i = 0; i < a->n; i++) {
        snprintf(steps[i], sizeof(steps[i]), "%d", a->step[i]);
        argv[argc++] = a->qid[i];
        argv[argc++] = steps[i];
    }
    return cr_redis_argv(d->rc, cb, ud, 0, (int)argc, argv, NULL);
}

/* ---- the page ------------------------------------------------------------- */

struct page_ctx {
    struct cr_daemon *d;
    struct cr_httpd_req *req;
    struct cr_msurvey s;
    cJSON *root; /* the job document s points into */
    char sub[CR_LINK_ID_MAX + 1];
    char job[CR_LINK_ID_MAX + 1];
    const char *wl;
};

static void page_ctx_free(struct page_ctx *pc)
{
    cr_msurvey_release(&pc->s);
    cJSON_Delete(pc->root);
    free(pc);
}

/* A page with one fixed word in a paragraph. */
static void word_page(struct page_ctx *pc, int status, const char *outcome, enum cr_word w)
{
    cr_metrics_webhook(pc->d->metrics, "survey", outcome);
    if (status >= 400)
        cr_log_repeat(CR_LOG_WARN, "link survey multi", "link survey %s job %s: %s (%s); "
                      "answered %d, nothing changed", pc->req->method, pc->job, outcome,
                      cr_word("en", w), status);
    cr_page_word(pc->req, status, pc->wl, w, NULL, 0);
}

/* The form: one fieldset per question (its text the legend, each step a
 * labelled radio button, the current answer checked), then the free-text
 * question; a plain POST to the same address, no script. */
static void form_page(struct page_ctx *pc, const redisReply *cur)
{
    const struct cr_msurvey *s = &pc->s;
    int other_lang = strcasecmp(s->lang, pc->wl) != 0;
    struct cr_buf b;
    size_t i, k;
    int rc;

    cr_metrics_webhook(pc->d->metrics, "survey", "shown");
    cr_buf_init(&b, PAGE_MAX);
    rc = cr_page_head(&b, pc->wl);
    if (rc == 0)
        rc = cr_buf_appends(&b, "<form method=\"post\">");
    if (rc == 0 && other_lang) {
        rc = cr_buf_appends(&b, "<div lang=\"");
        if (rc == 0)
            rc = cr_page_escaped(&b, s->lang);
        if (rc == 0)
            rc = cr_buf_appends(&b, "\">");
    }
    for (i = 0; rc == 0 && i < s->nq; i++) {
        const struct cr_msq *q = &s->q[i];
        const char *now = (cur && i < cur->elements && cur->element[i]->type == REDIS_REPLY_STRING)
                              ? cur->element[i]->str
                              : "";

        rc = cr_buf_appends(&b, "<fieldset><legend>");
        if (rc == 0)
            rc = cr_page_escaped(&b, q->text);
        if (rc == 0)
            rc = cr_buf_appends(&b, "</legend>");
        for (k = 0; rc == 0 && k < q->nscale; k++) {
            char v[24];

            snprintf(v, sizeof(v), "%zu", k + 1);
            rc = cr_buf_appendf(&b, "<p><label><input type=\"radio\" name=\"q.%s\" value=\"%s\"%s> ",
                                q->id, v, strcmp(now, v) == 0 ? " checked" : "");
            if (rc == 0)
                rc = cr_page_escaped(&b, q->scale[k] ? q->scale[k] : v);
            if (rc == 0)
                rc = cr_buf_appends(&b, "</label></p>");
        }
        if (rc == 0)
            rc = cr_buf_appends(&b, "</fieldset>");
    }
    if (rc == 0 && s->free_id != NULL) {
        const char *now = (cur && s->nq < cur->elements &&
                           cur->element[s->nq]->type == REDIS_REPLY_STRING)
                              ? cur->element[s->nq]->str
                              : "";

        rc = cr_buf_appends(&b, "<p><label for=\"free-text\">");
        if (rc == 0)
            rc = cr_page_escaped(&b, s->free_text);
        if (rc == 0)
            rc = cr_buf_appendf(&b, "</label><br><textarea id=\"free-text\" name=\"free\" "
                                    "rows=\"5\" cols=\"60\" maxlength=\"%d\">",
                                CR_MSURVEY_ANSWER_MAX);
        if (rc == 0)
            rc = cr_page_escaped(&b, now);
        if (rc == 0)
            rc = cr_buf_appends(&b, "</textarea></p>");
    }
    if (rc == 0 && other_lang)
        rc = cr_buf_appends(&b, "</div>");
    if (rc == 0)
        rc = cr_buf_appends(&b, "<p><button type=\"submit\">");
    if (rc == 0)
        rc = cr_page_escaped(&b, cr_word(pc->wl, CR_WORD_SEND));
    if (rc == 0)
        rc = cr_buf_appends(&b, "</button></p></form>" CR_PAGE_TAIL);
    cr_httpd_respond(pc->req, 200, "text/html; charset=utf-8", NULL, b.data, rc == 0 ? b.len : 0);
    cr_buf_release(&b);
}

static void on_current(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct page_ctx *pc = ud;

    (void)r;
    /* without Redis the page is still shown, with nothing checked */
    form_page(pc, reply && reply->type == REDIS_REPLY_ARRAY ? reply : NULL);
    page_ctx_free(pc);
}

static void on_page_answer(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct page_ctx *pc = ud;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        cr_error("survey %s wave %s: answer of %s by link not recorded (%s); the resident is "
                 "asked to try again", pc->s.id, pc->s.wave, pc->sub,
                 reply && reply->str ? reply->str : "redis unavailable");
        word_page(pc, 503, "unavailable", CR_WORD_TRY_AGAIN_ANSWER);
    } else {
        word_page(pc, 200, cr_reply_int(reply->element[1]) > 0 ? "accepted" : "unchanged",
                  CR_WORD_THANKS);
    }
    page_ctx_free(pc);
}

/* Reads the POSTed answers into a: q.<id> = step for any question, free =
 * the free text. Returns the number of answers given, or -1 for a step out
 * of range or a form that cannot be read. */
static int read_form(struct page_ctx *pc, struct cr_form *f, struct answer *a)
{
    const struct cr_msurvey *s = &pc->s;
    const struct cr_httpd_req *req = pc->req;
    const char *v;
    char name[CR_MSURVEY_ID_MAX + 3];
    size_t i;

    if (cr_form_parse(req->body.data ? req->body.data : "", req->body.len, f) != 0)
        return -1;
    for (i = 0; i < s->nq; i++) {
        char *end = NULL;
        long n;

        snprintf(name, sizeof(name), "q.%s", s->q[i].id);
        v = cr_form_get(f, name);
        if (v == NULL || v[0] == '\0')
            continue;
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno != 0 || *end != '\0' || n < 1 || (size_t)n > s->q[i].nscale)
            return -1;
        a->qid[a->n] = s->q[i].id;
        a->step[a->n] = (int)n;
        a->n++;
    }
    v = s->free_id ? cr_form_get(f, "free") : NULL;
    if (v != NULL) {
        size_t len = strlen(v);

        if (len > CR_MSURVEY_ANSWER_MAX || cr_utf8_invalid_at(v) >= 0)
            return -1;
        a->text_mode = len > 0 ? "set" : "del";
        a->text = v;
    }
    return (int)a->n + (v != NULL && v[0] != '\0');
}

void cr_survey_page(struct cr_daemon *d, struct cr_httpd_req *req, const struct cr_link *link,
                    cJSON *root)
{
    struct page_ctx *pc = calloc(1, sizeof(*pc));
    struct cr_form f;
    struct answer a;
    int n;

    if (pc == NULL) {
        cJSON_Delete(root);
        cr_httpd_respond(req, 503, "text/plain; charset=utf-8", NULL, "unavailable\n", 12);
        return;
    }
    pc->d = d;
    pc->req = req;
    pc->root = root;
    pc->wl = cr_words_lang(link->lang);
    snprintf(pc->sub, sizeof(pc->sub), "%s", link->sub);
    snprintf(pc->job, sizeof(pc->job), "%s", link->arg);
    if (cr_msurvey_from_json(root, link->lang, &pc->s) != 0) {
        word_page(pc, 404, "no_survey", CR_WORD_CLOSED);
        page_ctx_free(pc);
        return;
    }
    pc->wl = cr_words_lang(pc->s.lang);
    if (pc->s.closes_ms > 0 && cr_now_ms() >= pc->s.closes_ms) {
        word_page(pc, 410, "closed", CR_WORD_CLOSED);
        page_ctx_free(pc);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        const char *argv[8 + CR_MSURVEY_QUESTIONS_MAX];
        size_t i, argc = 0;

        argv[argc++] = "EVAL";
        argv[argc++] = current_lua;
        argv[argc++] = "0";
        argv[argc++] = d->keys.prefix;
        argv[argc++] = pc->s.id;
        argv[argc++] = pc->s.wave;
        argv[argc++] = pc->sub;
        for (i = 0; i < pc->s.nq; i++)
            argv[argc++] = pc->s.q[i].id;
        if (cr_redis_argv(d->rc, on_current, pc, 0, (int)argc, argv, NULL) != 0) {
            form_page(pc, NULL);
            page_ctx_free(pc);
        }
        return;
    }
    memset(&a, 0, sizeof(a));
    memset(&f, 0, sizeof(f));
    a.text_mode = "";
    n = read_form(pc, &f, &a);
    if (n <= 0) {
        word_page(pc, 400, "malformed", CR_WORD_CHOOSE);
        cr_form_release(&f);
        page_ctx_free(pc);
        return;
    }
    a.sub = pc->sub;
    a.job = pc->s.via ? pc->s.via : pc->job;
    a.channel = "link";
    if (run_answer(d, &pc->s, &a, on_page_answer, pc) != 0) {
        word_page(pc, 503, "unavailable", CR_WORD_TRY_AGAIN_ANSWER);
        page_ctx_free(pc);
    }
    cr_form_release(&f); /* the script call copied its arguments */
}

/* ---- SMS ------------------------------------------------------------------ */

struct sms_ctx {
    cr_replies_done_cb cb;
    void *ud;
    char from[64];
};

static void on_sms_answer(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct sms_ctx *sc = ud;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        cr_error("survey answer by SMS from %s: not recorded (%s); the provider will send it "
                 "again", sc->from, reply && reply->str ? reply->str : "redis unavailable");
        sc->cb(sc->ud, 503, "unavailable");
    } else {
        sc->cb(sc->ud, 200, cr_reply_int(reply->element[0]) == 0 ? "replayed" : "accepted");
    }
    free(sc);
}

int cr_survey_sms(struct cr_daemon *d, const cJSON *root, const char *job, const char *sub,
                  const char *from, const char *text, const char *seen, cr_replies_done_cb cb,
                  void *ud)
{
    struct cr_msurvey s;
    struct answer a;
    struct sms_ctx *sc = NULL;
    const cJSON *prio;
    char *followup = NULL;
    size_t next;
    int step = 0;
    int rc = 0;

    if (sub[0] == '\0' || cr_msurvey_from_json(root, NULL, &s) != 0)
        return 0;
    if (s.closes_ms > 0 && cr_now_ms() >= s.closes_ms)
        goto out; /* a reply to a closed wave is an ordinary reply */
    memset(&a, 0, sizeof(a));
    a.text_mode = "";
    if (s.ask < s.nq) {
        step = cr_msurvey_match(&s, s.ask, text);
        if (step == 0)
            goto out;
        a.qid[0] = s.q[s.ask].id;
        a.step[0] = step;
        a.n = 1;
        a.text = text; /* the SMS body, for crier:replies only (mode "") */
    } else if (s.free_id != NULL && strlen(text) <= CR_MSURVEY_ANSWER_MAX && text[0] != '\0') {
        a.text_mode = "set";
        a.text = text;
    } else {
        goto out;
    }
    next = s.ask + 1;
    prio = cJSON_GetObjectItemCaseSensitive(s.root, "priority");
    if (next < s.nq || (next == s.nq && s.free_id != NULL)) {
        followup = cr_msurvey_followup(&s, next, sub, s.via ? s.via : job,
                                       cJSON_IsString(prio) ? prio->valuestring : NULL);
        if (followup == NULL) {
            rc = CR_ENOMEM;
            goto out;
        }
    }
    sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    sc->cb = cb;
    sc->ud = ud;
    snprintf(sc->from, sizeof(sc->from), "%s", from);
    a.sub = sub;
    a.job = s.via ? s.via : job;
    a.channel = "sms";
    a.seen = seen;
    a.followup = followup;
    a.from = from;
    rc = run_answer(d, &s, &a, on_sms_answer, sc);
    if (rc == 0) {
        sc = NULL;
        rc = 1;
    }
out:
    free(sc);
    cJSON_free(followup);
    cr_msurvey_release(&s);
    return rc;
}
