/* Twilio Programmable Messaging (POST /2010-04-01/Accounts/{Sid}/Messages.json)
 * as crier-sim answers it: HTTP basic auth with the account SID and token, a
 * form-encoded body, Twilio's error codes (including the magic test numbers)
 * and the 201 message resource on success. */
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callbacks.h"
#include "sim.h"

#define PREFIX "/2010-04-01/Accounts/"
#define MAX_BODY_CHARS 1600
#define MAX_FIELD (4 * 1024 * 1024) /* a 1 MiB body, cleaned (invalid bytes grow to 3) */

struct magic {
    const char *number;
    int code;
    const char *message;
};

/* Twilio's test credentials' magic "To" numbers. */
static const struct magic magic_to[] = {
    {"+15005550001", 21211, "The 'To' number +15005550001 is not a valid phone number."},
    {"+15005550002", 21612, "The 'To' phone number is not currently reachable via SMS."},
    {"+15005550003", 21408,
     "Permission to send an SMS has not been enabled for the region "
     "indicated by the 'To' number: +15005550003."},
    {"+15005550004", 21610, "Attempt to send to unsubscribed recipient"},
    {"+15005550009", 21614, "'To' number is not a valid mobile number"},
};

void sim_twilio_error(struct sim_response *res, int status, int code, const char *message)
{
    cJSON *doc = cJSON_CreateObject();
    char more[64];

    snprintf(more, sizeof(more), "https://www.twilio.com/docs/errors/%d", code);
    cJSON_AddNumberToObject(doc, "code", code);
    cJSON_AddStringToObject(doc, "message", message);
    cJSON_AddStringToObject(doc, "more_info", more);
    cJSON_AddNumberToObject(doc, "status", status);
    sim_res_cjson(res, status, doc);
    res->ctype = SIM_JSON_UTF8;
    cJSON_Delete(doc);
}

int sim_twilio_refused(struct sim *sim, const struct sim_request *req, int whatsapp,
                       struct sim_response *res)
{
    switch (sim_provider_inject(sim, SIM_EP_TWILIO)) {
    case SIM_INJECT_429:
        sim_twilio_error(res, 429, 20429, "Too Many Requests");
        sim_provider_retry_after(sim, SIM_EP_TWILIO, res);
        return 1;
    case SIM_INJECT_5XX:
        sim_twilio_error(res, 500, 20500, "Internal Server Error");
        return 1;
    default:
        break;
    }
    if (!sim_callbacks_twilio_room(sim, req, whatsapp)) {
        sim_twilio_error(res, 429, 20429, "Too Many Requests");
        return 1;
    }
    return 0;
}

/* Checks "Basic base64(sid:token)" against the flags and the SID in the path. */
static int authorised(const struct sim *sim, const char *auth, const char *path_sid,
                      size_t path_sid_len)
{
    const char *sid = sim->opt.twilio_sid;
    const char *token = sim->opt.twilio_token;
    const char *b64;
    size_t b64_len, sid_len = strlen(sid);
    unsigned char plain[512];
    int n;

    if (path_sid_len != sid_len || memcmp(path_sid, sid, sid_len) != 0)
        return 0;
    if (!sim_starts_with_ci(auth, "Basic "))
        return 0;
    b64 = auth + 6;
    b64_len = strlen(b64);
    if (b64_len == 0 || b64_len % 4 != 0 || b64_len / 4 * 3 > sizeof(plain) - 1)
        return 0;
    n = EVP_DecodeBlock(plain, (const unsigned char *)b64, (int)b64_len);
    if (n < 0)
        return 0;
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (b64[b64_len - 1] == '=')
        n--;
    if (b64[b64_len - 2] == '=')
        n--;
    plain[n] = '\0';
    return (size_t)n == sid_len + 1 + strlen(token) && memcmp(plain, sid, sid_len) == 0 &&
           plain[sid_len] == ':' && strcmp((char *)plain + sid_len + 1, token) == 0;
}

/* Segments as Twilio counts them: GSM-7 160/153, UCS-2 70/67 (approximated:
 * any non-ASCII character makes the message UCS-2). */
static size_t segments(size_t chars, int unicode)
{
    size_t single = unicode ? 70 : 160, multi = unicode ? 67 : 153;

    if (chars <= single)
        return 1;
    return (chars + multi - 1) / multi;
}

static void answer_created(struct sim *sim, struct sim_response *res, const char *to,
                           const char *from, const char *msid, const char *body, size_t body_len)
{
    static const char hex[] = "0123456789abcdef";
    char sid[35];
    char uri[160];
    char media[180];
    char date[40];
    char nseg[24];
    size_t i, chars;
    int unicode = 0;
    cJSON *doc = cJSON_CreateObject();

    sid[0] = 'S';
    sid[1] = 'M';
    for (i = 2; i < 34; i++)
        sid[i] = hex[sim_rng_next(&sim->rng) & 15];
    sid[34] = '\0';
    snprintf(uri, sizeof(uri), PREFIX "%s/Messages/%s.json", sim->opt.twilio_sid, sid);
    snprintf(media, sizeof(media), PREFIX "%s/Messages/%s/Media.json", sim->opt.twilio_sid, sid);
    sim_rfc2822(date, sizeof(date), sim_now_ms(sim) / 1000);
    chars = sim_utf8_count(body, body_len, &unicode);
    snprintf(nseg, sizeof(nseg), "%zu", segments(chars, unicode));

    cJSON_AddStringToObject(doc, "account_sid", sim->opt.twilio_sid);
    cJSON_AddStringToObject(doc, "api_version", "2010-04-01");
    cJSON_AddStringToObject(doc, "body", body);
    cJSON_AddStringToObject(doc, "date_created", date);
    cJSON_AddNullToObject(doc, "date_sent");
    cJSON_AddStringToObject(doc, "date_updated", date);
    cJSON_AddStringToObject(doc, "direction", "outbound-api");
    cJSON_AddNullToObject(doc, "error_code");
    cJSON_AddNullToObject(doc, "error_message");
    if (from != NULL)
        cJSON_AddStringToObject(doc, "from", from);
    else
        cJSON_AddNullToObject(doc, "from");
    if (msid != NULL)
        cJSON_AddStringToObject(doc, "messaging_service_sid", msid);
    else
        cJSON_AddNullToObject(doc, "messaging_service_sid");
    cJSON_AddStringToObject(doc, "num_media", "0");
    cJSON_AddStringToObject(doc, "num_segments", nseg);
    cJSON_AddNullToObject(doc, "price");
    cJSON_AddStringToObject(doc, "price_unit", "USD");
    cJSON_AddStringToObject(doc, "sid", sid);
    cJSON_AddStringToObject(doc, "status", msid != NULL && from == NULL ? "accepted" : "queued");
    cJSON_AddItemToObject(doc, "subresource_uris", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItem(doc, "subresource_uris"), "media", media);
    cJSON_AddStringToObject(doc, "to", to);
    cJSON_AddStringToObject(doc, "uri", uri);
    sim_res_cjson(res, 201, doc);
    res->ctype = SIM_JSON_UTF8;
    cJSON_Delete(doc);
}

/* Appends the cleaned value of key to b; returns 1 when present and non-empty. */
static int field(const struct sim_request *req, int form, const char *key, struct cr_buf *raw,
                 struct cr_buf *b)
{
    cr_buf_reset(raw);
    cr_buf_reset(b);
    if (!form || sim_form_get(req->body, req->body_len, key, raw) != 1)
        return 0;
    if (sim_utf8_clean(b, raw->data ? raw->data : "", raw->len, 0) < 0)
        return 0;
    return b->len > 0;
}

void sim_twilio_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    const char *path_sid = req->path + strlen(PREFIX);
    size_t path_sid_len = (size_t)(strchr(path_sid, '/') - path_sid);
    int form = sim_starts_with_ci(req->ctype, "application/x-www-form-urlencoded");
    struct cr_buf raw, to, body, from, msid;
    const char *recipient = NULL;
    char msg[160];
    int has_to, has_body, has_from, has_msid;
    size_t i;
    int unicode;

    cr_buf_init(&raw, MAX_FIELD);
    cr_buf_init(&to, MAX_FIELD);
    cr_buf_init(&body, MAX_FIELD);
    cr_buf_init(&from, MAX_FIELD);
    cr_buf_init(&msid, MAX_FIELD);
    if (!authorised(sim, req->auth, path_sid, path_sid_len)) {
        sim_twilio_error(res, 401, 20003, "Authenticate");
        goto out;
    }
    if (form && sim_form_get(req->body, req->body_len, "To", &to) == 1 &&
        strncmp(cr_buf_cstr(&to), "whatsapp:", 9) == 0) {
        sim_whatsapp_twilio(sim, req, res); /* records the request itself */
        cr_buf_release(&raw);
        cr_buf_release(&to);
        cr_buf_release(&body);
        cr_buf_release(&from);
        cr_buf_release(&msid);
        return;
    }
    has_to = field(req, form, "To", &raw, &to);
    has_body = field(req, form, "Body", &raw, &body);
    has_from = field(req, form, "From", &raw, &from);
    has_msid = field(req, form, "MessagingServiceSid", &raw, &msid);
    if (has_to)
        recipient = cr_buf_cstr(&to);
    if (!has_to) {
        sim_twilio_error(res, 400, 21604, "A 'To' phone number is required.");
        goto out;
    }
    if (!has_from && !has_msid) {
        sim_twilio_error(res, 400, 21603, "A 'From' phone number is required.");
        goto out;
    }
    if (!has_body) {
        sim_twilio_error(res, 400, 21602, "Message body is required.");
        goto out;
    }
    if (!sim_is_e164(to.data, to.len)) {
        snprintf(msg, sizeof(msg), "The 'To' number %.40s is not a valid phone number.", to.data);
        sim_twilio_error(res, 400, 21211, msg);
        goto out;
    }
    if (sim_utf8_count(body.data, body.len, &unicode) > MAX_BODY_CHARS) {
        sim_twilio_error(res, 400, 21617,
                         "The concatenated message body exceeds the 1600 character limit.");
        goto out;
    }
    if (sim_twilio_refused(sim, req, 0, res))
        goto out;
    for (i = 0; i < sizeof(magic_to) / sizeof(magic_to[0]); i++) {
        if (strcmp(to.data, magic_to[i].number) == 0) {
            sim_twilio_error(res, 400, magic_to[i].code, magic_to[i].message);
            goto out;
        }
    }
    answer_created(sim, res, to.data, has_from ? from.data : NULL, has_msid ? msid.data : NULL,
                   body.data, body.len);
out:
    sim_provider_done(sim, SIM_EP_TWILIO, req, res, recipient ? &recipient : NULL,
                      recipient ? 1 : 0, NULL, 0);
    cr_buf_release(&raw);
    cr_buf_release(&to);
    cr_buf_release(&body);
    cr_buf_release(&from);
    cr_buf_release(&msid);
}
