/* The pieces of Twilio's Messages API that the SMS and the WhatsApp adapters
 * both speak: account URL and basic auth, SIDs, form bodies, the status
 * callback's ref and the code and message of an error answer. */
#include "twilio_common.h"
#include "adapter.h"

#include "cr_error.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cr_twilio_sid_ok(const char *s, const char *prefix)
{
    size_t i;

    if (s == NULL || strncmp(s, prefix, 2) != 0 || strlen(s) != 34)
        return 0;
    for (i = 2; i < 34; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

int cr_twilio_form_add(struct cr_buf *body, const char *name, const char *value)
{
    if (strlen(value) > CR_TWILIO_VALUE_MAX)
        return CR_ETOOBIG;
    return cr_form_add(body, name, value);
}

int cr_twilio_callback_with_ref(const char *callback, const char *ref, struct cr_buf *out)
{
    int rc;

    if (ref == NULL)
        return cr_buf_appends(out, callback);
    rc = cr_buf_appends(out, callback);
    if (rc == 0)
        rc = cr_buf_appends(out, strchr(callback, '?') ? "&ref=" : "?ref=");
    if (rc == 0)
        rc = cr_buf_append_pct(out, ref);
    return rc;
}

/* "Basic <base64 of the n bytes of userpwd>" (RFC 7617), malloc'd; NULL when
 * out of memory. */
static char *basic_auth(const char *userpwd, size_t n)
{
    static const char scheme[] = "Basic ";
    char *out = malloc(sizeof(scheme) + 4 * ((n + 2) / 3));

    if (out == NULL)
        return NULL;
    memcpy(out, scheme, sizeof(scheme) - 1);
    EVP_EncodeBlock((unsigned char *)out + sizeof(scheme) - 1, (const unsigned char *)userpwd,
                    (int)n);
    return out;
}

int cr_twilio_account_init(struct cr_twilio_account *a, const cJSON *cfg, const char *base_url,
                           const char *path, char *err, size_t errlen)
{
    char *base = NULL;
    char *sid = NULL;
    char *token = NULL;
    struct cr_buf b;
    int rc;

    cr_buf_init(&b, CR_TWILIO_URL_MAX);
    rc = cr_cfg_base_url(base_url, path, &base, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_cfg_string(cfg, path, "account_sid", 1, &sid, err, errlen);
    if (rc < 0)
        goto out;
    if (!cr_twilio_sid_ok(sid, "AC")) {
        rc = cr_cfg_fail(err, errlen, path, "account_sid",
                         "must be \"AC\" followed by 32 hex digits");
        goto out;
    }
    rc = cr_cfg_string(cfg, path, "auth_token", 1, &token, err, errlen);
    if (rc < 0)
        goto out;
    rc = cr_buf_appendf(&b, "%s/2010-04-01/Accounts/%s/Messages.json", base, sid);
    if (rc < 0) {
        rc = rc == CR_ETOOBIG ? cr_cfg_fail(err, errlen, path, "url", "is too long") : rc;
        goto out;
    }
    a->url = cr_buf_steal(&b);
    rc = cr_buf_appendf(&b, "%s:%s", sid, token);
    if (rc < 0) {
        rc = rc == CR_ETOOBIG ? cr_cfg_fail(err, errlen, path, "auth_token", "is too long") : rc;
        goto out;
    }
    /* Encoded once here: curl would otherwise format and encode the
     * credentials again for every message. */
    a->auth = basic_auth(cr_buf_cstr(&b), b.len);
    if (a->auth == NULL) {
        rc = CR_ENOMEM;
        goto out;
    }
    rc = 0;
out:
    if (b.data != NULL)
        explicit_bzero(b.data, b.len); /* may hold "<sid>:<token>" */
    cr_buf_release(&b);
    free(base);
    free(sid);
    cr_free_secret(token);
    return rc;
}

void cr_twilio_account_release(struct cr_twilio_account *a)
{
    if (a == NULL)
        return;
    free(a->url);
    cr_free_secret(a->auth);
    a->url = NULL;
    a->auth = NULL;
}

long cr_twilio_error_code(const cJSON *doc, int whole)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(doc, "code");
    const char *s;
    char *end;
    long v;

    if (cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble < 1e9)
        return (long)c->valuedouble;
    if (!cJSON_IsString(c))
        return -1;
    s = c->valuestring;
    if (s[0] == '\0' || (!whole && !isdigit((unsigned char)s[0])))
        return -1;
    v = strtol(s, &end, 10);
    if ((*end == '\0' || !whole) && v >= 0)
        return v;
    return -1;
}

void cr_twilio_error_head(const struct cr_response *resp, const cJSON *doc, int whole, long *tc,
                          const char **msg, char *code, size_t codelen)
{
    *tc = doc ? cr_twilio_error_code(doc, whole) : -1;
    *msg = cr_json_string(doc, "message");
    if (doc == NULL)
        *msg = "body unreadable";
    else if (*msg == NULL)
        *msg = "no message in the body";
    snprintf(code, codelen, "%ld", *tc >= 0 ? *tc : resp->status);
}
