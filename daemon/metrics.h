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
