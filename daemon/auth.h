/* Who may post jobs: integrator keys from the config ("integrators"), the job
 * signature (v1 = HMAC-SHA256 of "<ts>.<job bytes>", compared in constant
 * time within a replay window), the scopes a key's jobs must keep to, and the
 * HTTP credentials (bearer token or the same signature in headers). Pure: the
 * time is an argument, nothing here touches Redis or the loop. */
#ifndef CR_AUTH_H
#define CR_AUTH_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "cr_types.h"
#include "job.h"

#define CR_KEY_ID_MAX 64
#define CR_SIG_MAX 4            /* v1 signatures one header may carry (key rotation) */
#define CR_SIG_MAC_LEN 32       /* HMAC-SHA256 */
#define CR_SIG_HEADER_MAX 512   /* longer signature values are refused unread */
#define CR_SIG_TEXT_LEN (3 + 2 * CR_SIG_MAC_LEN + 1) /* "v1=" + hex + NUL */
#define CR_SECRET_MIN 16

struct cr_integrator {
    char id[CR_KEY_ID_MAX + 1];   /* [A-Za-z0-9_-]+ (no '.': the bearer token splits there) */
    char *secret;                 /* owned, wiped when freed */
    size_t secret_len;
    char **segments;              /* glob patterns ('*', '?') on segment names; none: no segment */
    size_t nsegments;
    int subscribers;              /* may name subscribers by id (audience.subscribers), default 0 */
    unsigned channels;            /* CR_CH_BIT set, default all */
    enum cr_priority max_priority; /* default high: urgent must be granted */
    long max_audience;            /* residents one job may reach, default 10000, 0 = no limit */
    int may_schedule;             /* send_at allowed, default 0 */
    long rate;                    /* HTTP posts per second, default 10 */
    long burst;                   /* default 100 */
};

struct cr_integrators {
    struct cr_integrator *v;
    size_t n;
};

/* Parses the "integrators" object (secrets already resolved; NULL = none
 * configured) into *out (free with cr_integrators_free; NULL when obj is NULL).
 * Returns 0, CR_ECONFIG with err = "integrators.<id>.<key>: <problem>", or
 * CR_ENOMEM. */
int cr_integrators_parse(const cJSON *obj, struct cr_integrators **out, char *err,
                         size_t errlen);

/* Wipes the secrets and frees k (NULL is fine). */
void cr_integrators_free(struct cr_integrators *k);

/* The key called id, or NULL (k may be NULL). */
const struct cr_integrator *cr_integrator_find(const struct cr_integrators *k, const char *id);

/* Nonzero when name matches pattern: '*' any run of characters (also none),
 * '?' one character, everything else itself. Linear in practice: one star's
 * position is remembered, never backtracked further. */
int cr_glob_match(const char *pattern, const char *name);

/* A parsed signature value: one or more "v1=<64 hex>" separated by ',' (spaces
 * around them allowed); entries of other versions ("v2=...") are skipped so
 * that a newer signer can send both. */
struct cr_sig {
    unsigned char mac[CR_SIG_MAX][CR_SIG_MAC_LEN];
    size_t n;
};

/* Parses a signature value of len bytes (need not be NUL-terminated). Returns
 * 0 with at least one v1 signature in *out, CR_EPARSE (malformed, or no v1
 * entry) or CR_ETOOBIG (over CR_SIG_HEADER_MAX bytes or more than CR_SIG_MAX
 * v1 entries). */
int cr_sig_parse(const char *s, size_t len, struct cr_sig *out);

/* Parses a timestamp: unix seconds, 1 to 12 decimal digits, nothing else.
 * Returns 0 or CR_EPARSE. */
int cr_sig_ts_parse(const char *s, int64_t *out_s);

/* Signs doc (len bytes) at ts (the decimal text sent beside it) with secret:
 * writes "v1=<hex>" to out. Returns 0 or CR_ENOMEM. */
int cr_sig_make(const void *secret, size_t secret_len, const char *ts, const void *doc,
                size_t len, char out[CR_SIG_TEXT_LEN]);

/* What a job entry or request says about who signed it; absent fields NULL. */
struct cr_signed {
    const char *key;
    const char *sig;
    const char *ts;
};

/* Checks a signature over doc: the key exists, ts is within window_s seconds
 * of now_ms either way, and one of sig's v1 entries is the HMAC (compared in
 * constant time). Returns 0 with *who set and mac (may be NULL) holding the
 * signature that matched, or CR_EINVAL with err code "unauthorized" and a
 * message naming what failed: a field missing, an unknown key, a malformed
 * signature or timestamp, a stale or future timestamp, a bad signature. */
int cr_auth_verify(const struct cr_integrators *k, const struct cr_signed *s, const void *doc,
                   size_t len, int64_t now_ms, long window_s, const struct cr_integrator **who,
                   unsigned char mac[CR_SIG_MAC_LEN], struct cr_job_error *err);

/* Checks a parsed job against key's scopes: every audience.segments entry
 * matches one of its patterns, audience.subscribers only when allowed, every
 * channel granted, priority not above max_priority, send_at only when it may
 * schedule. (max_audience is checked as the audience expands.) Returns 0, or
 * CR_EINVAL with err code "forbidden" and a message naming the field and the
 * scope it broke. */
int cr_auth_scopes(const struct cr_integrator *key, const struct cr_job *job,
                   struct cr_job_error *err);

/* Checks "Authorization: Bearer <key id>.<secret>" (value is the header's
 * value, may be NULL). Returns 0 with *who, CR_ENOTFOUND (no bearer token
 * given) or CR_EINVAL with why (at most whylen bytes) naming what failed. The
 * secret is compared in constant time. */
int cr_auth_bearer(const struct cr_integrators *k, const char *value,
                   const struct cr_integrator **who, char *why, size_t whylen);

#endif
