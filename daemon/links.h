/* Signed links put in messages: one-click unsubscribe (/u/<token>) and survey
 * answers (/s/<token>). A token is base64url(payload) "." base64url(HMAC-SHA256
 * (secret, payload)); the payload names the kind, the subscriber, the channel
 * or job, the expiry and the language the message was written in (its page
 * is shown in it), so a token can act for its own subscriber only. */
#ifndef CR_LINKS_H
#define CR_LINKS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define CR_LINK_ID_MAX 128     /* subscriber ids and job ids a link may carry */
#define CR_LINK_TOKEN_MAX 512  /* the longest token made or accepted */
#define CR_LINK_LANG_MAX 16    /* a language tag and its NUL */

enum cr_link_kind {
    CR_LINK_UNSUBSCRIBE = 'u', /* arg: channel name */
    CR_LINK_SURVEY = 's',      /* arg: job id */
    CR_LINK_CONFIRM = 'c'      /* arg: the message's ref "<job>/<pos>/<channel>" */
};

struct cr_link {
    enum cr_link_kind kind;
    char sub[CR_LINK_ID_MAX + 1];
    char arg[CR_LINK_ID_MAX + 1];
    int64_t expires_s;         /* unix seconds */
    char lang[CR_LINK_LANG_MAX]; /* the message's language; "" in a version 1 token */
};

/* Makes a token for (kind, sub, arg) in language lang (NULL or "" for
 * none), valid until expires_s. sub and arg must be 1..CR_LINK_ID_MAX bytes
 * without '|' or control characters, lang at most CR_LINK_LANG_MAX - 1 of
 * A-Z a-z -. Returns 0, CR_EINVAL (bad id or language) or CR_ETOOBIG (out too
 * small). */
int cr_link_make(const char *secret, enum cr_link_kind kind, const char *sub, const char *arg,
                 const char *lang, int64_t expires_s, char *out, size_t outlen);

/* Checks token (len bytes) with secret at now_s. Returns 0 and fills *out;
 * CR_EPARSE for a malformed or wrongly signed token (the signature is
 * compared in constant time before the payload is read); CR_ETIMEOUT for an
 * expired one. */
int cr_link_verify(const char *secret, const char *token, size_t len, int64_t now_s,
                   struct cr_link *out);

/* The public URL of a link: <webhooks_public_url>/<kind>/<token>, valid for
 * cfg->links_ttl_days from now_ms, in language lang (as cr_link_make).
 * Returns 0, CR_ENOTFOUND when links are not configured (no links.secret), or
 * as cr_link_make. */
int cr_link_url(const struct cr_config *cfg, enum cr_link_kind kind, const char *sub,
                const char *arg, const char *lang, int64_t now_ms, char *out, size_t outlen);

#endif
