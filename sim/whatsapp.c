/* WhatsApp as crier-sim answers it: Twilio's Messages API with "whatsapp:"
 * addresses (ContentSid + ContentVariables, or Body) and Meta's Cloud API
 * (POST /<version>/<phone-number-id>/messages). Both apply the 24-hour
 * customer service window (free text to a resident whose window is closed
 * gets the provider's window error), template approval, numbers that are not
 * on WhatsApp, the messaging tier (--wa-tier: unique residents a number may
 * start conversations with in a moving 24 hours), and for Meta a
 * per-phone-number throughput limit. Which
 * residents have an open window and which numbers are not WhatsApp users is
 * set by number prefix (--wa-open-prefix, --wa-unknown-prefix). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callbacks.h"
#include "sim.h"

#define WA_FIELD_MAX (1024 * 1024)
#define WA_VARS_MAX 10
#define WA_TEXT_MAX 4096

/* The residents a number started conversations with (a template outside the
 * window) in the last 24 hours: at most --wa-tier of them. */
struct wa_tier {
    char (*number)[20];
    uint64_t *at_ms;
    uint32_t n;
};

#define WA_TIER_WINDOW_MS (24ULL * 3600 * 1000)

/* Whether number may get one more business-initiated message: it is among
 * the residents of the last 24 hours, or the tier has a place (taken now). */
static int tier_admits(struct sim *sim, struct wa_tier *t, const char *number)
{
    uint64_t now = sim_now_ms(sim);
    uint32_t i, k;

    if (sim->opt.wa_tier == 0)
        return 1;
    if (t->number == NULL) {
        t->number = calloc(sim->opt.wa_tier, sizeof(*t->number));
        t->at_ms = calloc(sim->opt.wa_tier, sizeof(*t->at_ms));
        if (t->number == NULL || t->at_ms == NULL) {
            free(t->number);
            free(t->at_ms);
            t->number = NULL;
            t->at_ms = NULL;
            return 1; /* out of memory: the sim does not limit */
        }
    }
    for (i = 0, k = 0; i < t->n; i++) { /* forget residents older than the window */
        if (t->at_ms[i] + WA_TIER_WINDOW_MS <= now)
            continue;
        if (k != i) {
            memcpy(t->number[k], t->number[i], sizeof(t->number[k]));
            t->at_ms[k] = t->at_ms[i];
        }
        k++;
    }
    t->n = k;
    for (i = 0; i < t->n; i++) {
        if (strcmp(t->number[i], number) == 0) {
            t->at_ms[i] = now;
            return 1;
        }
    }
    if (t->n >= sim->opt.wa_tier)
        return 0;
    snprintf(t->number[t->n], sizeof(t->number[t->n]), "%s", number);
    t->at_ms[t->n++] = now;
    return 1;
}

static int prefixed(const char *number, const char *prefix)
{
    return prefix != NULL && prefix[0] != '\0' && strncmp(number, prefix, strlen(prefix)) == 0;
}

/* Whether template (a name or a content SID) is approved: every one but
 * those listed in --wa-unapproved (comma-separated). */
static int approved(const struct sim *sim, const char *tpl)
{
    const char *l = sim->opt.wa_unapproved;
    size_t n = strlen(tpl);

    while (l != NULL && *l != '\0') {
        const char *c = strchr(l, ',');
        size_t m = c ? (size_t)(c - l) : strlen(l);

        if (m == n && strncmp(l, tpl, n) == 0)
            return 0;
        l = c ? c + 1 : NULL;
    }
    return 1;
}

static int hex_sid(const char *s, const char *prefix)
{
    size_t i;

    if (strncmp(s, prefix, 2) != 0 || strlen(s) != 34)
        return 0;
    for (i = 2; i < 34; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

/* ---- Twilio ---- */

static int form(const struct sim_request *req, const char *key, struct cr_buf *out)
{
    cr_buf_reset(out);
    return sim_form_get(req->body, req->body_len, key, out) == 1 && out->len > 0;
}

/* ContentVariables: a JSON object {"1": "...", ...}, keys 1..n, non-empty
 * strings. Returns NULL when it is good, else what is wrong. */
static const char *vars_problem(const char *json, int *code)
{
    cJSON *doc = cJSON_Parse(json);
    const cJSON *v;
    const char *why = NULL;
    int n = 0;

    *code = 21656;
    if (!cJSON_IsObject(doc)) {
        why = "The ContentVariables Parameter is invalid.";
        goto out;
    }
    cJSON_ArrayForEach(v, doc)
    {
        n++;
        if (n > WA_VARS_MAX || strspn(v->string, "0123456789") != strlen(v->string) ||
            !cJSON_IsString(v)) {
            why = "The ContentVariables Parameter is invalid.";
            goto out;
        }
        if (v->valuestring[0] == '\0') {
            *code = 63013;
            why = "Channel policy violation: an empty template variable";
            goto out;
        }
    }
out:
    cJSON_Delete(doc);
    return why;
}

void sim_whatsapp_twilio(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    static const char hex[] = "0123456789abcdef";
    struct cr_buf to, from, body, sid, vars;
    const char *recipient = NULL;
    const char *number;
    char msid[35];
    int has_body, has_sid, code = 0;
    const char *why;
    size_t i;
    cJSON *doc;

    cr_buf_init(&to, WA_FIELD_MAX);
    cr_buf_init(&from, WA_FIELD_MAX);
    cr_buf_init(&body, WA_FIELD_MAX);
    cr_buf_init(&sid, WA_FIELD_MAX);
    cr_buf_init(&vars, WA_FIELD_MAX);
    form(req, "To", &to);
    recipient = cr_buf_cstr(&to);
    number = recipient + 9;
    if (!form(req, "From", &from) || strncmp(from.data, "whatsapp:", 9) != 0 ||
        !sim_is_e164(from.data + 9, from.len - 9)) {
        sim_twilio_error(res, 400, 63007,
                         "Twilio could not find a Channel with the specified From address");
        goto out;
    }
    if (!sim_is_e164(number, to.len - 9)) {
        sim_twilio_error(res, 400, 21211, "The 'To' number is not a valid phone number.");
        goto out;
    }
    has_body = form(req, "Body", &body);
    has_sid = form(req, "ContentSid", &sid);
    if (has_body == has_sid) {
        sim_twilio_error(res, 400, 21619,
                         has_body ? "Remove Body when you send a content template (ContentSid)"
                                  : "A text message body or ContentSid is required.");
        goto out;
    }
    if (has_sid && !hex_sid(sid.data, "HX")) {
        sim_twilio_error(res, 400, 21655, "The ContentSid is invalid.");
        goto out;
    }
    if (has_sid && form(req, "ContentVariables", &vars) &&
        (why = vars_problem(vars.data, &code)) != NULL) {
        sim_twilio_error(res, 400, code, why);
        goto out;
    }
    if (has_body && sim_utf8_count(body.data, body.len, NULL) > WA_TEXT_MAX) {
        sim_twilio_error(res, 400, 21617, "The message body exceeds the 4096 character limit.");
        goto out;
    }
    if (sim_twilio_refused(sim, req, 1, res))
        goto out;
    if (prefixed(number, sim->opt.wa_unknown_prefix)) {
        sim_twilio_error(res, 400, 63003, "Channel could not find To address");
        goto out;
    }
    if (has_body && !prefixed(number, sim->opt.wa_open_prefix)) {
        sim_twilio_error(
            res, 400, 63016,
            "Failed to send freeform message because you are outside the allowed window. "
            "Please use a Template.");
        goto out;
    }
    if (has_sid && !approved(sim, sid.data)) {
        sim_twilio_error(res, 400, 63027, "Template does not exist for a language and locale");
        goto out;
    }
    if (has_sid && !prefixed(number, sim->opt.wa_open_prefix)) {
        static struct wa_tier tier;

        if (!tier_admits(sim, &tier, number)) {
            sim_twilio_error(
                res, 400, 63018,
                "Rate limit exceeded for Channel: the WhatsApp sender's messaging limit "
                "of unique users in 24 hours is reached");
            goto out;
        }
    }
    msid[0] = 'S';
    msid[1] = 'M';
    for (i = 2; i < 34; i++)
        msid[i] = hex[sim_rng_next(&sim->rng) & 15];
    msid[34] = '\0';
    doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "account_sid", sim->opt.twilio_sid);
    cJSON_AddStringToObject(doc, "api_version", "2010-04-01");
    cJSON_AddStringToObject(doc, "body", has_body ? body.data : "");
    cJSON_AddStringToObject(doc, "direction", "outbound-api");
    cJSON_AddNullToObject(doc, "error_code");
    cJSON_AddStringToObject(doc, "from", from.data);
    cJSON_AddStringToObject(doc, "num_segments", "1");
    cJSON_AddStringToObject(doc, "sid", msid);
    cJSON_AddStringToObject(doc, "status", "queued");
    cJSON_AddStringToObject(doc, "to", recipient);
    sim_res_cjson(res, 201, doc);
    res->ctype = SIM_JSON_UTF8;
    cJSON_Delete(doc);
out:
    sim_provider_done(sim, SIM_EP_TWILIO, req, res, &recipient, 1, NULL, 0);
    cr_buf_release(&to);
    cr_buf_release(&from);
    cr_buf_release(&body);
    cr_buf_release(&sid);
    cr_buf_release(&vars);
}

/* ---- Meta Cloud API ---- */

static void meta_error(struct sim_response *res, int status, int code, const char *message)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(doc, "error");
    cJSON *d;

    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", code == 190 ? "OAuthException" : "OAuthException");
    cJSON_AddNumberToObject(e, "code", code);
    d = cJSON_AddObjectToObject(e, "error_data");
    cJSON_AddStringToObject(d, "messaging_product", "whatsapp");
    cJSON_AddStringToObject(d, "details", message);
    cJSON_AddStringToObject(e, "fbtrace_id", "AbCdEfGhIjKlMnOpQrStUvW");
    sim_res_cjson(res, status, doc);
    res->ctype = SIM_JSON;
    cJSON_Delete(doc);
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Whether the phone number may send one more message now (--meta-mps, per
 * second; 0 = no limit). */
static int meta_throughput_ok(struct sim *sim)
{
    static uint64_t second;
    static uint32_t used;
    uint64_t now = sim_now_ms(sim) / 1000;

    if (sim->opt.meta_mps == 0)
        return 1;
    if (now != second) {
        second = now;
        used = 0;
    }
    return used++ < sim->opt.meta_mps;
}

/* The template's problem (NULL when good): name, language, body parameters. */
static const char *template_problem(const struct sim *sim, const cJSON *tpl, int *status, int *code)
{
    const char *name = jstr(tpl, "name");
    const cJSON *lang = cJSON_GetObjectItemCaseSensitive(tpl, "language");
    const cJSON *comps = cJSON_GetObjectItemCaseSensitive(tpl, "components");
    const cJSON *c;

    *status = 400;
    *code = 100;
    if (name == NULL || name[0] == '\0')
        return "(#100) The parameter template['name'] is required.";
    if (jstr(lang, "code") == NULL)
        return "(#100) The parameter template['language']['code'] is required.";
    if (comps != NULL && !cJSON_IsArray(comps))
        return "(#100) Param template['components'] must be an array.";
    cJSON_ArrayForEach(c, comps)
    {
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(c, "parameters");
        const cJSON *p;
        int n = 0;

        if (jstr(c, "type") == NULL || !cJSON_IsArray(ps))
            return "(#100) Each component needs a type and parameters.";
        cJSON_ArrayForEach(p, ps)
        {
            const char *t = jstr(p, "text");

            if (++n > WA_VARS_MAX || jstr(p, "type") == NULL ||
                strcmp(jstr(p, "type"), "text") != 0 || t == NULL || t[0] == '\0') {
                *code = 132000;
                return "(#132000) Number of parameters does not match the expected number of "
                       "params";
            }
        }
    }
    if (!approved(sim, name)) {
        *status = 404;
        *code = 132001;
        return "(#132001) Template name does not exist in the translation";
    }
    return NULL;
}

void sim_whatsapp_meta(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const char *id_start = strchr(req->path + 1, '/');
    cJSON *doc = NULL;
    cJSON *out;
    cJSON *arr;
    cJSON *item;
    const char *to = NULL, *type, *ref;
    char number[24];
    char wamid[64];
    const char *why;
    int status, code;
    size_t i;

    if (!sim_starts_with_ci(req->auth, "Bearer ") ||
        strcmp(req->auth + 7, sim->opt.meta_token) != 0) {
        meta_error(res, 401, 190, "Invalid OAuth access token - Cannot parse access token");
        goto out;
    }
    if (id_start == NULL ||
        strncmp(id_start + 1, sim->opt.meta_phone_id, strlen(sim->opt.meta_phone_id)) != 0 ||
        strcmp(id_start + 1 + strlen(sim->opt.meta_phone_id), "/messages") != 0) {
        meta_error(res, 400, 100, "Unsupported post request. Object with ID does not exist");
        goto out;
    }
    if (!sim_starts_with_ci(req->ctype, "application/json")) {
        meta_error(res, 400, 100, "(#100) Content-Type must be application/json");
        goto out;
    }
    doc = cJSON_ParseWithLength(req->body, req->body_len);
    to = jstr(doc, "to");
    type = jstr(doc, "type");
    if (!cJSON_IsObject(doc) || jstr(doc, "messaging_product") == NULL ||
        strcmp(jstr(doc, "messaging_product"), "whatsapp") != 0) {
        meta_error(res, 400, 100, "(#100) The parameter messaging_product is required.");
        goto out;
    }
    if (to == NULL || strlen(to) < 7 || strlen(to) > 15 || strspn(to, "0123456789") != strlen(to)) {
        meta_error(res, 400, 100, "(#100) Invalid parameter: to must be the number's digits");
        goto out;
    }
    snprintf(number, sizeof(number), "+%s", to);
    if (type == NULL || (strcmp(type, "text") != 0 && strcmp(type, "template") != 0)) {
        meta_error(res, 400, 100, "(#100) Param type must be text or template here");
        goto out;
    }
    if (strcmp(type, "text") == 0) {
        const char *body = jstr(cJSON_GetObjectItemCaseSensitive(doc, "text"), "body");

        if (body == NULL || body[0] == '\0' || strlen(body) > WA_TEXT_MAX) {
            meta_error(res, 400, 100, "(#100) Param text['body'] is required, up to 4096");
            goto out;
        }
    } else {
        why = template_problem(sim, cJSON_GetObjectItemCaseSensitive(doc, "template"), &status,
                               &code);
        if (why != NULL) {
            meta_error(res, status, code, why);
            goto out;
        }
    }
    switch (sim_provider_inject(sim, SIM_EP_META)) {
    case SIM_INJECT_429:
        meta_error(res, 429, 130429, "(#130429) Rate limit hit");
        sim_provider_retry_after(sim, SIM_EP_META, res);
        goto out;
    case SIM_INJECT_5XX:
        meta_error(res, 500, 131000, "(#131000) Something went wrong");
        goto out;
    default:
        break;
    }
    if (!sim_callbacks_meta_room(sim)) {
        meta_error(res, 429, 130429, "(#130429) Rate limit hit");
        goto out;
    }
    if (!meta_throughput_ok(sim)) {
        meta_error(res, 429, 130429, "(#130429) Rate limit hit: Cloud API message throughput");
        sim_res_header(res, "Retry-After", "1");
        goto out;
    }
    if (prefixed(number, sim->opt.wa_unknown_prefix)) {
        meta_error(res, 400, 131026, "(#131026) Message undeliverable");
        goto out;
    }
    if (strcmp(type, "text") == 0 && !prefixed(number, sim->opt.wa_open_prefix)) {
        meta_error(res, 400, 131047,
                   "(#131047) Re-engagement message: more than 24 hours have passed since the "
                   "recipient last replied");
        goto out;
    }
    if (strcmp(type, "template") == 0 && !prefixed(number, sim->opt.wa_open_prefix)) {
        static struct wa_tier tier;

        if (!tier_admits(sim, &tier, number)) {
            meta_error(res, 400, 131048,
                       "(#131048) Spam rate limit hit: the messaging limit of unique users "
                       "in 24 hours is reached");
            goto out;
        }
    }
    memcpy(wamid, "wamid.", 6);
    for (i = 6; i < 38; i++)
        wamid[i] = b64[sim_rng_next(&sim->rng) % (sizeof(b64) - 1)];
    wamid[38] = '\0';
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "messaging_product", "whatsapp");
    arr = cJSON_AddArrayToObject(out, "contacts");
    item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "input", to);
    cJSON_AddStringToObject(item, "wa_id", to);
    cJSON_AddItemToArray(arr, item);
    arr = cJSON_AddArrayToObject(out, "messages");
    item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "id", wamid);
    cJSON_AddItemToArray(arr, item);
    sim_res_cjson(res, 200, out);
    res->ctype = SIM_JSON;
    cJSON_Delete(out);
    ref = jstr(doc, "biz_opaque_callback_data");
    sim_callbacks_after_meta(sim, wamid, to, ref);
out : {
    const char *rcpt = to;
    const char *r = doc ? jstr(doc, "biz_opaque_callback_data") : NULL;

    sim_provider_done(sim, SIM_EP_META, req, res, rcpt ? &rcpt : NULL, rcpt ? 1 : 0, r ? &r : NULL,
                      r ? 1 : 0);
}
    cJSON_Delete(doc);
}
