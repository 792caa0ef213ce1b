/* Meta's WhatsApp Cloud API webhook: the signed POST of message statuses and
 * inbound messages (X-Hub-Signature-256), and the GET verification handshake
 * (hub.mode, hub.verify_token, hub.challenge). Parsing and checking only; the
 * receipts and replies are applied by webhooks.c. */
#ifndef CR_WHATSAPP_HOOK_H
#define CR_WHATSAPP_HOOK_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "webhooks.h"

#define CR_META_CHALLENGE_MAX 128 /* bytes of hub.challenge echoed back */

/* The events of a Meta webhook body (object "whatsapp_business_account",
 * entry[].changes[].value with statuses[] and messages[]), at most max, into
 * evs[0..*n) (release each). A status names its message by
 * biz_opaque_callback_data (crier's ref): delivered -> "delivered", read ->
 * "read" (counted, and delivered if no receipt came before), failed ->
 * "failed" (with error 131026 the number is also suppressed on whatsapp),
 * sent -> ignored. An inbound message becomes an INBOUND event from
 * "whatsapp:+<wa id>" with its text (text.body, a button's or an interactive
 * reply's title). Returns 0, CR_EPARSE (not such a document) or CR_ETOOBIG
 * (more than max events). */
int cr_hook_meta_parse(const char *body, size_t len, struct cr_hook_event *evs, size_t max,
                       size_t *n);

/* Nonzero when header is "sha256=<hex of HMAC-SHA256(app_secret, body)>",
 * compared in constant time; 0 for a NULL secret or header. */
int cr_hook_meta_verify(const char *app_secret, const char *body, size_t len, const char *header);

/* The GET handshake: when the query has hub.mode=subscribe and
 * hub.verify_token equal (constant time) to verify_token, copies hub.challenge
 * (digits and letters, at most CR_META_CHALLENGE_MAX) into out and returns 0;
 * CR_EPARSE for a query that is not a handshake, CR_EINVAL for a wrong token. */
int cr_hook_meta_handshake(const char *verify_token, const char *query, char *out,
                           size_t outlen);

/* Twilio status callbacks for WhatsApp (To "whatsapp:+E164"): ErrorCode
 * 63003/63024 (not a WhatsApp user) or 21610 (STOP) suppress the number on
 * the whatsapp channel instead of sms. err and to may be NULL. */
void cr_hook_twilio_whatsapp(const char *err, const char *to, struct cr_hook_event *ev);

/* Reads the Meta webhook secrets of provider name (config object p) when its
 * type is "meta_whatsapp" and none were read before: app_secret into
 * *secret, verify_token into *verify (malloc'd, freed by the caller), its
 * name into label. Returns 0 or CR_ENOMEM. */
int cr_webhooks_meta_conf(const char *type, const char *name, const cJSON *p, char **secret,
                          char **verify, char *label, size_t labellen);

#endif
