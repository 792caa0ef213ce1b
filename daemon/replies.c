/* Replies, opt-outs, survey answers and link clicks (see replies.h). Reads
 * (the job a number last got, the job document) come first; then one Lua
 * script call makes every change of one action, so a lost reply or a replay
 * cannot count anything twice. */
#include "replies.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "confirm.h"
#include "audit_trim.h"
#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"
#include "job.h"
#include "links.h"
#include "metrics.h"
#include "page.h"
#include "survey.h"
#include "survey_page.h"
#include "words.h"

#define PAGE_MAX (64 * 1024) /* an HTML page we answer with */
#define DOC_MAX (16 * 1024 * 1024)

/* ---- pure parts ------------------------------------------------------------ */

static int word_is(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

enum cr_reply_kind cr_reply_classify(const char *text)
{
    static const char *const out[] = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"};
    static const char *const in[] = {"START", "UNSTOP"};
    size_t n, i;
    const char *s = cr_str_trim(text ? text : "", &n);

    for (i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
        if (word_is(s, n, out[i]))
            return CR_REPLY_OPTOUT;
    }
    for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        if (word_is(s, n, in[i]))
            return CR_REPLY_OPTIN;
    }
    return CR_REPLY_TEXT;
}

int cr_survey_match(const char *const *options, size_t n, const char *text)
{
    size_t len, i, k;
    const char *s = cr_str_trim(text ? text : "", &len);
    int all_digits = len > 0 && len <= 3;

    for (i = 0; i < len && all_digits; i++)
        all_digits = isdigit((unsigned char)s[i]) != 0;
    if (all_digits) {
        long v = strtol(s, NULL, 10);

        return (v >= 1 && (size_t)v <= n) ? (int)v : 0;
    }
    for (i = 0; i < n; i++) {
        const char *o = cr_str_trim(options[i], &k);

        if (k > 0 && k == len && strncasecmp(o, s, len) == 0)
            return (int)i + 1;
    }
    return 0;
}

void cr_survey_release(struct cr_survey *s)
{
    size_t i;

    free(s->question);
    for (i = 0; i < s->noptions; i++)
        free(s->options[i]);
    for (i = 0; i < s->nsegments; i++)
        free(s->segments[i]);
    memset(s, 0, sizeof(*s));
}

/* The survey object of the translation best matching lang that has one
 * (its tag into tag), or NULL. */
static const cJSON *translated_survey(const cJSON *root, const char *lang, char *tag,
                                      size_t taglen)
{
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");
    const cJSON *trs = cJSON_GetObjectItemCaseSensitive(msg, "translations");
    const cJSON *best = NULL;
    const cJSON *t;
    int best_score = 0;

    if (!cJSON_IsObject(trs))
        return NULL;
    cJSON_ArrayForEach(t, trs)
    {
        const cJSON *sv = cJSON_GetObjectItemCaseSensitive(t, "survey");
        int score = t->string ? cr_lang_match(lang, t->string) : 0;

        if (score > best_score && cJSON_IsObject(sv) && strlen(t->string) < taglen) {
            best_score = score;
            best = sv;
            snprintf(tag, taglen, "%s", t->string);
        }
    }
    return best;
}

int cr_survey_from_doc(const char *doc, size_t len, struct cr_survey *out)
{
    return cr_survey_from_doc_lang(doc, len, NULL, out);
}

/* cr_survey_from_doc_lang of a parsed document (kept by the caller). */
static int survey_from_root(const cJSON *root, const char *lang, struct cr_survey *out)
{
    const cJSON *sv, *q, *opts, *aud, *segs, *it, *msg_lang;
    int rc = CR_EPARSE;

    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(root))
        goto out;
    rc = CR_ENOMEM;
    aud = cJSON_GetObjectItemCaseSensitive(root, "audience");
    segs = cJSON_GetObjectItemCaseSensitive(aud, "segments");
    if (cJSON_IsArray(segs)) {
        cJSON_ArrayForEach(it, segs)
        {
            if (!cJSON_IsString(it) || out->nsegments >= CR_SURVEY_SEGMENTS_MAX)
                continue;
            out->segments[out->nsegments] = strdup(it->valuestring);
            if (out->segments[out->nsegments] == NULL)
                goto out;
            out->nsegments++;
        }
    }
    sv = translated_survey(root, lang, out->lang, sizeof(out->lang));
    if (sv == NULL) {
        sv = cJSON_GetObjectItemCaseSensitive(root, "survey");
        msg_lang = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(root, "message"), "lang");
        snprintf(out->lang, sizeof(out->lang), "%s",
                 cJSON_IsString(msg_lang) && strlen(msg_lang->valuestring) < sizeof(out->lang)
                     ? msg_lang->valuestring
                     : "en");
    }
    q = cJSON_GetObjectItemCaseSensitive(sv, "question");
    opts = cJSON_GetObjectItemCaseSensitive(sv, "options");
    if (cJSON_IsString(q) && cJSON_IsArray(opts)) {
        cJSON_ArrayForEach(it, opts)
        {
            if (!cJSON_IsString(it) || out->noptions >= CR_SURVEY_OPTIONS_MAX)
                continue;
            out->options[out->noptions] = strdup(it->valuestring);
            if (out->options[out->noptions] == NULL)
                goto out;
            out->noptions++;
        }
        if (out->noptions > 0) {
            out->question = strdup(q->valuestring);
            if (out->question == NULL)
                goto out;
        }
    }
    rc = 0;
out:
    if (rc != 0)
        cr_survey_release(out);
    return rc;
}

int cr_survey_from_doc_lang(const char *doc, size_t len, const char *lang,
                            struct cr_survey *out)
{
    cJSON *root = cJSON_ParseWithLength(doc, len);
    int rc = survey_from_root(root, lang, out);

    cJSON_Delete(root);
    return rc;
}

/* The answer in text to the survey object sv (NULL: none), or 0. */
static int match_survey(const cJSON *sv, const char *text)
{
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(sv, "options");
    const char *o[CR_SURVEY_OPTIONS_MAX];
    const cJSON *it;
    size_t n = 0;

    cJSON_ArrayForEach(it, opts)
    {
        if (cJSON_IsString(it) && n < CR_SURVEY_OPTIONS_MAX)
            o[n++] = it->valuestring;
    }
    return n > 0 ? cr_survey_match(o, n, text) : 0;
}

/* cr_survey_match_doc of a parsed document (kept by the caller). */
static int match_root(const cJSON *root, const char *text)
{
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(root, "message");
    const cJSON *trs = cJSON_GetObjectItemCaseSensitive(msg, "translations");
    const cJSON *t;
    int match;

    /* the job's survey first, then each translation's, in document order */
    match = match_survey(cJSON_GetObjectItemCaseSensitive(root, "survey"), text);
    if (match == 0 && cJSON_IsObject(trs)) {
        cJSON_ArrayForEach(t, trs)
        {
            match = match_survey(cJSON_GetObjectItemCaseSensitive(t, "survey"), text);
            if (match != 0)
                break;
        }
    }
    return match;
}

int cr_survey_match_doc(const char *doc, size_t len, const char *text)
{
    cJSON *root = cJSON_ParseWithLength(doc, len);
    int match = match_root(root, text);

    cJSON_Delete(root);
    return match;
}

/* ---- scripts --------------------------------------------------------------- */

/* ARGV: prefix, number. Returns {"<job>/<pos>/<sub>" or "", doc or ""}. */
static const char lookup_lua[] =
    "local last = redis.call('HGET', ARGV[1] .. 'sms:last', ARGV[2])\n"
    "if not last then return {'', ''} end\n"
    "local job = string.match(last, '^([^/]+)/')\n"
    "if not job then return {last, ''} end\n"
    "return {last, redis.call('HGET', ARGV[1] .. 'job:' .. job, 'doc') or ''}\n";

/* ARGV: prefix, window_s, seen key ("" = none), kind (optout/optin/reply/
 * survey), from, text, job, sub, option (0 = none), now_ms, replies maxlen,
 * retention_s, channel, nseg, segments... Returns {done, counted}: done 0
 * for a replay (nothing changed), counted 1 when a survey answer was tallied. */
static const char reply_lua[] = CR_AUDIT_TRIM_LUA
    "local p = ARGV[1]\n"
    "if ARGV[3] ~= '' and not redis.call('SET', ARGV[3], '1', 'NX', 'EX', ARGV[2]) then return {0, 0} end\n"
    "local kind, from, text, job, sub, opt = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])\n"
    "local ret = tonumber(ARGV[12])\n"
    "local segs = {}\n"
    "for i = 1, tonumber(ARGV[14]) do segs[i] = ARGV[14 + i] end\n"
    "local function keep(k) if ret > 0 then redis.call('EXPIRE', k, ret) end end\n"
    /* WhatsApp ("whatsapp:+E164"): its own suppressions, and the message opens
     * the resident's 24-hour service window */
    "local wa = string.match(from, '^whatsapp:(%+%d+)$')\n"
    "local skey, saddr, chn = p .. 'suppress:sms', from, ARGV[13]\n"
    "if wa then skey, saddr, chn = p .. 'suppress:whatsapp', wa, 'whatsapp' end\n"
    "if kind == 'optout' then redis.call('SADD', skey, saddr)\n"
    "elseif kind == 'optin' then redis.call('SREM', skey, saddr) end\n"
    "if wa and sub ~= '' and redis.call('EXISTS', p .. 'sub:' .. sub) == 1 then\n"
    "  redis.call('HSET', p .. 'sub:' .. sub, 'whatsapp_last_inbound', ARGV[10])\n"
    "end\n"
    "local counted = 0\n"
    "local jk = p .. 'job:' .. job\n"
    "if job ~= '' and redis.call('EXISTS', jk) == 1 then\n"
    "  if kind == 'reply' then\n"
    "    redis.call('HINCRBY', jk, 'replies', 1)\n"
    "    if sub ~= '' and redis.call('SADD', jk .. ':repliers', sub) == 1 then\n"
    "      keep(jk .. ':repliers')\n"
    "      redis.call('HINCRBY', jk, 'repliers', 1)\n"
    "      for _, s in ipairs(segs) do\n"
    "        if redis.call('SISMEMBER', p .. 'seg:' .. s, sub) == 1 then\n"
    "          redis.call('HINCRBY', jk .. ':replies:segments', s, 1)\n"
    "          keep(jk .. ':replies:segments')\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if opt > 0 and sub ~= '' and redis.call('SADD', jk .. ':respondents', sub) == 1 then\n"
    "    keep(jk .. ':respondents')\n"
    "    redis.call('HINCRBY', jk .. ':survey', opt, 1)\n"
    "    keep(jk .. ':survey')\n"
    "    redis.call('HINCRBY', jk, 'survey_responses', 1)\n"
    "    for _, s in ipairs(segs) do\n"
    "      if redis.call('SISMEMBER', p .. 'seg:' .. s, sub) == 1 then\n"
    "        redis.call('HINCRBY', jk .. ':survey:' .. s, opt, 1)\n"
    "        keep(jk .. ':survey:' .. s)\n"
    "      end\n"
    "    end\n"
    "    counted = 1\n"
    "  end\n"
    "end\n"
    "local e = {'type', kind, 'channel', chn, 'job', job, 'sub', sub, 't_ms', ARGV[10]}\n"
    "if from ~= '' then table.insert(e, 'from'); table.insert(e, from) end\n"
    "if text ~= '' then table.insert(e, 'body'); table.insert(e, text) end\n"
    "if opt > 0 then\n"
    "  table.insert(e, 'option'); table.insert(e, tostring(opt))\n"
    "  table.insert(e, 'counted'); table.insert(e, tostring(counted))\n"
    "end\n"
    "xadd_kept(p .. 'replies', ARGV[11], unpack(e))\n"
    "return {1, counted}\n";

/* ARGV: prefix, sub, channel, contact field, now_ms, replies maxlen. Returns 0
 * (no such subscriber or no address), 1 (already suppressed), 2 (suppressed now). */
static const char unsubscribe_lua[] = CR_AUDIT_TRIM_LUA
    "local p = ARGV[1]\n"
    "local a = redis.call('HGET', p .. 'sub:' .. ARGV[2], ARGV[4])\n"
    "if not a or a == '' then return 0 end\n"
    "if redis.call('SADD', p .. 'suppress:' .. ARGV[3], a) == 0 then return 1 end\n"
    "xadd_kept(p .. 'replies', ARGV[6], 'type', 'unsubscribe',\n"
    "  'channel', ARGV[3], 'sub', ARGV[2], 'address', a, 't_ms', ARGV[5])\n"
    "return 2\n";

/* ---- the reply script call ------------------------------------------------- */

struct tally {
    const char *seen;
    const char *kind;
    const char *from;
    const char *text;
    const char *job;
    const char *sub;
    int option;
    const char *channel;
    const struct cr_survey *sv;
};

static int run_reply(struct cr_daemon *d, const struct tally *t, cr_redis_cb cb, void *ud)
{
    const char *argv[3 + 14 + CR_SURVEY_SEGMENTS_MAX];
    char num[6][24];
    size_t ns = t->sv ? t->sv->nsegments : 0;
    size_t i, argc = 0;

    snprintf(num[0], sizeof(num[0]), "%ld", d->cfg->webhooks_window_s);
    snprintf(num[1], sizeof(num[1]), "%d", t->option);
    snprintf(num[2], sizeof(num[2]), "%lld", (long long)cr_now_ms());
    snprintf(num[3], sizeof(num[3]), "%ld", d->cfg->receipts_maxlen);
    snprintf(num[4], sizeof(num[4]), "%ld", d->cfg->retention_s);
    argv[argc++] = "EVAL";
    argv[argc++] = reply_lua;
    argv[argc++] = "0";
    argv[argc++] = d->keys.prefix;
    argv[argc++] = num[0];
    argv[argc++] = t->seen ? t->seen : "";
    argv[argc++] = t->kind;
    argv[argc++] = t->from ? t->from : "";
    argv[argc++] = t->text ? t->text : "";
    argv[argc++] = t->job ? t->job : "";
    argv[argc++] = t->sub ? t->sub : "";
    argv[argc++] = num[1];
    argv[argc++] = num[2];
    argv[argc++] = num[3];
    argv[argc++] = num[4];
    argv[argc++] = t->channel;
    snprintf(num[5], sizeof(num[5]), "%zu", ns);
    argv[argc++] = num[5];
    for (i = 0; i < ns; i++)
        argv[argc++] = t->sv->segments[i];
    return cr_redis_argv(d->rc, cb, ud, 0, (int)argc, argv, NULL);
}

/* ---- inbound SMS ----------------------------------------------------------- */

struct inbound {
    struct cr_daemon *d;
    cr_replies_done_cb cb;
    void *ud;
    enum cr_reply_kind kind;
    char *from;
    char *text;
    char *seen;
};

static void inbound_free(struct inbound *in)
{
    free(in->from);
    free(in->text);
    free(in->seen);
    free(in);
}

static void inbound_done(struct inbound *in, int status, const char *outcome)
{
    in->cb(in->ud, status, outcome);
    inbound_free(in);
}

static void on_reply_written(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct inbound *in = ud;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        cr_error("reply from %s: not recorded (%s); the provider will send it again", in->from,
                 reply && reply->str ? reply->str : "redis unavailable");
        inbound_done(in, 503, "unavailable");
        return;
    }
    inbound_done(in, 200, cr_reply_int(reply->element[0]) == 0 ? "replayed" : "accepted");
}

static const char *kind_name(enum cr_reply_kind k)
{
    return k == CR_REPLY_OPTOUT ? "optout" : k == CR_REPLY_OPTIN ? "optin" : "reply";
}

static void on_survey_sms_done(void *ud, int status, const char *outcome)
{
    inbound_done(ud, status, outcome);
}

static void on_sms_confirmed(void *ud, int result)
{
    char *what = ud;

    if (result < 0)
        cr_error("confirmation by SMS %s: not recorded (redis unavailable)", what);
    free(what);
}

/* A confirmation keyword in a reply to a job: the confirmation is counted
 * beside the reply (confirm.c; a job without "confirm" counts none). last
 * is "<job>/<pos>/<sub>". */
static void sms_confirm(struct cr_daemon *d, const char *job, const char *last, const char *sub,
                        const struct cr_survey *sv)
{
    const char *p = strchr(last, '/');
    char *what = strdup(last);
    unsigned long pos = p ? strtoul(p + 1, NULL, 10) : 0;

    if (what == NULL)
        return;
    if (cr_confirm_record(d, job, pos, "sms", sub, "sms", (const char *const *)sv->segments,
                          sv->nsegments, on_sms_confirmed, what) != 0) {
        cr_error("confirmation by SMS %s: not recorded (redis not connected)", last);
        free(what);
    }
}

static void on_looked_up(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct inbound *in = ud;
    struct cr_survey sv;
    struct tally t;
    char job[CR_LINK_ID_MAX + 1] = "";
    const char *sub = "";
    const char *last, *doc;
    cJSON *root = NULL;
    int rc;

    (void)r;
    memset(&sv, 0, sizeof(sv));
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        inbound_done(in, 503, "unavailable");
        return;
    }
    last = reply->element[0]->str;
    doc = reply->element[1]->str;
    {
        const char *s1 = strchr(last, '/');
        const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;

        if (s1 != NULL && s2 != NULL && (size_t)(s1 - last) < sizeof(job)) {
            memcpy(job, last, (size_t)(s1 - last));
            job[s1 - last] = '\0';
            sub = s2 + 1;
        }
    }
    /* the job's document, parsed once for all that follows */
    if (doc[0] != '\0' && reply->element[1]->len < DOC_MAX)
        root = cJSON_ParseWithLength(doc, reply->element[1]->len);
    if (in->kind == CR_REPLY_TEXT && root != NULL) {
        /* a multi-question survey's answer (survey_page.h); else a reply */
        rc = cr_survey_sms(in->d, root, job, sub, in->from, in->text, in->seen,
                           on_survey_sms_done, in);
        if (rc != 0) {
            cJSON_Delete(root);
            if (rc < 0)
                inbound_done(in, 503, "unavailable");
            return;
        }
    }
    if (root != NULL && survey_from_root(root, NULL, &sv) != 0)
        memset(&sv, 0, sizeof(sv));
    memset(&t, 0, sizeof(t));
    t.seen = in->seen;
    t.kind = kind_name(in->kind);
    t.from = in->from;
    t.text = in->text;
    t.job = job;
    t.sub = sub;
    t.channel = "sms";
    t.sv = &sv;
    if (in->kind == CR_REPLY_TEXT && sv.question != NULL)
        t.option = match_root(root, in->text);
    if (in->kind == CR_REPLY_TEXT && job[0] != '\0' &&
        cr_confirm_keyword(in->d->cfg->confirm_keywords, in->text))
        sms_confirm(in->d, job, last, sub, &sv);
    rc = run_reply(in->d, &t, on_reply_written, in);
    cr_survey_release(&sv);
    cJSON_Delete(root);
    if (rc != 0)
        inbound_done(in, 503, "unavailable");
}

void cr_replies_inbound(struct cr_daemon *d, const char *from, const char *text,
                        const char *seen_key, cr_replies_done_cb cb, void *ud)
{
    struct inbound *in = calloc(1, sizeof(*in));
    const char *argv[5];

    if (in == NULL) {
        cb(ud, 503, "unavailable");
        return;
    }
    in->d = d;
    in->cb = cb;
    in->ud = ud;
    in->kind = cr_reply_classify(text);
    in->from = strdup(from);
    in->text = strdup(text);
    in->seen = strdup(seen_key ? seen_key : "");
    if (in->from == NULL || in->text == NULL || in->seen == NULL) {
        inbound_done(in, 503, "unavailable");
        return;
    }
    argv[0] = "EVAL";
    argv[1] = lookup_lua;
    argv[2] = "0";
    argv[3] = d->keys.prefix;
    argv[4] = from;
    if (cr_redis_argv(d->rc, on_looked_up, in, 0, 5, argv, NULL) != 0)
        inbound_done(in, 503, "unavailable");
}

/* ---- pages ---------------------------------------------------------------- */

/* Answers with a page whose body is the fixed word w in language wl, in a
 * paragraph (the log line gets the English words). */
static void page(struct cr_daemon *d, struct cr_httpd_req *req, const char *hook, int status,
                 const char *outcome, const char *wl, enum cr_word w)
{
    char key[96];

    cr_metrics_webhook(d->metrics, hook, outcome);
    if (status >= 400) {
        /* link checkers and scanners try these by the thousand */
        snprintf(key, sizeof key, "link %s %s %d", hook, outcome, status);
        cr_log_repeat(CR_LOG_WARN, key, "link %s %s: %s (%s); answered %d, nothing changed", hook,
                      req->method, outcome, cr_word("en", w), status);
    }
    cr_page_word(req, status, wl, w, NULL, 0);
}

struct link_ctx {
    struct cr_daemon *d;
    struct cr_httpd_req *req;
    struct cr_link link;
    int option;        /* POST /s/: the option number given */
    const char *hook;
    const char *wl;    /* the fixed words' language: the message's, Welsh or English */
};

static const char *contact_field(enum cr_channel ch)
{
    return ch == CR_CH_EMAIL ? "email" : ch == CR_CH_SMS ? "phone" : "push_token";
}

static void on_unsubscribed(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct link_ctx *lc = ud;
    long long v;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        page(lc->d, lc->req, lc->hook, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN);
    } else {
        v = cr_reply_int(reply);
        if (v == 2)
            cr_info("unsubscribe: subscriber %s will get no more %s messages", lc->link.sub,
                    lc->link.arg);
        page(lc->d, lc->req, lc->hook, 200, v == 0 ? "no_address" : "accepted", lc->wl,
             CR_WORD_UNSUBSCRIBED);
    }
    free(lc);
}

static void unsubscribe(struct link_ctx *lc)
{
    static const enum cr_word ask[CR_CH__COUNT] = {CR_WORD_UNSUB_EMAIL, CR_WORD_UNSUB_SMS,
                                                   CR_WORD_UNSUB_PUSH};
    struct cr_daemon *d = lc->d;
    enum cr_channel ch;
    char num[2][24];
    const char *argv[9];

    if (cr_channel_parse(lc->link.arg, &ch) != 0) {
        page(d, lc->req, lc->hook, 403, "bad_token", lc->wl, CR_WORD_NOT_VALID);
        free(lc);
        return;
    }
    if (strcmp(lc->req->method, "POST") != 0) {
        cr_metrics_webhook(d->metrics, lc->hook, "shown");
        cr_page_word(lc->req, 200, lc->wl, ask[ch],
                     "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">",
                     CR_WORD_UNSUB_BUTTON);
        free(lc);
        return;
    }
    snprintf(num[0], sizeof(num[0]), "%lld", (long long)cr_now_ms());
    snprintf(num[1], sizeof(num[1]), "%ld", d->cfg->receipts_maxlen);
    argv[0] = "EVAL";
    argv[1] = unsubscribe_lua;
    argv[2] = "0";
    argv[3] = d->keys.prefix;
    argv[4] = lc->link.sub;
    argv[5] = cr_channel_name(ch);
    argv[6] = contact_field(ch);
    argv[7] = num[0];
    argv[8] = num[1];
    if (cr_redis_argv(d->rc, on_unsubscribed, lc, 0, 9, argv, NULL) != 0) {
        page(d, lc->req, lc->hook, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN);
        free(lc);
    }
}

static void on_answer_written(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct link_ctx *lc = ud;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        page(lc->d, lc->req, lc->hook, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN_ANSWER);
    else
        page(lc->d, lc->req, lc->hook, 200,
             cr_reply_int(reply->element[1]) ? "accepted" : "already_answered", lc->wl,
             cr_reply_int(reply->element[1]) ? CR_WORD_THANKS : CR_WORD_THANKS_AGAIN);
    free(lc);
}

/* The survey form: fixed words in lc->wl, the question and options in the
 * survey's language (marked with its own lang where that differs). */
static void survey_form(struct link_ctx *lc, const struct cr_survey *sv)
{
    struct cr_buf b;
    size_t i;
    int rc;

    cr_metrics_webhook(lc->d->metrics, lc->hook, "shown");
    cr_buf_init(&b, PAGE_MAX);
    rc = cr_page_head(&b, lc->wl);
    if (rc == 0)
        rc = cr_buf_appends(&b, "<form method=\"post\"><fieldset");
    if (rc == 0 && sv->lang[0] != '\0' && strcasecmp(sv->lang, lc->wl) != 0) {
        rc = cr_buf_appends(&b, " lang=\"");
        if (rc == 0)
            rc = cr_page_escaped(&b, sv->lang);
        if (rc == 0)
            rc = cr_buf_appends(&b, "\"");
    }
    if (rc == 0)
        rc = cr_buf_appends(&b, "><legend>");
    if (rc == 0)
        rc = cr_page_escaped(&b, sv->question);
    if (rc == 0)
        rc = cr_buf_appends(&b, "</legend>");
    for (i = 0; rc == 0 && i < sv->noptions; i++) {
        rc = cr_buf_appendf(&b, "<p><label><input type=\"radio\" name=\"option\" value=\"%zu\"%s> ",
                            i + 1, i == 0 ? " required" : "");
        if (rc == 0)
            rc = cr_page_escaped(&b, sv->options[i]);
        if (rc == 0)
            rc = cr_buf_appends(&b, "</label></p>");
    }
    if (rc == 0)
        rc = cr_buf_appends(&b, "</fieldset><button type=\"submit\">");
    if (rc == 0)
        rc = cr_page_escaped(&b, cr_word(lc->wl, CR_WORD_SEND));
    if (rc == 0)
        rc = cr_buf_appends(&b, "</button></form>");
    if (rc == 0)
        rc = cr_buf_appends(&b, CR_PAGE_TAIL);
    cr_httpd_respond(lc->req, 200, "text/html; charset=utf-8", NULL, b.data, rc == 0 ? b.len : 0);
    cr_buf_release(&b);
}

static void on_survey_doc(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct link_ctx *lc = ud;
    struct cr_survey sv;
    struct tally t;
    cJSON *root = NULL;
    int rc;

    (void)r;
    memset(&sv, 0, sizeof(sv));
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        page(lc->d, lc->req, lc->hook, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN_SURVEY);
        goto done;
    }
    /* one parse: the multi-question page takes the document, else the one question */
    if (reply->type == REDIS_REPLY_STRING && reply->len < DOC_MAX)
        root = cJSON_ParseWithLength(reply->str, reply->len);
    if (cr_msurvey_is_multi(cJSON_GetObjectItemCaseSensitive(root, "survey"))) {
        cr_survey_page(lc->d, lc->req, &lc->link, root);
        goto done;
    }
    rc = root != NULL ? survey_from_root(root, lc->link.lang, &sv) : CR_EPARSE;
    cJSON_Delete(root);
    if (rc != 0 || sv.question == NULL) {
        page(lc->d, lc->req, lc->hook, 404, "no_survey", lc->wl, CR_WORD_CLOSED);
        goto done;
    }
    /* one language on the page: the survey's, its fixed words Welsh or English */
    lc->wl = cr_words_lang(sv.lang);
    if (strcmp(lc->req->method, "POST") != 0) {
        survey_form(lc, &sv);
        goto done;
    }
    if (lc->option < 1 || (size_t)lc->option > sv.noptions) {
        page(lc->d, lc->req, lc->hook, 400, "malformed", lc->wl, CR_WORD_CHOOSE);
        goto done;
    }
    memset(&t, 0, sizeof(t));
    t.kind = "survey";
    t.job = lc->link.arg;
    t.sub = lc->link.sub;
    t.option = lc->option;
    t.channel = "link";
    t.sv = &sv;
    if (run_reply(lc->d, &t, on_answer_written, lc) == 0) {
        cr_survey_release(&sv);
        return; /* lc is the script call's now */
    }
    page(lc->d, lc->req, lc->hook, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN_ANSWER);
done:
    cr_survey_release(&sv);
    free(lc);
}

static void survey(struct link_ctx *lc)
{
    char key[CR_KEY_MAX];

    if (strcmp(lc->req->method, "POST") == 0) {
        struct cr_form f;
        const char *v;
        char *end = NULL;
        long n = 0;

        if (cr_form_parse(lc->req->body.data ? lc->req->body.data : "", lc->req->body.len, &f) != 0) {
            page(lc->d, lc->req, lc->hook, 400, "malformed", lc->wl, CR_WORD_CHOOSE);
            free(lc);
            return;
        }
        v = cr_form_get(&f, "option");
        if (v != NULL && isdigit((unsigned char)v[0])) {
            errno = 0;
            n = strtol(v, &end, 10);
            if (errno != 0 || *end != '\0' || n > CR_SURVEY_OPTIONS_MAX)
                n = 0;
        }
        cr_form_release(&f);
        /* no option may still be a multi-question survey's answer: the job's
         * survey decides (on_survey_doc) */
        lc->option = n < 1 ? 0 : (int)n;
    }
    if (cr_key_for(&lc->d->keys, "job", lc->link.arg, key, sizeof(key)) != 0 ||
        cr_redis_cmd(lc->d->rc, on_survey_doc, lc, 0, "HGET %s doc", key) != 0) {
        page(lc->d, lc->req, lc->hook, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN_SURVEY);
        free(lc);
    }
}

void cr_replies_link(struct cr_daemon *d, struct cr_httpd_req *req)
{
    const char *path = req->path;
    int unsub = strncmp(path, "/u/", 3) == 0;
    const char *hook = unsub ? "unsubscribe" : "survey";
    const char *token = path + 3;
    struct link_ctx *lc;
    int rc;

    if (d->cfg->links_secret == NULL) {
        page(d, req, hook, 404, "not_configured", "en", CR_WORD_NOT_VALID);
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0 &&
        strcmp(req->method, "POST") != 0) {
        page(d, req, hook, 405, "bad_method", "en", CR_WORD_BAD_METHOD);
        return;
    }
    lc = calloc(1, sizeof(*lc));
    if (lc == NULL) {
        page(d, req, hook, 503, "unavailable", "en", CR_WORD_TRY_AGAIN);
        return;
    }
    lc->d = d;
    lc->req = req;
    lc->hook = hook;
    rc = cr_link_verify(d->cfg->links_secret, token, strlen(token), cr_now_ms() / 1000, &lc->link);
    if (rc == 0 && (char)lc->link.kind != (unsub ? 'u' : 's'))
        rc = CR_EPARSE;
    /* the signature is checked before the language is read: an expired link's
     * page is in its language, a forged one's in English */
    lc->wl = cr_words_lang(rc == 0 || rc == CR_ETIMEOUT ? lc->link.lang : NULL);
    if (rc != 0) {
        page(d, req, hook, 403, rc == CR_ETIMEOUT ? "expired" : "bad_token", lc->wl,
             rc == CR_ETIMEOUT ? CR_WORD_EXPIRED : CR_WORD_NOT_VALID);
        free(lc);
        return;
    }
    if (unsub)
        unsubscribe(lc);
    else
        survey(lc);
}
