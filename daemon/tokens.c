/* Dashboard bearer tokens (see tokens.h). */
#include "tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cr_error.h"

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    snprintf(err, errlen, fmt, a, b);
    return CR_ECONFIG;
}

static int parse_token(const cJSON *t, struct cr_token *out, char *err, size_t errlen)
{
    const cJSON *v;
    const cJSON *it;
    const char *name = t->string;
    size_t i;

    if (strlen(name) == 0 || strlen(name) > CR_TOKEN_NAME_MAX)
        return fail(err, errlen, "dashboard.tokens.%s: a name of 1 to 64 bytes%s", name, "");
    for (i = 0; name[i] != '\0'; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return fail(err, errlen, "dashboard.tokens.%s: the name may hold A-Z a-z 0-9 - _ .%s",
                        name, "");
    }
    if (!cJSON_IsObject(t))
        return fail(err, errlen,
                    "dashboard.tokens.%s: want an object {\"token\": ..., \"role\": ...}%s", name,
                    "");
    cJSON_ArrayForEach(it, t)
    {
        if (strcmp(it->string, "token") != 0 && strcmp(it->string, "role") != 0)
            return fail(err, errlen, "dashboard.tokens.%s.%s: unknown key (token, role)", name,
                        it->string);
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    v = cJSON_GetObjectItemCaseSensitive(t, "token");
    if (!cJSON_IsString(v))
        return fail(err, errlen,
                    "dashboard.tokens.%s.token: missing (a string, e.g. "
                    "\"$file:/run/credentials/crierd.service/%s\")",
                    name, name);
    out->len = strlen(v->valuestring);
    if (out->len < CR_TOKEN_MIN || out->len > CR_TOKEN_MAX)
        return fail(err, errlen, "dashboard.tokens.%s.token: %s", name,
                    "want 16 to 256 bytes (e.g. `openssl rand -hex 24`)");
    for (i = 0; i < out->len; i++) {
        unsigned char ch = (unsigned char)v->valuestring[i];

        if (ch <= ' ' || ch >= 0x7f)
            return fail(err, errlen, "dashboard.tokens.%s.token: %s", name,
                        "printable ASCII without spaces only (it is sent in a header)");
    }
    memcpy(out->token, v->valuestring, out->len);
    v = cJSON_GetObjectItemCaseSensitive(t, "role");
    if (!cJSON_IsString(v))
        return fail(err, errlen, "dashboard.tokens.%s.role: missing (\"viewer\" or \"operator\")%s",
                    name, "");
    if (strcmp(v->valuestring, "viewer") == 0)
        out->role = CR_ROLE_VIEWER;
    else if (strcmp(v->valuestring, "operator") == 0)
        out->role = CR_ROLE_OPERATOR;
    else
        return fail(err, errlen, "dashboard.tokens.%s.role: '%s' is not \"viewer\" or \"operator\"",
                    name, v->valuestring);
    return 0;
}

static int get_int(const cJSON *obj, const char *key, int lo, int hi, int *out, char *err,
                   size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char range[48];

    if (v == NULL)
        return 0;
    snprintf(range, sizeof range, "a whole number from %d to %d", lo, hi);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble || v->valueint < lo ||
        v->valueint > hi)
        return fail(err, errlen, "dashboard.%s: want %s", key, range);
    *out = v->valueint;
    return 0;
}

int cr_dashboard_conf_parse(const cJSON *obj, struct cr_dashboard_conf **out, char *err,
                            size_t errlen)
{
    struct cr_dashboard_conf *dc = NULL;
    const cJSON *toks;
    const cJSON *it;
    int rc = CR_ECONFIG;

    *out = NULL;
    if (obj == NULL || cJSON_IsNull(obj))
        return 0;
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, "dashboard: want an object {\"tokens\": {...}}%s%s", "", "");
    cJSON_ArrayForEach(it, obj)
    {
        if (strcmp(it->string, "tokens") != 0 && strcmp(it->string, "max_streams") != 0 &&
            strcmp(it->string, "recent_jobs") != 0 && strcmp(it->string, "crierctl") != 0)
            return fail(err, errlen,
                        "dashboard.%s: unknown key (tokens, max_streams, "
                        "recent_jobs, crierctl)%s",
                        it->string, "");
    }
    dc = calloc(1, sizeof(*dc));
    if (dc == NULL)
        return CR_ENOMEM;
    dc->max_streams = 32;
    dc->recent_jobs = 50;
    rc = get_int(obj, "max_streams", 0, 4096, &dc->max_streams, err, errlen);
    if (rc == 0)
        rc = get_int(obj, "recent_jobs", 1, 1000, &dc->recent_jobs, err, errlen);
    if (rc != 0)
        goto out;
    it = cJSON_GetObjectItemCaseSensitive(obj, "crierctl");
    if (it != NULL && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it) || it->valuestring[0] != '/') {
            rc = fail(err, errlen, "dashboard.crierctl: want an absolute path to crierctl%s%s", "",
                      "");
            goto out;
        }
        dc->crierctl = strdup(it->valuestring);
        if (dc->crierctl == NULL) {
            rc = CR_ENOMEM;
            goto out;
        }
    }
    toks = cJSON_GetObjectItemCaseSensitive(obj, "tokens");
    if (toks != NULL && !cJSON_IsObject(toks)) {
        rc = fail(err, errlen,
                  "dashboard.tokens: want an object {\"name\": {\"token\": ..., "
                  "\"role\": ...}}%s%s",
                  "", "");
        goto out;
    }
    cJSON_ArrayForEach(it, toks)
    {
        if (dc->ntokens == CR_TOKENS_MAX) {
            rc = fail(err, errlen, "dashboard.tokens: more than %s tokens%s", "64", "");
            goto out;
        }
        rc = parse_token(it, &dc->tokens[dc->ntokens], err, errlen);
        if (rc != 0)
            goto out;
        dc->ntokens++;
    }
    *out = dc;
    dc = NULL;
    rc = 0;
out:
    cr_dashboard_conf_free(dc);
    return rc;
}

void cr_dashboard_conf_free(struct cr_dashboard_conf *dc)
{
    if (dc == NULL)
        return;
    explicit_bzero(dc->tokens, sizeof(dc->tokens));
    free(dc->crierctl);
    free(dc);
}

/* Equal when a and b (alen bytes of a, blen of b) are the same; the time
 * depends only on blen (the configured token), not on where they differ. */
static int same(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    unsigned diff = (unsigned)(alen ^ blen);
    size_t i;

    for (i = 0; i < blen; i++)
        diff |= (unsigned)(b[i] ^ (i < alen ? a[i] : 0));
    return diff == 0;
}

enum cr_role cr_tokens_check(const struct cr_dashboard_conf *dc, const char *value,
                             const char **name)
{
    enum cr_role role = CR_ROLE_NONE;
    const char *tok;
    size_t len;
    size_t i;

    if (name != NULL)
        *name = NULL;
    if (dc == NULL || value == NULL || strncasecmp(value, "Bearer ", 7) != 0)
        return CR_ROLE_NONE;
    tok = value + 7;
    while (*tok == ' ')
        tok++;
    len = strlen(tok);
    while (len > 0 && tok[len - 1] == ' ')
        len--;
    if (len == 0 || len > CR_TOKEN_MAX)
        return CR_ROLE_NONE;
    for (i = 0; i < dc->ntokens; i++) {
        const struct cr_token *t = &dc->tokens[i];

        if (same((const unsigned char *)tok, len, t->token, t->len) && role == CR_ROLE_NONE) {
            role = t->role;
            if (name != NULL)
                *name = t->name;
        }
    }
    return role;
}

const char *cr_role_name(enum cr_role r)
{
    return r == CR_ROLE_OPERATOR ? "operator" : r == CR_ROLE_VIEWER ? "viewer" : "none";
}
