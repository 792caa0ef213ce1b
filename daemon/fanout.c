/* Batches (see fanout.h): take, load, plan, hand out, record, acknowledge. */
#include "fanout.h"
#include "escalate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"
#include "dispatch.h"
#include "metrics.h"
#include "poison.h"
#include "quiet.h"
#include "reader.h"
#include "record.h"
#include "replicas.h"
#include "retry.h"
#include "strikes.h"

#define FLUSH_DELAY_MS 20   /* the longest an outcome waits to be written */
#define JOB_CACHE 32
#define ROOM_STRETCH 4 /* at most this many times max_batches while a provider starves */
#define CANCEL_POLL_MS 300
#define MAX_BATCH_IDS 100000
#define STRIKE_BASE_MS 250 /* first wait after a batch failed; doubled per failure */
#define KEEP_MS 5000 /* an acknowledged batch is kept this long (plus the time the
                        commands connection may take to notice a restart)... */
#define KEEP_PER_BATCH 2 /* ...and at most this many times fanout.max_batches of them */

struct cr_fanout {
    struct cr_daemon *d;
    struct cr_batch *active;
    size_t nactive[CR_PRIO__COUNT];
    struct cr_batch *kept;      /* acknowledged stream batches, oldest first */
    struct cr_batch *kept_tail;
    size_t nkept;
    struct cr_jobctx *cache;  /* most recently used first */
    size_t ncache;
    uv_timer_t timer;
    uint64_t next_poll;
    int stopped;
    struct cr_strikes strikes; /* failures per batch entry (retries: per job) */
};

static void batch_free(struct cr_batch *b);
static void keep(struct cr_batch *b);
static void link_active(struct cr_fanout *f, struct cr_batch *b);
static void unlink_active(struct cr_fanout *f, struct cr_batch *b);
static void unlink_kept(struct cr_fanout *f, struct cr_batch *b);
static void maybe_complete(struct cr_batch *b);
static void poisoned_maybe_free(struct cr_batch *b);
static int any_inflight(const struct cr_batch *b);
static void release_slots(struct cr_batch *b, size_t from, size_t to, int written);
static void after_outcome(struct cr_batch *b);
static struct cr_batch *new_batch(struct cr_fanout *f, enum cr_batch_kind kind,
                                  enum cr_priority prio, const char *job);
static void start_batch(struct cr_batch *b);

static void on_state(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_jobctx *jc = ud;

    (void)r;
    if (reply && reply->type == REDIS_REPLY_STRING &&
        (strcmp(reply->str, "cancelling") == 0 || strcmp(reply->str, "cancelled") == 0 ||
         strcmp(reply->str, "failed") == 0)) {
        if (!jc->cancelled)
            cr_info("job %s: %s; its remaining messages will not be sent", jc->id, reply->str);
        jc->cancelled = 1;
    }
    cr_jobctx_unref(jc);
}

/* Jobs in use here learn of a cancellation within CANCEL_POLL_MS. */
static void poll_states(struct cr_fanout *f)
{
    struct cr_jobctx *jc;

    for (jc = f->cache; jc; jc = jc->next) {
        if (jc->cancelled || jc->refs < 2) /* the cache's own reference only: idle */
            continue;
        cr_jobctx_ref(jc);
        if (cr_redis_cmd(f->d->rc, on_state, jc, 0, "HGET %s state", jc->key) < 0)
            cr_jobctx_unref(jc);
    }
}

static void on_tick(uv_timer_t *t)
{
    struct cr_fanout *f = t->data;
    struct cr_batch *b;
    struct cr_batch *next;
    uint64_t now = uv_now(f->d->loop);

    if (now >= f->next_poll) {
        f->next_poll = now + CANCEL_POLL_MS;
        poll_states(f);
    }

    while (f->kept != NULL && now >= f->kept->kept_until)
        batch_free(f->kept);
    for (b = f->active; b; b = next) {
        next = b->next;
        if (b->poisoned)
            continue;
        if (!b->flush_busy && b->nouts > b->nflushed && now >= b->flush_due)
            cr_record_flush(b, !b->dead);
        else if (!b->flush_busy && b->planned && b->nouts >= b->expected && !b->acked && !b->dead)
            cr_record_flush(b, 1); /* an earlier final write failed: try again */
    }
}

int cr_fanout_init(struct cr_daemon *d, struct cr_fanout **out)
{
    struct cr_fanout *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return CR_ENOMEM;
    f->d = d;
    uv_timer_init(d->loop, &f->timer);
    f->timer.data = f;
    uv_timer_start(&f->timer, on_tick, FLUSH_DELAY_MS, FLUSH_DELAY_MS);
    *out = f;
    return 0;
}

int cr_fanout_has_room(const struct cr_fanout *f, enum cr_priority prio)
{
    size_t max = (size_t)f->d->cfg->max_batches;
    size_t others = 0;
    int p;

    size_t held;

    if (f->stopped)
        return 0;
    /* Urgent work has room of its own, so bulk batches can never keep it out. */
    if (prio == CR_PRIO_URGENT) {
        held = f->nactive[CR_PRIO_URGENT];
    } else {
        for (p = CR_PRIO_HIGH; p < CR_PRIO__COUNT; p++)
            others += f->nactive[p];
        held = others;
    }
    if (held < max)
        return 1;
    /* Batches held back by one slow provider must not starve the others: take
     * more while some provider has free slots and nothing queued, up to a
     * hard cap that keeps memory bounded. */
    return held < max * ROOM_STRETCH && cr_dispatch_starving(f->d->dispatch);
}

size_t cr_fanout_entries(const struct cr_fanout *f, enum cr_priority prio, const char **out,
                         size_t max)
{
    const struct cr_batch *b;
    size_t n = 0;

    for (b = f->active; b && n < max; b = b->next) {
        if (b->kind == CR_BATCH_STREAM && b->prio == prio && b->entry[0])
            out[n++] = b->entry;
    }
    return n;
}

size_t cr_fanout_retry_members(const struct cr_fanout *f, const char **out, size_t max)
{
    const struct cr_batch *b;
    size_t n = 0;
    size_t i;

    for (b = f->active; b && n < max; b = b->next) {
        if (b->kind != CR_BATCH_RETRY)
            continue;
        for (i = 0; i < b->nmsgs && n < max; i++) {
            if (b->msgs[i].state != CR_MSG_DONE && b->msgs[i].member)
                out[n++] = b->msgs[i].member;
        }
    }
    return n;
}

int cr_fanout_has(const struct cr_fanout *f, enum cr_priority prio, const char *entry)
{
    const struct cr_batch *b;

    for (b = f->active; b; b = b->next) {
        if (b->kind == CR_BATCH_STREAM && b->prio == prio && strcmp(b->entry, entry) == 0)
            return 1;
    }
    /* pending again only because Redis lost its acknowledgement: it is written
     * again from here when the commands connection is back */
    for (b = f->kept; b; b = b->next) {
        if (b->prio == prio && strcmp(b->entry, entry) == 0)
            return 1;
    }
    return 0;
}

size_t cr_fanout_active(const struct cr_fanout *f)
{
    size_t n = 0;
    int p;

    for (p = 0; p < CR_PRIO__COUNT; p++)
        n += f->nactive[p];
    return n;
}

/* ---- the lists of batches ---- */

static void link_active(struct cr_fanout *f, struct cr_batch *b)
{
    b->prev = NULL;
    b->next = f->active;
    if (f->active)
        f->active->prev = b;
    f->active = b;
    f->nactive[b->prio]++;
}

static void unlink_active(struct cr_fanout *f, struct cr_batch *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        f->active = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->next = b->prev = NULL;
    f->nactive[b->prio]--;
}

static void unlink_kept(struct cr_fanout *f, struct cr_batch *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        f->kept = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        f->kept_tail = b->prev;
    b->next = b->prev = NULL;
    f->nkept--;
}

/* An acknowledged stream batch stays in memory for KEEP_MS and
 * redis.command_timeout_ms (at most
 * KEEP_PER_BATCH x max_batches of them, the oldest go first): should Redis
 * come back without its writes, it is written again from here instead of
 * being taken again and sent twice. It holds no room and no slots. */
static void keep(struct cr_batch *b)
{
    struct cr_fanout *f = b->fanout;
    size_t cap = KEEP_PER_BATCH * (size_t)f->d->cfg->max_batches;

    if (b->kind != CR_BATCH_STREAM || b->dead || f->stopped || cap == 0) {
        batch_free(b);
        return;
    }
    unlink_active(f, b);
    b->kept = 1;
    b->kept_until = uv_now(f->d->loop) + KEEP_MS + (uint64_t)f->d->cfg->redis_command_timeout_ms;
    b->prev = f->kept_tail;
    if (f->kept_tail)
        f->kept_tail->next = b;
    else
        f->kept = b;
    f->kept_tail = b;
    f->nkept++;
    while (f->nkept > cap)
        batch_free(f->kept);
    cr_reader_kick(f->d->reader);
    cr_daemon_maybe_done(f->d);
}

/* ---- job cache ---- */

static struct cr_jobctx *cache_get(struct cr_fanout *f, const char *id)
{
    struct cr_jobctx **p;

    for (p = &f->cache; *p; p = &(*p)->next) {
        if (strcmp((*p)->id, id) == 0) {
            struct cr_jobctx *jc = *p;

            *p = jc->next; /* move to front */
            jc->next = f->cache;
            f->cache = jc;
            cr_jobctx_ref(jc);
            return jc;
        }
    }
    return NULL;
}

static void cache_put(struct cr_fanout *f, struct cr_jobctx *jc);

void cr_fanout_job_known(struct cr_fanout *f, struct cr_jobctx *jc)
{
    struct cr_jobctx *have = cache_get(f, jc->id);

    if (have != NULL) {
        cr_jobctx_unref(have);
        return;
    }
    cache_put(f, jc);
}

static void cache_put(struct cr_fanout *f, struct cr_jobctx *jc)
{
    struct cr_jobctx **p;

    cr_jobctx_ref(jc);
    jc->next = f->cache;
    f->cache = jc;
    if (++f->ncache <= JOB_CACHE)
        return;
    for (p = &f->cache; (*p)->next; p = &(*p)->next)
        ;
    cr_jobctx_unref(*p); /* batches still using it hold their own reference */
    *p = NULL;
    f->ncache--;
}

/* ---- outcomes ---- */

/* The most outcomes a batch can hold: one per (resident, channel) and one
 * skip per resident. */
static size_t outs_max(const struct cr_batch *b)
{
    return b->nsubs * (CR_CH__COUNT + 1) + 1;
}

/* Room for one more outcome: the array starts at one per resident (most
 * jobs send each resident one message) and doubles when a batch has more.
 * Returns 0, or CR_ENOMEM with the batch unchanged. */
static int outs_room(struct cr_batch *b)
{
    size_t cap;
    struct cr_record *n;

    if (b->nouts < b->outs_cap)
        return 0;
    cap = b->outs_cap * 2;
    if (cap > outs_max(b))
        cap = outs_max(b);
    if (cap <= b->nouts)
        return CR_ENOMEM;
    n = realloc(b->outs, cap * sizeof(*n));
    if (n == NULL)
        return CR_ENOMEM;
    b->outs = n;
    b->outs_cap = cap;
    return 0;
}

/* A new outcome of b, or NULL when there is no memory for it: the batch is
 * then dead (not acknowledged, so taken again later), as when it could not
 * be planned. The pointer is valid until the next add_record. */
static struct cr_record *add_record(struct cr_batch *b, struct cr_sub *sub, enum cr_channel ch,
                                    enum cr_status st, const char *code)
{
    struct cr_record *o;

    if (outs_room(b) < 0) {
        if (!b->dead)
            cr_error("job %s batch %s: out of memory for its outcomes; the batch is given up "
                     "and taken again later", b->job_id, b->entry);
        b->dead = 1;
        return NULL;
    }
    o = &b->outs[b->nouts++];
    memset(o, 0, sizeof(*o));
    o->sub = sub;
    o->channel = ch;
    o->status = st;
    cr_strlcpy(o->code, code, sizeof(o->code));
    if (b->nouts == b->nflushed + 1)
        b->flush_due = uv_now(b->d->loop) + FLUSH_DELAY_MS;
    return o;
}

/* Writes outcomes as soon as they are known: one write per batch is under way
 * at a time, so under load they gather into larger writes by themselves, and
 * a crash can only repeat what was in flight or in that one write. */
static void maybe_complete(struct cr_batch *b)
{
    if (b->planning || !b->planned)
        return;
    if (b->poisoned) {
        poisoned_maybe_free(b);
        return;
    }
    if (b->nouts >= b->expected && !b->dead)
        cr_record_flush(b, 1);
    else if (b->nouts > b->nflushed)
        cr_record_flush(b, 0);
}

static int any_inflight(const struct cr_batch *b)
{
    size_t i;

    for (i = 0; i < b->nmsgs; i++) {
        if (b->msgs[i].state == CR_MSG_INFLIGHT)
            return 1;
    }
    return 0;
}

/* A poisoned batch's outcomes are never written (the job has failed): their
 * provider slots are handed back at once, so that the provider's queue moves
 * on and gives back this batch's other messages; the batch is freed once
 * every message has come back from the dispatcher. */
static void poisoned_maybe_free(struct cr_batch *b)
{
    if (b->planning)
        return;
    b->planning = 1; /* a message handed back meanwhile must not free b under us */
    release_slots(b, 0, b->nouts, 0);
    b->planning = 0;
    if (!b->planned || b->flush_busy || b->nouts < b->expected || any_inflight(b))
        return;
    batch_free(b);
}

static void drain_if_idle(struct cr_batch *b)
{
    if (any_inflight(b) || b->flush_busy)
        return;
    cr_record_flush(b, 0);
    if (!b->flush_busy)
        batch_free(b);
}

void cr_fanout_msg_returned(struct cr_msg *m)
{
    m->state = CR_MSG_QUEUED;
    if (m->batch->dead)
        drain_if_idle(m->batch);
}

/* An outcome that found no room (add_record gave NULL; b is dead): the
 * message's in-flight slot goes back now, as no write will free it. */
static void unrecorded(struct cr_batch *b, struct cr_msg *m)
{
    if (m->slot_held) {
        m->slot_held = 0;
        cr_dispatch_release(b->d->dispatch, m->slot_prov);
    }
    after_outcome(b);
}

void cr_fanout_msg_done(struct cr_msg *m, enum cr_status st, const char *provider,
                        const struct cr_result *res, long latency_us, int suppress)
{
    struct cr_batch *b = m->batch;
    struct cr_record *o;

    m->state = CR_MSG_DONE;
    o = add_record(b, m->sub, m->channel, st, res ? res->code : "");
    cr_metrics_message(b->d->metrics, m->channel,
                       cr_metrics_provider_index(b->d->cfg, provider), st);
    if (o == NULL) {
        unrecorded(b, m);
        return;
    }
    o->attempt = m->attempt;
    o->provider = provider;
    o->latency_us = latency_us;
    o->address = m->address;
    o->suppress = (uint8_t)suppress;
    o->unpark = m->member;
    o->segments = m->segments;
    o->slot_held = m->slot_held;
    o->slot_prov = m->slot_prov;
    m->slot_held = 0;
    if (res)
        cr_strlcpy(o->provider_id, res->provider_id, sizeof(o->provider_id));
    after_outcome(b);
}

/* "<job>|<pos>|<channel index>|<sub>|<attempts>|<priority>": everything a
 * retry needs; ids cannot contain '|' (job and subscriber id syntax). */
static char *make_member(const struct cr_batch *b, const struct cr_msg *m)
{
    char buf[CR_JOB_ID_MAX + 160];
    int n = snprintf(buf, sizeof(buf), "%s|%u|%d|%s|%u|%d", b->job_id, m->sub->pos,
                     (int)m->channel, m->sub->id, m->attempt, (int)b->prio);

    if (n < 0 || (size_t)n >= sizeof(buf))
        return NULL;
    return strdup(buf);
}

static void after_outcome(struct cr_batch *b)
{
    if (b->poisoned) {
        poisoned_maybe_free(b);
        return;
    }
    if (b->dead) {
        drain_if_idle(b);
        return;
    }
    maybe_complete(b);
}

static void park(struct cr_batch *b, struct cr_msg *m, int64_t due_ms, const char *provider,
                 const char *code, long latency_us)
{
    struct cr_record *o;

    m->state = CR_MSG_DONE;
    b->parked_any = 1;
    /* never parked past the job's expiry: it comes due then and is counted
     * expired at once, so the job ends when it expires */
    if (b->jc->job.expires_at_ms > 0 && due_ms > b->jc->job.expires_at_ms)
        due_ms = b->jc->job.expires_at_ms;
    m->sub->plan &= (uint8_t)~CR_CH_BIT(m->channel); /* the retry set answers for it now */
    o = add_record(b, m->sub, m->channel, CR_ST_FAILED, code);
    if (o == NULL) {
        unrecorded(b, m);
        return;
    }
    o->park_member = make_member(b, m);
    if (o->park_member == NULL) {
        /* cannot happen with valid ids; fail rather than lose track of it */
        snprintf(o->code, sizeof(o->code), "retry_unrecordable");
    }
    o->park_due_ms = due_ms;
    o->unpark = m->member;
    o->attempt = m->attempt;
    o->provider = provider;
    o->latency_us = latency_us;
    o->address = m->address;
    o->segments = m->segments;
    o->slot_held = m->slot_held;
    o->slot_prov = m->slot_prov;
    m->slot_held = 0;
}

void cr_fanout_msg_park(struct cr_msg *m, int64_t due_ms, const char *provider,
                        const struct cr_result *res, long latency_us)
{
    struct cr_batch *b = m->batch;

    park(b, m, due_ms, provider, res ? res->code : "", latency_us);
    after_outcome(b);
}

/* Frees the in-flight slots held by outcomes [from, to) of b: at once, or
 * when replicas have the write too (written nonzero and redis.wait_replicas
 * set). */
static void release_slots(struct cr_batch *b, size_t from, size_t to, int written)
{
    struct cr_replicas *w = written ? b->d->replicas : NULL;
    size_t i;

    for (i = from; i < to; i++) {
        if (b->outs[i].slot_held) {
            b->outs[i].slot_held = 0;
            if (w != NULL)
                cr_replicas_hold(w, b->outs[i].slot_prov);
            else
                cr_dispatch_release(b->d->dispatch, b->outs[i].slot_prov);
        }
    }
    if (w != NULL)
        cr_replicas_kick(w);
}

void cr_fanout_flushed(struct cr_batch *b, int ok, int acked, size_t from, size_t to)
{
    if (ok)
        release_slots(b, from, to, 1);
    if (ok && b->parked_any && b->d->retry)
        cr_retry_kick(b->d->retry);
    if (acked) {
        b->acked = 1;
        cr_debug("job %s batch %s: %zu outcomes recorded, batch acknowledged", b->job_id,
                 b->entry, b->nouts);
        keep(b);
        return;
    }
    if (b->dead) {
        if (ok && b->nflushed < b->nouts) {
            cr_record_flush(b, 0);
            if (b->flush_busy)
                return;
        }
        if (!any_inflight(b) && b->loads_pending == 0) /* else the last answer frees it */
            batch_free(b);
        return;
    }
    if (ok)
        maybe_complete(b);
}

size_t cr_fanout_redis_ready(struct cr_fanout *f)
{
    struct cr_batch *b;
    struct cr_batch *next;
    size_t again = 0;

    while ((b = f->kept) != NULL) { /* their acknowledgement may be lost too */
        unlink_kept(f, b);
        b->kept = 0;
        b->acked = 0;
        link_active(f, b);
    }
    for (b = f->active; b; b = b->next) {
        if (!b->flush_busy) {
            again += b->nflushed;
            b->nflushed = 0;
        }
    }
    for (b = f->active; b; b = next) {
        next = b->next;
        if (b->planned && !b->flush_busy)
            maybe_complete(b);
    }
    return again;
}

size_t cr_fanout_plan(const struct cr_batch *b, unsigned char *plan, size_t cap, uint64_t *first)
{
    uint64_t lo;
    uint64_t hi;
    size_t i;
    size_t len;

    *first = 0;
    if (b->kind != CR_BATCH_STREAM || b->nsubs == 0)
        return 0;
    lo = (uint64_t)b->pos0 * CR_LEDGER_BITS / 8;
    hi = ((uint64_t)(b->pos0 + b->nsubs - 1) * CR_LEDGER_BITS + CR_LEDGER_BITS - 1) / 8;
    len = (size_t)(hi - lo + 1);
    if (len > cap)
        return len;
    memset(plan, 0, len);
    for (i = 0; i < b->nsubs; i++) {
        const struct cr_sub *s = &b->subs[i];
        uint64_t bit = (uint64_t)s->pos * CR_LEDGER_BITS;
        unsigned slots = 0;
        int ch;

        for (ch = 0; ch <= CR_CH__COUNT; ch++) {
            if (s->plan & CR_CH_BIT(ch))
                slots |= 0x80u >> cr_ledger_slot(ch); /* Redis bit order: MSB first */
        }
        plan[bit / 8 - lo] |= (unsigned char)slots;
    }
    *first = lo;
    for (i = 0; i < len; i++) {
        if (plan[i])
            return len;
    }
    return 0;
}

/* ---- planning: which messages this batch sends ---- */

static const char *sub_field(const struct cr_sub *s, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < s->nkv; i += 2) {
        if (strcmp(s->kv[i], name) == 0)
            return s->kv[i + 1][0] ? s->kv[i + 1] : NULL;
    }
    return NULL;
}

static int ledger_done(const struct cr_batch *b, uint32_t pos, int ch)
{
    uint64_t bit = (uint64_t)pos * CR_LEDGER_BITS + cr_ledger_slot(ch);
    uint64_t base = (uint64_t)b->pos0 * CR_LEDGER_BITS / 8;
    uint64_t byte = bit / 8;

    if (byte < base || byte - base >= b->ledger_len)
        return 0;
    return (b->ledger[byte - base] >> (7 - bit % 8)) & 1; /* Redis bit order: MSB first */
}

/* The channels a subscriber can be reached on for this job (for an
 * escalation step's batch: on the step's channels). */
static unsigned sub_channels(const struct cr_batch *b, const struct cr_sub *s)
{
    const char *pref = sub_field(s, "channels");
    unsigned set = b->step ? cr_escalate_step_channels(b) : b->jc->job.channels;
    unsigned want = 0;
    int ch;

    if (pref) {
        for (ch = 0; ch < CR_CH__COUNT; ch++) {
            const char *name = cr_channel_name((enum cr_channel)ch);
            const char *p = pref;
            size_t n = strlen(name);

            while ((p = strstr(p, name)) != NULL) {
                if ((p == pref || p[-1] == ',' || p[-1] == ' ') &&
                    (p[n] == '\0' || p[n] == ',' || p[n] == ' ')) {
                    want |= CR_CH_BIT(ch);
                    break;
                }
                p += n;
            }
        }
        set &= want;
    }
    if (!sub_field(s, "email"))
        set &= ~CR_CH_BIT(CR_CH_EMAIL);
    if (!sub_field(s, "phone"))
        set &= ~CR_CH_BIT(CR_CH_SMS);
    if (!sub_field(s, "push_token"))
        set &= ~CR_CH_BIT(CR_CH_PUSH);
    if (!sub_field(s, "whatsapp") || !sub_field(s, "whatsapp_optin"))
        set &= ~CR_CH_BIT(CR_CH_WHATSAPP); /* no message without the resident's opt-in */
    return set;
}

/* A resident the job would reach only on WhatsApp, who has a WhatsApp number
 * but never opted in: skipped for want of consent, not of a channel. */
static int wants_consent(const struct cr_batch *b, const struct cr_sub *s)
{
    return (b->jc->job.channels & CR_CH_BIT(CR_CH_WHATSAPP)) && sub_field(s, "whatsapp") &&
           !sub_field(s, "whatsapp_optin");
}

static const char *address_field(enum cr_channel ch)
{
    static const char *const f[CR_CH__COUNT] = {"email", "phone", "push_token", "whatsapp"};

    return f[ch];
}

/* Below the subscriber's min_priority: the resident asked not to get these. */
static int below_min_priority(const struct cr_batch *b, const struct cr_sub *s)
{
    const char *mp = sub_field(s, "min_priority");
    enum cr_priority p;

    if (mp == NULL || cr_priority_parse(mp, &p) < 0)
        return 0;
    return b->jc->job.priority > p;
}

static int job_expired(const struct cr_batch *b, int64_t now_ms)
{
    int64_t exp = b->jc->job.expires_at_ms;

    return exp > 0 && now_ms >= exp;
}

static void hand_out(struct cr_batch *b)
{
    struct cr_daemon *d = b->d;
    int64_t now = cr_now_ms();
    size_t i;

    b->planning = 1;
    for (i = 0; i < b->nmsgs; i++) {
        struct cr_msg *m = &b->msgs[i];

        if (m->state == CR_MSG_DONE)
            continue;
        if (b->jc->cancelled) {
            cr_fanout_msg_done(m, CR_ST_CANCELLED, NULL, NULL, 0, 0);
            continue;
        }
        if (job_expired(b, now)) {
            cr_fanout_msg_done(m, CR_ST_EXPIRED, NULL, NULL, 0, 0);
            continue;
        }
        cr_dispatch_enqueue(d->dispatch, m);
    }
    b->planning = 0;
    b->planned = 1;
    cr_debug("job %s batch %s: %zu subscribers, %zu messages, %zu outcomes expected",
             b->job_id, b->entry, b->nsubs, b->nmsgs, b->expected);
    maybe_complete(b);
}

struct supp_ctx {
    struct cr_batch *b;
    enum cr_channel ch;
};

struct bad_key_ctx {
    char job[CR_JOB_ID_MAX + 1];
    char key[CR_KEY_MAX];
    char want[16];
    char consequence[128];
};

static void on_bad_key_type(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct bad_key_ctx *bk = ud;

    (void)r;
    cr_error("job %s: %s is a %s, not a %s: %s", bk->job, bk->key,
             reply && reply->type == REDIS_REPLY_STATUS ? reply->str : "value of another type",
             bk->want, bk->consequence);
    free(bk);
}

/* Logs that key holds another type than want, naming the type (one TYPE
 * call, for the log line only) and what follows from it. */
static void report_bad_key(const struct cr_batch *b, const char *key, const char *want,
                           const char *consequence)
{
    struct bad_key_ctx *bk = calloc(1, sizeof(*bk));

    if (bk == NULL)
        return;
    snprintf(bk->job, sizeof(bk->job), "%s", b->job_id);
    snprintf(bk->key, sizeof(bk->key), "%s", key);
    snprintf(bk->want, sizeof(bk->want), "%s", want);
    snprintf(bk->consequence, sizeof(bk->consequence), "%s", consequence);
    if (cr_redis_cmd(b->d->rc, on_bad_key_type, bk, 0, "TYPE %s", key) < 0)
        free(bk);
}

/* Lets go of b's work in Redis without recording it (its job has failed):
 * the stream entry is acknowledged, retry members are removed. */
static void drop_work(struct cr_batch *b)
{
    struct cr_daemon *d = b->d;

    if (b->kind == CR_BATCH_STREAM) {
        cr_redis_cmd(d->rc, NULL, NULL, 0, "XACK %s %s %s", d->keys.batches[b->prio], d->cfg->group,
                     b->entry);
        cr_redis_cmd(d->rc, NULL, NULL, 0, "XDEL %s %s", d->keys.batches[b->prio], b->entry);
    } else if (b->nmsgs > 0) {
        const char **argv = malloc((b->nmsgs + 2) * sizeof(*argv));
        size_t i;

        if (argv == NULL)
            return; /* they come due again and are dropped then */
        argv[0] = "ZREM";
        argv[1] = d->keys.retry;
        for (i = 0; i < b->nmsgs; i++)
            argv[2 + i] = b->members[i];
        cr_redis_argv(d->rc, NULL, NULL, 0, (int)b->nmsgs + 2, argv, NULL);
        free(argv);
    }
}

static void on_poison_done(void *ud, enum cr_poison_outcome outcome, const char *reason)
{
    (void)ud;
    (void)outcome;
    (void)reason; /* poison.c has logged it */
}

/* The job's ledger holds another type: the job fails with that reason. */
static void fail_bad_ledger(struct cr_batch *b)
{
    cr_poison_fail_job(b->d, b->d->rc, b->job_id,
                       b->kind == CR_BATCH_STREAM ? b->d->keys.batches[b->prio] : NULL, b->entry,
                       b->ledger_key, "string", "ledger", on_poison_done, NULL);
    drop_work(b);
}

/* Keeps the first Redis error that stops b (what failed, and Redis's words). */
static void note_error(struct cr_batch *b, const char *what, const redisReply *reply)
{
    char why[320];

    if (b->err || reply == NULL)
        return; /* a lost connection is retried as it always was */
    snprintf(why, sizeof(why), "%s (%s)", what, reply->str ? reply->str : "unexpected reply");
    b->err = strdup(why);
}

/* A Redis error stopped b before it sent anything. It is handed back and
 * tried again after a doubling wait; the CR_STRIKES_MAX-th failure in a row
 * with the same reason fails the job with it and lets b's work go. */
static void batch_failed(struct cr_batch *b)
{
    struct cr_daemon *d = b->d;
    const char *subject = b->kind == CR_BATCH_STREAM ? b->entry : b->job_id;
    char why[400];
    long wait = STRIKE_BASE_MS;
    unsigned n = cr_strikes_add(&b->fanout->strikes, subject, b->err, cr_now_ms(), STRIKE_BASE_MS,
                                d->cfg->reclaim_idle_ms, &wait);

    if (n < CR_STRIKES_MAX) {
        cr_warn("job %s batch %s: %s; attempt %u of %d failed, next in %ld ms", b->job_id,
                b->entry[0] ? b->entry : "(retries)", b->err, n, CR_STRIKES_MAX, wait);
        if (b->kind == CR_BATCH_STREAM) {
            cr_reader_recover_in(d->reader, wait);
        } else if (b->nmsgs > 0) {
            /* the claimed members come due again after the wait, not the lease */
            const char **argv = malloc((2 * b->nmsgs + 3) * sizeof(*argv));
            char due[24];
            size_t i;

            snprintf(due, sizeof(due), "%lld", (long long)(cr_now_ms() + wait));
            if (argv) {
                argv[0] = "ZADD";
                argv[1] = d->keys.retry;
                argv[2] = "XX";
                for (i = 0; i < b->nmsgs; i++) {
                    argv[3 + 2 * i] = due;
                    argv[4 + 2 * i] = b->members[i];
                }
                cr_redis_argv(d->rc, NULL, NULL, 0, (int)(2 * b->nmsgs + 3), argv, NULL);
                free(argv);
            }
        }
        return;
    }
    /* the count stays: should the failure not be written now (a dropped
     * connection), the batch comes back and is given up without a new try */
    snprintf(why, sizeof(why), "gave up after %d attempts: %s", CR_STRIKES_MAX, b->err);
    cr_poison_fail_job(d, d->rc, b->job_id,
                       b->kind == CR_BATCH_STREAM ? d->keys.batches[b->prio] : NULL, b->entry, NULL,
                       NULL, why, on_poison_done, NULL);
    drop_work(b);
}

void cr_fanout_poisoned(struct cr_batch *b, const char *reason)
{
    const char *p = strstr(reason, "BADKEY ");

    if (b->poisoned)
        return;
    if (p)
        reason = p + 7; /* the key and its type, without the error's code */
    b->poisoned = 1;
    if (b->jc)
        b->jc->cancelled = 1; /* the rest of the job is not sent from here */
    cr_poison_fail_job(b->d, b->d->rc, b->job_id,
                       b->kind == CR_BATCH_STREAM ? b->d->keys.batches[b->prio] : NULL, b->entry,
                       NULL, NULL, reason, on_poison_done, NULL);
    drop_work(b);
    poisoned_maybe_free(b);
}

/* One of the batch's suppression answers is in (or the placeholder taken
 * while sending them): when the last is, the messages go out. */
static void supp_step_done(struct cr_batch *b)
{
    if (--b->loads_pending > 0)
        return;
    if (b->dead) {
        if (b->err)
            batch_failed(b);
        /* early outcomes may be on their way to Redis: that write's end frees it */
        if (!b->flush_busy)
            batch_free(b);
        return;
    }
    hand_out(b);
}

static void on_suppressed(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct supp_ctx *sc = ud;
    struct cr_batch *b = sc->b;
    size_t i;
    size_t k = 0;

    (void)r;
    if (cr_poison_reply(reply)) {
        /* no way to tell who unsubscribed: none of these may be sent */
        report_bad_key(b, b->d->keys.suppress[sc->ch], "set",
                       "the channel's messages of this batch fail (bad_suppress_list)");
        for (i = 0; i < b->nmsgs; i++) {
            struct cr_msg *m = &b->msgs[i];

            if (m->channel == sc->ch && m->state != CR_MSG_DONE)
                cr_fanout_msg_done(m, CR_ST_FAILED, NULL,
                                   &(struct cr_result){.code = "bad_suppress_list"}, 0, 0);
        }
    } else if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (!b->dead && reply == NULL)
            cr_error("job %s batch %s: suppression check failed; batch handed back", b->job_id,
                     b->entry);
        note_error(b, "the suppression check failed", reply);
        b->dead = 1;
    } else {
        for (i = 0; i < b->nmsgs; i++) {
            struct cr_msg *m = &b->msgs[i];

            if (m->channel != sc->ch || m->state == CR_MSG_DONE)
                continue;
            if (k < reply->elements && cr_reply_int(reply->element[k]) == 1)
                cr_fanout_msg_done(m, CR_ST_SUPPRESSED, NULL,
                                   &(struct cr_result){.code = "suppressed"}, 0, 0);
            k++;
        }
    }
    free(sc);
    supp_step_done(b);
}

/* Asks Redis which addresses of the batch's undecided messages are suppressed,
 * one SMISMEMBER per channel; the messages go out when every answer is in. */
static void query_suppression(struct cr_batch *b)
{
    const char **argv = malloc((b->nmsgs + 2) * sizeof(char *));
    int ch;

    b->loads_pending = 1; /* placeholder until every query is sent */
    for (ch = 0; argv && ch < CR_CH__COUNT && !b->dead; ch++) {
        struct supp_ctx *sc;
        size_t argc = 2;
        size_t i;

        argv[0] = "SMISMEMBER";
        argv[1] = b->d->keys.suppress[ch];
        for (i = 0; i < b->nmsgs; i++) {
            if (b->msgs[i].channel == (enum cr_channel)ch && b->msgs[i].state != CR_MSG_DONE)
                argv[argc++] = b->msgs[i].address;
        }
        if (argc == 2)
            continue;
        sc = malloc(sizeof(*sc));
        if (sc == NULL) {
            b->dead = 1;
            break;
        }
        sc->b = b;
        sc->ch = (enum cr_channel)ch;
        if (cr_redis_argv(cr_daemon_conn(b->d, b->prio), on_suppressed, sc, 0, (int)argc, argv,
                          NULL) < 0) {
            free(sc);
            b->dead = 1;
            break;
        }
        b->loads_pending++;
    }
    if (argv == NULL)
        b->dead = 1;
    free(argv);
    supp_step_done(b);
}

/* Non-urgent messages wait out the resident's quiet hours in the retry set.
 * Returns 1 when m was parked. */
static int park_if_quiet(struct cr_batch *b, struct cr_msg *m, int64_t now)
{
    int64_t until;

    if (b->prio == CR_PRIO_URGENT || b->jc->cancelled || job_expired(b, now))
        return 0; /* urgent: sent now; cancelled or expired: ended by hand_out */
    if (cr_quiet_until(sub_field(m->sub, "quiet"), sub_field(m->sub, "tz"), now, &until) != 1)
        return 0;
    park(b, m, until, NULL, "quiet_hours", 0);
    return 1;
}

/* A stream batch: decide each (subscriber, channel) from the job and the
 * subscriber's preferences, skipping what the ledger has recorded. */
static void decide(struct cr_batch *b, int64_t now)
{
    size_t i;
    int ch;

    for (i = 0; i < b->nsubs; i++) {
        struct cr_sub *s = &b->subs[i];
        unsigned set = s->missing || s->bad ? 0 : sub_channels(b, s);
        const char *why = s->bad ? "bad_subscriber" : s->missing ? "no_subscriber" : "no_channel";

        if (set == 0 && !s->bad && !s->missing && wants_consent(b, s))
            why = "no_consent";

        if (set && below_min_priority(b, s)) {
            set = 0;
            why = "below_min_priority";
        }
        if (b->step > 0) {
            /* a step sends only to those without its outcome, and records no skip */
            if (cr_escalate_has_outcome(b, s->pos))
                set = 0;
            s->plan = (uint8_t)set;
            if (set == 0)
                continue;
        }
        if (b->step == 0)
            s->plan = (uint8_t)(set ? set : CR_CH_BIT(CR_CH__COUNT));
        if (set == 0) {
            if (!ledger_done(b, s->pos, CR_CH__COUNT)) {
                b->expected++;
                add_record(b, s, CR_CH__COUNT, CR_ST_SKIPPED, why);
                cr_metrics_message(b->d->metrics, CR_CH__COUNT, -1, CR_ST_SKIPPED);
            }
            continue;
        }
        for (ch = 0; ch < CR_CH__COUNT; ch++) {
            struct cr_msg *m;

            if (!(set & CR_CH_BIT(ch)) || ledger_done(b, s->pos, ch))
                continue;
            m = &b->msgs[b->nmsgs++];
            m->batch = b;
            m->sub = s;
            m->channel = (enum cr_channel)ch;
            m->address = sub_field(s, address_field((enum cr_channel)ch));
            m->platform = ch == CR_CH_PUSH ? sub_field(s, "push_platform") : NULL;
            m->state = CR_MSG_QUEUED;
            b->expected++;
            park_if_quiet(b, m, now);
        }
    }
}

/* A retry batch: its messages exist already; refresh each address from the
 * subscriber's hash as it is now. */
static void prepare_retries(struct cr_batch *b, int64_t now)
{
    size_t i;

    for (i = 0; i < b->nmsgs; i++) {
        struct cr_msg *m = &b->msgs[i];

        b->expected++;
        if (m->sub->bad) {
            cr_fanout_msg_done(m, CR_ST_FAILED, NULL, &(struct cr_result){.code = "bad_subscriber"},
                               0, 0);
            continue;
        }
        m->address = m->sub->missing ? NULL : sub_field(m->sub, address_field(m->channel));
        m->platform = m->channel == CR_CH_PUSH ? sub_field(m->sub, "push_platform") : NULL;
        if (m->address == NULL) {
            cr_fanout_msg_done(m, CR_ST_FAILED, NULL,
                               &(struct cr_result){.code = "no_address"}, 0, 0);
            continue;
        }
        park_if_quiet(b, m, now);
    }
}

/* Subscribers are loaded: decide the messages, then check suppression. */
static void plan(struct cr_batch *b)
{
    int64_t now = cr_now_ms();

    b->planning = 1;
    if (b->msgs == NULL)
        b->msgs = calloc(b->nsubs * CR_CH__COUNT + 1, sizeof(*b->msgs));
    b->outs_cap = b->nsubs + 1;
    b->outs = calloc(b->outs_cap, sizeof(*b->outs));
    if (b->msgs == NULL || b->outs == NULL) {
        b->dead = 1;
        b->planning = 0;
        b->loads_pending = 1;
        supp_step_done(b);
        return;
    }
    if (b->kind == CR_BATCH_RETRY)
        prepare_retries(b, now);
    else
        decide(b, now);
    b->planning = 0;
    query_suppression(b);
}

/* ---- loading subscribers and the ledger ---- */

struct load_ctx {
    struct cr_batch *b;
    struct cr_sub *sub; /* NULL: the ledger read (or the outcome bitmap's) */
    int outcome;        /* the read of an escalation step's outcome bitmap */
};

static int copy_hash(struct cr_sub *s, const redisReply *reply)
{
    size_t i;
    size_t bytes = 0;
    char *p;

    if (reply->elements == 0) {
        s->missing = 1;
        return 0;
    }
    for (i = 0; i < reply->elements; i++)
        bytes += reply->element[i]->len + 1;
    s->kv = malloc(reply->elements * sizeof(char *) + bytes);
    if (s->kv == NULL)
        return CR_ENOMEM;
    p = (char *)(s->kv + reply->elements);
    for (i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];

        s->kv[i] = p;
        if (e->type == REDIS_REPLY_STRING && e->len)
            memcpy(p, e->str, e->len);
        p[e->type == REDIS_REPLY_STRING ? e->len : 0] = '\0';
        p += (e->type == REDIS_REPLY_STRING ? e->len : 0) + 1;
    }
    s->nkv = reply->elements;
    return 0;
}

static void on_loaded(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct load_ctx *lc = ud;
    struct cr_batch *b = lc->b;

    (void)r;
    if (cr_poison_reply(reply) && lc->sub != NULL) {
        char key[CR_KEY_MAX];

        lc->sub->bad = 1;
        cr_key_for(&b->d->keys, "sub", lc->sub->id, key, sizeof(key));
        report_bad_key(b, key, "hash",
                       b->kind == CR_BATCH_STREAM
                           ? "the resident is skipped (bad_subscriber)"
                           : "the resident's waiting messages fail (bad_subscriber)");
    } else if (cr_poison_reply(reply)) {
        b->bad_ledger = 1;
        b->dead = 1;
    } else if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (!b->dead && reply == NULL)
            cr_error("job %s batch %s: loading subscribers failed (connection lost); batch "
                     "handed back",
                     b->job_id, b->entry);
        note_error(b, lc->sub ? "loading subscribers failed" : "reading the ledger failed", reply);
        b->dead = 1;
    } else if (lc->outcome) {
        if (cr_escalate_copy_outcome(b, reply) < 0)
            b->dead = 1;
    } else if (lc->sub == NULL) {
        if (reply->type == REDIS_REPLY_STRING && reply->len > 0) {
            b->ledger = malloc(reply->len);
            if (b->ledger == NULL) {
                b->dead = 1;
            } else {
                memcpy(b->ledger, reply->str, reply->len);
                b->ledger_len = reply->len;
            }
        }
    } else if (reply->type == REDIS_REPLY_ARRAY) {
        if (copy_hash(lc->sub, reply) < 0)
            b->dead = 1;
    }
    free(lc);
    if (--b->loads_pending > 0)
        return;
    if (b->bad_ledger)
        fail_bad_ledger(b);
    else if (b->dead && b->err)
        batch_failed(b);
    if (b->dead) {
        batch_free(b);
        return;
    }
    plan(b);
}

static void load(struct cr_batch *b)
{
    struct cr_daemon *d = b->d;
    struct cr_redis *r = cr_daemon_conn(d, b->prio);
    char key[CR_KEY_MAX];
    size_t i;
    uint64_t first = (uint64_t)b->pos0 * CR_LEDGER_BITS / 8;
    uint64_t last = ((uint64_t)(b->pos0 + b->nsubs) * CR_LEDGER_BITS + 7) / 8;

    b->loads_pending = 1;
    for (i = 0; i < b->nsubs + (b->kind == CR_BATCH_STREAM) && !b->dead; i++) {
        struct load_ctx *lc = malloc(sizeof(*lc));
        int rc;

        if (lc == NULL) {
            b->dead = 1;
            break;
        }
        lc->b = b;
        lc->sub = i < b->nsubs ? &b->subs[i] : NULL;
        lc->outcome = 0;
        if (lc->sub) {
            const char *argv[2] = {"HGETALL", key};

            cr_key_for(&d->keys, "sub", lc->sub->id, key, sizeof(key));
            /* by vector: no format string parsed per resident */
            rc = cr_redis_argv(r, on_loaded, lc, 0, 2, argv, NULL);
        } else {
            rc = cr_redis_cmd(r, on_loaded, lc, 0, "GETRANGE %s %llu %llu", b->ledger_key,
                              (unsigned long long)first, (unsigned long long)last);
        }
        if (rc < 0) {
            free(lc);
            b->dead = 1;
            break;
        }
        b->loads_pending++;
    }
    if (!b->dead && b->step > 0) {
        struct load_ctx *lc = calloc(1, sizeof(*lc));

        if (lc) {
            lc->b = b;
            lc->outcome = 1;
        }
        if (lc == NULL || cr_escalate_load_outcome(b, r, on_loaded, lc) < 0) {
            free(lc);
            b->dead = 1;
        } else {
            b->loads_pending++;
        }
    }
    if (--b->loads_pending == 0) {
        if (b->dead)
            batch_free(b);
        else
            plan(b);
    }
}

static void on_job(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_batch *b = ud;
    struct cr_fanout *f = b->fanout;
    struct cr_job_error err;
    const redisReply *doc;
    const redisReply *state;

    (void)r;
    if (cr_poison_reply(reply)) {
        report_bad_key(b, b->key, "hash", "its batch is dropped");
        drop_work(b);
        batch_free(b);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        note_error(b, "reading the job failed", reply);
        if (b->err)
            batch_failed(b);
        batch_free(b);
        return;
    }
    doc = reply->element[0];
    state = reply->element[1];
    if (state->type == REDIS_REPLY_STRING && strcmp(state->str, "failed") == 0) {
        cr_info("job %s batch %s: the job has failed; its batch is dropped", b->job_id,
                b->entry[0] ? b->entry : "(retries)");
        drop_work(b);
        batch_free(b);
        return;
    }
    b->jc = cache_get(f, b->job_id);
    if (b->jc == NULL) {
        if (doc->type != REDIS_REPLY_STRING) {
            cr_warn("job %s batch %s: the job's record is gone (expired?); dropping the batch",
                    b->job_id, b->entry);
            cr_redis_cmd(b->d->rc, NULL, NULL, 0, "XACK %s %s %s", b->d->keys.batches[b->prio],
                         b->d->cfg->group, b->entry);
            batch_free(b);
            return;
        }
        memset(&err, 0, sizeof(err));
        if (cr_jobctx_create(&b->d->keys, b->job_id, doc->str, doc->len, &b->d->cfg->limits,
                             &b->jc, &err) < 0) {
            char why[400];

            if (strcmp(err.code, "no_memory") == 0) {
                batch_free(b); /* not the job's fault: left pending, read again later */
                return;
            }
            /* no retry can make it valid: the job fails instead of hanging */
            snprintf(why, sizeof(why), "its stored document is no longer valid (%s: %s)", err.code,
                     err.message);
            cr_poison_fail_job(b->d, b->d->rc, b->job_id,
                               b->kind == CR_BATCH_STREAM ? b->d->keys.batches[b->prio] : NULL,
                               b->entry, NULL, NULL, why, on_poison_done, NULL);
            drop_work(b);
            batch_free(b);
            return;
        }
        cache_put(f, b->jc);
    }
    if (state->type == REDIS_REPLY_STRING &&
        (strcmp(state->str, "cancelled") == 0 || strcmp(state->str, "cancelling") == 0))
        b->jc->cancelled = 1;
    load(b);
}

static int split_ids(struct cr_batch *b, const char *ids)
{
    size_t n = 1;
    size_t i;
    const char *p;

    for (p = ids; *p; p++)
        n += *p == ',';
    if (*ids == '\0' || n > MAX_BATCH_IDS)
        return CR_EINVAL;
    b->subs = calloc(n, sizeof(*b->subs));
    if (b->subs == NULL)
        return CR_ENOMEM;
    for (i = 0, p = ids; i < n; i++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        b->subs[i].id = strndup(p, len);
        if (b->subs[i].id == NULL)
            return CR_ENOMEM;
        b->subs[i].pos = b->pos0 + (uint32_t)i;
        b->nsubs++;
        p = end ? end + 1 : p + len;
    }
    return 0;
}

void cr_fanout_take(struct cr_fanout *f, enum cr_priority prio, const char *entry,
                    const char *job, const char *pos, const char *ids, const char *step)
{
    struct cr_daemon *d = f->d;
    struct cr_batch *b;
    char *end = NULL;
    unsigned long p0 = pos ? strtoul(pos, &end, 10) : 0;

    if (f->stopped)
        return; /* read while stopping: it stays pending and is taken back on restart */

    if (job == NULL || pos == NULL || ids == NULL || end == pos || *end ||
        strlen(job) > CR_JOB_ID_MAX) {
        cr_error("stream %s entry %s: not a batch (needs job, pos, ids); acknowledged and dropped",
                 d->keys.batches[prio], entry);
        cr_redis_cmd(d->rc, NULL, NULL, 0, "XACK %s %s %s", d->keys.batches[prio],
                     d->cfg->group, entry);
        return;
    }
    b = new_batch(f, CR_BATCH_STREAM, prio, job);
    if (b == NULL)
        return;
    snprintf(b->entry, sizeof(b->entry), "%s", entry);
    b->pos0 = (uint32_t)p0;
    b->step = step ? (unsigned)strtoul(step, NULL, 10) : 0;
    if (split_ids(b, ids) < 0) {
        batch_free(b);
        return;
    }
    start_batch(b);
}

static struct cr_batch *new_batch(struct cr_fanout *f, enum cr_batch_kind kind,
                                  enum cr_priority prio, const char *job)
{
    struct cr_batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->kind = kind;
    b->fanout = f;
    b->d = f->d;
    b->prio = prio;
    snprintf(b->job_id, sizeof(b->job_id), "%s", job);
    cr_key_for(&f->d->keys, "job", job, b->key, sizeof(b->key));
    snprintf(b->ledger_key, sizeof(b->ledger_key), "%s:ledger", b->key);
    snprintf(b->early_key, sizeof(b->early_key), "%s:early", b->key);
    link_active(f, b);
    return b;
}

/* Starts a batch once its messages or ids are in place: find the job, load. */
static void start_batch(struct cr_batch *b)
{
    const char *reason = NULL;

    if (cr_strikes_count(&b->fanout->strikes,
                         b->kind == CR_BATCH_STREAM ? b->entry : b->job_id, &reason) >=
        CR_STRIKES_MAX) {
        b->err = strdup(reason ? reason : "?");
        if (b->err)
            batch_failed(b); /* given up before: only the failure is written */
        batch_free(b);
        return;
    }
    /* retries read the job's state afresh: a job cancelled while its
     * messages were parked must not park them again */
    if (b->kind == CR_BATCH_STREAM)
        b->jc = cache_get(b->fanout, b->job_id);
    if (b->jc) {
        load(b);
        return;
    }
    if (cr_redis_cmd(cr_daemon_conn(b->d, b->prio), on_job, b, 0, "HMGET %s doc state",
                     b->key) < 0)
        batch_free(b);
}

struct member {
    char *text;  /* owned copy, split in place */
    const char *job;
    const char *sub;
    unsigned long pos;
    int ch;
    int attempt;
    int prio;
};

static int parse_member(const char *src, struct member *mb)
{
    char *f[6];
    char *p;
    char *end;
    int i;

    mb->text = strdup(src);
    if (mb->text == NULL)
        return CR_ENOMEM;
    p = mb->text;
    for (i = 0; i < 6; i++) {
        f[i] = p;
        p = strchr(p, '|');
        if (i < 5 && p == NULL)
            return CR_EINVAL;
        if (p)
            *p++ = '\0';
    }
    mb->job = f[0];
    mb->sub = f[3];
    mb->pos = strtoul(f[1], &end, 10);
    if (*end || !*f[0] || !*f[3] || strlen(f[0]) > CR_JOB_ID_MAX)
        return CR_EINVAL;
    mb->ch = (int)strtol(f[2], &end, 10);
    if (*end || mb->ch < 0 || mb->ch >= CR_CH__COUNT)
        return CR_EINVAL;
    mb->attempt = (int)strtol(f[4], &end, 10);
    if (*end || mb->attempt < 0 || mb->attempt > 255)
        return CR_EINVAL;
    mb->prio = (int)strtol(f[5], &end, 10);
    if (*end || mb->prio < 0 || mb->prio >= CR_PRIO__COUNT)
        return CR_EINVAL;
    return 0;
}

/* Adds one claimed member to b as a message with its own subscriber entry. */
static int add_retry(struct cr_batch *b, const struct member *mb, const char *src)
{
    struct cr_sub *s = &b->subs[b->nsubs];
    struct cr_msg *m = &b->msgs[b->nmsgs];

    s->id = strdup(mb->sub);
    b->members[b->nmsgs] = strdup(src);
    if (s->id == NULL || b->members[b->nmsgs] == NULL) {
        free(s->id);
        free(b->members[b->nmsgs]);
        s->id = NULL;
        return CR_ENOMEM;
    }
    s->pos = (uint32_t)mb->pos;
    b->nsubs++;
    m->batch = b;
    m->sub = s;
    m->channel = (enum cr_channel)mb->ch;
    m->attempt = (uint8_t)mb->attempt;
    m->member = b->members[b->nmsgs];
    m->state = CR_MSG_QUEUED;
    b->nmsgs++;
    return 0;
}

void cr_fanout_take_retries(struct cr_fanout *f, const char *const *members, size_t n)
{
    struct cr_batch **open = calloc(n ? n : 1, sizeof(*open));
    size_t nopen = 0;
    size_t i;
    size_t j;

    if (open == NULL)
        return; /* claimed members come due again when their lease ends */
    for (i = 0; i < n; i++) {
        struct member mb;
        struct cr_batch *b = NULL;

        memset(&mb, 0, sizeof(mb));
        if (parse_member(members[i], &mb) < 0) {
            cr_error("retry set: dropping unreadable member '%s'", members[i]);
            cr_redis_cmd(f->d->rc, NULL, NULL, 0, "ZREM %s %s", f->d->keys.retry, members[i]);
            free(mb.text);
            continue;
        }
        for (j = 0; j < nopen && b == NULL; j++) {
            if (strcmp(open[j]->job_id, mb.job) == 0)
                b = open[j];
        }
        if (b == NULL) {
            b = new_batch(f, CR_BATCH_RETRY, (enum cr_priority)mb.prio, mb.job);
            if (b) {
                b->subs = calloc(n, sizeof(*b->subs));
                b->msgs = calloc(n, sizeof(*b->msgs));
                b->members = calloc(n, sizeof(*b->members));
                if (!b->subs || !b->msgs || !b->members) {
                    batch_free(b);
                    b = NULL;
                } else {
                    open[nopen++] = b;
                }
            }
        }
        if (b)
            add_retry(b, &mb, members[i]);
        free(mb.text);
    }
    for (j = 0; j < nopen; j++) {
        cr_debug("job %s: %zu messages due for another attempt", open[j]->job_id,
                 open[j]->nmsgs);
        start_batch(open[j]);
    }
    free(open);
}

static void batch_free(struct cr_batch *b)
{
    struct cr_fanout *f = b->fanout;
    size_t i;

    if (b->kept)
        unlink_kept(f, b);
    else
        unlink_active(f, b);
    for (i = 0; i < b->nsubs; i++) {
        free(b->subs[i].id);
        free(b->subs[i].kv);
    }
    release_slots(b, 0, b->nouts, 0); /* unwritten at shutdown: handed back all the same */
    for (i = 0; i < b->nouts; i++)
        free(b->outs[i].park_member);
    for (i = 0; b->members && i < b->nmsgs; i++)
        free(b->members[i]);
    free(b->members);
    free(b->subs);
    free(b->msgs);
    free(b->outs);
    free(b->ledger);
    free(b->outcome);
    free(b->err);
    cr_jobctx_unref(b->jc);
    free(b);
    if (!f->stopped)
        cr_reader_kick(f->d->reader);
    cr_daemon_maybe_done(f->d);
}

void cr_fanout_stop(struct cr_fanout *f)
{
    struct cr_batch *b;
    struct cr_batch *next;

    f->stopped = 1;
    uv_timer_stop(&f->timer);
    while (f->kept != NULL)
        batch_free(f->kept);
    for (b = f->active; b; b = next) {
        next = b->next;
        b->dead = 1;
        if (!b->planned || b->loads_pending)
            continue; /* freed when its loads answer */
        drain_if_idle(b);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void cr_fanout_free(struct cr_fanout *f)
{
    f->stopped = 1;
    while (f->kept)
        batch_free(f->kept);
    while (f->active)
        batch_free(f->active);
    while (f->cache) {
        struct cr_jobctx *jc = f->cache;

        f->cache = jc->next;
        cr_jobctx_unref(jc);
    }
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, on_timer_closed);
}

/* ---- repairing a batch whose ledger Redis lost part of ---- */

#define GAP_TRIES 3 /* refused acknowledgements before the batch is handed back */

/* The planned-bit form (1 << channel index) of sub i's ledger byte in have,
 * the ledger's len bytes from the plan's first byte. */
static unsigned have_bits(const struct cr_batch *b, size_t i, const unsigned char *have,
                          size_t len)
{
    uint64_t bit = (uint64_t)b->subs[i].pos * CR_LEDGER_BITS;
    uint64_t byte = bit / 8 - (uint64_t)b->pos0 * CR_LEDGER_BITS / 8;
    unsigned slots;
    unsigned out = 0;
    int ch;

    if (byte >= len)
        return 0;
    slots = have[byte];
    for (ch = 0; ch <= CR_CH__COUNT; ch++) {
        if (slots & (0x80u >> cr_ledger_slot(ch)))
            out |= CR_CH_BIT(ch);
    }
    return out;
}

static const char *skip_reason(const struct cr_batch *b, const struct cr_sub *s)
{
    if (s->missing)
        return "no_subscriber";
    if (!below_min_priority(b, s) && wants_consent(b, s))
        return "no_consent";
    return below_min_priority(b, s) ? "below_min_priority" : "no_channel";
}

/* Plans again the missing bits of b that no outcome held here covers (they
 * were in the ledger when b was loaded): new messages, or skipped records.
 * Returns how many, or -1 when b has no room left for them. */
static long replan_missing(struct cr_batch *b, const unsigned char *held,
                           const unsigned char *have, size_t len, size_t *again)
{
    size_t msgs_cap = b->nsubs * CR_CH__COUNT + 1;
    size_t outs_cap = outs_max(b);
    int64_t now = cr_now_ms();
    long added = 0;
    size_t i;
    int ch;

    for (i = 0; i < b->nsubs; i++) {
        struct cr_sub *s = &b->subs[i];
        unsigned lack = s->plan & ~have_bits(b, i, have, len);

        *again += (size_t)__builtin_popcount(lack & held[i]);
        lack &= ~(unsigned)held[i];
        for (ch = 0; lack && ch <= CR_CH__COUNT; ch++) {
            struct cr_msg *m;

            if (!(lack & CR_CH_BIT(ch)))
                continue;
            if (b->nmsgs >= msgs_cap || b->nouts >= outs_cap)
                return -1;
            b->expected++;
            added++;
            if (ch == CR_CH__COUNT) {
                add_record(b, s, CR_CH__COUNT, CR_ST_SKIPPED, skip_reason(b, s));
                continue;
            }
            m = &b->msgs[b->nmsgs++];
            memset(m, 0, sizeof(*m));
            m->batch = b;
            m->sub = s;
            m->channel = (enum cr_channel)ch;
            m->address = sub_field(s, address_field((enum cr_channel)ch));
            m->platform = ch == CR_CH_PUSH ? sub_field(s, "push_platform") : NULL;
            m->state = CR_MSG_QUEUED;
            park_if_quiet(b, m, now);
        }
    }
    return added;
}

void cr_fanout_gap(struct cr_batch *b, size_t from, size_t to, const unsigned char *have,
                   size_t len, long long missing)
{
    unsigned char *held = NULL; /* per subscriber: the plan bits of outcomes held here */
    size_t again = 0;
    long resend = -1;
    size_t i;

    release_slots(b, from, to, 1);
    cr_metrics_record_gaps(b->d->metrics, missing > 0 ? (uint64_t)missing : 0);
    if (b->dead) {
        drain_if_idle(b);
        return;
    }
    if (have != NULL && ++b->gaps <= GAP_TRIES)
        held = calloc(b->nsubs ? b->nsubs : 1, 1);
    if (held != NULL) {
        for (i = 0; i < b->nouts; i++) {
            const struct cr_record *o = &b->outs[i];

            if (o->park_member == NULL) /* a park sets no bit: not in the plan */
                held[o->sub - b->subs] |= (unsigned char)CR_CH_BIT(o->channel);
        }
        b->planning = 1;
        resend = replan_missing(b, held, have, len, &again);
        b->planning = 0;
        free(held);
    }
    if (resend < 0) { /* too many refusals, no ledger bytes, no memory or no room */
        cr_error("job %s batch %s: the ledger still lacks %lld of the batch's outcomes after "
                 "%d repairs; batch handed back unacknowledged, to be taken again",
                 b->job_id, b->entry, missing, b->gaps);
        b->dead = 1;
        drain_if_idle(b);
        return;
    }
    cr_warn("job %s batch %s: %lld planned outcomes missing from the ledger at "
            "acknowledgement (Redis lost writes it had acknowledged); writing %zu again from "
            "memory and sending %ld again before acknowledging",
            b->job_id, b->entry, missing, again, resend);
    if (again > 0)
        b->nflushed = 0; /* everything again: the ledger skips what is there */
    if (resend > 0) {
        query_suppression(b); /* then hand_out: the new messages go out */
        return;
    }
    maybe_complete(b);
}
