/* Outcome recording (see record.h). */
#include "record.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"
#include "cr_str.h"
#include "poison.h"
#include "scripts.h"

/* outcomes per script call, within what cr_script_call takes */
#define CHUNK 230
#define NKEYS 12
#define NHEAD 9
#define NUMS 5 /* numbers formatted per outcome: pos, attempt, latency, due, segments */
#define ARGS_MAX 8 /* arguments per outcome: sub, pos, latency, provider id, address,
                    * retry member resolved, park due, park member */
#define NPLAN 2 /* with the acknowledgement: the plan's first ledger byte, the plan */
#define KINDS_MAX 255 /* distinct kinds of outcome one call may name by a byte */
_Static_assert(3 + NKEYS + NHEAD + KINDS_MAX * CR_RECORD_KIND_STRINGS + CHUNK * ARGS_MAX + NPLAN <=
                   CR_SCRIPT_MAX_ARGS,
               "a full record chunk must fit in one script call");
/* string.byte hands the script every byte of the outcomes at once: Lua's C
 * stack takes 8000 values */
_Static_assert(CHUNK * CR_RECORD_BYTES <= 8000, "a chunk's outcome bytes must fit Lua's stack");
/* the script reads the ledger a byte per position, a bit per slot */
_Static_assert(CR_LEDGER_BITS == 8, "the record script reads one ledger byte per position");

/* The kinds of outcome in a chunk: what most of its outcomes share (provider,
 * status, attempt, code, segments, channel), each kind sent once and named by
 * its 1-based index in one byte. */
struct kinds {
    const char *s[KINDS_MAX][CR_RECORD_KIND_STRINGS];
    size_t n;
};

/* The index of kind k in ks, added if new; 0 when ks is full. */
static unsigned kind_index(struct kinds *ks, const char *const k[CR_RECORD_KIND_STRINGS])
{
    size_t i;
    int j;

    for (i = 0; i < ks->n; i++) {
        for (j = 0; j < CR_RECORD_KIND_STRINGS; j++) {
            if (ks->s[i][j] != k[j] && strcmp(ks->s[i][j], k[j]) != 0)
                break;
        }
        if (j == CR_RECORD_KIND_STRINGS)
            return (unsigned)i + 1;
    }
    if (ks->n == KINDS_MAX)
        return 0;
    memcpy(ks->s[ks->n], k, sizeof(ks->s[0]));
    return (unsigned)++ks->n;
}

struct flush_ctx {
    struct cr_batch *b;
    int ack;
};

static void on_recorded(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct flush_ctx *fc = ud;
    struct cr_batch *b = fc->b;
    int ack = fc->ack;
    int ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;
    size_t from = b->nflushed;

    (void)r;
    free(fc);
    if (cr_poison_reply(reply)) {
        /* a key of the wrong type: no retry can write it */
        b->flushing = 0;
        b->flush_busy = 0;
        cr_fanout_poisoned(b, reply->str);
        return;
    }
    if (ok && ack && reply->type == REDIS_REPLY_ARRAY) {
        /* {recorded, bits missing, ledger bytes}: not acknowledged */
        const redisReply *have = reply->elements == 3 ? reply->element[2] : NULL;
        int has = have != NULL && have->type == REDIS_REPLY_STRING;

        b->nflushed += b->flushing;
        b->flushing = 0;
        b->flush_busy = 0;
        cr_fanout_gap(b, from, b->nflushed, has ? (const unsigned char *)have->str : NULL,
                      has ? have->len : 0,
                      reply->elements >= 2 ? cr_reply_int(reply->element[1]) : 0);
        return;
    }
    if (!ok)
        cr_error("job %s batch %s: recording %zu outcomes failed (%s); will retry", b->job_id,
                 b->entry, b->flushing, reply && reply->str ? reply->str : "connection lost");
    if (ok)
        b->nflushed += b->flushing;
    b->flushing = 0;
    b->flush_busy = 0;
    cr_fanout_flushed(b, ok, ok && ack, from, b->nflushed);
}

/* Whether the script needs o's address: for its suppression, or to note the
 * resident's last SMS or WhatsApp sender. */
static int wants_address(const struct cr_record *o, unsigned slot)
{
    if (o->address == NULL || o->address[0] == '\0')
        return 0;
    return o->suppress || slot == CR_CH_SMS || slot == CR_CH_WHATSAPP;
}

void cr_record_flush(struct cr_batch *b, int ack)
{
    struct cr_daemon *d = b->d;
    size_t n = b->nouts - b->nflushed;
    size_t argc;
    size_t nargs = 0;
    size_t i;
    size_t a;
    const char **argv = NULL;
    size_t *lens = NULL;
    unsigned char *plan = NULL;
    size_t plan_len = 0;
    uint64_t plan_first = 0;
    char plan_at[24];
    char *nums = NULL;
    unsigned char *bytes = NULL;
    struct kinds *ks = NULL;
    char head[5][24];
    struct flush_ctx *fc = NULL;

    if (b->flush_busy)
        return;
    if (n > CHUNK)
        n = CHUNK;
    ks = malloc(sizeof(*ks));
    nums = malloc(n * NUMS * CR_NUM_MAX + 1);
    bytes = malloc(n * CR_RECORD_BYTES + 1);
    if (ks == NULL || nums == NULL || bytes == NULL)
        goto out;
    ks->n = 0;
    /* Each outcome as CR_RECORD_BYTES bytes (scripts.h); a chunk ends early
     * where its kinds would no longer fit. */
    for (i = 0; i < n; i++) {
        const struct cr_record *o = &b->outs[b->nflushed + i];
        char *num = nums + i * NUMS * CR_NUM_MAX;
        unsigned char *r = bytes + i * CR_RECORD_BYTES;
        unsigned slot = cr_ledger_slot((int)o->channel);
        uint32_t pos = o->sub->pos;
        static const char *const slots[] = {"0", "1", "2", "3", "4"};
        const char *kind[CR_RECORD_KIND_STRINGS];
        unsigned k;
        unsigned fl = 0;

        cr_fmt_i64(num, o->sub->pos);
        cr_fmt_i64(num + CR_NUM_MAX, o->attempt);
        cr_fmt_i64(num + 2 * CR_NUM_MAX, o->latency_us);
        cr_fmt_i64(num + 3 * CR_NUM_MAX, o->park_due_ms);
        cr_fmt_i64(num + 4 * CR_NUM_MAX, o->segments);
        kind[0] = o->provider ? o->provider : "";
        kind[1] = o->park_member ? "park" : cr_status_name(o->status);
        kind[2] = num + CR_NUM_MAX;
        kind[3] = o->code;
        kind[4] = num + 4 * CR_NUM_MAX;
        kind[5] = slot != CR_LEDGER_SKIPPED ? cr_channel_name(o->channel) : "";
        kind[6] = slots[slot];
        k = kind_index(ks, kind);
        if (k == 0) {
            n = i; /* i > 0: the first outcome always fits */
            break;
        }
        if (o->suppress)
            fl |= CR_RECORD_SUPPRESS;
        if (wants_address(o, slot))
            fl |= CR_RECORD_ADDRESS;
        if (o->unpark != NULL && o->unpark[0] != '\0')
            fl |= CR_RECORD_UNPARK;
        if (o->park_member != NULL)
            fl |= CR_RECORD_PARK;
        r[0] = (unsigned char)fl;
        r[1] = (unsigned char)(pos >> 24);
        r[2] = (unsigned char)(pos >> 16);
        r[3] = (unsigned char)(pos >> 8);
        r[4] = (unsigned char)pos;
        r[5] = (unsigned char)k;
        nargs += 4 + ((fl & CR_RECORD_ADDRESS) != 0) + ((fl & CR_RECORD_UNPARK) != 0) +
                 ((fl & CR_RECORD_PARK) ? 2 : 0);
    }
    /* Only the chunk that writes the batch's last outcome may acknowledge it. */
    if (b->nflushed + n < b->nouts || b->nouts < b->expected)
        ack = 0;
    if (n == 0 && !ack)
        goto out;
    argc = NKEYS + NHEAD + ks->n * CR_RECORD_KIND_STRINGS + nargs;
    if (ack) {
        size_t cap = b->nsubs * CR_LEDGER_BITS / 8 + 2;

        plan = malloc(cap);
        if (plan == NULL)
            goto out;
        plan_len = cr_fanout_plan(b, plan, cap, &plan_first);
        if (plan_len > cap)
            goto out; /* cannot happen: cap covers every position of the batch */
        if (plan_len > 0)
            argc += NPLAN;
    }
    argv = malloc(argc * sizeof(*argv));
    lens = malloc(argc * sizeof(*lens));
    fc = malloc(sizeof(*fc));
    if (argv == NULL || lens == NULL || fc == NULL)
        goto out;
    argv[0] = b->key;
    argv[1] = b->ledger_key;
    argv[2] = d->keys.receipts;
    argv[3] = d->keys.events;
    argv[4] = d->keys.batches[b->prio];
    argv[5] = d->keys.suppress[CR_CH_EMAIL];
    argv[6] = d->keys.suppress[CR_CH_SMS];
    argv[7] = d->keys.suppress[CR_CH_PUSH];
    argv[8] = d->keys.retry;
    argv[9] = b->early_key;
    argv[10] = d->keys.sms_last;
    argv[11] = d->keys.suppress[CR_CH_WHATSAPP];
    snprintf(head[0], sizeof(head[0]), "%ld", d->cfg->receipts_maxlen);
    snprintf(head[1], sizeof(head[1]), "%lld", (long long)cr_now_ms());
    snprintf(head[2], sizeof(head[2]), "%ld", d->cfg->retention_s);
    snprintf(head[3], sizeof(head[3]), "%zu", n);
    snprintf(head[4], sizeof(head[4]), "%zu", ks->n);
    argv[NKEYS + 0] = b->job_id;
    argv[NKEYS + 1] = d->cfg->group;
    argv[NKEYS + 2] = ack ? b->entry : "";
    argv[NKEYS + 3] = head[0];
    argv[NKEYS + 4] = head[1];
    argv[NKEYS + 5] = head[2];
    argv[NKEYS + 6] = head[3];
    argv[NKEYS + 7] = head[4];
    argv[NKEYS + 8] = (const char *)bytes;
    a = NKEYS + NHEAD;
    for (i = 0; i < ks->n; i++) {
        int j;

        for (j = 0; j < CR_RECORD_KIND_STRINGS; j++)
            argv[a++] = ks->s[i][j];
    }
    for (i = 0; i < n; i++) {
        const struct cr_record *o = &b->outs[b->nflushed + i];
        char *num = nums + i * NUMS * CR_NUM_MAX;
        unsigned fl = bytes[i * CR_RECORD_BYTES];

        argv[a++] = o->sub->id;
        argv[a++] = num;
        argv[a++] = num + 2 * CR_NUM_MAX;
        argv[a++] = o->provider_id;
        if (fl & CR_RECORD_ADDRESS)
            argv[a++] = o->address;
        if (fl & CR_RECORD_UNPARK)
            argv[a++] = o->unpark;
        if (fl & CR_RECORD_PARK) {
            argv[a++] = num + 3 * CR_NUM_MAX;
            argv[a++] = o->park_member;
        }
    }
    if (plan_len > 0) {
        snprintf(plan_at, sizeof(plan_at), "%llu", (unsigned long long)plan_first);
        argv[a++] = plan_at;
        argv[a++] = (const char *)plan;
    }
    for (i = 0; i < argc; i++) {
        if (i == NKEYS + 8)
            lens[i] = n * CR_RECORD_BYTES; /* binary */
        else if (plan_len > 0 && i == argc - 1)
            lens[i] = plan_len; /* binary */
        else
            lens[i] = strlen(argv[i]);
    }
    fc->b = b;
    fc->ack = ack;
    b->flushing = n;
    b->flush_busy = 1;
    if (cr_script_call(d->rc, CR_SCRIPT_RECORD, NKEYS, (int)argc, argv, lens, on_recorded, fc) ==
        0)
        fc = NULL;
    else
        b->flushing = b->flush_busy = 0;
out:
    free(fc);
    free(argv);
    free(lens);
    free(plan);
    free(nums);
    free(bytes);
    free(ks);
}
