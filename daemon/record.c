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
#define NHEAD 7
#define NUMS 6 /* numbers formatted per outcome: pos, attempt, latency, due, segments, bit */
#define NPLAN 2 /* with the acknowledgement: the plan's first ledger byte, the plan */
_Static_assert(3 + NKEYS + NHEAD + CHUNK * CR_RECORD_FIELDS + NPLAN <= CR_SCRIPT_MAX_ARGS,
               "a full record chunk must fit in one script call");

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

void cr_record_flush(struct cr_batch *b, int ack)
{
    struct cr_daemon *d = b->d;
    size_t n = b->nouts - b->nflushed;
    size_t argc;
    size_t i;
    const char **argv = NULL;
    size_t *lens = NULL;
    unsigned char *plan = NULL;
    size_t plan_len = 0;
    uint64_t plan_first = 0;
    char plan_at[24];
    char *nums = NULL;
    char head[6][24];
    struct flush_ctx *fc = NULL;
    int rc = CR_ENOMEM;

    if (b->flush_busy)
        return;
    if (n > CHUNK)
        n = CHUNK;
    /* Only the chunk that writes the batch's last outcome may acknowledge it. */
    if (b->nflushed + n < b->nouts || b->nouts < b->expected)
        ack = 0;
    if (n == 0 && !ack)
        return;
    argc = NKEYS + NHEAD + n * CR_RECORD_FIELDS;
    if (ack) {
        size_t cap = b->nsubs * CR_LEDGER_BITS / 8 + 2;

        plan = malloc(cap);
        if (plan == NULL)
            goto out;
        plan_len = cr_fanout_plan(b, plan, cap, &plan_first);
        if (plan_len > cap)
            goto out; /* cannot happen: cap covers every position of the batch */
        if (plan_len > 0) {
            argc += NPLAN;
            lens = malloc(argc * sizeof(*lens));
            if (lens == NULL)
                goto out;
        }
    }
    argv = malloc(argc * sizeof(*argv));
    nums = malloc(n * NUMS * CR_NUM_MAX + 1);
    fc = malloc(sizeof(*fc));
    if (argv == NULL || nums == NULL || fc == NULL)
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
    argv[NKEYS + 0] = b->job_id;
    argv[NKEYS + 1] = d->cfg->group;
    argv[NKEYS + 2] = ack ? b->entry : "";
    argv[NKEYS + 3] = head[0];
    argv[NKEYS + 4] = head[1];
    argv[NKEYS + 5] = head[2];
    argv[NKEYS + 6] = head[3];
    for (i = 0; i < n; i++) {
        const struct cr_record *o = &b->outs[b->nflushed + i];
        const char **a = argv + NKEYS + NHEAD + i * CR_RECORD_FIELDS;
        char *pos = nums + i * NUMS * CR_NUM_MAX;
        char *att = pos + CR_NUM_MAX;
        char *lat = att + CR_NUM_MAX;
        char *due = lat + CR_NUM_MAX;
        char *seg = due + CR_NUM_MAX;
        char *bit = seg + CR_NUM_MAX;
        static const char *const chix[] = {"0", "1", "2", "3", "4"};
        int ch = (int)cr_ledger_slot((int)o->channel);

        cr_fmt_i64(pos, o->sub->pos);
        cr_fmt_i64(att, o->attempt);
        cr_fmt_i64(lat, o->latency_us);
        cr_fmt_i64(due, o->park_due_ms);
        cr_fmt_i64(seg, o->segments);
        cr_fmt_i64(bit, (int64_t)o->sub->pos * CR_LEDGER_BITS + ch);
        a[0] = o->sub->id;
        a[1] = pos;
        a[2] = chix[ch];
        a[3] = ch != CR_LEDGER_SKIPPED ? cr_channel_name(o->channel) : "";
        a[4] = o->provider ? o->provider : "";
        a[5] = o->park_member ? "park" : cr_status_name(o->status);
        a[6] = att;
        a[7] = o->code;
        a[8] = lat;
        a[9] = o->provider_id;
        a[10] = o->address ? o->address : "";
        a[11] = o->suppress ? "1" : "0";
        a[12] = o->unpark ? o->unpark : "";
        a[13] = due;
        a[14] = o->park_member ? o->park_member : "";
        a[15] = seg;
        a[16] = bit;
    }
    if (lens != NULL) {
        snprintf(plan_at, sizeof(plan_at), "%llu", (unsigned long long)plan_first);
        argv[argc - 2] = plan_at;
        argv[argc - 1] = (const char *)plan;
        for (i = 0; i < argc - 1; i++)
            lens[i] = strlen(argv[i]);
        lens[argc - 1] = plan_len;
    }
    fc->b = b;
    fc->ack = ack;
    b->flushing = n;
    b->flush_busy = 1;
    rc = cr_script_call(d->rc, CR_SCRIPT_RECORD, NKEYS, (int)argc, argv, lens,
                        on_recorded, fc);
    if (rc == 0)
        fc = NULL;
    else
        b->flushing = b->flush_busy = 0;
out:
    free(fc);
    free(argv);
    free(lens);
    free(plan);
    free(nums);
}
