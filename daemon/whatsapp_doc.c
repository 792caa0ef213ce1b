/* Parsing and checking message.whatsapp (see whatsapp_doc.h). */
#include "whatsapp_doc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_str.h"
#include "template.h"

struct wctx {
    const char *path;
    char *code;
    size_t codelen;
    char *msg;
    size_t msglen;
};

static int wfail(struct wctx *w, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int wfail(struct wctx *w, const char *code, const char *fmt, ...)
{
    va_list ap;
    int n;

    snprintf(w->code, w->codelen, "%s", code);
    n = snprintf(w->msg, w->msglen, "%s.", w->path);
    if (n < 0 || (size_t)n >= w->msglen)
        return CR_EINVAL;
    va_start(ap, fmt);
    vsnprintf(w->msg + n, w->msglen - (size_t)n, fmt, ap);
    va_end(ap);
    return CR_EINVAL;
}

static int dup_into(const char *s, char **out)
{
    *out = strdup(s);
    return *out ? 0 : CR_ENOMEM;
}

/* A string template at key: length, and that it compiles. */
static int check_tpl(struct wctx *w, const char *key, const char *s, size_t max)
{
    char err[128];
    struct cr_tpl *t = NULL;
    size_t n = strlen(s);
    int rc;

    if (n > max)
        return wfail(w, "too_long", "%s: %zu bytes, over the limit of %zu", key, n, max);
    if (strchr(s, CR_WA_VAR_SEP) != NULL)
        return wfail(w, "bad_whatsapp", "%s: must not contain the control character U+001F", key);
    rc = cr_tpl_compile(s, &t, err, sizeof(err));
    cr_tpl_free(t);
    if (rc == CR_ENOMEM)
        return rc;
    if (rc < 0)
        return wfail(w, "bad_template", "%s: %s", key, err);
    return 0;
}

/* variables: {"1": "...", ..., "n": "..."}, every number 1..n once. */
static int parse_vars(struct wctx *w, const cJSON *vars, char **out)
{
    const char *val[CR_WA_VARS_MAX] = {0};
    const cJSON *v;
    struct cr_buf b;
    char key[32];
    size_t n = 0;
    size_t i;
    int rc;

    if (!cJSON_IsObject(vars))
        return wfail(w, "bad_type", "variables: must be an object {\"1\": \"...\"}");
    for (v = vars->child; v; v = v->next) {
        char *end = NULL;
        long k;

        n++;
        if (n > CR_WA_VARS_MAX)
            return wfail(w, "too_long", "variables: more than %d, over WhatsApp's template limit",
                         CR_WA_VARS_MAX);
        k = v->string && v->string[0] >= '1' && v->string[0] <= '9' ? strtol(v->string, &end, 10)
                                                                    : 0;
        if (k < 1 || k > CR_WA_VARS_MAX || end == NULL || *end != '\0')
            return wfail(w, "bad_whatsapp", "variables: keys must be the numbers 1 to %d",
                         CR_WA_VARS_MAX);
        snprintf(key, sizeof(key), "variables.%ld", k);
        if (!cJSON_IsString(v))
            return wfail(w, "bad_type", "%s: must be a string", key);
        if (val[k - 1] != NULL)
            return wfail(w, "bad_whatsapp", "%s: given twice", key);
        rc = check_tpl(w, key, v->valuestring, CR_WA_VAR_MAX);
        if (rc < 0)
            return rc;
        val[k - 1] = v->valuestring;
    }
    for (i = 0; i < n; i++) {
        if (val[i] == NULL)
            return wfail(w, "bad_whatsapp",
                         "variables: %zu given but \"%zu\" is missing (they are numbered 1 to n)",
                         n, i + 1);
    }
    if (n == 0)
        return 0;
    cr_buf_init(&b, (size_t)CR_WA_VARS_MAX * (CR_WA_VAR_MAX + 1) + 1);
    rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        if (i > 0)
            rc = cr_buf_append(&b, (const char[]){CR_WA_VAR_SEP}, 1);
        if (rc == 0)
            rc = cr_buf_append(&b, val[i], strlen(val[i]));
    }
    if (rc == 0)
        rc = dup_into(cr_buf_cstr(&b), out);
    cr_buf_release(&b);
    return rc < 0 ? CR_ENOMEM : 0;
}

int cr_wa_doc_parse(const cJSON *obj, const char *path, struct cr_content *ct, char *code,
                    size_t codelen, char *msg, size_t msglen)
{
    struct wctx w = {path, code, codelen, msg, msglen};
    const cJSON *tpl;
    const cJSON *lang;
    const cJSON *vars;
    const cJSON *text;
    const cJSON *v;
    size_t n;
    int rc;

    if (!cJSON_IsObject(obj)) {
        snprintf(code, codelen, "bad_type");
        snprintf(msg, msglen, "%s: must be an object {\"template\", \"language\", \"variables\", "
                 "\"text\"}", path);
        return CR_EINVAL;
    }
    for (v = obj->child; v; v = v->next) {
        if (strcmp(v->string, "template") != 0 && strcmp(v->string, "language") != 0 &&
            strcmp(v->string, "variables") != 0 && strcmp(v->string, "text") != 0)
            return wfail(&w, "unknown_field", "%.40s: not a key of a WhatsApp message "
                         "(template, language, variables, text)", v->string);
    }
    tpl = cJSON_GetObjectItemCaseSensitive(obj, "template");
    lang = cJSON_GetObjectItemCaseSensitive(obj, "language");
    vars = cJSON_GetObjectItemCaseSensitive(obj, "variables");
    text = cJSON_GetObjectItemCaseSensitive(obj, "text");
    if (tpl == NULL)
        return wfail(&w, "missing_field", "template: required (the approved template's name or "
                     "content id: a message outside the 24-hour window must use one)");
    if (!cJSON_IsString(tpl))
        return wfail(&w, "bad_type", "template: must be a string");
    n = strlen(tpl->valuestring);
    if (n == 0 || n > CR_WA_TEMPLATE_MAX ||
        !cr_chars_ok(tpl->valuestring, n, CR_CHARS_LETTERS | CR_CHARS_DIGITS, "_.-"))
        return wfail(&w, "bad_whatsapp", "template: must be 1 to %d of A-Z a-z 0-9 _ . -",
                     CR_WA_TEMPLATE_MAX);
    if (lang != NULL && !cJSON_IsString(lang))
        return wfail(&w, "bad_type", "language: must be a string");
    if (lang == NULL)
        return wfail(&w, "missing_field", "language: required (the template's language, "
                     "e.g. \"en_GB\")");
    n = strlen(lang->valuestring);
    if (n < 2 || n > CR_WA_LANGUAGE_MAX ||
        !cr_chars_ok(lang->valuestring, n, CR_CHARS_LETTERS, "_-"))
        return wfail(&w, "bad_whatsapp", "language: must be a language code like \"en_GB\"");
    if (text != NULL && !cJSON_IsString(text))
        return wfail(&w, "bad_type", "text: must be a string");
    if (text != NULL) {
        rc = check_tpl(&w, "text", text->valuestring, CR_WA_TEXT_MAX);
        if (rc < 0)
            return rc;
    }
    if (vars != NULL) {
        rc = parse_vars(&w, vars, &ct->wa_vars);
        if (rc < 0)
            return rc;
    }
    rc = dup_into(tpl->valuestring, &ct->wa_template);
    if (rc == 0)
        rc = dup_into(lang->valuestring, &ct->wa_language);
    if (rc == 0 && text != NULL && text->valuestring[0])
        rc = dup_into(text->valuestring, &ct->wa_text);
    return rc;
}

void cr_wa_doc_release(struct cr_content *ct)
{
    free(ct->wa_template);
    free(ct->wa_language);
    free(ct->wa_vars);
    free(ct->wa_text);
    ct->wa_template = ct->wa_language = ct->wa_vars = ct->wa_text = NULL;
}

int cr_wa_window_open(const char *last_inbound, int64_t now_ms)
{
    char *end = NULL;
    long long t;

    if (last_inbound == NULL || last_inbound[0] < '0' || last_inbound[0] > '9')
        return 0;
    t = strtoll(last_inbound, &end, 10);
    if (end == NULL || *end != '\0' || t <= 0)
        return 0;
    return t <= now_ms + 60000 && now_ms - t < CR_WA_WINDOW_MS; /* a minute of clock skew */
}
