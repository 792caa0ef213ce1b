/* The v1 job document (see job.h and DESIGN.md): untrusted bytes from Redis
 * are size-checked, parsed with cJSON, walked once for depth and encoding,
 * then checked field by field so that every refusal names the path and what a
 * person must change. */
#include "job.h"
#include "cr_error.h"
#include "cr_str.h"
#include "sms.h"
#include "survey.h"
#include "whatsapp_doc.h"
#include "template.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PATH_MAX_LEN 160
#define SEGMENT_NAME_MAX 128
#define SUBSCRIBER_ID_MAX 64
#define SENDER_MAX 256
#define SURVEY_QUESTION_MAX 1000
#define SURVEY_OPTION_MAX 200
#define SURVEY_OPTIONS_MIN 2
#define SURVEY_OPTIONS_MAX 10
#define LANG_MIN 2
#define LANG_MAX_LEN (CR_LANG_MAX - 1)

struct ctx {
    const struct cr_job_limits *lim;
    struct cr_job_error *err;
};

static int fail(struct ctx *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records why the job is refused; returns CR_EINVAL for the caller to pass up. */
static int fail(struct ctx *c, const char *code, const char *fmt, ...)
{
    va_list ap;

    snprintf(c->err->code, sizeof(c->err->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(c->err->message, sizeof(c->err->message), fmt, ap);
    va_end(ap);
    return CR_EINVAL;
}

static int oom(struct ctx *c)
{
    fail(c, "no_memory", "out of memory while reading the job; it will be retried");
    return CR_ENOMEM;
}

/* Copies at most max bytes of untrusted s into dst for a message, replacing
 * anything but printable ASCII with '?' and marking a cut with "...". */
static const char *quote(char *dst, size_t dstlen, const char *s, size_t max)
{
    size_t i;
    size_t n = 0;

    if (max + 4 > dstlen)
        max = dstlen - 4;
    for (i = 0; s[i] && n < max; i++) {
        unsigned char ch = (unsigned char)s[i];

        dst[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (s[i]) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
    return dst;
}

/* Marks a path cut short by the buffer (only very deep paths are). */
static void mark_cut(char *dst, int n)
{
    if (n < 0 || n >= PATH_MAX_LEN)
        memcpy(dst + PATH_MAX_LEN - 4, "...", 4);
}

/* dst = prefix "." key (or key alone at the top), key made printable. */
static void join(char *dst, const char *prefix, const char *key)
{
    char q[40];
    int n;

    quote(q, sizeof(q), key, 32);
    if (prefix[0])
        n = snprintf(dst, PATH_MAX_LEN, "%s.%s", prefix, q);
    else
        n = snprintf(dst, PATH_MAX_LEN, "%s", q);
    mark_cut(dst, n);
}

static void join_index(char *dst, const char *prefix, size_t i)
{
    int n = snprintf(dst, PATH_MAX_LEN, "%s[%zu]", prefix, i);

    mark_cut(dst, n);
}

/* One walk over the whole tree before any field is read: nesting depth (the
 * top-level object is 1) and UTF-8 in every key and string. */
static int walk(struct ctx *c, const cJSON *node, int depth, const char *path)
{
    char sub[PATH_MAX_LEN];
    const cJSON *ch;
    size_t i = 0;
    long bad;
    int rc;

    if (cJSON_IsString(node)) {
        bad = cr_utf8_invalid_at(node->valuestring);
        if (bad >= 0)
            return fail(c, "bad_encoding", "%s: not valid UTF-8 (at byte %ld of the string)",
                        path[0] ? path : "document", bad);
        return 0;
    }
    if (!cJSON_IsArray(node) && !cJSON_IsObject(node))
        return 0;
    if (depth > c->lim->depth)
        return fail(c, "too_deep", "%s: nested %d deep, over the limit of %d",
                    path[0] ? path : "document", depth, c->lim->depth);
    for (ch = node->child; ch; ch = ch->next, i++) {
        if (cJSON_IsObject(node)) {
            bad = cr_utf8_invalid_at(ch->string);
            join(sub, path, ch->string);
            if (bad >= 0)
                return fail(c, "bad_encoding", "%s: field name is not valid UTF-8", sub);
        } else {
            join_index(sub, path, i);
        }
        rc = walk(c, ch, depth + 1, sub);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Any NUL inside a string would silently cut it short once in C, so a
 * document holding one ("\u0000" or a raw byte) is refused as a whole. */
static int check_nul(struct ctx *c, const char *doc, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (doc[i] == '\0') {
            c->err->at = (long)i;
            return fail(c, "bad_encoding", "document: NUL byte at byte %zu", i);
        }
        if (doc[i] != '\\' || i + 1 >= len)
            continue;
        if (doc[i + 1] == 'u' && i + 5 < len && memcmp(doc + i + 2, "0000", 4) == 0) {
            c->err->at = (long)i;
            return fail(c, "bad_encoding",
                        "document: \\u0000 at byte %zu; no string may contain NUL", i);
        }
        i++; /* skip the escaped character, so "\\u0000" is text */
    }
    return 0;
}

/* Refuses keys outside allowed (at most 32) and keys given twice. */
static int check_keys(struct ctx *c, const cJSON *obj, const char *path, const char *const *allowed,
                      size_t nallowed)
{
    char sub[PATH_MAX_LEN];
    const cJSON *ch;
    unsigned long seen = 0;
    size_t k;

    for (ch = obj->child; ch; ch = ch->next) {
        for (k = 0; k < nallowed; k++) {
            if (strcmp(ch->string, allowed[k]) == 0)
                break;
        }
        join(sub, path, ch->string);
        if (k == nallowed)
            return fail(c, "unknown_field", "%s: unknown field", sub);
        if (seen & (1ul << k))
            return fail(c, "duplicate_field", "%s: given more than once", sub);
        seen |= 1ul << k;
    }
    return 0;
}

/* Refuses a key given twice in an object of free keys (n is already capped). */
static int check_unique(struct ctx *c, const cJSON *obj, const char *path)
{
    char sub[PATH_MAX_LEN];
    const cJSON *a;
    const cJSON *b;

    for (a = obj->child; a; a = a->next) {
        for (b = a->next; b; b = b->next) {
            if (strcmp(a->string, b->string) == 0) {
                join(sub, path, a->string);
                return fail(c, "duplicate_field", "%s: given more than once", sub);
            }
        }
    }
    return 0;
}

static const cJSON *get(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* Optional string field: *out is NULL when absent. */
static int opt_string(struct ctx *c, const cJSON *obj, const char *path, const char *key,
                      const char **out)
{
    const cJSON *v = get(obj, key);
    char sub[PATH_MAX_LEN];

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!cJSON_IsString(v)) {
        join(sub, path, key);
        return fail(c, "bad_type", "%s: must be a string", sub);
    }
    *out = v->valuestring;
    return 0;
}

/* Optional object field: *out is NULL when absent. */
static int opt_object(struct ctx *c, const cJSON *obj, const char *path, const char *key,
                      const cJSON **out)
{
    const cJSON *v = get(obj, key);
    char sub[PATH_MAX_LEN];

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!cJSON_IsObject(v)) {
        join(sub, path, key);
        return fail(c, "bad_type", "%s: must be an object", sub);
    }
    *out = v;
    return 0;
}

static int dup_str(struct ctx *c, const char *s, char **out)
{
    *out = strdup(s);
    return *out ? 0 : oom(c);
}

static int valid_lang(const char *s)
{
    size_t n = strlen(s);

    return n >= LANG_MIN && n <= LANG_MAX_LEN && cr_chars_ok(s, n, CR_CHARS_LETTERS, "-");
}

/* [A-Za-z0-9][A-Za-z0-9._:-]*, n (its length) at most max. */
static int valid_id(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max || strchr("._:-", s[0]) != NULL)
        return 0;
    return cr_chars_ok(s, n, CR_CHARS_LETTERS | CR_CHARS_DIGITS, "._:-");
}

static int parse_id(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    size_t max = c->lim->id_length < CR_JOB_ID_MAX ? c->lim->id_length : CR_JOB_ID_MAX;
    const char *s;
    char q[48];
    size_t n;
    int rc;

    rc = opt_string(c, root, "", "id", &s);
    if (rc < 0 || s == NULL)
        return rc;
    n = strlen(s);
    if (!valid_id(s, n, max))
        return fail(c, "bad_id",
                    "id: '%s' must be 1 to %zu characters of A-Z a-z 0-9 . _ : -, starting "
                    "with a letter or digit",
                    quote(q, sizeof(q), s, 40), max);
    memcpy(job->id, s, n + 1);
    return 0;
}

static int parse_priority(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    const char *s;
    char q[48];
    int rc;

    job->priority = CR_PRIO_NORMAL;
    rc = opt_string(c, root, "", "priority", &s);
    if (rc < 0 || s == NULL)
        return rc;
    if (cr_priority_parse(s, &job->priority) < 0)
        return fail(c, "unknown_priority",
                    "priority: '%s' is not one of urgent, high, normal, bulk",
                    quote(q, sizeof(q), s, 40));
    return 0;
}

enum name_kind { NAME_SEGMENT, NAME_SUBSCRIBER };

static int valid_name(const char *s, enum name_kind kind)
{
    size_t n = strlen(s);
    size_t i;

    if (n == 0 || n > (kind == NAME_SEGMENT ? SEGMENT_NAME_MAX : SUBSCRIBER_ID_MAX))
        return 0;
    if (kind == NAME_SUBSCRIBER)
        return cr_chars_ok(s, n, CR_CHARS_LETTERS | CR_CHARS_DIGITS, "._:-");
    for (i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    }
    return 1;
}

/* audience.<key>: an optional array of at most max names, copied to *out. */
static int parse_names(struct ctx *c, const cJSON *aud, const char *key, enum name_kind kind,
                       size_t max, struct cr_strlist *out)
{
    const cJSON *arr = get(aud, key);
    const cJSON *v;
    char path[PATH_MAX_LEN];
    char sub[PATH_MAX_LEN];
    char q[48];
    size_t n;
    size_t i = 0;

    join(path, "audience", key);
    if (arr == NULL)
        return 0;
    if (!cJSON_IsArray(arr))
        return fail(c, "bad_type", "%s: must be an array of strings", path);
    n = (size_t)cJSON_GetArraySize(arr);
    if (n > max)
        return fail(c, "too_long", "%s: %zu names, over the limit of %zu", path, n, max);
    if (n == 0)
        return 0;
    out->v = calloc(n, sizeof(*out->v));
    if (out->v == NULL)
        return oom(c);
    for (v = arr->child; v; v = v->next, i++) {
        join_index(sub, path, i);
        if (!cJSON_IsString(v))
            return fail(c, "bad_type", "%s: must be a string", sub);
        if (!valid_name(v->valuestring, kind)) {
            if (kind == NAME_SEGMENT)
                return fail(c, "bad_name",
                            "%s: '%s' must be 1 to %d printable ASCII characters without "
                            "spaces",
                            sub, quote(q, sizeof(q), v->valuestring, 40), SEGMENT_NAME_MAX);
            return fail(c, "bad_name", "%s: '%s' must be 1 to %d characters of A-Z a-z 0-9 . _ : -",
                        sub, quote(q, sizeof(q), v->valuestring, 40), SUBSCRIBER_ID_MAX);
        }
        if (dup_str(c, v->valuestring, &out->v[out->n]) < 0)
            return CR_ENOMEM;
        out->n++;
    }
    return 0;
}

/* audience.answered: the residents who gave one of the options to a
 * question of a survey wave, as the segments the answers are kept in
 * (survey.h), added to the job's segments within the same limit. */
static int parse_answered(struct ctx *c, const cJSON *ans, struct cr_strlist *segs)
{
    char names[CR_MSURVEY_OPTIONS_MAX][CR_MSURVEY_ID_MAX * 3 + 16];
    char **v;
    size_t n, i;
    int rc;

    rc = cr_msurvey_answered(ans, names, &n, c->err->code, sizeof(c->err->code), c->err->message,
                             sizeof(c->err->message));
    if (rc != 0)
        return rc;
    if (segs->n + n > c->lim->segments)
        return fail(c, "too_long", "audience: %zu segments with answered, over the limit of %zu",
                    segs->n + n, c->lim->segments);
    v = realloc(segs->v, (segs->n + n) * sizeof(*v));
    if (v == NULL)
        return oom(c);
    segs->v = v;
    for (i = 0; i < n; i++) {
        if (dup_str(c, names[i], &segs->v[segs->n]) < 0)
            return CR_ENOMEM;
        segs->n++;
    }
    return 0;
}

static int parse_audience(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    static const char *const keys[] = {"segments", "require", "exclude", "subscribers",
                                       "answered"};
    const cJSON *aud = get(root, "audience");
    int rc;

    if (aud == NULL)
        return fail(c, "missing_field", "audience: required (segments and/or subscribers)");
    if (!cJSON_IsObject(aud))
        return fail(c, "bad_type", "audience: must be an object");
    rc = check_keys(c, aud, "audience", keys, 5);
    if (rc == 0)
        rc = parse_names(c, aud, "segments", NAME_SEGMENT, c->lim->segments, &job->segments);
    job->segments_named = job->segments.n;
    if (rc == 0 && get(aud, "answered") != NULL)
        rc = parse_answered(c, get(aud, "answered"), &job->segments);
    if (rc == 0)
        rc = parse_names(c, aud, "require", NAME_SEGMENT, c->lim->segments, &job->require);
    if (rc == 0)
        rc = parse_names(c, aud, "exclude", NAME_SEGMENT, c->lim->segments, &job->exclude);
    if (rc == 0)
        rc = parse_names(c, aud, "subscribers", NAME_SUBSCRIBER, c->lim->subscribers,
                         &job->subscribers);
    if (rc < 0)
        return rc;
    if (job->segments.n == 0 && job->subscribers.n == 0)
        return fail(c, "empty_audience", "audience: names no segments and no subscribers");
    return 0;
}

static int parse_channels(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    const cJSON *arr = get(root, "channels");
    const cJSON *v;
    char sub[PATH_MAX_LEN];
    char q[48];
    enum cr_channel ch;
    size_t i = 0;

    if (arr == NULL)
        return fail(c, "missing_field", "channels: required (any of email, sms, push, whatsapp)");
    if (!cJSON_IsArray(arr))
        return fail(c, "bad_type", "channels: must be an array of strings");
    if (arr->child == NULL)
        return fail(c, "unknown_channel", "channels: must name at least one of email, sms, push, whatsapp");
    for (v = arr->child; v; v = v->next, i++) {
        join_index(sub, "channels", i);
        if (!cJSON_IsString(v))
            return fail(c, "bad_type", "%s: must be a string", sub);
        if (cr_channel_parse(v->valuestring, &ch) < 0)
            return fail(c, "unknown_channel", "%s: '%s' is not one of email, sms, push, whatsapp", sub,
                        quote(q, sizeof(q), v->valuestring, 40));
        if (job->channels & CR_CH_BIT(ch))
            return fail(c, "unknown_channel", "%s: '%s' is listed twice", sub, v->valuestring);
        job->channels |= CR_CH_BIT(ch);
    }
    return 0;
}

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static int parse_sender(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    static const char *const keys[] = {"name", "team"};
    const cJSON *snd;
    const char *name;
    const char *team;
    int rc;

    rc = opt_object(c, root, "", "sender", &snd);
    if (rc < 0 || snd == NULL)
        return rc;
    rc = check_keys(c, snd, "sender", keys, 2);
    if (rc == 0)
        rc = opt_string(c, snd, "sender", "name", &name);
    if (rc == 0)
        rc = opt_string(c, snd, "sender", "team", &team);
    if (rc < 0)
        return rc;
    /* both may reach an email From: header */
    if (name && has_crlf(name))
        return fail(c, "bad_header",
                    "sender.name: must not contain line breaks (it becomes "
                    "an email header)");
    if (team && has_crlf(team))
        return fail(c, "bad_header",
                    "sender.team: must not contain line breaks (it becomes "
                    "an email header)");
    if (name && strlen(name) > SENDER_MAX)
        return fail(c, "too_long", "sender.name: %zu bytes, over the limit of %d", strlen(name),
                    SENDER_MAX);
    if (team && strlen(team) > SENDER_MAX)
        return fail(c, "too_long", "sender.team: %zu bytes, over the limit of %d", strlen(team),
                    SENDER_MAX);
    if (name && name[0] && dup_str(c, name, &job->sender_name) < 0)
        return CR_ENOMEM;
    if (team && team[0] && dup_str(c, team, &job->sender_team) < 0)
        return CR_ENOMEM;
    return 0;
}

enum part_flags { PART_HEADER = 1 << 0, PART_SMS = 1 << 1 };

/* One content part: type, length, header safety, template, SMS segments.
 * An empty string is the same as an absent part. */
static int parse_part(struct ctx *c, const cJSON *obj, const char *path, const char *key,
                      size_t max, unsigned flags, char **out)
{
    char sub[PATH_MAX_LEN];
    char tplerr[128];
    struct cr_tpl *tpl = NULL;
    struct cr_sms_info sms;
    const char *s;
    size_t n;
    int rc;

    rc = opt_string(c, obj, path, key, &s);
    if (rc < 0 || s == NULL || s[0] == '\0')
        return rc;
    join(sub, path, key);
    n = strlen(s);
    if (n > max)
        return fail(c, "too_long", "%s: %zu bytes, over the limit of %zu", sub, n, max);
    if ((flags & PART_HEADER) && has_crlf(s))
        return fail(c, "bad_header",
                    "%s: must not contain line breaks (it becomes an email "
                    "header)",
                    sub);
    rc = cr_tpl_compile(s, &tpl, tplerr, sizeof(tplerr));
    cr_tpl_free(tpl);
    if (rc == CR_ENOMEM)
        return oom(c);
    if (rc < 0)
        return fail(c, "bad_template", "%s: %s", sub, tplerr);
    if (flags & PART_SMS) {
        if (cr_sms_measure(s, n, &sms) < 0)
            return fail(c, "bad_encoding", "%s: not valid UTF-8", sub);
        if (c->lim->sms_segments >= 0 && sms.segments > (size_t)c->lim->sms_segments)
            return fail(c, "too_long", "%s: %zu SMS segments (%s), over the limit of %d", sub,
                        sms.segments, sms.encoding == CR_SMS_GSM7 ? "GSM-7" : "UCS-2",
                        c->lim->sms_segments);
    }
    return dup_str(c, s, out);
}

/* The parts of message (the default language) or of one translation. */
static int parse_content(struct ctx *c, const cJSON *obj, const char *path, int is_default,
                         struct cr_content *ct)
{
    static const char *const default_keys[] = {"lang", "subject",      "text",    "html", "sms",
                                               "push", "translations", "whatsapp"};
    static const char *const tr_keys[] = {"subject", "text",   "html",
                                          "sms",     "push",   "survey", "whatsapp"};
    static const char *const push_keys[] = {"title", "body"};
    const struct cr_job_limits *lim = c->lim;
    char ppath[PATH_MAX_LEN];
    const cJSON *push;
    int rc;

    if (is_default)
        rc = check_keys(c, obj, path, default_keys, 8);
    else
        rc = check_keys(c, obj, path, tr_keys, 7); /* survey: parse_translated_surveys */
    if (rc == 0)
        rc = parse_part(c, obj, path, "subject", lim->subject, PART_HEADER, &ct->subject);
    if (rc == 0)
        rc = parse_part(c, obj, path, "text", lim->text, 0, &ct->text);
    if (rc == 0)
        rc = parse_part(c, obj, path, "html", lim->html, 0, &ct->html);
    if (rc == 0)
        rc = parse_part(c, obj, path, "sms", SIZE_MAX, PART_SMS, &ct->sms);
    if (rc == 0 && get(obj, "whatsapp") != NULL) {
        join(ppath, path, "whatsapp");
        rc = cr_wa_doc_parse(get(obj, "whatsapp"), ppath, ct, c->err->code,
                             sizeof(c->err->code), c->err->message, sizeof(c->err->message));
        if (rc == CR_ENOMEM)
            return oom(c);
    }
    if (rc == 0)
        rc = opt_object(c, obj, path, "push", &push);
    if (rc < 0 || push == NULL)
        return rc;
    join(ppath, path, "push");
    rc = check_keys(c, push, ppath, push_keys, 2);
    if (rc == 0)
        rc = parse_part(c, push, ppath, "title", lim->push_title, 0, &ct->push_title);
    if (rc == 0)
        rc = parse_part(c, push, ppath, "body", lim->push_body, 0, &ct->push_body);
    return rc;
}

static int parse_translations(struct ctx *c, const cJSON *msg, struct cr_job *job)
{
    const cJSON *trs;
    const cJSON *t;
    char path[PATH_MAX_LEN];
    char q[48];
    size_t n;
    int rc;

    rc = opt_object(c, msg, "message", "translations", &trs);
    if (rc < 0 || trs == NULL)
        return rc;
    n = (size_t)cJSON_GetArraySize(trs);
    if (n > c->lim->translations)
        return fail(c, "too_long", "message.translations: %zu languages, over the limit of %zu", n,
                    c->lim->translations);
    rc = check_unique(c, trs, "message.translations");
    if (rc < 0 || n == 0)
        return rc;
    job->translations = calloc(n, sizeof(*job->translations));
    if (job->translations == NULL)
        return oom(c);
    for (t = trs->child; t; t = t->next) {
        struct cr_translation *tr = &job->translations[job->ntranslations];

        join(path, "message.translations", t->string);
        if (!valid_lang(t->string))
            return fail(c, "bad_lang",
                        "message.translations: '%s' is not a language tag (2 to %d of A-Z a-z -)",
                        quote(q, sizeof(q), t->string, 40), LANG_MAX_LEN);
        if (!cJSON_IsObject(t))
            return fail(c, "bad_type", "%s: must be an object", path);
        /* counted before its parts so that release frees a half-filled one */
        memcpy(tr->lang, t->string, strlen(t->string) + 1);
        job->ntranslations++;
        rc = parse_content(c, t, path, 0, &tr->content);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_message(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    const cJSON *msg = get(root, "message");
    const char *lang;
    char q[48];
    int rc;

    if (msg == NULL)
        return fail(c, "missing_field", "message: required");
    if (!cJSON_IsObject(msg))
        return fail(c, "bad_type", "message: must be an object");
    rc = parse_content(c, msg, "message", 1, &job->content);
    if (rc == 0)
        rc = opt_string(c, msg, "message", "lang", &lang);
    if (rc < 0)
        return rc;
    if (lang == NULL)
        lang = "en";
    if (!valid_lang(lang))
        return fail(c, "bad_lang",
                    "message.lang: '%s' is not a language tag (2 to %d of A-Z a-z -)",
                    quote(q, sizeof(q), lang, 40), LANG_MAX_LEN);
    memcpy(job->lang, lang, strlen(lang) + 1);
    return parse_translations(c, msg, job);
}

/* Every channel listed needs its content in the default language. */
static int check_content(struct ctx *c, const struct cr_job *job)
{
    const struct cr_content *ct = &job->content;

    if (job->channels & CR_CH_BIT(CR_CH_EMAIL)) {
        if (ct->subject == NULL)
            return fail(c, "no_content",
                        "message.subject: required because channels include "
                        "email");
        if (ct->text == NULL && ct->html == NULL)
            return fail(c, "no_content",
                        "message.text: required (or message.html) because "
                        "channels include email");
    }
    if ((job->channels & CR_CH_BIT(CR_CH_SMS)) && ct->sms == NULL)
        return fail(c, "no_content", "message.sms: required because channels include sms");
    if ((job->channels & CR_CH_BIT(CR_CH_WHATSAPP)) && ct->wa_template == NULL)
        return fail(c, "no_content",
                    "message.whatsapp: a template required because channels include whatsapp");
    if ((job->channels & CR_CH_BIT(CR_CH_PUSH)) && ct->push_title == NULL && ct->push_body == NULL)
        return fail(c, "no_content",
                    "message.push: title or body required because channels include push");
    return 0;
}

/* A survey object at path: its question and 2 to 10 options (exactly want
 * of them when want > 0) into *question and *options. */
static int parse_survey_obj(struct ctx *c, const cJSON *sv, const char *path, size_t want,
                            char **question, struct cr_strlist *options)
{
    static const char *const keys[] = {"question", "options"};
    const cJSON *opts;
    const cJSON *v;
    const char *q;
    char sub[PATH_MAX_LEN];
    char opath[PATH_MAX_LEN];
    size_t n;
    size_t i = 0;
    int rc;

    rc = check_keys(c, sv, path, keys, 2);
    if (rc == 0)
        rc = opt_string(c, sv, path, "question", &q);
    if (rc < 0)
        return rc;
    if (q == NULL || q[0] == '\0')
        return fail(c, "missing_field", "%s.question: required when a survey is given", path);
    if (strlen(q) > SURVEY_QUESTION_MAX)
        return fail(c, "too_long", "%s.question: %zu bytes, over the limit of %d", path,
                    strlen(q), SURVEY_QUESTION_MAX);
    join(opath, path, "options");
    opts = get(sv, "options");
    if (opts == NULL)
        return fail(c, "missing_field", "%s: required when a survey is given", opath);
    if (!cJSON_IsArray(opts))
        return fail(c, "bad_type", "%s: must be an array of strings", opath);
    n = (size_t)cJSON_GetArraySize(opts);
    if (n < SURVEY_OPTIONS_MIN || n > SURVEY_OPTIONS_MAX)
        return fail(c, "bad_survey", "%s: %zu given, a survey needs %d to %d", opath, n,
                    SURVEY_OPTIONS_MIN, SURVEY_OPTIONS_MAX);
    /* answers are counted by option number, whatever the language */
    if (want > 0 && n != want)
        return fail(c, "bad_survey", "%s: %zu given, survey.options has %zu", opath, n, want);
    if (dup_str(c, q, question) < 0)
        return CR_ENOMEM;
    options->v = calloc(n, sizeof(char *));
    if (options->v == NULL)
        return oom(c);
    for (v = opts->child; v; v = v->next, i++) {
        join_index(sub, opath, i);
        if (!cJSON_IsString(v))
            return fail(c, "bad_type", "%s: must be a string", sub);
        if (v->valuestring[0] == '\0')
            return fail(c, "bad_survey", "%s: must not be empty", sub);
        if (strlen(v->valuestring) > SURVEY_OPTION_MAX)
            return fail(c, "too_long", "%s: %zu bytes, over the limit of %d", sub,
                        strlen(v->valuestring), SURVEY_OPTION_MAX);
        if (dup_str(c, v->valuestring, &options->v[options->n]) < 0)
            return CR_ENOMEM;
        options->n++;
    }
    return 0;
}

static int parse_survey(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    const cJSON *sv;
    int rc;

    rc = opt_object(c, root, "", "survey", &sv);
    if (rc < 0 || sv == NULL)
        return rc;
    if (cr_msurvey_is_multi(sv)) {
        rc = cr_msurvey_check(sv, get(get(root, "message"), "translations"), c->err->code,
                              sizeof(c->err->code), c->err->message, sizeof(c->err->message));
        if (rc == 0)
            rc = dup_str(c, get(sv, "id")->valuestring, &job->survey_id);
        return rc;
    }
    return parse_survey_obj(c, sv, "survey", 0, &job->survey_question, &job->survey_options);
}

/* message.translations.<lang>.survey: the survey in that language, with as
 * many options as the job's survey (after parse_survey). */
static int parse_translated_surveys(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    const cJSON *trs = get(get(root, "message"), "translations");
    const cJSON *t;
    size_t i = 0;
    int rc;

    if (!cJSON_IsObject(trs) || job->survey_id != NULL) /* multi: cr_msurvey_check */
        return 0;
    for (t = trs->child; t != NULL && i < job->ntranslations; t = t->next, i++) {
        struct cr_translation *tr = &job->translations[i];
        char tpath[PATH_MAX_LEN];
        char path[PATH_MAX_LEN];
        const cJSON *sv;

        join(tpath, "message.translations", t->string);
        rc = opt_object(c, t, tpath, "survey", &sv);
        if (rc < 0)
            return rc;
        if (sv == NULL)
            continue;
        join(path, tpath, "survey");
        if (job->survey_question == NULL)
            return fail(c, "bad_survey", "%s: the job has no survey to translate", path);
        rc = parse_survey_obj(c, sv, path, job->survey_options.n, &tr->survey_question,
                              &tr->survey_options);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_time_field(struct ctx *c, const cJSON *root, const char *key, int64_t *out)
{
    const char *s;
    char q[48];
    int rc;

    *out = 0;
    rc = opt_string(c, root, "", key, &s);
    if (rc < 0 || s == NULL)
        return rc;
    if (cr_time_parse(s, out) < 0)
        return fail(c, "bad_time",
                    "%s: '%s' is not a valid RFC 3339 time like 2026-11-22T09:00:00Z", key,
                    quote(q, sizeof(q), s, 40));
    if (*out <= 0)
        return fail(c, "bad_time", "%s: '%s' is not after 1970-01-01T00:00:00Z", key,
                    quote(q, sizeof(q), s, 40));
    return 0;
}

static int parse_times(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    int rc;

    rc = parse_time_field(c, root, "send_at", &job->send_at_ms);
    if (rc == 0)
        rc = parse_time_field(c, root, "expires_at", &job->expires_at_ms);
    if (rc < 0)
        return rc;
    if (job->send_at_ms && job->expires_at_ms && job->expires_at_ms <= job->send_at_ms)
        return fail(c, "bad_time", "expires_at: must be after send_at");
    return 0;
}

static int parse_tags(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    const cJSON *tags;
    const cJSON *v;
    char sub[PATH_MAX_LEN];
    size_t n;
    int rc;

    rc = opt_object(c, root, "", "tags", &tags);
    if (rc < 0 || tags == NULL)
        return rc;
    n = (size_t)cJSON_GetArraySize(tags);
    if (n > c->lim->tags)
        return fail(c, "too_long", "tags: %zu tags, over the limit of %zu", n, c->lim->tags);
    for (v = tags->child; v; v = v->next) {
        join(sub, "tags", v->string);
        if (!cJSON_IsString(v))
            return fail(c, "bad_type", "%s: must be a string", sub);
    }
    rc = check_unique(c, tags, "tags");
    if (rc < 0)
        return rc;
    job->tags_json = cJSON_PrintUnformatted(tags);
    return job->tags_json ? 0 : oom(c);
}

/* "confirm" and "escalate" (escalate.c checks the steps). */
static int parse_escalation(struct ctx *c, const cJSON *root, struct cr_job *job)
{
    const cJSON *cf = get(root, "confirm");
    const struct cr_content *ct = &job->content;
    unsigned content = 0;

    if (cf && !cJSON_IsBool(cf))
        return fail(c, "bad_type", "confirm: must be true or false");
    job->confirm = cf && cJSON_IsTrue(cf);
    if (ct->subject && (ct->text || ct->html))
        content |= CR_CH_BIT(CR_CH_EMAIL);
    if (ct->sms)
        content |= CR_CH_BIT(CR_CH_SMS);
    if (ct->push_title || ct->push_body)
        content |= CR_CH_BIT(CR_CH_PUSH);
    if (ct->wa_template)
        content |= CR_CH_BIT(CR_CH_WHATSAPP);
    return cr_escalate_parse(get(root, "escalate"), job->channels, job->confirm, content, &job->esc,
                             c->err);
}

int cr_job_parse(const char *doc, size_t len, const struct cr_job_limits *lim, struct cr_job *job,
                 struct cr_job_error *err)
{
    static const char *const keys[] = {"id",      "priority", "audience", "channels",   "sender",
                                       "message", "survey",   "send_at",  "expires_at", "tags",
                                       "confirm", "escalate"};
    struct cr_job_error scratch;
    struct ctx c;
    cJSON *root = NULL;
    const char *end = doc;
    size_t i;
    int rc = CR_EINVAL;

    memset(job, 0, sizeof(*job));
    c.lim = lim;
    c.err = err ? err : &scratch;
    c.err->code[0] = '\0';
    c.err->message[0] = '\0';
    c.err->at = -1;

    if (len > lim->doc_bytes) {
        fail(&c, "too_large", "document is %zu bytes, over the limit of %zu", len, lim->doc_bytes);
        goto out;
    }
    if (doc == NULL || len == 0) {
        fail(&c, "not_json", "document is empty");
        goto out;
    }
    root = cJSON_ParseWithLengthOpts(doc, len, &end, 0);
    if (root == NULL) {
        /* cJSON reports the failing position; without one, blame the end */
        if (end == NULL || end < doc || end > doc + len)
            end = doc + len;
        fail(&c, "not_json", "document is not JSON: syntax error at byte %zu", (size_t)(end - doc));
        c.err->at = (long)(end - doc);
        goto out;
    }
    for (i = (size_t)(end - doc); i < len; i++) {
        if (doc[i] != ' ' && doc[i] != '\t' && doc[i] != '\n' && doc[i] != '\r') {
            fail(&c, "not_json",
                 "document is not JSON: unexpected data after the value at "
                 "byte %zu",
                 i);
            c.err->at = (long)i;
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        fail(&c, "bad_type", "document: must be a JSON object");
        goto out;
    }
    rc = check_nul(&c, doc, len);
    if (rc == 0)
        rc = walk(&c, root, 1, "");
    if (rc == 0)
        rc = check_keys(&c, root, "", keys, sizeof(keys) / sizeof(keys[0]));
    if (rc == 0)
        rc = parse_id(&c, root, job);
    if (rc == 0)
        rc = parse_priority(&c, root, job);
    if (rc == 0)
        rc = parse_audience(&c, root, job);
    if (rc == 0)
        rc = parse_channels(&c, root, job);
    if (rc == 0)
        rc = parse_sender(&c, root, job);
    if (rc == 0)
        rc = parse_message(&c, root, job);
    if (rc == 0)
        rc = check_content(&c, job);
    if (rc == 0)
        rc = parse_survey(&c, root, job);
    if (rc == 0)
        rc = parse_translated_surveys(&c, root, job);
    if (rc == 0)
        rc = parse_times(&c, root, job);
    if (rc == 0)
        rc = parse_tags(&c, root, job);
    if (rc == 0)
        rc = parse_escalation(&c, root, job);
out:
    cJSON_Delete(root);
    if (rc < 0)
        cr_job_release(job);
    return rc;
}

void cr_strlist_release(struct cr_strlist *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void content_release(struct cr_content *ct)
{
    free(ct->subject);
    free(ct->text);
    free(ct->html);
    free(ct->sms);
    free(ct->push_title);
    free(ct->push_body);
    cr_wa_doc_release(ct);
    memset(ct, 0, sizeof(*ct));
}

void cr_job_release(struct cr_job *job)
{
    size_t i;

    cr_strlist_release(&job->segments);
    cr_strlist_release(&job->require);
    cr_strlist_release(&job->exclude);
    cr_strlist_release(&job->subscribers);
    free(job->sender_name);
    free(job->sender_team);
    content_release(&job->content);
    for (i = 0; i < job->ntranslations; i++) {
        content_release(&job->translations[i].content);
        free(job->translations[i].survey_question);
        cr_strlist_release(&job->translations[i].survey_options);
    }
    free(job->translations);
    free(job->survey_question);
    cr_strlist_release(&job->survey_options);
    free(job->survey_id);
    cJSON_free(job->tags_json);
    memset(job, 0, sizeof(*job));
}

/* Whether content c can make a whole message of channel ch without help
 * from another language: email a subject and a body (text or html), SMS its
 * text, push every part (title, body) the default content d has. */
static int whole_for(const struct cr_content *c, const struct cr_content *d, enum cr_channel ch)
{
    switch (ch) {
    case CR_CH_EMAIL:
        return c->subject != NULL && (c->text != NULL || c->html != NULL);
    case CR_CH_SMS:
        return c->sms != NULL;
    case CR_CH_WHATSAPP:
        return c->wa_template != NULL; /* a translation's own template, in its language */
    case CR_CH_PUSH:
        return (c->push_title != NULL || c->push_body != NULL) &&
               (d->push_title == NULL || c->push_title != NULL) &&
               (d->push_body == NULL || c->push_body != NULL);
    default:
        return 0;
    }
}

int cr_lang_match(const char *want, const char *have)
{
    const char *dash;

    if (want == NULL || have == NULL || want[0] == '\0' || have[0] == '\0')
        return 0;
    if (strcasecmp(want, have) == 0)
        return 2;
    dash = strchr(want, '-');
    return dash != NULL && strlen(have) == (size_t)(dash - want) &&
           strncasecmp(want, have, (size_t)(dash - want)) == 0;
}

/* The best row for lang among the translations ok() accepts: an exact tag
 * first, then the language without its region ("pt" for "pt-BR"); 0 (the
 * default) when none is accepted. */
static size_t best_row(const struct cr_job *job, const char *lang,
                       int (*ok)(const struct cr_job *, size_t, enum cr_channel),
                       enum cr_channel ch)
{
    size_t best = 0;
    int best_score = 0;
    size_t i;

    for (i = 0; i < job->ntranslations; i++) {
        int score = cr_lang_match(lang, job->translations[i].lang);

        if (score > best_score && ok(job, i, ch)) {
            best_score = score;
            best = 1 + i;
        }
    }
    return best;
}

static int whole_message(const struct cr_job *job, size_t t, enum cr_channel ch)
{
    return whole_for(&job->translations[t].content, &job->content, ch);
}

static int has_survey(const struct cr_job *job, size_t t, enum cr_channel ch)
{
    (void)ch;
    return job->translations[t].survey_question != NULL;
}

size_t cr_job_pick(const struct cr_job *job, const char *lang, enum cr_channel ch)
{
    return best_row(job, lang, whole_message, ch);
}

size_t cr_job_pick_survey(const struct cr_job *job, const char *lang)
{
    if (job->survey_question == NULL)
        return 0;
    return best_row(job, lang, has_survey, CR_CH_EMAIL);
}

const char *cr_job_row_lang(const struct cr_job *job, size_t row)
{
    return row == 0 || row > job->ntranslations ? job->lang : job->translations[row - 1].lang;
}

const struct cr_content *cr_job_row_content(const struct cr_job *job, size_t row)
{
    return row == 0 || row > job->ntranslations ? &job->content
                                                : &job->translations[row - 1].content;
}

/* Reads exactly n digits at *p into *out and advances *p. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    int i;

    for (i = 0; i < n; i++) {
        char ch = (*p)[i];

        if (ch < '0' || ch > '9')
            return CR_EINVAL;
        v = v * 10 + (ch - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int expect(const char **p, char ch)
{
    if (**p != ch)
        return CR_EINVAL;
    (*p)++;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int y, int m, int d)
{
    int64_t yy = y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

int cr_time_parse(const char *s, int64_t *out_ms)
{
    const char *p = s;
    int y, mo, d, h, mi, sec;
    int ms = 0;
    int oh = 0;
    int om = 0;
    int sign = 0;
    int nfrac = 0;

    if (digits(&p, 4, &y) < 0 || expect(&p, '-') < 0 || digits(&p, 2, &mo) < 0 ||
        expect(&p, '-') < 0 || digits(&p, 2, &d) < 0)
        return CR_EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return CR_EINVAL;
    p++;
    if (digits(&p, 2, &h) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &mi) < 0 ||
        expect(&p, ':') < 0 || digits(&p, 2, &sec) < 0)
        return CR_EINVAL;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nfrac < 3)
                ms = ms * 10 + (*p - '0');
            nfrac++;
            p++;
        }
        if (nfrac == 0 || nfrac > 9)
            return CR_EINVAL;
        for (; nfrac < 3; nfrac++)
            ms *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        p++;
        if (digits(&p, 2, &oh) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &om) < 0)
            return CR_EINVAL;
        if (oh > 23 || om > 59)
            return CR_EINVAL;
    } else {
        return CR_EINVAL;
    }
    if (*p != '\0')
        return CR_EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
        return CR_EINVAL;
    *out_ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)sec * 1000 + ms -
              (int64_t)sign * (oh * 60 + om) * 60000;
    return 0;
}
