/* WhatsApp over Meta's Cloud API: POST /<version>/<phone-number-id>/messages
 * with a bearer token and a JSON body, an approved template (name, language,
 * body parameters) outside the resident's 24-hour service window and a text
 * message inside it. Errors are classified by the Graph API error code. */
#include "adapter.h"
#include "cr_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WM_URL_MAX 2048
#define WM_VERSION_DEFAULT "v21.0"

struct wa_meta {
    char *url;   /* base/<version>/<phone_number_id>/messages */
    char *token; /* access token (a system user's, permanent) */
};

static const char *const wm_keys[] = {"phone_number_id", "access_token", "api_version",
                                      "app_secret",      "verify_token", NULL}; /* the last two: webhooks.c */

static void wm_free(void *state)
{
    struct wa_meta *w = state;

    if (w == NULL)
        return;
    free(w->url);
    cr_free_secret(w->token);
    free(w);
}

static int digits_only(const char *s)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
    }
    return 1;
}

static int wm_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                   char *err, size_t errlen)
{
    struct wa_meta *w;
    char *base = NULL;
    char *pnid = NULL;
    char *version = NULL;
    struct cr_buf b;
    int rc;

    *state = NULL;
    cr_buf_init(&b, WM_URL_MAX);
    if (!cJSON_IsObject(cfg))
        return cr_cfg_fail(err, errlen, path, NULL, "must be an object");
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CR_ENOMEM;
    rc = cr_cfg_base_url(base_url, path, &base, err, errlen);
    if (rc == 0)
        rc = cr_cfg_string(cfg, path, "phone_number_id", 1, &pnid, err, errlen);
    if (rc == 0 && !digits_only(pnid))
        rc = cr_cfg_fail(err, errlen, path, "phone_number_id",
                         "must be the numeric id of the WhatsApp business phone number");
    if (rc == 0)
        rc = cr_cfg_string(cfg, path, "access_token", 1, &w->token, err, errlen);
    if (rc == 0 && !cr_header_safe(w->token))
        rc = cr_cfg_fail(err, errlen, path, "access_token", "must not contain line breaks");
    if (rc == 0)
        rc = cr_cfg_string(cfg, path, "api_version", 0, &version, err, errlen);
    if (rc == 0 && version != NULL &&
        (version[0] != 'v' || strspn(version + 1, "0123456789.") != strlen(version + 1) ||
         version[1] == '\0'))
        rc = cr_cfg_fail(err, errlen, path, "api_version", "must look like \"v21.0\"");
    if (rc < 0)
        goto out;
    rc = cr_buf_appendf(&b, "%s/%s/%s/messages", base, version ? version : WM_VERSION_DEFAULT,
                        pnid);
    if (rc < 0)
        goto out;
    w->url = cr_buf_steal(&b);
    *state = w;
    w = NULL;
out:
    cr_buf_release(&b);
    free(base);
    free(pnid);
    free(version);
    wm_free(w);
    return rc;
}

/* The components of a template message: one body component whose text
 * parameters are the '\x1f'-joined rendered variables, in order. */
static int add_components(cJSON *tpl, const char *vars)
{
    cJSON *comps;
    cJSON *body;
    cJSON *params;
    const char *p = vars;

    if (vars == NULL)
        return 0;
    comps = cJSON_AddArrayToObject(tpl, "components");
    body = cJSON_CreateObject();
    if (comps == NULL || body == NULL) {
        cJSON_Delete(body);
        return CR_ENOMEM;
    }
    cJSON_AddItemToArray(comps, body);
    if (cJSON_AddStringToObject(body, "type", "body") == NULL)
        return CR_ENOMEM;
    params = cJSON_AddArrayToObject(body, "parameters");
    if (params == NULL)
        return CR_ENOMEM;
    while (p != NULL) {
        const char *sep = strchr(p, '\x1f');
        size_t n = sep ? (size_t)(sep - p) : strlen(p);
        char *val = strndup(p, n);
        cJSON *par = cJSON_CreateObject();

        if (par != NULL)
            cJSON_AddItemToArray(params, par);
        if (val == NULL || par == NULL || cJSON_AddStringToObject(par, "type", "text") == NULL ||
            cJSON_AddStringToObject(par, "text", val) == NULL) {
            free(val);
            return CR_ENOMEM;
        }
        free(val);
        p = sep ? sep + 1 : NULL;
    }
    return 0;
}

/* One message per request. CR_EINVAL without an E.164 number, or with
 * neither free text (window open) nor a template. */
static int wm_build(void *state, const struct cr_message *const *msgs, size_t n,
                    struct cr_request *req)
{
    const struct wa_meta *w = state;
    const struct cr_message *m;
    cJSON *root = NULL;
    cJSON *obj;
    int rc = CR_EINVAL;

    if (n != 1)
        goto out;
    m = msgs[0];
    if (!cr_e164_ok(m->address) || (m->wa_text == NULL && m->wa_template == NULL))
        goto out;
    rc = CR_ENOMEM;
    root = cJSON_CreateObject();
    if (root == NULL || cJSON_AddStringToObject(root, "messaging_product", "whatsapp") == NULL ||
        cJSON_AddStringToObject(root, "recipient_type", "individual") == NULL ||
        cJSON_AddStringToObject(root, "to", m->address + 1) == NULL) /* digits, no '+' */
        goto out;
    if (m->ref != NULL && cJSON_AddStringToObject(root, "biz_opaque_callback_data", m->ref) == NULL)
        goto out;
    if (m->wa_text != NULL) {
        if (cJSON_AddStringToObject(root, "type", "text") == NULL)
            goto out;
        obj = cJSON_AddObjectToObject(root, "text");
        if (obj == NULL || cJSON_AddFalseToObject(obj, "preview_url") == NULL ||
            cJSON_AddStringToObject(obj, "body", m->wa_text) == NULL)
            goto out;
    } else {
        cJSON *lang;

        if (cJSON_AddStringToObject(root, "type", "template") == NULL)
            goto out;
        obj = cJSON_AddObjectToObject(root, "template");
        if (obj == NULL || cJSON_AddStringToObject(obj, "name", m->wa_template) == NULL)
            goto out;
        lang = cJSON_AddObjectToObject(obj, "language");
        if (lang == NULL || cJSON_AddStringToObject(lang, "policy", "deterministic") == NULL ||
            cJSON_AddStringToObject(lang, "code", m->wa_language ? m->wa_language : "en") == NULL)
            goto out;
        if (add_components(obj, m->wa_vars) < 0)
            goto out;
    }
    rc = cr_req_set_json(req, root);
    if (rc < 0)
        goto out;
    cr_buf_reset(&req->url);
    rc = cr_buf_appends(&req->url, w->url);
    if (rc == 0)
        rc = cr_req_add_header(req, "Content-Type", "application/json");
    if (rc == 0)
        rc = cr_req_add_bearer(req, w->token);
    if (rc == 0)
        snprintf(req->method, sizeof(req->method), "POST");
out:
    cJSON_Delete(root);
    return rc;
}

/* Graph API error codes of the Cloud API (developers.facebook.com, WhatsApp
 * error codes): what each means for the message. */
static void classify_error(const struct cr_response *resp, const cJSON *doc,
                           struct cr_result *res)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const char *msg = cr_json_string(e, "message");
    long st = resp->status;
    long mc = cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble < 1e9
                  ? (long)c->valuedouble
                  : -1;
    char code[24];

    if (msg == NULL)
        msg = doc ? "no error message in the body" : "body unreadable";
    snprintf(code, sizeof(code), "%ld", mc >= 0 ? mc : st);
    switch (mc) {
    case 131026: /* message undeliverable: not on WhatsApp (or an old app) */
        cr_result_setf(res, CR_OUT_SUPPRESS, code, "not a WhatsApp user: %s", msg);
        return;
    case 131047: /* re-engagement message: over 24 h since the last reply */
        cr_result_setf(res, CR_OUT_FAILED, code,
                       "outside the 24-hour window: only an approved template may go: %s", msg);
        return;
    case 132000: /* template parameter count mismatch */
    case 132001: /* template does not exist (in that language) */
    case 132005: /* translated text too long */
    case 132007: /* template format character policy violated */
    case 132012: /* parameter format mismatch */
    case 132015: /* template paused */
    case 132016: /* template disabled */
        cr_result_setf(res, CR_OUT_FAILED, code, "template refused: %s", msg);
        return;
    case 4:      /* application request limit */
    case 80007:  /* WhatsApp business account rate limit */
    case 130429: /* Cloud API throughput reached */
    case 131048: /* spam rate limit */
    case 131056: /* pair rate limit: too many messages to this number */
        cr_result_setf(res, CR_OUT_RETRY, code, "rate limited (HTTP %ld): %s", st, msg);
        return;
    case 1:      /* API unknown */
    case 2:      /* API service: temporary */
    case 131000: /* something went wrong */
    case 133004: /* server temporarily unavailable */
        cr_result_setf(res, CR_OUT_RETRY, code, "provider error (HTTP %ld): %s", st, msg);
        return;
    case 190: /* access token expired or invalid */
        cr_result_setf(res, CR_OUT_RETRY, code, "access token refused: check access_token; %s",
                       msg);
        return;
    default:
        break;
    }
    if (st == 429 || (st >= 500 && st <= 599))
        cr_result_setf(res, CR_OUT_RETRY, code, "HTTP %ld: %s", st, msg);
    else
        cr_result_setf(res, CR_OUT_FAILED, code, "rejected (HTTP %ld): %s", st, msg);
}

static void wm_classify(void *state, const struct cr_message *const *msgs, size_t n,
                        const struct cr_response *resp, struct cr_result *res)
{
    cJSON *doc;

    (void)state;
    (void)msgs;
    if (n == 0)
        return;
    doc = cr_json_parse_body(resp);
    if (resp->status >= 200 && resp->status <= 299) {
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(doc, "messages");
        const char *id = cr_json_string(cJSON_GetArrayItem(ms, 0), "id");

        if (id == NULL) {
            cr_result_by_status(res, resp, "accepted, body unreadable");
        } else {
            cr_result_set(res, CR_OUT_SENT, "accepted", "accepted");
            cr_result_set_id(res, id);
        }
    } else {
        classify_error(resp, doc, res);
    }
    cJSON_Delete(doc);
    cr_result_finish(res, n, resp);
}

const struct cr_provider_ops cr_whatsapp_meta_ops = {
    .type = "meta_whatsapp",
    .channel = CR_CH_WHATSAPP,
    .platform = NULL,
    .max_batch = 1,
    .keys = wm_keys,
    .init = wm_init,
    .free_state = wm_free,
    .build = wm_build,
    .classify = wm_classify,
};
