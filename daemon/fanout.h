/* Fan-out: a batch of audience ids taken from crier:batches:<priority> becomes
 * messages. Its subscribers are loaded (pipelined), the ledger and suppression
 * lists consulted, the messages handed to the dispatcher, and every outcome
 * recorded; the batch is acknowledged only when all of them are recorded. */
#ifndef CR_FANOUT_H
#define CR_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "cr_provider.h"
#include "cr_types.h"
#include "daemon.h"
#include "jobctx.h"

struct cr_batch;

/* One subscriber of a batch, copied out of its hash. */
struct cr_sub {
    char *id;
    uint32_t pos;          /* audience position: the ledger's index */
    char **kv;             /* field, value, field, value... (one allocation with blob) */
    size_t nkv;
    int missing;           /* no hash */
    int bad;               /* the key holds another type than a hash */
    uint8_t plan;          /* outcomes (1 << channel index, CR_CH__COUNT = skipped) this batch
                              must see set before it is acknowledged */
};

enum cr_msg_state { CR_MSG_QUEUED, CR_MSG_INFLIGHT, CR_MSG_DONE };

/* One (subscriber, channel) message. Owned by its batch. */
struct cr_msg {
    struct cr_batch *batch;
    struct cr_sub *sub;
    const char *address;
    const char *platform;
    enum cr_channel channel;
    enum cr_msg_state state;
    uint8_t attempt;       /* attempts made so far */
    uint8_t provider_ix;   /* index into the channel's provider list */
    uint8_t segments;      /* SMS: segments of the rendered text (set when sent) */
    uint8_t slot_held;     /* holds an in-flight slot of provider slot_prov until its
                              outcome is written */
    uint8_t slot_prov;
    uint8_t solo;          /* send in a request of its own (a batch request it was in
                              was refused as a whole) */
    uint8_t tier_prov;     /* whatsapp: 1 + the provider whose messaging tier admitted the
                              resident (0 none yet) */
    const char *member;    /* retry set member this message came from, or NULL */
    struct cr_msg *qnext;  /* send queue link */
};

enum cr_batch_kind {
    CR_BATCH_STREAM, /* audience ids from crier:batches:<priority>, acked when done */
    CR_BATCH_RETRY   /* messages claimed from crier:retry, each unparked when done */
};

struct cr_batch {
    enum cr_batch_kind kind;
    struct cr_fanout *fanout;
    struct cr_daemon *d;
    char key[CR_KEY_MAX];         /* crier:job:<id> */
    char ledger_key[CR_KEY_MAX + 8];
    char early_key[CR_KEY_MAX + 8];  /* webhook receipts that came before crier's own write */
    char **members;                   /* CR_BATCH_RETRY: claimed members (owned) */
    enum cr_priority prio;
    char entry[32];
    char job_id[CR_JOB_ID_MAX + 1];
    uint32_t pos0;
    unsigned step;          /* an escalation step's batch (1..), 0 the job's own */
    unsigned char *outcome; /* step: the bitmap of residents with the step's outcome
                               (reached or confirmed), its bytes from pos0 / 8 */
    size_t outcome_len;
    struct cr_jobctx *jc;
    struct cr_sub *subs;
    size_t nsubs;
    struct cr_msg *msgs;
    size_t nmsgs;
    size_t nfinal;          /* outcomes known (recorded or not) */
    size_t expected;        /* outcomes this batch will produce */
    struct cr_record *outs;  /* grown as outcomes arrive, up to nsubs * (CR_CH__COUNT + 1) + 1 */
    size_t outs_cap;
    size_t nouts;
    size_t nflushed;
    size_t flushing;        /* outcomes in the flush under way */
    int flush_busy;         /* a record script call is under way */
    int planning;           /* messages being handed out: no completion yet */
    int parked_any;         /* something was parked: the retry poller looks again */
    int acked;
    int planned;
    int loads_pending;
    int dead;               /* abandoned (shutdown): no ack */
    int bad_ledger;         /* the job's ledger holds another type: the job fails */
    char *err;              /* owned: the Redis error that stopped the batch, or NULL */
    int poisoned;           /* a write met a key of the wrong type: the job failed,
                               nothing more of this batch is written */
    int gaps;               /* acknowledgements refused for missing ledger bits */
    int kept;               /* acknowledged, kept a while in case Redis loses it */
    uint64_t kept_until;    /* loop ms */
    unsigned char *ledger;  /* ledger bytes covering this batch, copied */
    size_t ledger_len;
    uint64_t flush_due;     /* loop ms when unflushed outcomes must be written */
    struct cr_batch *next;
    struct cr_batch *prev;
};

/* An outcome waiting to be recorded. */
struct cr_record {
    struct cr_sub *sub;
    enum cr_channel channel; /* CR_CH__COUNT = none (skipped) */
    enum cr_status status;
    uint8_t attempt;
    uint8_t suppress;        /* add the address to the channel's suppression set */
    const char *address;
    const char *provider;
    char code[48];
    char provider_id[96];
    long latency_us;
    uint8_t segments;        /* SMS segments, 0 for other channels */
    uint8_t slot_held;       /* release provider slot_prov's in-flight slot once written */
    uint8_t slot_prov;
    const char *unpark;      /* the retry member this outcome resolves, or NULL */
    char *park_member;       /* owned: non-NULL = park the message under this member */
    int64_t park_due_ms;     /* unix ms when a parked message is due */
};

int cr_fanout_init(struct cr_daemon *d, struct cr_fanout **out);

/* Batches held now, per priority, and whether another can be taken. */
int cr_fanout_has_room(const struct cr_fanout *f, enum cr_priority prio);

/* Copies up to max entry ids of the stream batches of priority prio held here
 * into out (pointers valid until the loop runs again); returns how many. */
size_t cr_fanout_entries(const struct cr_fanout *f, enum cr_priority prio, const char **out,
                         size_t max);

/* Copies up to max retry-set members this crierd has claimed and not yet
 * resolved into out (valid until the loop runs again); returns how many. */
size_t cr_fanout_retry_members(const struct cr_fanout *f, const char **out, size_t max);

/* A job this crierd has just accepted (jc, parsed from its document): kept
 * in the job cache (with a reference of its own) so that its first batches
 * start without reading the job back from Redis. */
void cr_fanout_job_known(struct cr_fanout *f, struct cr_jobctx *jc);

/* Whether the entry id of prio's batch stream is already being worked on
 * here, or was acknowledged here moments ago and is kept (the streams of
 * different priorities can hold the same id). */
int cr_fanout_has(const struct cr_fanout *f, enum cr_priority prio, const char *entry);

/* Takes a batch entry (fields job, pos, ids, and step for an escalation
 * step's batch, NULL otherwise) read from the priority's stream. Malformed
 * entries are acknowledged and logged. */
void cr_fanout_take(struct cr_fanout *f, enum cr_priority prio, const char *entry,
                    const char *job, const char *pos, const char *ids, const char *step);

/* The dispatcher's report of a message's final outcome. */
void cr_fanout_msg_done(struct cr_msg *m, enum cr_status st, const char *provider,
                        const struct cr_result *res, long latency_us, int suppress);

/* The message must wait until due_ms (unix ms): it is parked in the durable
 * retry set with its attempts so far (res says why), and its batch may finish. */
void cr_fanout_msg_park(struct cr_msg *m, int64_t due_ms, const char *provider,
                        const struct cr_result *res, long latency_us);

/* Takes n members claimed from the retry set ("<job>|<pos>|<ch>|<sub>|<attempt>|<prio>"),
 * grouped into batches per job. Malformed members are dropped with a log line. */
void cr_fanout_take_retries(struct cr_fanout *f, const char *const *members, size_t n);

/* Writing b's outcomes met a key of the wrong type (reason names it): the
 * job is marked failed, the rest of it is not sent from here, b's work is
 * acknowledged (stream entry) or removed (retry members) unwritten, and b is
 * freed once the dispatcher has given back all its messages. */
void cr_fanout_poisoned(struct cr_batch *b, const char *reason);

/* The dispatcher gives m back unsent (shutdown, request cancelled). */
void cr_fanout_msg_returned(struct cr_msg *m);

/* The acknowledging write recorded outcomes [from, to) but found plan bits
 * missing from the ledger (Redis lost writes it had acknowledged): have is
 * the ledger's bytes over the plan (len bytes, read during the call; NULL
 * when unknown), missing their count. What b holds is written again, what it
 * never sent is sent, and the batch is acknowledged once the ledger is whole;
 * after a few refusals in a row it is handed back instead (taken again later). */
void cr_fanout_gap(struct cr_batch *b, size_t from, size_t to, const unsigned char *have,
                   size_t len, long long missing);

/* Fills plan (cap bytes, zeroed here) with the ledger bits b must see set
 * before it is acknowledged, laid out as the ledger from byte *first.
 * Returns the bytes used, 0 when there is no plan (not a stream batch, or
 * nothing planned), or more than cap when plan is too small. */
size_t cr_fanout_plan(const struct cr_batch *b, unsigned char *plan, size_t cap, uint64_t *first);

/* The commands connection is ready (again): every outcome held here is
 * treated as unknown, since Redis may have come back without it (a restart
 * from older data, a new primary), and written again before any batch is
 * acknowledged (the ledger skips what is there). That includes the stream
 * batches acknowledged in the last few seconds, which are kept (up to twice
 * fanout.max_batches) for this: their acknowledgement is written again too.
 * Returns the outcomes to write again. */
size_t cr_fanout_redis_ready(struct cr_fanout *f);

/* Shutdown: writes what has been decided, gives the rest back (unacked).
 * Returns the number of batches still held. */
size_t cr_fanout_active(const struct cr_fanout *f);
void cr_fanout_stop(struct cr_fanout *f);
void cr_fanout_free(struct cr_fanout *f);

#endif
