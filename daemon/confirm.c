/* Confirmations (see confirm.h): the keyword match and the one script call
 * that counts a confirmation once per (job, resident). */
#include "confirm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"
#include "cr_log.h"
#include "daemon.h"
#include "httpd.h"
#include "keys.h"
#include "links.h"
#include "metrics.h"
#include "page.h"
#include "replies.h"
#include "scripts.h"
#include "audit_trim.h"
#include "webhooks.h"
#include "words.h"

#define DEFAULT_KEYWORDS "YES,Y,OK"
#define SEGS_MAX 64
#define DOC_MAX (16 * 1024 * 1024)

const char cr_confirm_lua[] = CR_AUDIT_TRIM_LUA
    "local function confirm(p, job, pos, ch, sub, via, now, ret, maxlen, segs)\n"
    "  local jk = p .. 'job:' .. job\n"
    "  if job == '' or redis.call('TYPE', jk)['ok'] ~= 'hash' then return 0 end\n"
    "  if redis.call('HGET', jk, 'confirm') ~= '1' then return 0 end\n"
    "  if redis.call('SETBIT', jk .. ':confirmed', tonumber(pos), 1) == 1 then return 1 end\n"
    "  redis.call('SETBIT', jk .. ':reached', tonumber(pos), 1)\n"
    "  redis.call('HINCRBY', jk, 'confirmed', 1)\n"
    "  redis.call('HINCRBY', jk, 'confirmed:' .. ch, 1)\n"
    "  redis.call('HINCRBY', jk, 'confirmed_via:' .. via, 1)\n"
    "  if sub ~= '' then\n"
    "    for _, s in ipairs(segs) do\n"
    "      if redis.call('SISMEMBER', p .. 'seg:' .. s, sub) == 1 then\n"
    "        redis.call('HINCRBY', jk .. ':confirmed:segments', s, 1)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if tonumber(ret) > 0 then\n"
    "    redis.call('EXPIRE', jk .. ':confirmed', ret); redis.call('EXPIRE', jk .. ':reached', ret)\n"
    "    if sub ~= '' then redis.call('EXPIRE', jk .. ':confirmed:segments', ret) end\n"
    "  end\n"
    "  xadd_kept(p .. 'replies', maxlen, 'type', 'confirm', 'channel', via,\n"
    "    'job', job, 'sub', sub, 'pos', pos, 'message_channel', ch, 't_ms', now)\n"
    "  return 2\n"
    "end\n";

/* ARGV: prefix, job, pos, channel, sub, via, now, retention_s, maxlen, segments... */
const char cr_confirm_call_lua[] =
    "local segs = {}\n"
    "for i = 10, #ARGV do segs[#segs + 1] = ARGV[i] end\n"
    "return confirm(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], segs)\n";

int cr_confirm_keyword(const char *keywords, const char *text)
{
    const char *k = keywords ? keywords : DEFAULT_KEYWORDS;
    size_t n;

    while (*text && isspace((unsigned char)*text))
        text++;
    n = strlen(text);
    while (n > 0 && (isspace((unsigned char)text[n - 1]) || text[n - 1] == '.' ||
                     text[n - 1] == '!'))
        n--;
    while (*k) {
        const char *end = strchr(k, ',');
        size_t len = end ? (size_t)(end - k) : strlen(k);

        while (len > 0 && isspace((unsigned char)*k)) {
            k++;
            len--;
        }
        while (len > 0 && isspace((unsigned char)k[len - 1]))
            len--;
        if (len > 0 && len == n && strncasecmp(k, text, n) == 0)
            return 1;
        if (end == NULL)
            break;
        k = end + 1;
    }
    return 0;
}

#define REC_ARGS (9 + SEGS_MAX)

/* A confirmation on its way. */
struct rec_ctx {
    cr_confirm_done_cb cb;
    void *ud;
};

static void on_recorded(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct rec_ctx *rc = ud;

    (void)r;
    rc->cb(rc->ud, reply && reply->type == REDIS_REPLY_INTEGER ? (int)reply->integer : -1);
    free(rc);
}

int cr_confirm_record(struct cr_daemon *d, const char *job, unsigned long pos,
                      const char *channel, const char *sub, const char *via,
                      const char *const *segs, size_t n, cr_confirm_done_cb cb, void *ud)
{
    const char *args[REC_ARGS];
    char num[4][24];
    struct rec_ctx *rc;
    size_t i, argc = 0;
    int err;

    if (n > SEGS_MAX)
        n = SEGS_MAX;
    snprintf(num[0], sizeof(num[0]), "%lu", pos);
    snprintf(num[1], sizeof(num[1]), "%lld", (long long)cr_now_ms());
    snprintf(num[2], sizeof(num[2]), "%ld", d->cfg->retention_s);
    snprintf(num[3], sizeof(num[3]), "%ld", d->cfg->receipts_maxlen);
    args[argc++] = d->keys.prefix;
    args[argc++] = job;
    args[argc++] = num[0];
    args[argc++] = channel;
    args[argc++] = sub ? sub : "";
    args[argc++] = via;
    args[argc++] = num[1];
    args[argc++] = num[2];
    args[argc++] = num[3];
    for (i = 0; i < n; i++)
        args[argc++] = segs[i];
    rc = malloc(sizeof(*rc));
    if (rc == NULL)
        return CR_ENOMEM;
    rc->cb = cb;
    rc->ud = ud;
    /* once: an SMS confirmation is not sent again, so a server that lost the
     * scripts gets this one with the script's text */
    err = cr_script_call_once(d->rc, CR_SCRIPT_CONFIRM, 0, (int)argc, args, on_recorded, rc);
    if (err != 0)
        free(rc);
    return err;
}

/* ---- the /c/<token> page ------------------------------------------------ */

struct link_ctx {
    struct cr_daemon *d;
    struct cr_httpd_req *req;
    struct cr_link link;
    struct cr_ref ref;
    const char *wl; /* the fixed words' language */
};

/* Answers with a page in language wl: word w in a paragraph, and with
 * button set the form that confirms. */
static void page(struct cr_daemon *d, struct cr_httpd_req *req, int status, const char *outcome,
                 const char *wl, enum cr_word w, int button)
{
    cr_metrics_webhook(d->metrics, "confirm", outcome);
    if (status >= 400)
        cr_log_repeat(CR_LOG_WARN, outcome, "link confirm %s: %s (%s); answered %d, nothing changed",
                      req->method, outcome, cr_word("en", w), status);
    cr_page_word(req, status, wl, w, button ? "" : NULL, CR_WORD_CONFIRM_BUTTON);
}

static void on_link_confirmed(void *ud, int result)
{
    struct link_ctx *lc = ud;

    if (result < 0)
        page(lc->d, lc->req, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN, 0);
    else if (result == 0)
        page(lc->d, lc->req, 404, "no_job", lc->wl, CR_WORD_CLOSED, 0);
    else
        page(lc->d, lc->req, 200, result == 2 ? "accepted" : "replayed", lc->wl,
             CR_WORD_CONFIRMED, 0);
    free(lc);
}

/* The job's document is in (a job accepted before confirm_segments was
 * kept): its audience segments go with the count. */
static void on_doc(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct link_ctx *lc = ud;
    struct cr_survey sv;
    int rc;

    (void)r;
    memset(&sv, 0, sizeof(sv));
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        page(lc->d, lc->req, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN, 0);
        free(lc);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING && reply->len < DOC_MAX &&
        cr_survey_from_doc(reply->str, reply->len, &sv) != 0)
        memset(&sv, 0, sizeof(sv));
    rc = cr_confirm_record(lc->d, lc->ref.job, lc->ref.pos, cr_channel_name(lc->ref.ch),
                           lc->link.sub, "link", (const char *const *)sv.segments, sv.nsegments,
                           on_link_confirmed, lc);
    cr_survey_release(&sv);
    if (rc != 0) {
        page(lc->d, lc->req, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN, 0);
        free(lc);
    }
}

/* The job's confirm and confirm_segments fields are in: the segments (space
 * separated) go with the count; without them the document says. */
static void on_fields(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct link_ctx *lc = ud;
    char *buf = NULL;
    char key[CR_KEY_MAX];
    const char *segs[SEGS_MAX];
    const redisReply *names;
    size_t n = 0;
    char *p, *next;
    int rc;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        page(lc->d, lc->req, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN, 0);
        free(lc);
        return;
    }
    names = reply->element[1];
    if (reply->element[0]->type == REDIS_REPLY_STRING && names->type != REDIS_REPLY_STRING) {
        /* a job that asks for confirmations, accepted before they were kept */
        if (cr_key_for(&lc->d->keys, "job", lc->ref.job, key, sizeof(key)) != 0 ||
            cr_redis_cmd(lc->d->rc, on_doc, lc, 0, "HGET %s doc", key) != 0) {
            page(lc->d, lc->req, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN, 0);
            free(lc);
        }
        return;
    }
    if (names->type == REDIS_REPLY_STRING && names->len < DOC_MAX) {
        buf = malloc(names->len + 1);
        if (buf == NULL) {
            page(lc->d, lc->req, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN, 0);
            free(lc);
            return;
        }
    }
    if (buf != NULL) {
        memcpy(buf, names->str, names->len);
        buf[names->len] = '\0';
        for (p = buf; *p != '\0' && n < SEGS_MAX; p = next) {
            next = strchr(p, ' ');
            if (next != NULL)
                *next++ = '\0';
            else
                next = p + strlen(p);
            if (*p != '\0')
                segs[n++] = p;
        }
    }
    rc = cr_confirm_record(lc->d, lc->ref.job, lc->ref.pos, cr_channel_name(lc->ref.ch),
                           lc->link.sub, "link", segs, n, on_link_confirmed, lc);
    free(buf); /* the call copied the segments */
    if (rc != 0) {
        page(lc->d, lc->req, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN, 0);
        free(lc);
    }
}

void cr_confirm_link(struct cr_daemon *d, struct cr_httpd_req *req)
{
    const char *token = req->path + 3;
    struct link_ctx *lc;
    char key[CR_KEY_MAX];
    int rc;

    if (d->cfg->links_secret == NULL) {
        page(d, req, 404, "not_configured", "en", CR_WORD_NOT_VALID, 0);
        return;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0 &&
        strcmp(req->method, "POST") != 0) {
        page(d, req, 405, "bad_method", "en", CR_WORD_BAD_METHOD, 0);
        return;
    }
    lc = calloc(1, sizeof(*lc));
    if (lc == NULL) {
        page(d, req, 503, "unavailable", "en", CR_WORD_TRY_AGAIN, 0);
        return;
    }
    lc->d = d;
    lc->req = req;
    rc = cr_link_verify(d->cfg->links_secret, token, strlen(token), cr_now_ms() / 1000, &lc->link);
    if (rc == 0 && (lc->link.kind != CR_LINK_CONFIRM || cr_ref_parse(lc->link.arg, &lc->ref) != 0))
        rc = CR_EPARSE;
    lc->wl = cr_words_lang(rc == 0 || rc == CR_ETIMEOUT ? lc->link.lang : NULL);
    if (rc != 0) {
        page(d, req, 403, rc == CR_ETIMEOUT ? "expired" : "bad_token", lc->wl,
             rc == CR_ETIMEOUT ? CR_WORD_EXPIRED : CR_WORD_NOT_VALID, 0);
        free(lc);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        /* a link checker's GET must not confirm: one tap on the button does */
        page(d, req, 200, "shown", lc->wl, CR_WORD_CONFIRM_ASK, 1);
        free(lc);
        return;
    }
    if (cr_key_for(&d->keys, "job", lc->ref.job, key, sizeof(key)) != 0 ||
        cr_redis_cmd(d->rc, on_fields, lc, 0, "HMGET %s confirm confirm_segments", key) != 0) {
        page(d, req, 503, "unavailable", lc->wl, CR_WORD_TRY_AGAIN, 0);
        free(lc);
    }
}
