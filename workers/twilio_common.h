/* What the two adapters on Twilio's Messages API (SMS in twilio.c, WhatsApp in
 * whatsapp_twilio.c) share: the account's URL and basic auth, SID checks, form
 * encoding, the status callback's ref and the head of an error answer.
 * Private to workers/. */
#ifndef CR_WORKERS_TWILIO_COMMON_H
#define CR_WORKERS_TWILIO_COMMON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "adapter.h"

#define CR_TWILIO_URL_MAX 2048    /* the Messages URL; a status callback URL with its ref */
#define CR_TWILIO_VALUE_MAX 65536 /* longest single form value we escape */

/* A Twilio account as every request to its Messages resource needs it. */
struct cr_twilio_account {
    char *url;  /* base + /2010-04-01/Accounts/<sid>/Messages.json */
    char *auth; /* "Basic base64(<account_sid>:<auth_token>)", a secret */
};

/* Reads and checks base_url and cfg's "account_sid" (required, "AC" + 32 hex
 * digits) and "auth_token" (required), in that order, and fills a->url and
 * a->auth (a must be zeroed; on failure a may hold part, which
 * cr_twilio_account_release frees). Returns 0, CR_ECONFIG with err naming
 * "<path>.<key>", or CR_ENOMEM. The credentials are wiped after use. */
int cr_twilio_account_init(struct cr_twilio_account *a, const cJSON *cfg, const char *base_url,
                           const char *path, char *err, size_t errlen);

/* Frees what a holds (auth wiped first) and zeroes it; a may be NULL. */
void cr_twilio_account_release(struct cr_twilio_account *a);

/* Nonzero when s is the two-character prefix ("AC", "MG", "HX") followed by
 * exactly 32 hex digits. NULL is not. */
int cr_twilio_sid_ok(const char *s, const char *prefix);

/* Appends "[&]name=<URL-escaped value>" to a form body. Returns 0,
 * CR_ETOOBIG for a value longer than CR_TWILIO_VALUE_MAX or past the body's
 * cap, or CR_ENOMEM. */
int cr_twilio_form_add(struct cr_buf *body, const char *name, const char *value);

/* Appends callback to out, with "?ref=<escaped ref>" (or "&ref=" when it
 * already has a query) unless ref is NULL, so that a receipt names its
 * message. Returns 0, CR_ETOOBIG past out's cap, or CR_ENOMEM. */
int cr_twilio_callback_with_ref(const char *callback, const char *ref, struct cr_buf *out);

/* Twilio's numeric error "code" in an answer: a number, or a string of digits;
 * -1 when there is none. With whole set the string must be a number and
 * nothing else (as strtol reads it); otherwise it must start with a digit and
 * its leading digits count. */
long cr_twilio_error_code(const cJSON *doc, int whole);

/* The parts every classification of a Twilio error answer starts from: *tc
 * the Twilio code (cr_twilio_error_code(doc, whole), -1 when doc is NULL),
 * *msg the answer's message (or a phrase saying why there is none; borrowed
 * from doc) and code (codelen bytes) the code to record: *tc when there is
 * one, else the HTTP status. */
void cr_twilio_error_head(const struct cr_response *resp, const cJSON *doc, int whole, long *tc,
                          const char **msg, char *code, size_t codelen);

#endif
