/* SendGrid v3 Mail Send (POST /v3/mail/send) as crier-sim answers it: Bearer
 * API key, the request body checked the way SendGrid checks it, 202 with an
 * X-Message-Id on success, SendGrid's error bodies otherwise. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim.h"

#define MAX_PERSONALIZATIONS 1000
#define MAX_RECIPIENTS 1000 /* to + cc + bcc in one request */
#define MAGIC_DOMAIN "invalid.sim"

struct check {
    int failed;
    char field[96];
    const char *message;
    const char *recipients[MAX_RECIPIENTS];
    size_t nrecipients;
    size_t total; /* to + cc + bcc */
    const char *refs[MAX_PERSONALIZATIONS];
    size_t nrefs;
};

static void fail(struct check *ck, const char *message, const char *field_fmt, int a, int b)
{
    if (ck->failed)
        return;
    ck->failed = 1;
    ck->message = message;
    if (field_fmt != NULL)
        snprintf(ck->field, sizeof(ck->field), field_fmt, a, b);
}

/* A plausible address: local@domain.tld, no spaces or control bytes. */
static int valid_email(const char *s)
{
    const char *at = strchr(s, '@');
    size_t n = strlen(s);
    size_t i;

    if (at == NULL || at == s || n > 320 || strchr(at + 1, '@') != NULL)
        return 0;
    if (strchr(at + 1, '.') == NULL || at[1] == '.' || s[n - 1] == '.')
        return 0;
    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= ' ' || s[i] == '<' || s[i] == '>' || s[i] == ',')
            return 0;
    }
    return 1;
}

static const char *email_of(const cJSON *o)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "email");

    return cJSON_IsString(e) ? e->valuestring : NULL;
}

static int magic_invalid(const char *email)
{
    const char *at = strrchr(email, '@');

    return at != NULL && strcasecmp(at + 1, MAGIC_DOMAIN) == 0;
}

static void check_list(struct check *ck, const cJSON *p, int i, const char *name, int required)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, name);
    const cJSON *item;
    int j = 0;
    char fmt[64];

    if (list == NULL && !required)
        return;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) < 1) {
        snprintf(fmt, sizeof(fmt), "personalizations.%%d.%s", name);
        fail(ck,
             required ? "The to array is required for all personalization objects, and must "
                        "have at least one email object with a valid email address."
                      : "The list of recipients must be an array with at least one address.",
             fmt, i, 0);
        return;
    }
    cJSON_ArrayForEach(item, list)
    {
        const char *email = email_of(item);

        snprintf(fmt, sizeof(fmt), "personalizations.%%d.%s.%%d.email", name);
        if (!cJSON_IsObject(item) || email == NULL || !valid_email(email)) {
            fail(ck, "Does not contain a valid address.", fmt, i, j);
            return;
        }
        if (ck->total >= MAX_RECIPIENTS) {
            fail(ck, "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
                 "personalizations", 0, 0);
            return;
        }
        ck->total++;
        /* only "to" addresses count as crier's recipients */
        if (strcmp(name, "to") == 0)
            ck->recipients[ck->nrecipients++] = email;
        j++;
    }
}

/* Checks the mail document; on success ck lists the recipients and refs. */
static void check_mail(struct check *ck, const cJSON *doc)
{
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(doc, "personalizations");
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(doc, "from");
    const cJSON *subject = cJSON_GetObjectItemCaseSensitive(doc, "subject");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(doc, "content");
    const cJSON *template_id = cJSON_GetObjectItemCaseSensitive(doc, "template_id");
    const cJSON *p;
    const cJSON *c;
    int all_have_subject = 1;
    int i = 0;

    if (!cJSON_IsArray(ps) || cJSON_GetArraySize(ps) < 1) {
        fail(ck, "The personalizations field is required and must have at least one "
                 "personalization.", "personalizations", 0, 0);
        return;
    }
    if (cJSON_GetArraySize(ps) > MAX_PERSONALIZATIONS) {
        fail(ck, "The personalization block is limited to 1000 personalizations per API "
                 "request.", "personalizations", 0, 0);
        return;
    }
    cJSON_ArrayForEach(p, ps)
    {
        const cJSON *psub = cJSON_GetObjectItemCaseSensitive(p, "subject");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(p, "custom_args");
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(args, "crier_ref");

        if (!cJSON_IsObject(p)) {
            fail(ck, "Each personalization must be an object.", "personalizations.%d", i, 0);
            return;
        }
        check_list(ck, p, i, "to", 1);
        check_list(ck, p, i, "cc", 0);
        check_list(ck, p, i, "bcc", 0);
        if (ck->failed)
            return;
        if (args != NULL && !cJSON_IsObject(args)) {
            fail(ck, "The custom_args parameter must be an object.",
                 "personalizations.%d.custom_args", i, 0);
            return;
        }
        if (cJSON_IsString(ref))
            ck->refs[ck->nrefs++] = ref->valuestring;
        if (!cJSON_IsString(psub) || psub->valuestring[0] == '\0')
            all_have_subject = 0;
        i++;
    }
    if (!cJSON_IsObject(from)) {
        fail(ck, "The from object must be provided for every email send. It is an object that "
                 "requires an email parameter, but may also contain a name parameter.",
             "from", 0, 0);
        return;
    }
    if (email_of(from) == NULL || !valid_email(email_of(from))) {
        fail(ck, "The from email does not contain a valid address.", "from.email", 0, 0);
        return;
    }
    if (template_id == NULL && !all_have_subject &&
        (!cJSON_IsString(subject) || subject->valuestring[0] == '\0')) {
        fail(ck, "The subject is required. You can get around this requirement if you use a "
                 "template with a subject defined or if every personalization has a subject "
                 "defined.", "subject", 0, 0);
        return;
    }
    if (template_id != NULL)
        return;
    if (!cJSON_IsArray(content) || cJSON_GetArraySize(content) < 1) {
        fail(ck, "Unless a valid template_id is provided, the content parameter is required. "
                 "There must be at least one defined content block.", "content", 0, 0);
        return;
    }
    i = 0;
    cJSON_ArrayForEach(c, content)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(c, "value");

        if (!cJSON_IsString(type) || type->valuestring[0] == '\0') {
            fail(ck, "The content type must be a string at least one character in length.",
                 "content.%d.type", i, 0);
            return;
        }
        if (!cJSON_IsString(value) || value->valuestring[0] == '\0') {
            fail(ck, "The content value must be a string at least one character in length.",
                 "content.%d.value", i, 0);
            return;
        }
        i++;
    }
}

/* {"errors":[{"message":m,"field":f|null,"help":null}]} */
static void answer_error(struct sim_response *res, int status, const char *message,
                         const char *field)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *errors = cJSON_AddArrayToObject(doc, "errors");
    cJSON *e = cJSON_CreateObject();

    cJSON_AddItemToArray(errors, e);
    cJSON_AddStringToObject(e, "message", message);
    if (field != NULL && field[0] != '\0')
        cJSON_AddStringToObject(e, "field", field);
    else
        cJSON_AddNullToObject(e, "field");
    cJSON_AddNullToObject(e, "help");
    sim_res_cjson(res, status, doc);
    cJSON_Delete(doc);
}

static int authorised(const struct sim *sim, const char *auth)
{
    return sim_starts_with_ci(auth, "Bearer ") && strcmp(auth + 7, sim->opt.sendgrid_key) == 0;
}

void sim_sendgrid_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res)
{
    static const char idchars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct check *ck = NULL;
    cJSON *doc = NULL;
    char id[23];
    size_t i;

    if (!authorised(sim, req->auth)) {
        answer_error(res, 401,
                     "The provided authorization grant is invalid, expired, or revoked", NULL);
        goto out;
    }
    doc = cJSON_ParseWithLength(req->body, req->body_len);
    if (!cJSON_IsObject(doc)) {
        answer_error(res, 400, "Bad Request", NULL);
        goto out;
    }
    ck = calloc(1, sizeof(*ck));
    if (ck == NULL) {
        answer_error(res, 503, "service unavailable", NULL);
        goto out;
    }
    check_mail(ck, doc);
    if (ck->failed) {
        answer_error(res, 400, ck->message, ck->field);
        goto out;
    }
    switch (sim_provider_inject(sim, SIM_EP_SENDGRID)) {
    case SIM_INJECT_429:
        sim_res_literal(res, 429, "{\"errors\":[{\"field\":null,\"message\":\"too many requests\"}]}");
        sim_provider_retry_after(sim, SIM_EP_SENDGRID, res);
        goto out;
    case SIM_INJECT_5XX:
        sim_res_literal(res, 503, "{\"errors\":[{\"message\":\"service unavailable\"}]}");
        goto out;
    default:
        break;
    }
    for (i = 0; i < ck->nrecipients; i++) {
        if (magic_invalid(ck->recipients[i])) {
            /* find which personalization/to index this is, for the field name */
            const cJSON *p;
            int pi = 0;
            char field[96] = "";

            cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(doc, "personalizations"))
            {
                const cJSON *t;
                int ti = 0;

                cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(p, "to"))
                {
                    if (field[0] == '\0' && email_of(t) == ck->recipients[i])
                        snprintf(field, sizeof(field), "personalizations.%d.to.%d.email", pi,
                                 ti);
                    ti++;
                }
                pi++;
            }
            answer_error(res, 400, "Does not contain a valid address.", field);
                goto out;
        }
    }
    for (i = 0; i < 22; i++)
        id[i] = idchars[sim_rng_next(&sim->rng) % 64];
    id[22] = '\0';
    res->status = 202;
    res->ctype = NULL;
    sim_res_header(res, "X-Message-Id", id);
out:
    if (ck != NULL) {
        sim_provider_done(sim, SIM_EP_SENDGRID, req, res, ck->recipients, ck->nrecipients,
                          ck->refs, ck->nrefs);
    } else {
        sim_provider_done(sim, SIM_EP_SENDGRID, req, res, NULL, 0, NULL, 0);
    }
    free(ck);
    cJSON_Delete(doc);
}
