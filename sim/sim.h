/* Shared state and helpers of crier-sim, the provider simulator: the endpoint
 * list, the per-endpoint behaviour knobs, the request/response shapes passed
 * between the HTTP server and the API handlers, and small text utilities. */
#ifndef SIM_H
#define SIM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cr_buf.h"

/* The simulated provider APIs; the order fixes the order in /_sim/stats. */
enum sim_endpoint { SIM_EP_SENDGRID, SIM_EP_TWILIO, SIM_EP_FCM, SIM_EP_APNS, SIM_EP_SMTP,
                   SIM_EP_GATEWAY, SIM_EP_OAUTH, SIM_EP_META, SIM_EP_COUNT };

/* "sendgrid", "twilio", "fcm"; NULL for an out-of-range value. */
const char *sim_endpoint_name(enum sim_endpoint ep);

/* Parses an endpoint name of n bytes. Returns 0 and *out, or CR_EINVAL. */
int sim_endpoint_parse(const char *s, size_t n, enum sim_endpoint *out);

/* Bytes of the never_deliver suffix list, its NUL included. */
#define SIM_NEVER_DELIVER_MAX 128

/* How one endpoint answers valid requests; changed at run time by /_sim/config. */
struct sim_behaviour {
    uint32_t latency_ms;  /* added to every response of the endpoint */
    uint32_t jitter_ms;   /* uniform +- around latency_ms, floored at 0 */
    double error_rate;    /* fraction of valid requests answered with the 5xx */
    double rate_429;      /* fraction of valid requests answered with the 429 */
    uint32_t retry_after; /* seconds, sent in Retry-After with the 429 */
    int retry_after_date; /* nonzero: send Retry-After as an HTTP-date that far ahead */
    double deliver_rate;  /* fraction of accepted messages whose delivery receipt comes back */
    char never_deliver[SIM_NEVER_DELIVER_MAX]; /* comma-separated recipient suffixes that
                                                * never get a delivery receipt; "" = none */
};

/* Upper bounds accepted for the knobs, from flags and /_sim/config alike. */
#define SIM_MAX_LATENCY_MS 600000u
#define SIM_MAX_RETRY_AFTER 86400u
/* Provider callbacks waiting or in flight at once: the default and the most a
 * flag may ask for. A message whose callbacks would not fit is refused (429). */
#define SIM_CALLBACK_QUEUE 100000u
#define SIM_MAX_CALLBACK_QUEUE 10000000u

/* Command line settings; strings point into argv and live as long as the process. */
struct sim_options {
    const char *host;
    int port;
    const char *port_file;
    struct sim_behaviour behaviour;
    uint64_t seed;
    size_t max_log;
    size_t max_log_bytes;
    size_t log_body_bytes;
    const char *sendgrid_key;
    const char *twilio_sid;
    const char *twilio_token;
    const char *fcm_project;
    const char *fcm_token;
    const char *gateway_auth_header; /* generic SMS gateway (gateway.c) */
    const char *gateway_auth_value;
    const char *fcm_service_account; /* key file whose public key checks JWTs (oauth.c) */
    uint32_t fcm_token_ttl;          /* seconds an issued access token lives */
    uint32_t callback_delay_ms;      /* provider callbacks (callbacks.c) */
    uint32_t callback_queue;         /* callbacks waiting or in flight at most */
    const char *sendgrid_webhook_url;
    const char *sendgrid_webhook_key; /* EC P-256 private key PEM file */
    const char *twilio_inbound_url;
    /* WhatsApp (whatsapp.c): Meta's Cloud API credentials and webhook, its
     * per-phone-number throughput (messages a second, 0 = none), and which
     * numbers have an open 24-hour window or are not on WhatsApp (prefixes) */
    const char *meta_token;
    const char *meta_phone_id;
    const char *meta_app_secret;
    const char *meta_webhook_url;
    uint32_t meta_mps;
    uint32_t wa_tier;          /* unique residents a number may start conversations with in
                                  24 hours (a template outside the window); 0 = no limit */
    const char *wa_open_prefix;
    const char *wa_unknown_prefix;
    const char *wa_unapproved; /* comma-separated template names or content SIDs */
    const char *generic_webhook_url;    /* push receipts as the app's acknowledgement */
    const char *generic_webhook_secret; /* HMAC key crierd's webhooks.generic_secret */
    int quiet;
    /* TLS, APNs and SMTP (tls.c, apns.c, smtp.c); ports -1 = not started */
    const char *tls_cert;
    const char *tls_key;
    int https_port; /* the HTTP APIs over TLS as well (server.c) */
    const char *https_port_file;
    int apns_port;
    const char *apns_port_file;
    const char *apns_key;
    const char *apns_team;
    const char *apns_key_id;
    const char *apns_topic;
    int smtp_port;
    const char *smtp_port_file;
    const char *smtp_user;
    const char *smtp_pass;
    int smtp_require_tls;
};

/* xorshift64*: deterministic for a given seed, which makes injected failures
 * reproducible when requests arrive in the same order. */
struct sim_rng {
    uint64_t s;
};

/* Seeds r; any seed (0 included) gives a usable sequence. */
void sim_rng_seed(struct sim_rng *r, uint64_t seed);
/* Returns the next 64 random bits. */
uint64_t sim_rng_next(struct sim_rng *r);
/* Returns a uniform double in [0, 1). */
double sim_rng_double(struct sim_rng *r);

struct sim_record;
struct sim_server;

/* The whole simulator; one per process, owned by main(). */
struct sim {
    uv_loop_t *loop;
    struct sim_options opt;
    struct sim_behaviour behaviour[SIM_EP_COUNT];
    struct sim_rng rng;
    struct sim_record *rec;
    struct sim_server *server;
    struct sim_server *https;        /* NULL unless --https-port */
    struct sim_oauth *oauth;         /* issued FCM access tokens (oauth.c) */
    struct sim_callbacks *callbacks; /* outbound provider callbacks (callbacks.c) */
    struct sim_apns *apns;           /* NULL unless --apns-port (apns.c) */
    struct sim_smtp *smtp;           /* NULL unless --smtp-port (smtp.c) */
    uint64_t start_loop_ms; /* uv_now() at startup */
    uint64_t start_wall_ms; /* Unix time in ms at startup */
};

/* Unix time in milliseconds, derived from the loop clock (monotonic, cheap). */
uint64_t sim_now_ms(const struct sim *sim);

/* Milliseconds since startup. */
uint64_t sim_uptime_ms(const struct sim *sim);

/* One parsed HTTP request, valid only during the handler call. Every string is
 * NUL-terminated; absent headers are "". */
struct sim_request {
    int method;              /* enum http_method */
    const char *method_name; /* "POST" */
    const char *path;        /* URL up to '?' (not decoded) */
    const char *query;       /* after '?', "" when none (not decoded) */
    const char *auth;        /* Authorization header */
    const char *ctype;       /* Content-Type header */
    const char *headers;     /* every header line as received, "Name: value\r\n" */
    const char *body;
    size_t body_len;
};

/* Fills out with the next part of a streamed response body. Returns 1 when the
 * body is complete, 0 when more follows, or a negative CR_E* code to abort (the
 * connection is then closed without completing the response). */
typedef int (*sim_fill_fn)(void *state, struct cr_buf *out);
/* Frees a stream's state; called exactly once per started stream. */
typedef void (*sim_fill_free_fn)(void *state);

/* What a handler answers; owned by the connection and reset before each
 * request. Either body holds the whole body, or fill produces it in parts. */
struct sim_response {
    int status;
    const char *ctype;      /* static string; NULL sends no Content-Type */
    struct cr_buf headers;  /* extra header lines, each ending in CRLF */
    struct cr_buf body;
    uint32_t delay_ms;      /* answer after this long (provider latency) */
    sim_fill_fn fill;
    sim_fill_free_fn fill_free;
    void *fill_state;
};

#define SIM_JSON "application/json"
#define SIM_JSON_UTF8 "application/json; charset=utf-8"

/* Sets res to status with a literal JSON body. */
void sim_res_literal(struct sim_response *res, int status, const char *json);

/* Sets res to status with body = json (a complete JSON text of n bytes). */
void sim_res_json(struct sim_response *res, int status, const char *json, size_t n);

/* Serialises item (borrowed) into res's body with status; a serialisation
 * failure becomes a 500. */
struct cJSON;
void sim_res_cjson(struct sim_response *res, int status, const struct cJSON *item);

/* Adds a "Name: value" header line to res; ignored when over the cap. */
void sim_res_header(struct sim_response *res, const char *name, const char *value);

/* Routes one complete request to its handler (server.c calls it). */
void sim_route_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res);

/* Counts and logs a request the server refused before it was complete (413,
 * 431) when its path names a provider endpoint; otherwise does nothing. */
void sim_route_refused(struct sim *sim, const char *method, const char *path, int status);

/* Provider handlers (sendgrid.c, twilio.c, fcm.c), called for their path. */
void sim_sendgrid_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res);
void sim_twilio_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res);
/* Fills res with Twilio's error answer (twilio.c): HTTP status, and a JSON
 * body with code, message, more_info and status, as the SMS and the WhatsApp
 * paths both answer. */
void sim_twilio_error(struct sim_response *res, int status, int code, const char *message);
/* The answers both Twilio paths give before accepting a message (twilio.c):
 * an injected 429 or 5xx, or 429 when the message's status callbacks (three
 * when whatsapp) would not fit the callback queue. Returns 1 when res was
 * filled with the refusal, 0 when the message may be accepted. */
int sim_twilio_refused(struct sim *sim, const struct sim_request *req, int whatsapp,
                       struct sim_response *res);
void sim_fcm_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res);
/* WhatsApp (whatsapp.c): Twilio's Messages API for a "whatsapp:" To (called
 * by sim_twilio_handle after its authentication), and Meta's Cloud API. */
void sim_whatsapp_twilio(struct sim *sim, const struct sim_request *req, struct sim_response *res);
void sim_whatsapp_meta(struct sim *sim, const struct sim_request *req, struct sim_response *res);
/* The generic JSON SMS gateway, POST /gateway/send (gateway.c). */
void sim_gateway_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res);
/* Google's OAuth2 token endpoint for FCM service accounts, POST /token (oauth.c):
 * checks the RS256 JWT against --fcm-service-account and issues access tokens. */
void sim_oauth_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res);
/* Loads the --fcm-service-account public key (when given) into sim->oauth.
 * Returns 0, or CR_ECONFIG with the reason logged. */
int sim_oauth_init(struct sim *sim);
/* Frees sim->oauth. */
void sim_oauth_release(struct sim *sim);
/* Whether token is the --fcm-token or an access token issued and not expired. */
int sim_oauth_token_ok(const struct sim *sim, const char *token);
/* The /_sim/ endpoints (control.c). */
void sim_control_handle(struct sim *sim, const struct sim_request *req, struct sim_response *res);

/* Injected outcome for a valid provider request. */
enum sim_inject { SIM_INJECT_NONE, SIM_INJECT_429, SIM_INJECT_5XX };

/* Rolls the endpoint's rate_429 / error_rate dice (one draw). */
enum sim_inject sim_provider_inject(struct sim *sim, enum sim_endpoint ep);

/* Adds "Retry-After: <retry_after>" (seconds, or an HTTP-date that many seconds
 * ahead when retry_after_date is set) for the endpoint to res. */
void sim_provider_retry_after(struct sim *sim, enum sim_endpoint ep, struct sim_response *res);

/* Whether the message accepted for recipient on ep gets a delivery receipt:
 * never when recipient ends with one of the endpoint's never_deliver suffixes,
 * otherwise with probability deliver_rate (one draw of sim->rng). */
int sim_provider_delivers(struct sim *sim, enum sim_endpoint ep, const char *recipient);

/* As sim_provider_done, with extra facts (a JSON object text, or NULL) logged
 * as the entry's "fields". */
void sim_provider_done_fields(struct sim *sim, enum sim_endpoint ep, const struct sim_request *req,
                              struct sim_response *res, const char *const *recipients,
                              size_t nrecipients, const char *const *refs, size_t nrefs,
                              const char *fields);

/* Finishes a provider answer already written into res: counts it, logs it with
 * the given recipients and idempotency refs (borrowed strings), and sets the
 * endpoint's latency +- jitter as res->delay_ms. */
void sim_provider_done(struct sim *sim, enum sim_endpoint ep, const struct sim_request *req,
                       struct sim_response *res, const char *const *recipients,
                       size_t nrecipients, const char *const *refs, size_t nrefs);

/* Appends s (n bytes of valid UTF-8) to out as a JSON string with quotes.
 * Returns 0 or the cr_buf error. */
int sim_json_str(struct cr_buf *out, const char *s, size_t n);

/* Appends the n bytes at s to out as valid UTF-8 without NUL bytes: invalid
 * sequences and NULs become U+FFFD; when cut is nonzero an incomplete sequence
 * at the very end (from cutting the input short) is dropped instead. */
int sim_utf8_clean(struct cr_buf *out, const char *s, size_t n, int cut);

/* Finds key in an application/x-www-form-urlencoded text of n bytes and
 * appends its percent-decoded value ('+' is a space) to out. Returns 1 when
 * found, 0 when absent, or the cr_buf error. */
int sim_form_get(const char *s, size_t n, const char *key, struct cr_buf *out);

/* Case-insensitive prefix test. */
int sim_starts_with_ci(const char *s, const char *prefix);

/* Whether the n bytes at s are an E.164 number: '+', a non-zero digit, 7 to 15
 * digits in all. */
int sim_is_e164(const char *s, size_t n);

/* Counts the characters (UTF-8 code points) in the n bytes at s; sets *unicode
 * (when not NULL) to whether any byte is outside ASCII. */
size_t sim_utf8_count(const char *s, size_t n, int *unicode);

/* Formats t (Unix seconds) as an RFC 2822 date ("Thu, 30 Jul 2015 20:12:31 +0000"). */
void sim_rfc2822(char *out, size_t n, uint64_t t);

#endif
