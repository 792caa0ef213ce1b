/* Helpers shared by the provider adapters in workers/ and nothing else: config
 * validation with key paths, request assembly, reading JSON answers and filling
 * results. Private to workers/ (the dispatcher sees only cr_provider.h). */
#ifndef CR_WORKERS_ADAPTER_H
#define CR_WORKERS_ADAPTER_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "cr_provider.h"
#include "cr_secret.h"

/* The adapters; cr_provider_table in registry.c lists each once. */
extern const struct cr_provider_ops cr_sendgrid_ops;
extern const struct cr_provider_ops cr_twilio_ops;
extern const struct cr_provider_ops cr_fcm_ops;
extern const struct cr_provider_ops cr_smtp_ops;
extern const struct cr_provider_ops cr_gateway_ops;
extern const struct cr_provider_ops cr_apns_ops;
extern const struct cr_provider_ops cr_whatsapp_twilio_ops;
extern const struct cr_provider_ops cr_whatsapp_meta_ops;

/* Writes "<path>.<key>: <problem>" into err (key may be NULL: "<path>: ...")
 * and returns CR_ECONFIG, so that init can `return cr_cfg_fail(...)`. */
int cr_cfg_fail(char *err, size_t errlen, const char *path, const char *key, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

/* Reads cfg[key] as a non-empty string and gives the caller a malloc'd copy
 * in *out (the caller frees it). An absent optional key leaves *out NULL and
 * returns 0. Returns CR_ECONFIG with err set when a required key is missing or
 * the value is not a non-empty string, CR_ENOMEM when the copy fails. */
int cr_cfg_string(const cJSON *cfg, const char *path, const char *key, int required, char **out,
                  char *err, size_t errlen);

/* Copies base_url into a malloc'd *out without trailing slashes. Returns 0,
 * CR_ECONFIG ("<path>.url: ...") when it is NULL or empty, or CR_ENOMEM. */
int cr_cfg_base_url(const char *base_url, const char *path, char **out, char *err,
                    size_t errlen);

/* Loads pem as a private key and checks that it is of kind "EC" (curve P-256,
 * for ES256) or "RSA" (2048 bits or more, for RS256). Returns 0, CR_EPARSE
 * when pem holds no readable private key, CR_EINVAL when it is another kind
 * (what lacks is written into why), or CR_ENOMEM. */
int cr_pem_key_check(const char *pem, const char *kind, char *why, size_t whylen);

/* cr_free_secret wipes and frees a secret: see cr_secret.h. */

/* Nonzero when s is an E.164 number: '+', a non-zero digit, then at most 14
 * more digits. NULL is not. */
int cr_e164_ok(const char *s);

/* Adds key: value to obj when value is not NULL (nothing otherwise).
 * Returns 0 or CR_ENOMEM. */
int cr_json_add_string(cJSON *obj, const char *key, const char *value);

/* Nonzero when s may go into a header line or mail header: no CR or LF.
 * (A NUL cannot be inside a C string; values arrive NUL-terminated.) */
int cr_header_safe(const char *s);

/* Nonzero when u may be a one-click unsubscribe URL in a List-Unsubscribe
 * header (RFC 2369, RFC 8058), where it stands inside "<...>": http:// or
 * https:// (the scheme in either case), printable ASCII without spaces or
 * angle brackets. */
int cr_unsubscribe_url_ok(const char *u);

/* Appends name=value to an application/x-www-form-urlencoded body, after an
 * '&' unless body is empty, the value percent-encoded (cr_buf_append_pct).
 * Returns 0, CR_ETOOBIG past body's cap or CR_ENOMEM; on an error nothing of
 * the field is left in body. */
int cr_form_add(struct cr_buf *body, const char *name, const char *value);

/* Appends the header line "name: value" to req->headers. Returns 0, CR_EINVAL
 * when value contains CR or LF, CR_ETOOBIG past 8 KiB, or CR_ENOMEM. */
int cr_req_add_header(struct cr_request *req, const char *name, const char *value);

/* Appends "Authorization: Bearer <token>". As cr_req_add_header. */
int cr_req_add_bearer(struct cr_request *req, const char *token);

/* Prints root (unformatted) into req->body. Returns 0, CR_ETOOBIG when it
 * exceeds the body cap, or CR_ENOMEM. root stays the caller's. */
int cr_req_set_json(struct cr_request *req, const cJSON *root);

/* Parses resp->body as JSON; NULL when it is empty or not JSON. The caller
 * frees the result with cJSON_Delete. */
cJSON *cr_json_parse_body(const struct cr_response *resp);

/* Copies the string member key of obj (obj may be NULL) into out. Returns 0,
 * CR_ENOTFOUND when there is no such string member (out = ""), or CR_ETOOBIG
 * when it was truncated to fit. */
int cr_json_copy_string(const cJSON *obj, const char *key, char *out, size_t outlen);

/* The string member key of obj, or NULL when obj is NULL or it is missing or
 * not a string. Borrowed from obj. */
const char *cr_json_string(const cJSON *obj, const char *key);

/* As cr_result_set, with a printf-style detail (truncated to fit). */
void cr_result_setf(struct cr_result *res, enum cr_outcome outcome, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Sets res->provider_id to id (NULL = ""), truncated to fit. */
void cr_result_set_id(struct cr_result *res, const char *id);

/* Classifies by HTTP status alone, for answers whose body could not be read
 * or says nothing more: 2xx SENT, 429 and 5xx RETRY, anything else FAILED.
 * code is the status as text; detail is "HTTP <status>: <why>". */
void cr_result_by_status(struct cr_result *res, const struct cr_response *resp, const char *why);

/* Finishes a classification: a CR_OUT_RETRY result gets the answer's
 * Retry-After (relative to the wall clock, the one clock read of the
 * adapters) or -1, any other outcome -1; then res[1..n) become copies of
 * res[0] (one answer covers every message of a batch request). */
void cr_result_finish(struct cr_result *res, size_t n, const struct cr_response *resp);

/* ---- push delivery options (push.c) ---- */

#define CR_PUSH_TTL_DEFAULT_S 86400 /* default_ttl_s when not configured: one day */
#define CR_PUSH_TTL_MAX_S 2419200   /* 28 days, the longest FCM keeps a message */

/* What a push request says about keeping and waking, for one message. */
struct cr_push_delivery {
    int64_t ttl_s;                /* how long the service may keep it; 0 = now or never */
    int64_t apns_expiration;      /* apns-expiration: unix seconds, 0 = do not store */
    const char *apns_priority;    /* apns-priority: "10" or "5" (static) */
    const char *android_priority; /* android.priority: "high" or "normal" (static) */
};

/* Fills out for m sent at now_ms (unix ms): the expiry from m->expires_at_ms,
 * else default_ttl_s, capped at CR_PUSH_TTL_MAX_S; the priorities from
 * m->priority (the table and its reasons are in push.c). Never fails. */
void cr_push_delivery(const struct cr_message *m, int64_t now_ms, long default_ttl_s,
                      struct cr_push_delivery *out);

/* Reads the push adapters' "default_ttl_s" from cfg into *out (absent or null:
 * CR_PUSH_TTL_DEFAULT_S). Returns 0, or CR_ECONFIG with err naming
 * "<path>.default_ttl_s" when it is not a whole number from 0 to
 * CR_PUSH_TTL_MAX_S. */
int cr_cfg_push_ttl(const cJSON *cfg, const char *path, long *out, char *err, size_t errlen);

#endif
