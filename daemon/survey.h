/* Multi-question surveys ("your-views", wave "2026-11"): the job document's
 * "survey" object with "questions" (each a scale and a score per step) and
 * an optional free-text question, its translations, and the follow-up
 * audience "answered". Checked here when a job is accepted and read back
 * from the stored document when a resident answers (survey_page.c). */
#ifndef CR_SURVEY_H
#define CR_SURVEY_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define CR_MSURVEY_QUESTIONS_MAX 20 /* questions in one survey */
#define CR_MSURVEY_SCALE_MAX 10     /* steps of one question's scale */
#define CR_MSURVEY_ID_MAX 64        /* survey, wave and question ids */
#define CR_MSURVEY_TEXT_MAX 1000    /* bytes of a question's text */
#define CR_MSURVEY_STEP_MAX 200     /* bytes of one step of a scale */
#define CR_MSURVEY_ANSWER_MAX 2000  /* bytes of a free-text answer kept */
#define CR_MSURVEY_OPTIONS_MAX 10   /* options of an "answered" audience */

struct cr_msq {
    const char *id;
    const char *text; /* in the chosen language */
    const char *scale[CR_MSURVEY_SCALE_MAX];
    int score[CR_MSURVEY_SCALE_MAX]; /* 0..100 */
    size_t nscale;
};

/* A multi-question survey read from a stored job document. Every string
 * points into root (owned by the struct when it parsed the document). */
struct cr_msurvey {
    const cJSON *root;
    cJSON *owned; /* root when cr_msurvey_from_doc parsed it, else NULL */
    const char *id;
    const char *wave;
    int64_t closes_ms; /* 0: open while the job exists */
    struct cr_msq q[CR_MSURVEY_QUESTIONS_MAX];
    size_t nq;
    const char *free_id; /* NULL: no free-text question */
    const char *free_text;
    size_t ask;      /* index of survey.ask; nq = the free text */
    char lang[16];   /* the language of the texts */
    const char *via; /* tags.crier_survey_job: the wave job it follows */
};

/* Whether survey object sv is the multi-question form (has "questions"). */
int cr_msurvey_is_multi(const cJSON *sv);

/* Checks the multi-question survey sv of a job document and the translations
 * object trs (message.translations, may be NULL): every limit above, ids of
 * [A-Za-z0-9._-], unique question ids, a score per scale step, closes_at an
 * RFC 3339 time, ask naming a question or the free text, and each
 * translation's survey giving the same questions with as many steps. On a
 * refusal returns CR_EINVAL with code ("bad_survey", "too_long",
 * "missing_field", "bad_type", "unknown_field", "bad_time") and a message
 * naming the path. */
int cr_msurvey_check(const cJSON *sv, const cJSON *trs, char *code, size_t codelen, char *msg,
                     size_t msglen);

/* Checks audience.answered ({"survey", "wave", "question", "options"}, the
 * options 1-based step numbers) and writes the segment names it stands for
 * (survey:<S>:<W>:<Q>:<n>, one per option) into names[0..*n). Returns 0 or
 * CR_EINVAL with code and msg as cr_msurvey_check. */
int cr_msurvey_answered(const cJSON *ans, char names[][CR_MSURVEY_ID_MAX * 3 + 16], size_t *n,
                        char *code, size_t codelen, char *msg, size_t msglen);

/* Reads the multi-question survey out of a job document (len bytes) with its
 * texts in the translation that best matches lang (NULL: the default
 * language). Returns 0 and fills *out (release with cr_msurvey_release),
 * CR_ENOTFOUND when the document has no multi-question survey, CR_EPARSE or
 * CR_ENOMEM. */
int cr_msurvey_from_doc(const char *doc, size_t len, const char *lang, struct cr_msurvey *out);

/* As cr_msurvey_from_doc for a document already parsed: root stays the
 * caller's and must outlive out (cr_msurvey_release does not free it). */
int cr_msurvey_from_json(const cJSON *root, const char *lang, struct cr_msurvey *out);
void cr_msurvey_release(struct cr_msurvey *s);

/* The 1-based step of question qi that an SMS text answers: a number, or a
 * step's text (trimmed, any case) in the default language or any
 * translation. 0 when it answers nothing. */
int cr_msurvey_match(const struct cr_msurvey *s, size_t qi, const char *text);

/* The document of the one-resident SMS job that asks question qi (or the
 * free text when qi == s->nq) of s to subscriber sub, following wave job
 * via; every translation of the question goes with it. Returns a string the
 * caller frees with cJSON_free, or NULL (out of memory). */
char *cr_msurvey_followup(const struct cr_msurvey *s, size_t qi, const char *sub, const char *via,
                          const char *priority);

#endif
