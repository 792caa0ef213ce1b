/* Provider callbacks: /hooks/twilio (form posts, X-Twilio-Signature),
 * /hooks/sendgrid (event arrays, ECDSA P-256 signature) and /hooks/generic
 * (JSON, HMAC-SHA256 with a timestamp). Each request is checked before
 * anything is written; a receipt then moves its message's count from sent to
 * delivered/bounced/failed once, by a Lua script that also drops replays. */
#ifndef CR_WEBHOOKS_H
#define CR_WEBHOOKS_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "cr_types.h"
#include "daemon.h"
#include "httpd.h"
#include "job.h"

#define CR_HOOK_EVENTS_MAX 1000 /* events taken from one SendGrid request */
#define CR_HOOK_TEXT_MAX 1600   /* inbound SMS body bytes kept */

/* crier's per-message reference "<job>/<pos>/<channel>". */
struct cr_ref {
    char job[CR_JOB_ID_MAX + 1];
    uint32_t pos;
    enum cr_channel ch;
};

/* Parses a reference. Returns 0 or CR_EPARSE. */
int cr_ref_parse(const char *ref, struct cr_ref *out);

enum cr_hook_kind {
    CR_HOOK_IGNORED, /* an event crier does not act on (opened, queued, ...) */
    CR_HOOK_RECEIPT, /* a status for one message, and/or an address to suppress */
    CR_HOOK_INBOUND  /* an SMS from a resident */
};

/* One event out of a webhook body. */
struct cr_hook_event {
    enum cr_hook_kind kind;
    char event_id[160];    /* the provider's id of this event ("" = none): replays are dropped */
    int has_ref;
    struct cr_ref ref;
    const char *status;    /* "delivered", "bounced", "failed"; NULL = no status change */
    int suppress_ch;       /* channel to suppress address on, -1 = none */
    char address[256];
    char code[48];         /* provider's code (bounce reason class, Twilio ErrorCode) */
    char provider_id[96];
    char from[64];         /* inbound: the sender's number */
    char *text;            /* inbound: the body (owned, at most CR_HOOK_TEXT_MAX bytes) */
};

void cr_hook_event_release(struct cr_hook_event *ev);

/* Twilio: the event in a status callback (MessageStatus, ref from the query
 * string) or an inbound message (From, Body). Returns 0, or CR_EPARSE when
 * the form is neither. */
int cr_hook_twilio_parse(const struct cr_form *form, const char *query, struct cr_hook_event *ev);

/* base64(HMAC-SHA1(token, url + each name+value sorted by name then value))
 * into out. Returns 0, CR_ETOOBIG or CR_ENOMEM. */
int cr_hook_twilio_signature(const char *token, const char *url, const struct cr_form *form,
                             char *out, size_t outlen);

/* Nonzero when sig is the Twilio signature of (url, form); constant-time. */
int cr_hook_twilio_verify(const char *token, const char *url, const struct cr_form *form,
                          const char *sig);

/* SendGrid: the events of a JSON array body, at most max of them, into
 * evs[0..*n) (release each). Returns 0, CR_EPARSE (not an array of objects
 * with an "event" string) or CR_ETOOBIG (more than max events). */
int cr_hook_sendgrid_parse(const char *body, size_t len, struct cr_hook_event *evs, size_t max,
                           size_t *n);

/* Nonzero when sig_b64 is a DER ECDSA signature by key over SHA-256(ts + body). */
int cr_hook_sendgrid_verify(EVP_PKEY *key, const char *ts, const char *body, size_t len,
                            const char *sig_b64);

/* Generic: {"ref","status","event_id"} or {"from","body","event_id"}.
 * Returns 0 or CR_EPARSE. */
int cr_hook_generic_parse(const char *body, size_t len, struct cr_hook_event *ev);

/* Nonzero when header is "sha256=<hex of HMAC-SHA256(secret, ts + "." + body)>". */
int cr_hook_generic_verify(const char *secret, const char *ts, const char *body, size_t len,
                           const char *header);

/* Nonzero when ts (unix seconds, digits only) is within window_s of now_s. */
int cr_hook_fresh(const char *ts, int64_t now_s, long window_s);

/* ---- in the daemon ------------------------------------------------------- */

struct cr_webhooks;

/* Reads the secrets from d->cfg: the Twilio auth token (of the first provider
 * of type "twilio"), the SendGrid key, the generic secret. A hook without its
 * secret answers 404. Returns 0, CR_ECONFIG (a key that does not load, logged)
 * or CR_ENOMEM. */
int cr_webhooks_init(struct cr_daemon *d, struct cr_webhooks **out);
void cr_webhooks_free(struct cr_webhooks *w);

/* Answers req (POST /hooks/<hook>, hook "twilio", "sendgrid" or "generic"),
 * now or after Redis replies: 200 accepted (or replayed: nothing changes),
 * 400 malformed, 403 bad signature or stale, 404 hook not configured, 503
 * Redis unavailable. Counts each with cr_metrics_webhook and logs rejections. */
void cr_webhooks_handle(struct cr_webhooks *w, struct cr_httpd_req *req, const char *hook);

#endif
