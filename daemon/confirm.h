/* Confirmations: a resident saying "I have seen it" to a job with
 * "confirm": true, by an SMS reply keyword, a signed /c/<token> link or the
 * app's acknowledgement through the generic webhook. Each is counted once
 * per (job, resident) and marks the resident confirmed (and reached) in the
 * job's bitmaps, which "unless": "confirmed" escalation steps read. */
#ifndef CR_CONFIRM_H
#define CR_CONFIRM_H

#include <stddef.h>

#include "redis.h"

struct cr_daemon;

/* The Lua function confirm(p, job, pos, channel, sub, via, now, ret, maxlen,
 * segs) shared by the scripts that record confirmations: returns 0 (no such
 * job or the job does not ask for confirmations), 1 (confirmed before) or 2
 * (counted now: `confirmed`, `confirmed:<channel>`, the :confirmed and
 * :reached bits, `:confirmed:segments` per audience segment of sub, and a
 * crier:replies entry of type "confirm"). */
extern const char cr_confirm_lua[];

/* The body of CR_SCRIPT_CONFIRM after cr_confirm_lua (scripts.c joins
 * them): KEYS none; ARGV prefix, job, pos, channel, sub, via, now_ms,
 * retention_s, receipts maxlen, then the job's audience segments. Returns
 * what confirm() returns. */
extern const char cr_confirm_call_lua[];

/* Whether text (trimmed, any case) is one of the configured confirmation
 * keywords (keywords: comma separated; NULL = "YES,Y,OK"). */
int cr_confirm_keyword(const char *keywords, const char *text);

typedef void (*cr_confirm_done_cb)(void *ud, int result);

/* Records a confirmation of the message (job, pos, channel) by resident sub
 * ("" unknown: no per-segment count), made through via ("sms", "link",
 * "app"); segs: the job's audience segments (n of them). cb(ud, 0/1/2 as
 * cr_confirm_lua, or -1 when Redis failed) is called once. Returns 0 or a
 * CR_ error (cb not called). */
int cr_confirm_record(struct cr_daemon *d, const char *job, unsigned long pos,
                      const char *channel, const char *sub, const char *via,
                      const char *const *segs, size_t n, cr_confirm_done_cb cb, void *ud);

struct cr_httpd_req;

/* Answers GET|POST /c/<token> (links.secret set): GET a small page in the
 * message's language with one button, POST records the confirmation of the
 * message the token names (as cr_confirm_record, via "link") and thanks the
 * resident; a bad token is 403, an expired one 403 with its own words, Redis
 * unavailable 503. */
void cr_confirm_link(struct cr_daemon *d, struct cr_httpd_req *req);

#endif
