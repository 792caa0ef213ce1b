/* Provider webhooks (see webhooks.h): parsing and signature checks are pure
 * functions; cr_webhooks_handle checks a request completely, then applies its
 * events with one Lua script call, answering once Redis has replied. */
#include "webhooks.h"

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
#include "cr_types.h"
#include "cr_secret.h"
#include "cr_log.h"
#include "escalate.h"
#include "metrics.h"
#include "replies.h"
#include "sigs.h"
#include "whatsapp_hook.h"

#define SIG_MAX 512       /* base64 signature header bytes accepted */
#define EVENT_FIELDS 11   /* per event in the receipt script's ARGV */
#define SCRIPT_HEAD 6

/* ---- references and events ---------------------------------------------- */

int cr_ref_parse(const char *ref, struct cr_ref *out)
{
    const char *s2, *s1;
    char num[16];
    char *end = NULL;
    size_t jlen, plen;
    unsigned long pos;

    if (ref == NULL)
        return CR_EPARSE;
    s2 = strrchr(ref, '/');
    if (s2 == NULL || s2 == ref)
        return CR_EPARSE;
    for (s1 = s2 - 1; s1 > ref && *s1 != '/'; s1--)
        ;
    if (*s1 != '/')
        return CR_EPARSE;
    jlen = (size_t)(s1 - ref);
    plen = (size_t)(s2 - s1 - 1);
    if (jlen == 0 || jlen > CR_JOB_ID_MAX || plen == 0 || plen >= sizeof(num))
        return CR_EPARSE;
    memcpy(num, s1 + 1, plen);
    num[plen] = '\0';
    if (!isdigit((unsigned char)num[0]))
        return CR_EPARSE;
    errno = 0;
    pos = strtoul(num, &end, 10);
    if (errno != 0 || *end != '\0' || pos > UINT32_MAX / 4)
        return CR_EPARSE;
    if (cr_channel_parse(s2 + 1, &out->ch) != 0)
        return CR_EPARSE;
    memcpy(out->job, ref, jlen);
    out->job[jlen] = '\0';
    if (memchr(out->job, '/', jlen) != NULL)
        return CR_EPARSE;
    out->pos = (uint32_t)pos;
    return 0;
}

static void event_init(struct cr_hook_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->suppress_ch = -1;
}

void cr_hook_event_release(struct cr_hook_event *ev)
{
    free(ev->text);
    ev->text = NULL;
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static int set_text(struct cr_hook_event *ev, const char *text)
{
    size_t n = strlen(text);

    if (n > CR_HOOK_TEXT_MAX)
        n = CR_HOOK_TEXT_MAX;
    ev->text = strndup(text, n);
    return ev->text == NULL ? CR_ENOMEM : 0;
}

/* ---- Twilio --------------------------------------------------------------- */

int cr_hook_twilio_parse(const struct cr_form *form, const char *query, struct cr_hook_event *ev)
{
    const char *status = cr_form_get(form, "MessageStatus");
    const char *sid = cr_form_get(form, "MessageSid");
    const char *from = cr_form_get(form, "From");
    const char *body = cr_form_get(form, "Body");
    const char *err = cr_form_get(form, "ErrorCode");
    const char *to = cr_form_get(form, "To");
    struct cr_form q;
    int rc;

    event_init(ev);
    if (sid == NULL || sid[0] == '\0' || strlen(sid) > 64)
        return CR_EPARSE;
    copy(ev->provider_id, sizeof(ev->provider_id), sid);
    if (status == NULL) {
        if (from == NULL || from[0] == '\0' || body == NULL || strlen(from) >= sizeof(ev->from))
            return CR_EPARSE;
        ev->kind = CR_HOOK_INBOUND;
        copy(ev->from, sizeof(ev->from), from);
        snprintf(ev->event_id, sizeof(ev->event_id), "in:%s", sid);
        return set_text(ev, body);
    }
    snprintf(ev->event_id, sizeof(ev->event_id), "%s:%.32s", sid, status);
    copy(ev->code, sizeof(ev->code), err);
    if (strcmp(status, "delivered") == 0)
        ev->status = "delivered";
    else if (strcmp(status, "read") == 0) /* WhatsApp */
        ev->status = "read";
    else if (strcmp(status, "undelivered") == 0 || strcmp(status, "failed") == 0)
        ev->status = "failed";
    if (err != NULL && strcmp(err, "21610") == 0 && to != NULL && to[0] != '\0') {
        /* the recipient has replied STOP to the sending number */
        ev->suppress_ch = CR_CH_SMS;
        copy(ev->address, sizeof(ev->address), to);
    }
    cr_hook_twilio_whatsapp(err, to, ev);
    if (ev->status == NULL && ev->suppress_ch < 0) {
        ev->kind = CR_HOOK_IGNORED; /* queued, sending, sent, ... */
        return 0;
    }
    ev->kind = CR_HOOK_RECEIPT;
    rc = cr_form_parse(query, strlen(query), &q);
    if (rc == 0) {
        ev->has_ref = cr_ref_parse(cr_form_get(&q, "ref"), &ev->ref) == 0;
        cr_form_release(&q);
    }
    return 0;
}

/* Pairs sorted by name, then by value (for repeated names), as Twilio signs them. */
static int cmp_pair(const void *a, const void *b)
{
    const char *const *pa = a;
    const char *const *pb = b;
    int c = strcmp(pa[0], pb[0]);

    return c != 0 ? c : strcmp(pa[1], pb[1]);
}

int cr_hook_twilio_signature(const char *token, const char *url, const struct cr_form *form,
                             char *out, size_t outlen)
{
    const char **pairs = NULL;
    const void **parts = NULL;
    size_t *lens = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    size_t i, k, n = form->n;
    int rc = CR_ENOMEM;

    pairs = malloc((2 * n + 1) * sizeof(*pairs));
    parts = malloc((2 * n + 1) * sizeof(*parts));
    lens = malloc((2 * n + 1) * sizeof(*lens));
    if (pairs == NULL || parts == NULL || lens == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        pairs[2 * i] = form->name[i];
        pairs[2 * i + 1] = form->value[i];
    }
    qsort(pairs, n, 2 * sizeof(*pairs), cmp_pair);
    parts[0] = url;
    lens[0] = strlen(url);
    for (i = 0, k = 1; i < n; i++) {
        /* a pair sent twice is signed once, as Twilio's own libraries do */
        if (i > 0 && cmp_pair(&pairs[2 * i], &pairs[2 * (i - 1)]) == 0)
            continue;
        parts[k] = pairs[2 * i];
        lens[k++] = strlen(pairs[2 * i]);
        parts[k] = pairs[2 * i + 1];
        lens[k++] = strlen(pairs[2 * i + 1]);
    }
    rc = cr_hmac(EVP_sha1(), token, strlen(token), parts, lens, k, mac, &maclen);
    if (rc == 0 && cr_b64_encode(mac, maclen, 0, out, outlen) < 0)
        rc = CR_ETOOBIG;
out:
    free(pairs);
    free(parts);
    free(lens);
    return rc;
}

int cr_hook_twilio_verify(const char *token, const char *url, const struct cr_form *form,
                          const char *sig)
{
    char want[64];

    if (token == NULL || sig == NULL || strlen(sig) > SIG_MAX)
        return 0;
    if (cr_hook_twilio_signature(token, url, form, want, sizeof(want)) != 0)
        return 0;
    return cr_same_bytes(want, strlen(want), sig, strlen(sig));
}

/* ---- SendGrid ------------------------------------------------------------- */

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void sendgrid_event(const cJSON *o, const char *event, struct cr_hook_event *ev)
{
    const char *email = json_str(o, "email");
    const char *type = json_str(o, "type");
    const char *id = json_str(o, "sg_event_id");
    const char *msgid = json_str(o, "sg_message_id");
    int suppress = 0;

    copy(ev->event_id, sizeof(ev->event_id), id);
    copy(ev->provider_id, sizeof(ev->provider_id), msgid);
    copy(ev->code, sizeof(ev->code), event);
    if (strcmp(event, "delivered") == 0) {
        ev->status = "delivered";
    } else if (strcmp(event, "bounce") == 0) {
        ev->status = "bounced";
        suppress = type == NULL || strcmp(type, "blocked") != 0; /* blocked is a soft bounce */
        if (type != NULL)
            copy(ev->code, sizeof(ev->code), type);
    } else if (strcmp(event, "dropped") == 0) {
        ev->status = "failed";
    } else if (strcmp(event, "spamreport") == 0 || strcmp(event, "unsubscribe") == 0 ||
               strcmp(event, "group_unsubscribe") == 0) {
        suppress = 1;
    } else {
        ev->kind = CR_HOOK_IGNORED; /* processed, deferred, open, click, ... */
        return;
    }
    ev->kind = CR_HOOK_RECEIPT;
    if (suppress && email != NULL && email[0] != '\0' && strlen(email) < sizeof(ev->address)) {
        ev->suppress_ch = CR_CH_EMAIL;
        copy(ev->address, sizeof(ev->address), email);
    }
    ev->has_ref = cr_ref_parse(json_str(o, "crier_ref"), &ev->ref) == 0;
    if (ev->status == NULL && ev->suppress_ch < 0)
        ev->kind = CR_HOOK_IGNORED;
}

int cr_hook_sendgrid_parse(const char *body, size_t len, struct cr_hook_event *evs, size_t max,
                           size_t *n)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *o;
    int rc = CR_EPARSE;

    *n = 0;
    if (!cJSON_IsArray(root))
        goto out;
    cJSON_ArrayForEach(o, root)
    {
        const char *event = json_str(o, "event");

        if (!cJSON_IsObject(o) || event == NULL)
            goto out;
        if (*n >= max) {
            rc = CR_ETOOBIG;
            goto out;
        }
        event_init(&evs[*n]);
        sendgrid_event(o, event, &evs[*n]);
        (*n)++;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int cr_hook_sendgrid_verify(EVP_PKEY *key, const char *ts, const char *body, size_t len,
                            const char *sig_b64)
{
    unsigned char sig[SIG_MAX];
    const void *parts[2] = {ts, body};
    size_t lens[2];
    int n;

    if (key == NULL || ts == NULL || sig_b64 == NULL || strlen(sig_b64) > SIG_MAX)
        return 0;
    n = cr_b64_decode(sig_b64, strlen(sig_b64), 0, sig, sizeof(sig));
    if (n <= 0)
        return 0;
    lens[0] = strlen(ts);
    lens[1] = len;
    return cr_ecdsa_sha256_verify(key, parts, lens, 2, sig, (size_t)n);
}

/* ---- generic ------------------------------------------------------------- */

int cr_hook_generic_parse(const char *body, size_t len, struct cr_hook_event *ev)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const char *ref, *status, *id, *from, *text;
    int rc = CR_EPARSE;

    event_init(ev);
    if (!cJSON_IsObject(root))
        goto out;
    ref = json_str(root, "ref");
    status = json_str(root, "status");
    id = json_str(root, "event_id");
    from = json_str(root, "from");
    text = json_str(root, "body");
    if (id != NULL && strlen(id) >= sizeof(ev->event_id))
        goto out;
    copy(ev->event_id, sizeof(ev->event_id), id);
    if (ref != NULL && status != NULL) {
        if (cr_ref_parse(ref, &ev->ref) != 0)
            goto out;
        if (strcmp(status, "delivered") == 0)
            ev->status = "delivered";
        else if (strcmp(status, "failed") == 0)
            ev->status = "failed";
        else if (strcmp(status, "bounced") == 0)
            ev->status = "bounced";
        else if (strcmp(status, "confirmed") == 0)
            ev->status = "confirmed"; /* the app's acknowledgement (confirm.c) */
        else
            goto out;
        ev->has_ref = 1;
        ev->kind = CR_HOOK_RECEIPT;
        copy(ev->code, sizeof(ev->code), status);
        rc = 0;
    } else if (from != NULL && text != NULL && from[0] != '\0' && strlen(from) < sizeof(ev->from)) {
        ev->kind = CR_HOOK_INBOUND;
        copy(ev->from, sizeof(ev->from), from);
        rc = set_text(ev, text);
    }
out:
    cJSON_Delete(root);
    return rc;
}

int cr_hook_generic_verify(const char *secret, const char *ts, const char *body, size_t len,
                           const char *header)
{
    unsigned char mac[CR_HMAC_SHA256_LEN];
    char hex[2 * CR_HMAC_SHA256_LEN + 1];

    if (secret == NULL || ts == NULL || header == NULL || strncmp(header, "sha256=", 7) != 0)
        return 0;
    if (cr_hmac_ts_body(secret, strlen(secret), ts, body, len, mac) != 0)
        return 0;
    cr_hex(mac, sizeof mac, hex);
    return cr_same_bytes(hex, strlen(hex), header + 7, strlen(header + 7));
}

int cr_hook_fresh(const char *ts, int64_t now_s, long window_s)
{
    char *end = NULL;
    long long t;

    if (ts == NULL || !isdigit((unsigned char)ts[0]) || strlen(ts) > 12)
        return 0;
    errno = 0;
    t = strtoll(ts, &end, 10);
    if (errno != 0 || *end != '\0')
        return 0;
    return t >= now_s - window_s && t <= now_s + window_s;
}

/* ---- the receipt script --------------------------------------------------- */

/* ARGV: prefix, window_s, receipts maxlen, now_ms, retention_s, n, then n x 11:
 * seen key ("" = no replay check), job, pos, channel index, channel, status
 * ("" = none), suppress channel, suppress address ("" = none), provider, code,
 * provider_id. Returns {applied, early, replayed, duplicate, unknown}. */
static const char receipt_lua[] = CR_AUDIT_TRIM_LUA
    "local p, window, maxlen, now, ret = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])\n"
    CR_TTD_LUA
    "local res = {0, 0, 0, 0, 0}\n"
    "for i = 0, tonumber(ARGV[6]) - 1 do\n"
    "  local o = 6 + i * 11\n"
    "  local seen, job, pos, ch, chname, st = ARGV[o+1], ARGV[o+2], ARGV[o+3], ARGV[o+4], ARGV[o+5], ARGV[o+6]\n"
    "  if seen ~= '' and not redis.call('SET', seen, '1', 'NX', 'EX', window) then\n"
    "    res[3] = res[3] + 1\n"
    "  else\n"
    "    if ARGV[o+8] ~= '' then redis.call('SADD', p .. 'suppress:' .. ARGV[o+7], ARGV[o+8]) end\n"
    "    if st ~= '' and job ~= '' then\n"
    "      local jk = p .. 'job:' .. job\n"
    "      local bit = tonumber(pos) * " CR_STRINGIFY(CR_LEDGER_BITS) " + tonumber(ch)\n"
    /* read (WhatsApp): counted once per message, and a delivery if none came */
    "      if st == 'read' then\n"
    "        st = 'delivered'\n"
    "        if redis.call('EXISTS', jk) == 1 and redis.call('SETBIT', jk .. ':read', bit, 1) == 0 then\n"
    "          redis.call('HINCRBY', jk, 'read', 1); redis.call('HINCRBY', jk, 'read:' .. chname, 1)\n"
    "          if ret > 0 then redis.call('EXPIRE', jk .. ':read', ret) end\n"
    "        end\n"
    "      end\n"
    "      if redis.call('EXISTS', jk) == 0 then\n"
    "        res[5] = res[5] + 1\n"
    "      elseif redis.call('GETBIT', jk .. ':ledger', bit) == 0 then\n"
    "        redis.call('HSET', jk .. ':early', pos .. ':' .. ch, st)\n"
    "        if ret > 0 then redis.call('EXPIRE', jk .. ':early', ret) end\n"
    "        res[2] = res[2] + 1\n"
    "      elseif redis.call('SETBIT', jk .. ':receipts', bit, 1) == 1 then\n"
    "        res[4] = res[4] + 1\n"
    "      else\n"
    "        if ret > 0 then redis.call('EXPIRE', jk .. ':receipts', ret) end\n"
    "        if tonumber(redis.call('HGET', jk, 'sent:' .. chname) or '0') > 0 then\n"
    "          redis.call('HINCRBY', jk, 'sent', -1)\n"
    "          redis.call('HINCRBY', jk, 'sent:' .. chname, -1)\n"
    "          redis.call('HINCRBY', jk, st, 1)\n"
    "          redis.call('HINCRBY', jk, st .. ':' .. chname, 1)\n"
    "        end\n"
    "        if st == 'delivered' then\n"
    "          redis.call('SETBIT', jk .. ':reached', tonumber(pos), 1)\n"
    "          if ret > 0 then redis.call('EXPIRE', jk .. ':reached', ret) end\n"
    "          ttd(jk, tonumber(ch), tonumber(now))\n"
    "        end\n"
    "        redis.call('XADD', p .. 'receipts', '*', 'job', job, 'pos', pos,\n"
    "          'channel', chname, 'provider', ARGV[o+9], 'status', st, 'code', ARGV[o+10],\n"
    "          'provider_id', ARGV[o+11], 'source', 'webhook', 't_ms', now)\n"
    "        res[1] = res[1] + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if res[1] > 0 then trim_stream(p .. 'receipts', maxlen) end\n"
    "return res\n";

/* ---- in the daemon -------------------------------------------------------- */

struct cr_webhooks {
    struct cr_daemon *d;
    char *twilio_token;     /* NULL = /hooks/twilio off */
    char twilio_name[40];   /* the provider's name, for receipts */
    EVP_PKEY *sendgrid_key; /* NULL = /hooks/sendgrid off */
    char *meta_secret;      /* the Meta app secret; NULL = /hooks/meta off */
    char *meta_verify;      /* the verify token of the GET handshake */
    char meta_name[40];
    char sendgrid_name[40];
    char generic_name[40];
};

struct apply_ctx {
    struct cr_webhooks *w;
    struct cr_httpd_req *req;
    const char *hook;
};

static void answer(struct cr_webhooks *w, struct cr_httpd_req *req, const char *hook, int status,
                   const char *outcome, const char *why)
{
    char body[200];
    char key[96];
    int n;

    cr_metrics_webhook(w->d->metrics, hook, outcome);
    if (status >= 400) {
        /* a misconfigured provider or a scanner sends these by the thousand */
        snprintf(key, sizeof key, "webhook %s %s %d", hook, outcome, status);
        cr_log_repeat(CR_LOG_WARN, key, "webhook %s: %s (%s); answered %d, nothing changed", hook,
                      outcome, why, status);
    }
    n = snprintf(body, sizeof(body), "%s\n", status < 400 ? outcome : why);
    cr_httpd_respond(req, status, "text/plain; charset=utf-8", NULL, body,
                     n > 0 ? (size_t)n : 0);
}

static void on_applied(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct apply_ctx *ac = ud;
    long long got[5] = {0, 0, 0, 0, 0};
    size_t i;

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        answer(ac->w, ac->req, ac->hook, 503, "unavailable",
               reply && reply->str ? reply->str : "redis unavailable");
        free(ac);
        return;
    }
    for (i = 0; i < reply->elements && i < 5; i++)
        got[i] = cr_reply_int(reply->element[i]);
    cr_debug("webhook %s: %lld applied, %lld early, %lld replayed, %lld duplicate, %lld unknown job",
             ac->hook, got[0], got[1], got[2], got[3], got[4]);
    answer(ac->w, ac->req, ac->hook, 200,
           (got[2] > 0 && got[0] + got[1] + got[3] + got[4] == 0) ? "replayed" : "accepted", "");
    free(ac);
}

static const char *provider_label(const struct cr_webhooks *w, const char *hook)
{
    if (strcmp(hook, "twilio") == 0)
        return w->twilio_name;
    if (strcmp(hook, "sendgrid") == 0)
        return w->sendgrid_name;
    if (strcmp(hook, "meta") == 0)
        return w->meta_name;
    return w->generic_name;
}

/* Runs the receipt script over the RECEIPT events; answers req when done. */
static void apply(struct cr_webhooks *w, struct cr_httpd_req *req, const char *hook,
                  const struct cr_hook_event *evs, size_t n)
{
    struct cr_daemon *d = w->d;
    struct apply_ctx *ac = NULL;
    const char **argv = NULL;
    char *nums = NULL;
    char head[5][24];
    size_t i, k = 0, argc;
    int rc = CR_ENOMEM;

    for (i = 0; i < n; i++)
        k += evs[i].kind == CR_HOOK_RECEIPT;
    if (k == 0) {
        answer(w, req, hook, 200, "ignored", "");
        return;
    }
    argc = 3 + SCRIPT_HEAD + k * EVENT_FIELDS;
    argv = calloc(argc, sizeof(*argv));
    nums = calloc(k, 3 * 16 + 2 * (CR_KEY_MAX + 200)); /* pos, ch, sch, seen key */
    ac = malloc(sizeof(*ac));
    if (argv == NULL || nums == NULL || ac == NULL)
        goto out;
    snprintf(head[0], sizeof(head[0]), "%ld", d->cfg->webhooks_window_s);
    snprintf(head[1], sizeof(head[1]), "%ld", d->cfg->receipts_maxlen);
    snprintf(head[2], sizeof(head[2]), "%lld", (long long)cr_now_ms());
    snprintf(head[3], sizeof(head[3]), "%zu", k);
    snprintf(head[4], sizeof(head[4]), "%ld", d->cfg->retention_s);
    argv[0] = "EVAL";
    argv[1] = receipt_lua;
    argv[2] = "0";
    argv[3] = d->keys.prefix;
    argv[4] = head[0];
    argv[5] = head[1];
    argv[6] = head[2];
    argv[7] = head[4];
    argv[8] = head[3];
    for (i = 0, k = 0; i < n; i++) {
        const struct cr_hook_event *e = &evs[i];
        const char **a;
        char *slot;

        if (e->kind != CR_HOOK_RECEIPT)
            continue;
        a = argv + 3 + SCRIPT_HEAD + k * EVENT_FIELDS;
        slot = nums + k * (3 * 16 + 2 * (CR_KEY_MAX + 200));
        snprintf(slot, 16, "%u", e->ref.pos);
        snprintf(slot + 16, 16, "%d", (int)e->ref.ch);
        snprintf(slot + 32, 16, "%s",
                 e->suppress_ch >= 0 ? cr_channel_name((enum cr_channel)e->suppress_ch) : "");
        if (e->event_id[0] != '\0')
            snprintf(slot + 48, 2 * (CR_KEY_MAX + 200), "%shook:seen:%s:%s", d->keys.prefix, hook,
                     e->event_id);
        else
            slot[48] = '\0';
        a[0] = slot + 48;
        a[1] = (e->has_ref && e->status) ? e->ref.job : "";
        a[2] = slot;
        a[3] = slot + 16;
        a[4] = cr_channel_name(e->ref.ch);
        a[5] = (e->has_ref && e->status) ? e->status : "";
        a[6] = slot + 32;
        a[7] = e->suppress_ch >= 0 ? e->address : "";
        a[8] = provider_label(w, hook);
        a[9] = e->code;
        a[10] = e->provider_id;
        k++;
    }
    ac->w = w;
    ac->req = req;
    ac->hook = hook;
    rc = cr_redis_argv(d->rc, on_applied, ac, 0, (int)argc, argv, NULL);
    if (rc == 0)
        ac = NULL;
out:
    if (rc != 0)
        answer(w, req, hook, 503, "unavailable",
               rc == CR_ENOMEM ? "out of memory" : "redis not connected");
    free(ac);
    free(argv);
    free(nums);
}

/* Inbound SMS: the replies module answers through this. */
struct inbound_ctx {
    struct cr_webhooks *w;
    struct cr_httpd_req *req;
    const char *hook;
};

static void on_inbound(void *ud, int status, const char *outcome)
{
    struct inbound_ctx *ic = ud;
    static const char twiml[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

    if (status == 200 && strcmp(ic->hook, "twilio") == 0) {
        cr_metrics_webhook(ic->w->d->metrics, ic->hook, outcome);
        cr_httpd_respond(ic->req, 200, "text/xml", NULL, twiml, sizeof(twiml) - 1);
    } else {
        answer(ic->w, ic->req, ic->hook, status, outcome, outcome);
    }
    free(ic);
}

static void inbound(struct cr_webhooks *w, struct cr_httpd_req *req, const char *hook,
                    const struct cr_hook_event *ev)
{
    struct inbound_ctx *ic = malloc(sizeof(*ic));
    char seen[CR_KEY_MAX + 200];

    if (ic == NULL) {
        answer(w, req, hook, 503, "unavailable", "out of memory");
        return;
    }
    ic->w = w;
    ic->req = req;
    ic->hook = hook;
    seen[0] = '\0';
    if (ev->event_id[0] != '\0')
        snprintf(seen, sizeof(seen), "%shook:seen:%s:%s", w->d->keys.prefix, hook, ev->event_id);
    cr_replies_inbound(w->d, ev->from, ev->text ? ev->text : "", seen, on_inbound, ic);
}

static int content_type_is(const struct cr_httpd_req *req, const char *type)
{
    const char *ct = cr_httpd_header(req, "content-type");
    size_t n = strlen(type);

    return ct != NULL && strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

static void handle_twilio(struct cr_webhooks *w, struct cr_httpd_req *req)
{
    struct cr_form form;
    struct cr_hook_event ev;
    struct cr_buf url;
    const char *sig = cr_httpd_header(req, "x-twilio-signature");
    int rc;

    memset(&ev, 0, sizeof(ev));
    if (!content_type_is(req, "application/x-www-form-urlencoded")) {
        answer(w, req, "twilio", 400, "malformed", "not a form post");
        return;
    }
    if (cr_form_parse(req->body.data ? req->body.data : "", req->body.len, &form) != 0) {
        answer(w, req, "twilio", 400, "malformed", "unreadable form body");
        return;
    }
    cr_buf_init(&url, 16384);
    rc = cr_buf_appendf(&url, "%s%s", w->d->cfg->webhooks_public_url, cr_buf_cstr(&req->target));
    if (rc != 0 || !cr_hook_twilio_verify(w->twilio_token, cr_buf_cstr(&url), &form, sig)) {
        answer(w, req, "twilio", 403, "bad_signature",
               sig ? "X-Twilio-Signature does not match" : "no X-Twilio-Signature");
        goto out;
    }
    if (cr_hook_twilio_parse(&form, req->query, &ev) != 0) {
        answer(w, req, "twilio", 400, "malformed", "neither a status callback nor a message");
        goto out;
    }
    if (ev.kind == CR_HOOK_INBOUND)
        inbound(w, req, "twilio", &ev);
    else
        apply(w, req, "twilio", &ev, 1);
out:
    cr_hook_event_release(&ev);
    cr_buf_release(&url);
    cr_form_release(&form);
}

static void handle_sendgrid(struct cr_webhooks *w, struct cr_httpd_req *req)
{
    const char *sig = cr_httpd_header(req, "x-twilio-email-event-webhook-signature");
    const char *ts = cr_httpd_header(req, "x-twilio-email-event-webhook-timestamp");
    const char *body = req->body.data ? req->body.data : "";
    struct cr_hook_event *evs = NULL;
    size_t n = 0, i;
    int rc;

    if (sig == NULL || ts == NULL ||
        !cr_hook_sendgrid_verify(w->sendgrid_key, ts, body, req->body.len, sig)) {
        answer(w, req, "sendgrid", 403, "bad_signature",
               (sig && ts) ? "event webhook signature does not match"
                           : "no event webhook signature or timestamp");
        return;
    }
    if (!cr_hook_fresh(ts, cr_now_ms() / 1000, w->d->cfg->webhooks_window_s)) {
        answer(w, req, "sendgrid", 403, "stale", "timestamp outside the window");
        return;
    }
    evs = calloc(CR_HOOK_EVENTS_MAX, sizeof(*evs));
    if (evs == NULL) {
        answer(w, req, "sendgrid", 503, "unavailable", "out of memory");
        return;
    }
    rc = cr_hook_sendgrid_parse(body, req->body.len, evs, CR_HOOK_EVENTS_MAX, &n);
    if (rc == CR_ETOOBIG)
        answer(w, req, "sendgrid", 413, "too_large", "more events than one request may carry");
    else if (rc != 0)
        answer(w, req, "sendgrid", 400, "malformed", "not a JSON array of events");
    else
        apply(w, req, "sendgrid", evs, n);
    for (i = 0; i < n; i++)
        cr_hook_event_release(&evs[i]);
    free(evs);
}

struct confirm_ctx {
    struct cr_webhooks *w;
    struct cr_httpd_req *req;
};

static void on_app_confirmed(void *ud, int result)
{
    struct confirm_ctx *cc = ud;

    if (result < 0)
        answer(cc->w, cc->req, "generic", 503, "unavailable", "redis unavailable");
    else
        answer(cc->w, cc->req, "generic", 200,
               result == 2 ? "accepted" : result == 1 ? "replayed" : "ignored", "");
    free(cc);
}

/* {"ref": ..., "status": "confirmed"}: the resident acknowledged the message
 * in the app; counted once per (job, resident) by confirm.c. */
static void app_confirm(struct cr_webhooks *w, struct cr_httpd_req *req,
                        const struct cr_hook_event *ev)
{
    struct confirm_ctx *cc = malloc(sizeof(*cc));

    if (cc == NULL) {
        answer(w, req, "generic", 503, "unavailable", "out of memory");
        return;
    }
    cc->w = w;
    cc->req = req;
    if (cr_confirm_record(w->d, ev->ref.job, ev->ref.pos, cr_channel_name(ev->ref.ch), "", "app",
                          NULL, 0, on_app_confirmed, cc) != 0) {
        free(cc);
        answer(w, req, "generic", 503, "unavailable", "redis not connected");
    }
}

static void handle_generic(struct cr_webhooks *w, struct cr_httpd_req *req)
{
    const char *sig = cr_httpd_header(req, "x-crier-signature");
    const char *ts = cr_httpd_header(req, "x-crier-timestamp");
    const char *body = req->body.data ? req->body.data : "";
    struct cr_hook_event ev;

    memset(&ev, 0, sizeof(ev));
    if (!cr_hook_generic_verify(w->d->cfg->webhooks_generic_secret, ts, body, req->body.len,
                                sig)) {
        answer(w, req, "generic", 403, "bad_signature",
               (sig && ts) ? "X-Crier-Signature does not match"
                           : "no X-Crier-Signature or X-Crier-Timestamp");
        return;
    }
    if (!cr_hook_fresh(ts, cr_now_ms() / 1000, w->d->cfg->webhooks_window_s)) {
        answer(w, req, "generic", 403, "stale", "timestamp outside the window");
        return;
    }
    if (cr_hook_generic_parse(body, req->body.len, &ev) != 0)
        answer(w, req, "generic", 400, "malformed", "not a receipt or a message");
    else if (ev.kind == CR_HOOK_INBOUND)
        inbound(w, req, "generic", &ev);
    else if (ev.status != NULL && strcmp(ev.status, "confirmed") == 0)
        app_confirm(w, req, &ev);
    else
        apply(w, req, "generic", &ev, 1);
    cr_hook_event_release(&ev);
}

/* Meta: the GET verification handshake, or a signed POST of statuses and
 * messages. Inbound messages are taken one per request (Meta sends each in a
 * request of its own); a request with one also carries no statuses. */
static void handle_meta(struct cr_webhooks *w, struct cr_httpd_req *req)
{
    const char *sig = cr_httpd_header(req, "x-hub-signature-256");
    const char *body = req->body.data ? req->body.data : "";
    struct cr_hook_event *evs = NULL;
    char challenge[CR_META_CHALLENGE_MAX + 1];
    size_t n = 0, i;
    int rc;

    if (strcmp(req->method, "GET") == 0) {
        rc = cr_hook_meta_handshake(w->meta_verify, req->query, challenge, sizeof(challenge));
        if (rc == 0) {
            cr_metrics_webhook(w->d->metrics, "meta", "verified");
            cr_httpd_respond(req, 200, "text/plain", NULL, challenge, strlen(challenge));
        } else {
            answer(w, req, "meta", 403, rc == CR_EINVAL ? "bad_signature" : "malformed",
                   rc == CR_EINVAL ? "hub.verify_token does not match"
                                   : "not a hub.mode=subscribe handshake");
        }
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        answer(w, req, "meta", 405, "bad_method", "only GET and POST");
        return;
    }
    if (!cr_hook_meta_verify(w->meta_secret, body, req->body.len, sig)) {
        answer(w, req, "meta", 403, "bad_signature",
               sig ? "X-Hub-Signature-256 does not match" : "no X-Hub-Signature-256");
        return;
    }
    evs = calloc(CR_HOOK_EVENTS_MAX, sizeof(*evs));
    if (evs == NULL) {
        answer(w, req, "meta", 503, "unavailable", "out of memory");
        return;
    }
    rc = cr_hook_meta_parse(body, req->body.len, evs, CR_HOOK_EVENTS_MAX, &n);
    for (i = 0; rc == 0 && i < n && evs[i].kind != CR_HOOK_INBOUND; i++)
        ;
    if (rc == CR_ETOOBIG)
        answer(w, req, "meta", 413, "too_large", "more events than one request may carry");
    else if (rc != 0)
        answer(w, req, "meta", 400, "malformed", "not a WhatsApp business account notification");
    else if (i < n)
        inbound(w, req, "meta", &evs[i]);
    else
        apply(w, req, "meta", evs, n);
    for (i = 0; i < n; i++)
        cr_hook_event_release(&evs[i]);
    free(evs);
}

void cr_webhooks_handle(struct cr_webhooks *w, struct cr_httpd_req *req, const char *hook)
{
    int on = 0;

    if (strcmp(hook, "meta") == 0) {
        if (w->meta_secret == NULL)
            answer(w, req, hook, 404, "not_configured", "no meta_whatsapp provider with app_secret");
        else
            handle_meta(w, req);
        return;
    }
    if (strcmp(hook, "twilio") == 0)
        on = w->twilio_token != NULL;
    else if (strcmp(hook, "sendgrid") == 0)
        on = w->sendgrid_key != NULL;
    else if (strcmp(hook, "generic") == 0)
        on = w->d->cfg->webhooks_generic_secret != NULL;
    if (!on) {
        answer(w, req, hook, 404, "not_configured", "this hook has no secret configured");
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        answer(w, req, hook, 405, "bad_method", "only POST");
        return;
    }
    if (strcmp(hook, "twilio") == 0)
        handle_twilio(w, req);
    else if (strcmp(hook, "sendgrid") == 0)
        handle_sendgrid(w, req);
    else
        handle_generic(w, req);
}

int cr_webhooks_init(struct cr_daemon *d, struct cr_webhooks **out)
{
    const struct cr_config *cfg = d->cfg;
    const cJSON *provs = cJSON_GetObjectItemCaseSensitive(cfg->root, "providers");
    struct cr_webhooks *w = calloc(1, sizeof(*w));
    size_t i;
    int rc = CR_ENOMEM;

    if (w == NULL)
        goto out;
    w->d = d;
    copy(w->sendgrid_name, sizeof(w->sendgrid_name), "sendgrid");
    copy(w->twilio_name, sizeof(w->twilio_name), "twilio");
    copy(w->generic_name, sizeof(w->generic_name), "generic");
    copy(w->meta_name, sizeof(w->meta_name), "meta_whatsapp");
    for (i = 0; i < cfg->nproviders; i++) {
        const struct cr_provider_conf *pc = &cfg->providers[i];
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(provs, pc->name);
        const char *token = json_str(p, "auth_token");

        if (strcmp(pc->ops->type, "sendgrid") == 0)
            copy(w->sendgrid_name, sizeof(w->sendgrid_name), pc->name);
        rc = cr_webhooks_meta_conf(pc->ops->type, pc->name, p, &w->meta_secret, &w->meta_verify,
                                   w->meta_name, sizeof(w->meta_name));
        if (rc < 0)
            goto out;
        rc = CR_ENOMEM;
        /* WhatsApp over Twilio signs its callbacks as SMS does */
        if ((strcmp(pc->ops->type, "twilio") != 0 &&
             strcmp(pc->ops->type, "twilio_whatsapp") != 0) ||
            w->twilio_token != NULL || token == NULL)
            continue;
        copy(w->twilio_name, sizeof(w->twilio_name), pc->name);
        w->twilio_token = strdup(token);
        if (w->twilio_token == NULL)
            goto out;
    }
    if (cfg->webhooks_sendgrid_public_key != NULL &&
        cr_ec_public_key_load(cfg->webhooks_sendgrid_public_key, &w->sendgrid_key) != 0) {
        cr_error("config: webhooks.sendgrid_public_key: not an EC public key in PEM or base64 DER");
        rc = CR_ECONFIG;
        goto out;
    }
    *out = w;
    w = NULL;
    rc = 0;
out:
    cr_webhooks_free(w);
    return rc;
}

void cr_webhooks_free(struct cr_webhooks *w)
{
    if (w == NULL)
        return;
    cr_free_secret(w->twilio_token);
    cr_free_secret(w->meta_secret);
    cr_free_secret(w->meta_verify);
    EVP_PKEY_free(w->sendgrid_key);
    free(w);
}
