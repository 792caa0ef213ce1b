/* What residents send back: SMS replies (STOP/START opt-outs, free text,
 * survey answers), one-click unsubscribe links (/u/<token>) and survey links
 * (/s/<token>). Everything lands in Redis in one Lua script call per action:
 * the suppression sets, crier:replies, and the per-job reply and survey
 * tallies (per option and per audience segment) described in
 * docs/engagement.md. */
#ifndef CR_REPLIES_H
#define CR_REPLIES_H

#include <stddef.h>

#include "daemon.h"
#include "httpd.h"

#define CR_SURVEY_OPTIONS_MAX 16
#define CR_SURVEY_SEGMENTS_MAX 64

enum cr_reply_kind {
    CR_REPLY_TEXT,   /* anything else: a reply (maybe a survey answer) */
    CR_REPLY_OPTOUT, /* STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT */
    CR_REPLY_OPTIN   /* START, UNSTOP */
};

/* Classifies an SMS body (trimmed, any case). */
enum cr_reply_kind cr_reply_classify(const char *text);

/* The survey answer in text: an option number ("2", 1-based) or an option's
 * text (trimmed, case-insensitive for ASCII letters). Returns the 1-based
 * option number, or 0 when text answers nothing. */
int cr_survey_match(const char *const *options, size_t n, const char *text);

/* The parts of a stored job document a reply needs. */
struct cr_survey {
    char *question;            /* NULL when the job has no survey */
    char *options[CR_SURVEY_OPTIONS_MAX];
    size_t noptions;
    char *segments[CR_SURVEY_SEGMENTS_MAX]; /* audience.segments */
    size_t nsegments;
    char lang[16];             /* the language of question and options; "" unknown */
};

/* Reads the survey (in the job's default language) and audience segments out
 * of a job document (JSON). Returns 0 (question NULL when there is no
 * survey), CR_EPARSE or CR_ENOMEM. */
int cr_survey_from_doc(const char *doc, size_t len, struct cr_survey *out);

/* As cr_survey_from_doc, with the survey of the translation that matches
 * lang (cr_lang_match: the exact tag, else the language without region) when
 * it has one, else the default language's; out->lang names which. */
int cr_survey_from_doc_lang(const char *doc, size_t len, const char *lang,
                            struct cr_survey *out);
void cr_survey_release(struct cr_survey *s);

/* The survey answer in an SMS text for a job document: as cr_survey_match
 * against the job's survey options, then against each translation's (the
 * resident may answer in the language the question came in; option numbers
 * are the same in every language). 0 when it answers nothing or the document
 * has no survey. */
int cr_survey_match_doc(const char *doc, size_t len, const char *text);

/* Told when an inbound message has been handled: status 200 (outcome
 * "accepted" or "replayed") or 503 ("unavailable": Redis did not answer). */
typedef void (*cr_replies_done_cb)(void *ud, int status, const char *outcome);

/* Handles an SMS from a resident: finds the job that last sent to that number
 * (crier:sms:last), then in one script call drops a replay (seen_key, "" =
 * none), applies STOP/START, appends to crier:replies and counts the reply
 * and any survey answer. cb fires exactly once, maybe before this returns. */
void cr_replies_inbound(struct cr_daemon *d, const char *from, const char *text,
                        const char *seen_key, cr_replies_done_cb cb, void *ud);

/* Answers GET|POST /u/<token> and /s/<token> (req->path). GET changes nothing;
 * POST unsubscribes or tallies the answer. Pages are in the language the
 * token names (the message's): the survey from the job's translation, the
 * fixed words in Welsh or English (words.h). A bad, tampered or expired token is
 * 403; unknown job or option 404/400; Redis unavailable 503. Counted as hook
 * "unsubscribe"/"survey". */
void cr_replies_link(struct cr_daemon *d, struct cr_httpd_req *req);

#endif
