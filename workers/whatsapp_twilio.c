/* WhatsApp over Twilio's Messages API: a form POST per message with To/From
 * "whatsapp:+E164"; an approved template as ContentSid + ContentVariables
 * (JSON) outside the resident's 24-hour service window, Body inside it. */
#include "adapter.h"
#include "cr_error.h"
#include "twilio_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WT_VARS_MAX 16384 /* ContentVariables JSON */

struct wa_twilio {
    struct cr_twilio_account acct;
    char *from;            /* "whatsapp:+E164" */
    char *status_callback; /* NULL = none */
    cJSON *content_sids;   /* template name (or "name:language") -> "HX..." */
};

static const char *const wt_keys[] = {"account_sid", "auth_token",   "from",
                                      "status_callback", "content_sids", NULL};

static void wt_free(void *state)
{
    struct wa_twilio *w = state;

    if (w == NULL)
        return;
    cr_twilio_account_release(&w->acct);
    free(w->from);
    free(w->status_callback);
    cJSON_Delete(w->content_sids);
    free(w);
}

static int wt_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                   char *err, size_t errlen)
{
    struct wa_twilio *w;
    const cJSON *map;
    const cJSON *v;
    char *from = NULL;
    struct cr_buf b;
    int rc;

    *state = NULL;
    cr_buf_init(&b, CR_TWILIO_URL_MAX);
    if (!cJSON_IsObject(cfg))
        return cr_cfg_fail(err, errlen, path, NULL, "must be an object");
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CR_ENOMEM;
    rc = cr_twilio_account_init(&w->acct, cfg, base_url, path, err, errlen);
    if (rc == 0)
        rc = cr_cfg_string(cfg, path, "from", 1, &from, err, errlen);
    if (rc == 0 && !cr_e164_ok(from))
        rc = cr_cfg_fail(err, errlen, path, "from",
                         "must be the WhatsApp sender's E.164 number like +447700900123");
    if (rc == 0)
        rc = cr_cfg_string(cfg, path, "status_callback", 0, &w->status_callback, err, errlen);
    if (rc == 0 && w->status_callback != NULL && strncmp(w->status_callback, "http://", 7) != 0 &&
        strncmp(w->status_callback, "https://", 8) != 0)
        rc = cr_cfg_fail(err, errlen, path, "status_callback", "must be an http(s):// URL");
    if (rc < 0)
        goto out;
    map = cJSON_GetObjectItemCaseSensitive(cfg, "content_sids");
    if (map != NULL) {
        if (!cJSON_IsObject(map)) {
            rc = cr_cfg_fail(err, errlen, path, "content_sids",
                             "must be an object {\"<template name>\": \"HX...\"}");
            goto out;
        }
        for (v = map->child; v; v = v->next) {
            if (!cJSON_IsString(v) || !cr_twilio_sid_ok(v->valuestring, "HX")) {
                rc = cr_cfg_fail(err, errlen, path, "content_sids",
                                 "'%.60s' must map to \"HX\" followed by 32 hex digits",
                                 v->string);
                goto out;
            }
        }
        w->content_sids = cJSON_Duplicate(map, 1);
        if (w->content_sids == NULL) {
            rc = CR_ENOMEM;
            goto out;
        }
    }
    rc = cr_buf_appendf(&b, "whatsapp:%s", from);
    if (rc < 0)
        goto out;
    w->from = cr_buf_steal(&b);
    *state = w;
    w = NULL;
    rc = 0;
out:
    cr_buf_release(&b);
    free(from);
    wt_free(w);
    return rc;
}

/* The content SID for a message's template: the template itself when it is
 * one, else content_sids["<name>:<language>"], then content_sids["<name>"]. */
static const char *content_sid(const struct wa_twilio *w, const struct cr_message *m)
{
    char key[600];
    const char *v;

    if (cr_twilio_sid_ok(m->wa_template, "HX"))
        return m->wa_template;
    if (w->content_sids == NULL || m->wa_template == NULL)
        return NULL;
    snprintf(key, sizeof(key), "%s:%s", m->wa_template, m->wa_language ? m->wa_language : "");
    v = cr_json_string(w->content_sids, key);
    return v ? v : cr_json_string(w->content_sids, m->wa_template);
}

/* {"1": "<value 1>", ...} from the '\x1f'-joined rendered variables. */
static int content_variables(const char *vars, struct cr_buf *out)
{
    cJSON *obj = cJSON_CreateObject();
    const char *p = vars;
    char key[16];
    char *s = NULL;
    int i = 1;
    int rc = CR_ENOMEM;

    if (obj == NULL)
        return CR_ENOMEM;
    while (p != NULL) {
        const char *sep = strchr(p, '\x1f');
        size_t n = sep ? (size_t)(sep - p) : strlen(p);
        char *val = strndup(p, n);

        snprintf(key, sizeof(key), "%d", i++);
        if (val == NULL || cJSON_AddStringToObject(obj, key, val) == NULL) {
            free(val);
            goto out;
        }
        free(val);
        p = sep ? sep + 1 : NULL;
    }
    s = cJSON_PrintUnformatted(obj);
    if (s == NULL)
        goto out;
    rc = cr_buf_appends(out, s);
out:
    cJSON_free(s);
    cJSON_Delete(obj);
    return rc;
}

/* One message per request. CR_EINVAL without a number, or with neither free
 * text (window open) nor a template this account has a content SID for. */
static int wt_build(void *state, const struct cr_message *const *msgs, size_t n,
                    struct cr_request *req)
{
    const struct wa_twilio *w = state;
    const struct cr_message *m;
    struct cr_buf tmp;
    const char *sid = NULL;
    int rc = CR_EINVAL;

    cr_buf_init(&tmp, WT_VARS_MAX);
    if (n != 1)
        goto out;
    m = msgs[0];
    if (!cr_e164_ok(m->address))
        goto out;
    if (m->wa_text == NULL) {
        sid = content_sid(w, m);
        if (sid == NULL)
            goto out;
    }
    cr_buf_reset(&req->body);
    rc = cr_buf_appendf(&tmp, "whatsapp:%s", m->address);
    if (rc == 0)
        rc = cr_twilio_form_add(&req->body, "To", cr_buf_cstr(&tmp));
    if (rc == 0)
        rc = cr_twilio_form_add(&req->body, "From", w->from);
    if (rc == 0 && sid == NULL)
        rc = cr_twilio_form_add(&req->body, "Body", m->wa_text);
    if (rc == 0 && sid != NULL)
        rc = cr_twilio_form_add(&req->body, "ContentSid", sid);
    if (rc == 0 && sid != NULL && m->wa_vars != NULL) {
        cr_buf_reset(&tmp);
        rc = content_variables(m->wa_vars, &tmp);
        if (rc == 0)
            rc = cr_twilio_form_add(&req->body, "ContentVariables", cr_buf_cstr(&tmp));
    }
    if (rc == 0 && w->status_callback != NULL) {
        cr_buf_reset(&tmp);
        rc = cr_twilio_callback_with_ref(w->status_callback, m->ref ? m->ref : "", &tmp);
        if (rc == 0)
            rc = cr_twilio_form_add(&req->body, "StatusCallback", cr_buf_cstr(&tmp));
    }
    if (rc < 0)
        goto out;
    cr_buf_reset(&req->url);
    rc = cr_buf_appends(&req->url, w->acct.url);
    if (rc == 0)
        rc = cr_req_add_header(req, "Content-Type", "application/x-www-form-urlencoded");
    if (rc == 0)
        rc = cr_req_add_header(req, "Authorization", w->acct.auth);
    if (rc == 0)
        snprintf(req->method, sizeof(req->method), "POST");
out:
    cr_buf_release(&tmp);
    return rc;
}

/* Twilio's WhatsApp error codes (twilio.com/docs/api/errors/630xx). */
static void classify_error(const struct cr_response *resp, const cJSON *doc,
                           struct cr_result *res)
{
    long st = resp->status;
    long tc;
    const char *msg;
    char code[24];

    /* A string code counts by its leading digits here (whole = 0). */
    cr_twilio_error_head(resp, doc, 0, &tc, &msg, code, sizeof(code));
    switch (tc) {
    case 63003: /* channel could not find the To address: not on WhatsApp */
    case 63024: /* invalid message recipient */
        cr_result_setf(res, CR_OUT_SUPPRESS, code, "not a WhatsApp user (HTTP %ld): %s", st, msg);
        return;
    case 21610: /* the recipient sent STOP */
        cr_result_setf(res, CR_OUT_SUPPRESS, code, "recipient opted out (STOP): %s", msg);
        return;
    case 63016:
        cr_result_setf(res, CR_OUT_FAILED, code,
                       "outside the 24-hour window: only an approved template may go: %s", msg);
        return;
    case 63027: /* template does not exist for the language */
    case 63028: /* parameter count mismatch */
    case 63029: /* template rejected */
    case 63013: /* channel policy violation */
    case 63021: /* invalid content */
        cr_result_setf(res, CR_OUT_FAILED, code, "template or content refused (HTTP %ld): %s", st,
                       msg);
        return;
    case 63018: /* rate limit exceeded for the channel */
    case 20429:
        cr_result_setf(res, CR_OUT_RETRY, code, "rate limited (HTTP %ld): %s", st, msg);
        return;
    case 63012: /* channel provider internal error */
        cr_result_setf(res, CR_OUT_RETRY, code, "provider error (HTTP %ld): %s", st, msg);
        return;
    default:
        break;
    }
    if (st == 429 || st == 401 || (st >= 500 && st <= 599))
        cr_result_setf(res, CR_OUT_RETRY, code, "HTTP %ld: %s", st, msg);
    else
        cr_result_setf(res, CR_OUT_FAILED, code, "rejected (HTTP %ld): %s", st, msg);
}

static void wt_classify(void *state, const struct cr_message *const *msgs, size_t n,
                        const struct cr_response *resp, struct cr_result *res)
{
    cJSON *doc;

    (void)state;
    (void)msgs;
    if (n == 0)
        return;
    doc = cr_json_parse_body(resp);
    if (resp->status >= 200 && resp->status <= 299) {
        const char *sid = cr_json_string(doc, "sid");
        const char *status = cr_json_string(doc, "status");

        if (sid == NULL) {
            cr_result_by_status(res, resp, "accepted, body unreadable");
        } else {
            cr_result_setf(res, CR_OUT_SENT, status ? status : "queued", "accepted (%s)",
                           status ? status : "no status");
            cr_result_set_id(res, sid);
        }
    } else {
        classify_error(resp, doc, res);
    }
    cJSON_Delete(doc);
    cr_result_finish(res, n, resp);
}

const struct cr_provider_ops cr_whatsapp_twilio_ops = {
    .type = "twilio_whatsapp",
    .channel = CR_CH_WHATSAPP,
    .platform = NULL,
    .max_batch = 1,
    .keys = wt_keys,
    .init = wt_init,
    .free_state = wt_free,
    .build = wt_build,
    .classify = wt_classify,
};
