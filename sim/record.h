/* What crier-sim saw, kept for tests to read back: counters per endpoint, a
 * recipient -> accepted-count table per endpoint, and a capped request log. */
#ifndef SIM_RECORD_H
#define SIM_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "cr_buf.h"
#include "sim.h"

/* Recipients tracked per endpoint; past this, recipients are still counted but
 * no longer enter the uniqueness table (and a warning is logged once). */
#define SIM_MAX_RECIPIENTS 8000000u

struct sim_counts {
    uint64_t requests;
    uint64_t accepted;  /* 2xx */
    uint64_t rejected;  /* 4xx other than 429 */
    uint64_t throttled; /* 429 */
    uint64_t failed;    /* 5xx */
    uint64_t recipients;
    uint64_t unique_recipients;
    uint64_t duplicates; /* acceptances of a recipient beyond its first */
};

struct sim_rent;
struct sim_log_entry;

/* Recipient table: entries live in an append-only array (so a stream can walk
 * it while it grows); an open-addressing index of entry numbers finds them. */
struct sim_rtable {
    struct sim_rent *ents;
    size_t n, cap;
    uint32_t *index; /* entry number + 1, 0 = empty slot */
    size_t mask;     /* index size - 1 (a power of two), or 0 when none */
    int warned;
};

struct sim_record {
    struct sim_counts counts[SIM_EP_COUNT];
    struct sim_rtable tables[SIM_EP_COUNT];
    struct sim_log_entry **ring;
    size_t ring_cap, ring_head, ring_count;
    size_t log_bytes;
    uint64_t next_seq;   /* seq of the next entry; starts at 1, never reset */
    uint64_t generation; /* bumped by sim_record_reset, ends running streams */
    size_t max_log, max_log_bytes, log_body_bytes;
    int log_warned;
    struct cr_buf scratch;
};

/* One request to log. Strings are borrowed for the call and may hold any bytes
 * (they are cleaned to valid UTF-8); body is cut to log_body_bytes. */
struct sim_log_input {
    enum sim_endpoint ep;
    uint64_t t_ms;
    const char *method;
    const char *path;
    int status;
    const char *const *recipients;
    size_t nrecipients;
    const char *auth;
    const char *ctype;
    const char *const *refs;
    size_t nrefs;
    const char *body;
    size_t body_len;
    const char *fields; /* extra facts as a JSON object text, logged as "fields"; or NULL */
    int count_status;   /* nonzero: counted as this HTTP status instead of status (SMTP) */
};

/* Prepares rec. max_log entries and max_log_bytes bytes bound the log (the
 * oldest entries go first). Allocates nothing yet. */
void sim_record_init(struct sim_record *rec, size_t max_log, size_t max_log_bytes,
                     size_t log_body_bytes);

/* Frees everything rec holds. */
void sim_record_release(struct sim_record *rec);

/* Clears counters, recipient tables and the log; seq numbers keep increasing
 * so that readers' cursors stay meaningful. Streams in progress are aborted. */
void sim_record_reset(struct sim_record *rec);

/* Counts one answered request and appends it to the log. Recipients of a 2xx
 * answer enter the endpoint's table. Out of memory only loses the log entry
 * or table update (logged), never the counters. */
void sim_record_add(struct sim_record *rec, const struct sim_log_input *in);

/* The counters of ep. */
const struct sim_counts *sim_record_counts(const struct sim_record *rec, enum sim_endpoint ep);

/* Starts a stream of ep's recipient table as a JSON object {"addr":count,...}.
 * Returns 0 and the fill function's state in *state, or CR_ENOMEM. */
int sim_record_recipients_stream(struct sim_record *rec, enum sim_endpoint ep, void **state);

/* Starts a stream of log entries with seq > since (of endpoint ep, or of all
 * when ep is SIM_EP_COUNT), at most limit of them, as
 * {"entries":[...],"next":SEQ} where next is the cursor to pass as since.
 * Returns 0 and *state, or CR_ENOMEM. */
int sim_record_log_stream(struct sim_record *rec, enum sim_endpoint ep, uint64_t since,
                          size_t limit, void **state);

/* The fill and free functions for both kinds of stream (see sim_fill_fn). */
int sim_record_fill(void *state, struct cr_buf *out);
void sim_record_fill_free(void *state);

#endif
