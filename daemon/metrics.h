/* Process metrics for /metrics (Prometheus text format): counters the
 * pipeline bumps as it works, and gauges read from the modules at scrape
 * time. Plain counters in memory, no locks: one loop, one thread. */
#ifndef CR_METRICS_H
#define CR_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "cr_buf.h"
#include "cr_types.h"

struct cr_metrics;
struct cr_daemon;

/* Creates the registry for nproviders providers (indexes as in cfg->providers). */
int cr_metrics_init(size_t nproviders, struct cr_metrics **out);
void cr_metrics_free(struct cr_metrics *m);

/* A message reached its final status (provider_ix -1: none, e.g. skipped/suppressed before sending;
 * ch CR_CH__COUNT: no channel, a resident skipped). */
void cr_metrics_message(struct cr_metrics *m, enum cr_channel ch, int provider_ix,
                        enum cr_status st);
/* One provider request finished after latency_us (any outcome, including transport errors). */
void cr_metrics_latency(struct cr_metrics *m, int provider_ix, long latency_us);
/* provider_ix accepted an SMS of n segments (what the message costs). */
void cr_metrics_sms_segments(struct cr_metrics *m, int provider_ix, unsigned n);
/* A message was scheduled for another attempt on provider_ix. */
void cr_metrics_retry(struct cr_metrics *m, int provider_ix);
/* A message waited wait_ms for the provider's rate limit. */
void cr_metrics_ratelimit_wait(struct cr_metrics *m, int provider_ix, long wait_ms);
/* A webhook request: hook "twilio"/"sendgrid"/"generic"/"unsubscribe"/"survey",
 * outcome "accepted"/"bad_signature"/"stale"/"replayed"/"malformed"/"too_large"/... */
void cr_metrics_webhook(struct cr_metrics *m, const char *hook, const char *outcome);

/* What went wrong with a provider request, for the error counts. */
enum cr_errclass {
    CR_ERRCLASS_TRANSPORT, /* no answer: refused, reset, timed out */
    CR_ERRCLASS_THROTTLED, /* 429 */
    CR_ERRCLASS_SERVER,    /* 5xx */
    CR_ERRCLASS_CLIENT,    /* another 4xx */
    CR_ERRCLASS__COUNT
};

/* "transport", "throttled", "server", "client". */
const char *cr_errclass_name(enum cr_errclass c);

/* The second the loop is in (called once a second by the fleet heartbeat):
 * the 10 s windows below count into it. */
void cr_metrics_tick(struct cr_metrics *m, int64_t now_ms);

/* A provider request was answered (err 0, HTTP status) or not (err < 0):
 * counts an error by class when it failed. */
void cr_metrics_answer(struct cr_metrics *m, int provider_ix, int err, long status);

/* A message moved from provider_ix to the channel's next provider. */
void cr_metrics_failover(struct cr_metrics *m, int provider_ix);

/* One provider over the last 10 s (the current second included). */
struct cr_metrics_win {
    double rate;                         /* messages with an outcome per second */
    double p50_ms, p99_ms;               /* request latency; 0 when no samples */
    size_t samples;
    uint32_t err[CR_ERRCLASS__COUNT];
    uint32_t failovers, waits;           /* over 10 s */
    uint32_t recent_failovers, recent_waits; /* over the last 2 s */
};
void cr_metrics_window(const struct cr_metrics *m, int provider_ix, struct cr_metrics_win *out);

/* The stream backlog, read from Redis by the fleet heartbeat (whole fleet). */
struct cr_metrics_backlog {
    int known;                          /* read at least once */
    long long pending[CR_PRIO__COUNT];  /* batches read and not acknowledged */
    long long lag[CR_PRIO__COUNT];      /* batches not read yet */
    long long intake_lag, intake_pending;
    long long retry_set;
    long long fleet_nodes;
};
void cr_metrics_set_backlog(struct cr_metrics *m, const struct cr_metrics_backlog *b);

/* Ledger bits found missing when a batch was acknowledged (then written again). */
void cr_metrics_record_gaps(struct cr_metrics *m, uint64_t n);

/* Messages counted for (ch, st) over every provider: for tests and reports. */
uint64_t cr_metrics_messages(const struct cr_metrics *m, enum cr_channel ch, enum cr_status st);

struct cr_config;
/* Index of the provider called name in cfg->providers, or -1 (NULL or unknown name):
 * turns the provider name the pipeline carries into the index the counters take. */
int cr_metrics_provider_index(const struct cr_config *cfg, const char *name);

/* Appends the whole exposition (counters, histograms, and the gauges read from
 * d's modules) to out. Returns 0 or CR_ETOOBIG/CR_ENOMEM. */
int cr_metrics_render(const struct cr_metrics *m, const struct cr_daemon *d, struct cr_buf *out);

#endif
