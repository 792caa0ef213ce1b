/* The contract between the dispatcher and a provider adapter in workers/.
 * An adapter is pure: it turns messages into an HTTP request description and an
 * HTTP answer into outcomes; the dispatcher owns the connections and the clock. */
#ifndef CR_PROVIDER_H
#define CR_PROVIDER_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "cr_buf.h"
#include "cr_types.h"

/* A per-recipient substitution: in a batch request whose subject and content
 * carry tags instead of a recipient's values, the provider replaces each tag
 * with value for this message's recipient (SendGrid `substitutions`). */
struct cr_subst {
    const char *tag;
    const char *value;
};

/* One rendered message to one address. All strings are borrowed from the
 * dispatcher for the duration of the build call; absent ones are NULL. */
struct cr_message {
    const char *job_id;
    const char *sub_id;
    const char *ref;      /* crier's reference "<job>/<position>/<channel>": unique per message,
                             stable across retries and crashes (idempotency/collapse key) */
    enum cr_channel channel;
    enum cr_priority priority;
    const char *address;  /* email address, E.164 number or push token */
    const char *platform; /* push: "fcm" or "apns" */
    const char *subject;  /* email */
    const char *text;     /* email plain text */
    const char *html;     /* email HTML (already escaped where it substitutes) */
    const char *sms;      /* sms body */
    const char *push_title;
    const char *push_body;
    /* whatsapp: the approved template (name or content id) and its language,
     * its variables rendered in order "1".."n" joined by '\x1f' (NULL: none),
     * and free text, set only while the resident's 24-hour service window is
     * open (then sent instead of the template) */
    const char *wa_template;
    const char *wa_language;
    const char *wa_vars;
    const char *wa_text;
    const char *sender_name;
    const char *unsubscribe_url; /* signed one-click URL (RFC 8058), NULL when not configured */
    int64_t expires_at_ms; /* unix ms; 0 = none */
    const struct cr_subst *subst; /* this recipient's substitutions (subject, text and
                                     html hold the tags), NULL when none */
    size_t nsubst;
};

/* What the adapter asks the dispatcher to send. The dispatcher initialises it
 * (method "POST", empty buffers with caps, headers NULL) and releases it. */
enum cr_transport {
    CR_TRANSPORT_HTTP, /* method, url, headers, body */
    CR_TRANSPORT_SMTP  /* url smtp:// or smtps://, mail_from, rcpt, headers + MIME parts */
};

/* One MIME part of an SMTP message (text/plain, text/html); strings owned. */
struct cr_mime_part {
    char *type;   /* "text/plain; charset=utf-8" */
    char *data;
    size_t len;
};

#define CR_MIME_PARTS_MAX 4

struct cr_request {
    char method[8];
    struct cr_buf url;          /* absolute URL */
    struct curl_slist *headers; /* owned by the request; "Name: value" lines (for SMTP:
                                   the message's own headers: From, To, Subject, ...) */
    struct cr_buf body;
    const char *userpwd;        /* basic auth "user:password", borrowed from the adapter state */
    int64_t now_ms;             /* set by the dispatcher before build/auth: the adapter's clock
                                   (unix ms); adapters never read the clock themselves */
    enum cr_transport transport;
    /* SMTP only (owned): envelope sender, recipients, and the parts that become a
     * multipart/alternative body built with curl_mime by the HTTP client. */
    char *mail_from;
    struct curl_slist *rcpt;
    struct cr_mime_part parts[CR_MIME_PARTS_MAX];
    size_t nparts;
    int smtp_starttls;          /* require STARTTLS on smtp:// (CURLUSESSL_ALL) */
};

/* An HTTP answer as the dispatcher received it. Only complete answers reach
 * classify; transport errors (refused, timeout, reset) are retried by the
 * dispatcher without asking the adapter. */
struct cr_response {
    long status;
    const char *body; /* NUL-terminated, may be "" */
    size_t body_len;
    const char *retry_after; /* value of a Retry-After header, or NULL */
    const char *headers;     /* all response header lines "Name: value\r\n", NUL-terminated */
};

enum cr_outcome {
    CR_OUT_DELIVERED, /* the provider confirmed delivery */
    CR_OUT_SENT,      /* accepted; a receipt may follow by webhook */
    CR_OUT_RETRY,     /* try again later (429, 5xx, transient provider error) */
    CR_OUT_FAILED,    /* permanent failure: never retried */
    CR_OUT_SUPPRESS,  /* permanent, and the address must not be used again on this channel */
    CR_OUT_RESEND     /* batch requests only: this message was not judged (the provider
                         refused the request for another message of it): send it again */
};

struct cr_result {
    enum cr_outcome outcome;
    int64_t retry_after_ms;  /* CR_OUT_RETRY: delay the provider asked for, -1 when it did not */
    char code[48];           /* provider's code ("202", "21211", "UNREGISTERED") */
    char provider_id[96];    /* provider's message id, "" when none */
    char detail[160];        /* a short reason a person can read */
};

struct cr_provider_ops {
    const char *type;          /* config "type" value, e.g. "twilio" */
    enum cr_channel channel;
    const char *platform;      /* push only: "fcm" or "apns" this adapter serves; NULL = any */
    size_t max_batch;          /* most messages one request may carry (1 = one each) */
    const char *const *keys;   /* the adapter's own config keys, NULL-terminated */

    /* Validates the provider's config object cfg (secrets already resolved) and
     * makes the adapter state. path names the object in error messages
     * ("providers.sendgrid"). Returns 0, or CR_ECONFIG with err set to
     * "<path>.<key>: <what is wrong>". *state is freed with free_state. */
    int (*init)(const cJSON *cfg, const char *base_url, const char *path, void **state,
                char *err, size_t errlen);
    void (*free_state)(void *state);

    /* Fills req for msgs[0..n) (n <= max_batch, all with the same rendering
     * when n > 1, each with its own substitutions when it has any). Returns 0,
     * CR_EINVAL (a message that can never be sent), CR_ETOOBIG or CR_ENOMEM.
     * When a batch fails the dispatcher sends its messages one by one; when a
     * single message fails it is a permanent failure. */
    int (*build)(void *state, const struct cr_message *const *msgs, size_t n,
                 struct cr_request *req);

    /* Classifies the answer to a request built for msgs[0..n), writing one
     * result per message into res[0..n). Never fails: an answer it cannot read
     * is CR_OUT_RETRY for 5xx and CR_OUT_FAILED otherwise, with a detail. */
    void (*classify)(void *state, const struct cr_message *const *msgs, size_t n,
                     const struct cr_response *resp, struct cr_result *res);

    /* Optional (NULL when the adapter needs no fetched credential). Called
     * before build with req initialised and req->now_ms set. Returns 0 when the
     * adapter holds a credential valid at now_ms; CR_EAGAIN after filling req
     * with the request that fetches one (an OAuth2 token exchange), which the
     * dispatcher sends and answers through auth_done; CR_EBUSY while such a
     * fetch is under way (messages wait for it); another negative code when no
     * credential can be had (messages are retried later). */
    int (*auth_request)(void *state, int64_t now_ms, struct cr_request *req);
    /* The answer to the request auth_request built; resp NULL when it failed
     * in transport (the next auth_request may try again). */
    void (*auth_done)(void *state, int64_t now_ms, const struct cr_response *resp);

    unsigned flags; /* CR_PROVIDER_* */
};

/* ops->flags */
enum {
    CR_PROVIDER_HTTP2 = (1 << 0), /* speak HTTP/2 over TLS (APNs) */
    CR_PROVIDER_SMTP = (1 << 1),  /* url is smtp:// or smtps://, checked by the adapter's init */
    CR_PROVIDER_SUBST = (1 << 2)  /* with max_batch > 1: takes per-message substitutions
                                     (cr_message.subst), up to CR_SUBST_MAX_BYTES each;
                                     without it only messages sharing a rendering batch */
};

/* The most bytes of substitution tags and values one message of a batch may
 * carry (SendGrid: 10,000 per personalization); a message over it is sent by
 * itself. */
#define CR_SUBST_MAX_BYTES 10000

/* All adapters compiled in (workers/registry.c), NULL-terminated. */
extern const struct cr_provider_ops *const cr_provider_table[];

/* Returns the adapter for a config "type", or NULL. */
const struct cr_provider_ops *cr_provider_find(const char *type);

/* Parses a Retry-After value, seconds or an HTTP-date, relative to now_ms
 * (unix ms). Returns the delay in ms (>= 0), or -1 when value is NULL or
 * unreadable. */
int64_t cr_retry_after_parse(const char *value, int64_t now_ms);

/* Copies the value of response header name (case-insensitive, trimmed) into
 * out. Returns 0, CR_ENOTFOUND, or CR_ETOOBIG when it does not fit (truncated). */
int cr_response_header(const struct cr_response *resp, const char *name, char *out,
                       size_t outlen);

/* Helpers for adapters: set a result's fields safely (values are truncated). */
void cr_result_set(struct cr_result *res, enum cr_outcome outcome, const char *code,
                   const char *detail);

#endif
