/* The v1 job document (DESIGN.md): parsed from JSON, checked against explicit
 * limits, and either accepted as a struct cr_job or rejected with a machine
 * code and a reason a person can act on. */
#ifndef CR_JOB_H
#define CR_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "cr_types.h"
#include "escalate.h"

#define CR_JOB_ID_MAX 64
#define CR_LANG_MAX 16

/* Content for one language; absent parts are NULL. */
struct cr_content {
    char *subject;
    char *text;
    char *html;
    char *sms;
    char *push_title;
    char *push_body;
    /* message.whatsapp (whatsapp_doc.c): the approved template's name or
     * content id and language, its variables' templates joined by
     * CR_WA_VAR_SEP in order "1".."n", and the free text sent instead
     * while the resident's service window is open */
    char *wa_template;
    char *wa_language;
    char *wa_vars;
    char *wa_text;
};

struct cr_strlist {
    char **v;
    size_t n;
};

struct cr_translation {
    char lang[CR_LANG_MAX];
    struct cr_content content;
    char *survey_question;             /* NULL: the survey is not translated */
    struct cr_strlist survey_options;  /* as many as the job's survey */
};

/* Frees every string of l and its array; l is left empty. */
void cr_strlist_release(struct cr_strlist *l);

struct cr_job {
    char id[CR_JOB_ID_MAX + 1];  /* "" when the document gave none */
    enum cr_priority priority;   /* default normal */
    struct cr_strlist segments;
    size_t segments_named;       /* segments.v[0..this): audience.segments; then answered */
    struct cr_strlist require;
    struct cr_strlist exclude;
    struct cr_strlist subscribers;
    unsigned channels;           /* CR_CH_BIT set, never 0 */
    char *sender_name;
    char *sender_team;
    char lang[CR_LANG_MAX];      /* default "en" */
    struct cr_content content;
    struct cr_translation *translations;
    size_t ntranslations;
    char *survey_question;       /* NULL when no survey */
    struct cr_strlist survey_options;
    char *survey_id;             /* a multi-question survey's id (survey.h), else NULL */
    int64_t send_at_ms;          /* unix ms, 0 = now */
    int64_t expires_at_ms;       /* unix ms, 0 = none given */
    char *tags_json;             /* the tags object as compact JSON, NULL when absent */
    int confirm;                 /* "confirm": true: residents are asked to confirm */
    struct cr_escalation esc;    /* "escalate": later steps (esc.n 0: none) */
};

/* Why a job was refused: code is a short stable token for machines
 * ("not_json", "bad_type", "missing_field", "unknown_field", "unknown_priority",
 * "too_large", "too_deep", "bad_id", "empty_audience", "unknown_channel",
 * "too_long", "bad_time", "bad_template", "no_content", "bad_header",
 * "bad_encoding", "duplicate_field", "bad_name", "bad_lang", "bad_survey",
 * "bad_escalate"),
 * message says what and where ("message.sms: 7 SMS segments, over the limit
 * of 6"). Out of memory is "no_memory" with CR_ENOMEM: retry, do not reject. */
struct cr_job_error {
    char code[32];
    char message[256];
    long at; /* byte offset in the document of a not_json or NUL error, else -1 */
};

/* Parses and validates a job document of len bytes (need not be NUL-terminated).
 * Returns 0 with *job filled (release with cr_job_release), or CR_EINVAL (the
 * document is bad) or CR_ENOMEM with *err filled and *job holding nothing
 * that needs releasing.
 * Rules: every limit in lim; id matches [A-Za-z0-9][A-Za-z0-9._:-]* up to
 * lim->id_length; the audience names at least one segment or subscriber;
 * every channel listed has content for it in the default language (email:
 * subject and text or html; sms: sms; push: push.title or push.body); every
 * template compiles; send_at/expires_at are RFC 3339 times and expires_at is
 * after send_at. Unknown top-level keys are rejected (a typo must not silently
 * drop a requirement). */
int cr_job_parse(const char *doc, size_t len, const struct cr_job_limits *lim,
                 struct cr_job *job, struct cr_job_error *err);

/* Frees everything job owns. */
void cr_job_release(struct cr_job *job);

/* How well a subscriber's language tag want matches a content's tag have
 * (both case-insensitive): 2 the same tag, 1 the same language without
 * want's region ("pt-BR" wants "pt"), 0 not at all (NULL or "" neither). */
int cr_lang_match(const char *want, const char *have);

/* The language rule, per message: which content a message of channel ch to
 * a subscriber whose language is lang (may be NULL or "") is made of. Returns
 * 1 + t for job->translations[t] when that translation can make the whole
 * message by itself (email: a subject and a body, text or html; sms: its sms;
 * push: every part, title and body, the default language has), preferring
 * the exact tag ("pt-BR") to the language alone ("pt"); else 0, the job's
 * default language, whole. A message never mixes languages: the parts the
 * chosen content lacks (an email translation without html) are left out. */
size_t cr_job_pick(const struct cr_job *job, const char *lang, enum cr_channel ch);

/* As cr_job_pick for the survey page: 1 + t when translations[t] has a
 * survey for lang, else 0 (the job's survey). */
size_t cr_job_pick_survey(const struct cr_job *job, const char *lang);

/* The language tag and the content of a row cr_job_pick returned (0: the
 * job's default). Borrowed from job. */
const char *cr_job_row_lang(const struct cr_job *job, size_t row);
const struct cr_content *cr_job_row_content(const struct cr_job *job, size_t row);

/* Parses an RFC 3339 / ISO 8601 UTC or offset time ("2026-11-22T09:00:00Z",
 * "2026-11-22T10:00:00+01:00", fractional seconds allowed) into unix ms.
 * Returns 0 or CR_EINVAL. */
int cr_time_parse(const char *s, int64_t *out_ms);

#endif
