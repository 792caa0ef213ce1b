/* crierd's configuration: one JSON file with comments, secrets by reference
 * ("$env:NAME", "$file:/path"), every key validated with its path named. */
#ifndef CR_CONFIG_H
#define CR_CONFIG_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "cr_provider.h"
#include "cr_types.h"

struct cr_dashboard_conf;
struct cr_integrators;

#define CR_MAX_PROVIDERS 16
#define CR_MAX_CHANNEL_PROVIDERS 4
#define CR_WORKERS_MAX 64
#define CR_SENTINEL_NODES_MAX 16

struct cr_provider_conf {
    char *name;                       /* key under "providers" */
    const struct cr_provider_ops *ops;
    char *url;                        /* base URL, no trailing slash */
    int max_inflight;                 /* concurrent requests, default 64 */
    int max_unrecorded;               /* messages sent whose outcome is not yet in the ledger
                                         (on the wire or answered): what a crash can send
                                         twice; default 4 x max_inflight */
    long timeout_ms;                  /* total per request, default 10000 */
    long connect_timeout_ms;          /* default 2000 */
    char *ca_file;                    /* CA bundle for TLS, NULL = system default */
    long rate;                        /* messages per second for the whole account, shared by
                                         every crierd through Redis; 0 = no limit */
    long burst;                       /* bucket size; 0 = one second's worth of rate */
    long tier_limit;                  /* whatsapp: residents the number may start conversations
                                         with in a moving 24 h (its messaging tier), shared by
                                         every crierd through Redis; 0 = no limit */
    int breaker_failures;             /* failures in a row that open the circuit, 0 = never */
    long breaker_open_ms;             /* first open period (doubles while it keeps failing) */
    void *state;                      /* from ops->init, freed by cr_config_release */
};

/* Limits applied to every job document at intake. */
struct cr_job_limits {
    size_t doc_bytes;       /* default 262144 */
    int depth;              /* JSON nesting, default 8 */
    size_t id_length;       /* default 64 */
    size_t segments;        /* per list (segments, require, exclude), default 64 */
    size_t subscribers;     /* explicit ids, default 10000 */
    size_t subject;         /* bytes, default 200 */
    size_t text;            /* bytes, default 20000 */
    size_t html;            /* bytes, default 100000 */
    int sms_segments;       /* default 6 */
    size_t push_title;      /* bytes, default 120 */
    size_t push_body;       /* bytes, default 2000 */
    size_t translations;    /* default 16 */
    size_t tags;            /* default 32 */
};

/* TLS to Redis: verification is always on. */
struct cr_tls_conf {
    int enabled;       /* "tls" given (an object, or true for the defaults) */
    char *ca_file;     /* NULL = the system's CA paths */
    char *cert_file;   /* client certificate and its key, NULL = none */
    char *key_file;
    char *server_name; /* name checked in the certificate and sent as SNI; NULL = host */
};

struct cr_config {
    /* redis */
    char *redis_host;              /* default "127.0.0.1" */
    int redis_port;                /* default 6379 */
    char *redis_path;              /* unix socket instead of host/port, NULL = TCP */
    char *redis_username;          /* ACL user for AUTH, NULL = AUTH <password> alone */
    char *redis_password;          /* NULL = none */
    struct cr_tls_conf redis_tls;
    char *prefix;                  /* default "crier:" */
    long redis_connect_timeout_ms; /* default 2000 */
    long redis_command_timeout_ms; /* default 5000 */
    long redis_reconnect_max_ms;   /* default 5000 */
    int redis_wait_replicas;       /* replicas that must have an outcome before its
                                      unrecorded slot is freed (WAIT), 0 = none; "auto"
                                      (the default): cr_config_wait_replicas_auto() */
    long redis_wait_timeout_ms;    /* the longest a WAIT waits, default 1000 */
    /* redis.sentinel: the primary is found through Sentinel instead of host/port */
    char *redis_sentinel_master;   /* name Sentinel monitors it by; NULL = no Sentinel */
    char **redis_sentinel_nodes;   /* "host:port" of each Sentinel, checked */
    size_t redis_sentinel_nnodes;  /* 1..CR_SENTINEL_NODES_MAX when master is set */
    char *redis_sentinel_username; /* ACL user on the Sentinels, NULL = none */
    char *redis_sentinel_password; /* NULL = no AUTH to the Sentinels */
    long redis_sentinel_timeout_ms; /* one Sentinel query (connect + answer), default 500 */

    char *consumer;                /* consumer name in the groups, default the host name */
    int workers;                   /* event-loop processes, default 1; "auto" = one per core */
    int worker_index;              /* which of them this process is (0 when there is one) */
    char *group;                   /* consumer group, default "crierd" */

    /* intake */
    long intake_block_ms;          /* default 1000 */
    int intake_max_jobs;           /* jobs read per call, default 16 */
    int intake_require_signed;     /* unsigned jobs are dead-lettered "unauthorized", default 0 */
    long intake_sig_window_s;      /* a signature's ts may be this far off now, default 300 */
    struct cr_integrators *integrators; /* "integrators" (auth.h), NULL = none; owned */

    /* fan-out */
    int batch_size;                /* subscribers per batch, default 500 */
    int max_batches;               /* batches held in memory at once, default 8 */
    long reclaim_idle_ms;          /* default 60000 */

    /* retries */
    int retry_max_attempts;        /* default 5 */
    long retry_base_ms;            /* default 500 */
    long retry_max_ms;             /* default 30000 */

    long receipts_maxlen;          /* MAXLEN ~ of crier:receipts, default 1000000 */
    long retention_s;              /* life of job keys after completion, default 604800 */
    char *log_level;               /* default "info" */
    char *log_format;              /* "auto" (default), "text", "journal", "json" */
    long log_repeat_s;             /* window folding repeated events, default 10, 0 = off */
    char *public_url;              /* default "http://127.0.0.1" */

    struct cr_job_limits limits;

    /* http: the listener for /metrics, /healthz, /readyz, /hooks/..., /u/, /s/ */
    char *http_listen;             /* "host:port", NULL = off (default) */
    int http_max_connections;      /* default 1024 */
    size_t http_max_header_bytes;  /* request line and headers, default 16384 */
    int http_max_headers;          /* default 64 */
    size_t http_max_body_bytes;    /* default 1048576 */
    long http_idle_timeout_ms;     /* keep-alive wait for the next request, default 30000 */
    long http_read_timeout_ms;     /* one whole request, default 10000 */
    struct cr_dashboard_conf *dashboard; /* "dashboard" (tokens.h), NULL = no dashboard; owned */

    /* webhooks: signatures of provider callbacks */
    char *webhooks_public_url;     /* URL providers call (Twilio signs it); default public_url */
    char *webhooks_sendgrid_public_key; /* PEM or base64 DER, NULL = /hooks/sendgrid off */
    char *webhooks_generic_secret; /* NULL = /hooks/generic off */
    char *confirm_keywords;        /* SMS replies that confirm, comma separated; NULL = YES,Y,OK */
    long webhooks_window_s;        /* timestamp window and replay memory, default 300 */

    /* links: signed unsubscribe and survey URLs */
    char *links_secret;            /* NULL = no links (no unsubscribe_url, /u/ and /s/ off) */
    long links_ttl_days;           /* default 90 */

    struct cr_provider_conf providers[CR_MAX_PROVIDERS];
    size_t nproviders;
    /* per channel, indexes into providers in failover order */
    int channel_providers[CR_CH__COUNT][CR_MAX_CHANNEL_PROVIDERS];
    size_t nchannel_providers[CR_CH__COUNT];

    cJSON *root;                   /* the parsed document, secrets resolved; owned */
};

/* Fills lim with the defaults above. */
void cr_job_limits_default(struct cr_job_limits *lim);

/* Fills lim with the largest value config allows for each limit: a document
 * crierd accepted under any configuration parses within these (for reading
 * stored documents back, as crier-audit does). */
void cr_job_limits_widest(struct cr_job_limits *lim);

/* What redis.wait_replicas "auto" (the default) means: 1 when crierd finds
 * its primary through Sentinel (which has replicas to fail over to), else 0. */
int cr_config_wait_replicas_auto(int sentinel);

/* Parses and validates a config document (JSON, comments allowed). On success
 * returns 0 and cfg owns everything (free with cr_config_release). On failure
 * returns CR_ECONFIG (or CR_ENOMEM) with err = "<key path>: <problem>", e.g.
 * "providers.twilio.url: must start with http:// or https://", and cfg holds
 * nothing that needs releasing. Secret references are resolved here. */
int cr_config_parse(const char *text, size_t len, struct cr_config *cfg, char *err,
                    size_t errlen);

/* As cr_config_parse, resolving provider "type" values in adapters (a
 * NULL-terminated table) instead of cr_provider_table; adapters NULL means
 * cr_provider_find(). Lets tests and tools validate against their own adapters. */
int cr_config_parse_with(const char *text, size_t len,
                         const struct cr_provider_ops *const *adapters, struct cr_config *cfg,
                         char *err, size_t errlen);

/* Turns a parsed config (workers = n > 1) into worker index's own: consumer
 * "<consumer>-<index>" (stable, so a restarted worker recovers its own pending
 * entries), each provider's max_inflight and max_unrecorded divided between the
 * n workers (the shares add up to the configured values, each at least 1, so
 * together they keep to what the provider allows), and the HTTP listener on
 * port + index (port 0 stays 0). Sets workers to 1. Returns 0, CR_EINVAL with
 * err filled (no such worker, or the port would pass 65535) or CR_ENOMEM; on
 * failure cfg is unchanged and still owned by the caller. */
int cr_config_for_worker(struct cr_config *cfg, int index, int n, char *err, size_t errlen);

/* Reads path and calls cr_config_parse; a file that cannot be read is
 * CR_ECONFIG with "<path>: <strerror>". */
int cr_config_load(const char *path, struct cr_config *cfg, char *err, size_t errlen);

/* Frees everything cfg owns, including adapter states. */
void cr_config_release(struct cr_config *cfg);

/* Returns the provider conf called name, or NULL. */
const struct cr_provider_conf *cr_config_provider(const struct cr_config *cfg, const char *name);

#endif
