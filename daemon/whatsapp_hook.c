/* Meta WhatsApp webhook parsing, signature and handshake (see whatsapp_hook.h). */
#include "whatsapp_hook.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "httpd.h"
#include "sigs.h"

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void put(char *dst, size_t n, const char *src) /* cut to fit */
{
    size_t len = src ? strlen(src) : 0;

    if (n == 0)
        return;
    if (len >= n)
        len = n - 1;
    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

static void ev_clear(struct cr_hook_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->kind = CR_HOOK_IGNORED;
    ev->suppress_ch = -1;
}

/* Digits only, 1 to 15 of them: a WhatsApp id (the number without '+'). */
static int wa_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return n >= 1 && n <= 15 && strspn(s, "0123456789") == n;
}

static void status_event(const cJSON *st, struct cr_hook_event *ev)
{
    const char *status = jstr(st, "status");
    const char *id = jstr(st, "id");
    const char *ref = jstr(st, "biz_opaque_callback_data");
    const char *to = jstr(st, "recipient_id");
    const cJSON *err = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "errors"), 0);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");

    if (status == NULL || id == NULL || strlen(id) >= sizeof(ev->provider_id))
        return;
    put(ev->provider_id, sizeof(ev->provider_id), id);
    snprintf(ev->event_id, sizeof(ev->event_id), "%.100s:%.16s", id, status);
    if (strcmp(status, "delivered") == 0)
        ev->status = "delivered";
    else if (strcmp(status, "read") == 0)
        ev->status = "read";
    else if (strcmp(status, "failed") == 0)
        ev->status = "failed";
    if (cJSON_IsNumber(code) && code->valuedouble >= 0 && code->valuedouble < 1e9)
        snprintf(ev->code, sizeof(ev->code), "%ld", (long)code->valuedouble);
    else
        put(ev->code, sizeof(ev->code), ev->status);
    if (ev->status != NULL && strcmp(ev->status, "failed") == 0 &&
        strcmp(ev->code, "131026") == 0 && wa_id_ok(to)) {
        ev->suppress_ch = CR_CH_WHATSAPP; /* not a WhatsApp user */
        snprintf(ev->address, sizeof(ev->address), "+%s", to);
    }
    if (ev->status == NULL && ev->suppress_ch < 0)
        return; /* sent, or a status crier does not track */
    ev->has_ref = ref != NULL && cr_ref_parse(ref, &ev->ref) == 0;
    ev->kind = CR_HOOK_RECEIPT;
}

static int message_event(const cJSON *m, struct cr_hook_event *ev)
{
    const char *from = jstr(m, "from");
    const char *id = jstr(m, "id");
    const char *type = jstr(m, "type");
    const char *text = NULL;
    size_t n;

    if (!wa_id_ok(from) || id == NULL || type == NULL || strlen(id) >= sizeof(ev->provider_id))
        return 0;
    if (strcmp(type, "text") == 0)
        text = jstr(cJSON_GetObjectItemCaseSensitive(m, "text"), "body");
    else if (strcmp(type, "button") == 0)
        text = jstr(cJSON_GetObjectItemCaseSensitive(m, "button"), "text");
    else if (strcmp(type, "interactive") == 0) {
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(m, "interactive");

        text = jstr(cJSON_GetObjectItemCaseSensitive(in, "button_reply"), "title");
        if (text == NULL)
            text = jstr(cJSON_GetObjectItemCaseSensitive(in, "list_reply"), "title");
    }
    ev->kind = CR_HOOK_INBOUND;
    snprintf(ev->from, sizeof(ev->from), "whatsapp:+%s", from);
    snprintf(ev->event_id, sizeof(ev->event_id), "in:%.100s", id);
    put(ev->provider_id, sizeof(ev->provider_id), id);
    text = text ? text : ""; /* a photo or a sticker still opens the window */
    n = strlen(text);
    if (n > CR_HOOK_TEXT_MAX)
        n = CR_HOOK_TEXT_MAX;
    ev->text = strndup(text, n);
    return ev->text == NULL ? CR_ENOMEM : 0;
}

int cr_hook_meta_parse(const char *body, size_t len, struct cr_hook_event *evs, size_t max,
                       size_t *n)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *entry;
    const cJSON *e;
    int rc = CR_EPARSE;

    *n = 0;
    if (!cJSON_IsObject(root))
        goto out;
    entry = cJSON_GetObjectItemCaseSensitive(root, "entry");
    if (!cJSON_IsArray(entry) || jstr(root, "object") == NULL ||
        strcmp(jstr(root, "object"), "whatsapp_business_account") != 0)
        goto out;
    rc = 0;
    cJSON_ArrayForEach(e, entry)
    {
        const cJSON *ch;

        cJSON_ArrayForEach(ch, cJSON_GetObjectItemCaseSensitive(e, "changes"))
        {
            const cJSON *value = cJSON_GetObjectItemCaseSensitive(ch, "value");
            const cJSON *it;

            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(value, "statuses"))
            {
                if (*n == max) {
                    rc = CR_ETOOBIG;
                    goto out;
                }
                ev_clear(&evs[*n]);
                status_event(it, &evs[(*n)++]);
            }
            cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(value, "messages"))
            {
                if (*n == max) {
                    rc = CR_ETOOBIG;
                    goto out;
                }
                ev_clear(&evs[*n]);
                rc = message_event(it, &evs[(*n)++]);
                if (rc < 0)
                    goto out;
            }
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

int cr_hook_meta_verify(const char *app_secret, const char *body, size_t len, const char *header)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    const void *parts[1] = {body};
    size_t lens[1] = {len};

    if (app_secret == NULL || header == NULL || strncmp(header, "sha256=", 7) != 0)
        return 0;
    if (cr_hmac(EVP_sha256(), app_secret, strlen(app_secret), parts, lens, 1, mac, &maclen) != 0)
        return 0;
    cr_hex(mac, maclen, hex);
    return cr_same_bytes(hex, strlen(hex), header + 7, strlen(header + 7));
}

int cr_hook_meta_handshake(const char *verify_token, const char *query, char *out,
                           size_t outlen)
{
    struct cr_form q;
    const char *mode;
    const char *token;
    const char *challenge;
    int rc = CR_EPARSE;

    if (query == NULL || cr_form_parse(query, strlen(query), &q) != 0)
        return CR_EPARSE;
    mode = cr_form_get(&q, "hub.mode");
    token = cr_form_get(&q, "hub.verify_token");
    challenge = cr_form_get(&q, "hub.challenge");
    if (mode == NULL || strcmp(mode, "subscribe") != 0 || token == NULL || challenge == NULL ||
        challenge[0] == '\0' || strlen(challenge) > CR_META_CHALLENGE_MAX ||
        strlen(challenge) >= outlen ||
        strspn(challenge, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.") !=
            strlen(challenge))
        goto out;
    rc = CR_EINVAL;
    if (verify_token == NULL ||
        !cr_same_bytes(verify_token, strlen(verify_token), token, strlen(token)))
        goto out;
    snprintf(out, outlen, "%s", challenge);
    rc = 0;
out:
    cr_form_release(&q);
    return rc;
}

void cr_hook_twilio_whatsapp(const char *err, const char *to, struct cr_hook_event *ev)
{
    if (to == NULL || strncmp(to, "whatsapp:", 9) != 0 || err == NULL)
        return;
    if (strcmp(err, "63003") == 0 || strcmp(err, "63024") == 0 || strcmp(err, "21610") == 0) {
        ev->suppress_ch = CR_CH_WHATSAPP;
        put(ev->address, sizeof(ev->address), to + 9);
    }
}

int cr_webhooks_meta_conf(const char *type, const char *name, const cJSON *p, char **secret,
                          char **verify, char *label, size_t labellen)
{
    const char *s = jstr(p, "app_secret");
    const char *v = jstr(p, "verify_token");

    if (strcmp(type, "meta_whatsapp") != 0 || *secret != NULL || s == NULL)
        return 0;
    *secret = strdup(s);
    *verify = v ? strdup(v) : NULL;
    if (*secret == NULL || (v != NULL && *verify == NULL))
        return CR_ENOMEM;
    put(label, labellen, name);
    return 0;
}
