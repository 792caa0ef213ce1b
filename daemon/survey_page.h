/* Residents' answers to multi-question surveys (survey.h): the signed page
 * /s/<token> shows every question at once and takes a partial answer or a
 * change until the wave closes; over SMS one question at a time, the next
 * one sent as a one-resident job. Stored per (survey, wave, resident) in the
 * keys docs/engagement.md lists; the last answer counts. */
#ifndef CR_SURVEY_PAGE_H
#define CR_SURVEY_PAGE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "daemon.h"
#include "httpd.h"
#include "links.h"
#include "replies.h"

/* Answers GET|POST /s/<token> for a job document root (parsed; owned by
 * this call from then on) with a multi-question survey, for the subscriber
 * and language of link. GET shows
 * the form with the resident's current answers checked; POST stores the
 * answers given (q.<question id> = step number, free = the free text; an
 * empty free text removes it). 400 for no answer or a step out of range, 410
 * once the wave has closed (survey.closes_at), 503 without Redis. The
 * response is sent before or after this returns. */
void cr_survey_page(struct cr_daemon *d, struct cr_httpd_req *req, const struct cr_link *link,
                    cJSON *root);

/* An SMS text from resident sub (phone from) to job (its document parsed,
 * root, kept by the caller): when the job has a multi-question survey whose asked question
 * (survey.ask, else the first) the text answers, stores the answer (seen: the
 * replay key, "" none), sends the next question as a one-resident SMS job
 * through the jobs stream, and returns 1; cb fires once later. Returns 0
 * when the text is no answer (the caller treats it as a reply; cb does not
 * fire) or a negative CR_ code (cb does not fire). */
int cr_survey_sms(struct cr_daemon *d, const cJSON *root, const char *job, const char *sub,
                  const char *from, const char *text, const char *seen, cr_replies_done_cb cb,
                  void *ud);

#endif
