/* Who may read the dashboard and its API: bearer tokens from the config
 * ("dashboard": {"tokens": {"name": {"token": "...", "role": "viewer" |
 * "operator"}}}), checked in constant time. Pure: no Redis, no loop. */
#ifndef CR_TOKENS_H
#define CR_TOKENS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define CR_TOKEN_MIN 16 /* bytes: shorter tokens are refused at startup */
#define CR_TOKEN_MAX 256
#define CR_TOKEN_NAME_MAX 64
#define CR_TOKENS_MAX 64

enum cr_role { CR_ROLE_NONE, CR_ROLE_VIEWER, CR_ROLE_OPERATOR };

struct cr_token {
    char name[CR_TOKEN_NAME_MAX + 1];
    unsigned char token[CR_TOKEN_MAX];
    size_t len;
    enum cr_role role;
};

struct cr_dashboard_conf {
    struct cr_token tokens[CR_TOKENS_MAX];
    size_t ntokens;
    int max_streams; /* open /api/v1/events streams, default 32 */
    int recent_jobs; /* jobs listed by /api/v1/jobs, default 50 */
    char *crierctl;  /* the crierctl that writes reports; NULL = beside crierd */
};

/* Parses the "dashboard" object (secrets already resolved; NULL: no
 * dashboard, *out NULL). Returns 0 and *out (free with cr_dashboard_conf_free),
 * CR_ECONFIG with err = "dashboard.<key>: <problem>", or CR_ENOMEM. */
int cr_dashboard_conf_parse(const cJSON *obj, struct cr_dashboard_conf **out, char *err,
                            size_t errlen);

/* Wipes the tokens and frees dc (NULL is fine). */
void cr_dashboard_conf_free(struct cr_dashboard_conf *dc);

/* The role of "Authorization: Bearer <token>" (value is the header's value,
 * may be NULL). Every configured token is compared, each in constant time,
 * so the time taken says nothing about which matched or how much. Returns
 * CR_ROLE_NONE when nothing matches; *name (may be NULL) is set to the
 * token's name for the log. */
enum cr_role cr_tokens_check(const struct cr_dashboard_conf *dc, const char *value,
                             const char **name);

/* "viewer", "operator", "none". */
const char *cr_role_name(enum cr_role r);

#endif
