/* crierctl report: a job's reach per targeted segment as CSV, computed from
 * its receipts (one final outcome per subscriber and channel) and from the
 * segment sets, then what residents answered (the reply and survey tallies
 * the daemon keeps per segment), for people who ask "who was told, where, did
 * it arrive, and what did they say". A job Redis no longer holds is read from
 * the audit database instead (its messages, replies and survey answers). */
#include <cjson/cJSON.h>
#include <csv.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "report_by.h"
#include "store.h"
#include "replies.h" /* CR_SURVEY_OPTIONS_MAX, as the daemon numbers options */

#define MAX_SUBS 5000000       /* distinct subscribers a report can hold */
#define MAX_SEGS 1024          /* segments named by one job */
#define PAGE "10000"
#define PAGE_N 10000
#define MEMBER_CHUNK 1000      /* ids per SMISMEMBER */
#define SLUG_MAX 40            /* bytes of an option's text kept in its column name */
#define MAX_ORPHANS 1000000    /* provider receipts held until their message is found */

static const char help[] =
    "Usage: crierctl report [options] ID\n"
    "       crierctl report [options] (--config FILE | --sqlite PATH |\n"
    "                       --postgresql CONNINFO) [--from-audit] ID\n"
    "Writes CSV to standard output: one row per segment job ID targeted\n"
    "(audience.segments of its document) and a `total` row, with the columns\n"
    "  segment,residents_targeted,residents_reached,messages,delivered,sent,\n"
    "  failed,suppressed,skipped, sent/delivered/failed per channel\n"
    "  (sent_email, ...), then bounced,expired,cancelled,\n"
    "  replies,reply_rate and, when the job has a survey,\n"
    "  survey_responses,response_rate and one option_<n>_<slug> column per\n"
    "  survey option (answers for that option).\n"
    "A receipt from a provider's webhook (delivered, failed...) names the\n"
    "message by job, audience position and channel: it replaces the outcome\n"
    "of the receipt crierd wrote for that message, so it counts in the\n"
    "resident's segments.\n"
    "A resident counts in a segment's row when the resident is a member of that\n"
    "segment now; residents reached = distinct residents with at least one\n"
    "delivered or sent message. Subscribers named directly by the job count in\n"
    "the total only.\n"
    "The figures come from the job's receipts in <prefix>receipts: receipts\n"
    "already trimmed from the stream (MAXLEN, receipts.maxlen) are not counted,\n"
    "and a warning says so when the total does not match the job's counters\n"
    "(messages, and each status per channel).\n"
    "replies = residents who replied (by SMS), survey_responses = residents who\n"
    "answered (by SMS or link), as the daemon tallied them per segment when the\n"
    "answer came (<prefix>job:ID:replies:segments, :survey:<segment>); the total\n"
    "row takes the job-wide figures, residents named directly included. Rates\n"
    "are over residents_reached, 3 decimals, empty when nobody was reached.\n"
    "With an audit database named (crier-audit's, as for `crierctl audit`), a\n"
    "job Redis no longer holds (its keys expired) is read from there: the\n"
    "final outcome of each message from `messages`, replies = residents with a\n"
    "row of type reply in `replies`, survey answers = the counted rows of\n"
    "`survey_answers`, and segment membership from `message_segments` (the\n"
    "segments each resident was in when crier-audit stored the message), so\n"
    "the figures need none of the job's or the segments' keys in Redis. Only a\n"
    "job stored by a crier-audit older than that table falls back to Redis's\n"
    "segment sets (members now), with a warning.\n"
    "  --from-audit   read the audit database even when Redis holds the job\n"
    "  --by PATTERN   rows for the segments matching PATTERN (demo:age:*, any\n"
    "                 family, targeted or not; repeatable) instead of the job's\n"
    "                 segments, and a last column responded: residents who\n"
    "                 replied or answered the job's survey (single or multi-\n"
    "                 question), read from Redis\n"
    CTL_DB_HELP;

/* Where each column's value comes from. */
enum col_src { SRC_TARGETED, SRC_REACHED, SRC_MESSAGES, SRC_STATUS, SRC_CHANNEL_STATUS };

struct column {
    const char *name;
    enum col_src src;
    enum cr_status st;
    enum cr_channel ch;
};

static const struct column columns[] = {
    {"residents_targeted", SRC_TARGETED, 0, 0},
    {"residents_reached", SRC_REACHED, 0, 0},
    {"messages", SRC_MESSAGES, 0, 0},
    {"delivered", SRC_STATUS, CR_ST_DELIVERED, 0},
    {"sent", SRC_STATUS, CR_ST_SENT, 0},
    {"failed", SRC_STATUS, CR_ST_FAILED, 0},
    {"suppressed", SRC_STATUS, CR_ST_SUPPRESSED, 0},
    {"skipped", SRC_STATUS, CR_ST_SKIPPED, 0},
    {"sent_email", SRC_CHANNEL_STATUS, CR_ST_SENT, CR_CH_EMAIL},
    {"sent_sms", SRC_CHANNEL_STATUS, CR_ST_SENT, CR_CH_SMS},
    {"sent_push", SRC_CHANNEL_STATUS, CR_ST_SENT, CR_CH_PUSH},
    {"sent_whatsapp", SRC_CHANNEL_STATUS, CR_ST_SENT, CR_CH_WHATSAPP},
    {"delivered_email", SRC_CHANNEL_STATUS, CR_ST_DELIVERED, CR_CH_EMAIL},
    {"delivered_sms", SRC_CHANNEL_STATUS, CR_ST_DELIVERED, CR_CH_SMS},
    {"delivered_push", SRC_CHANNEL_STATUS, CR_ST_DELIVERED, CR_CH_PUSH},
    {"delivered_whatsapp", SRC_CHANNEL_STATUS, CR_ST_DELIVERED, CR_CH_WHATSAPP},
    {"failed_email", SRC_CHANNEL_STATUS, CR_ST_FAILED, CR_CH_EMAIL},
    {"failed_sms", SRC_CHANNEL_STATUS, CR_ST_FAILED, CR_CH_SMS},
    {"failed_push", SRC_CHANNEL_STATUS, CR_ST_FAILED, CR_CH_PUSH},
    {"failed_whatsapp", SRC_CHANNEL_STATUS, CR_ST_FAILED, CR_CH_WHATSAPP},
    {"bounced", SRC_STATUS, CR_ST_BOUNCED, 0},
    {"expired", SRC_STATUS, CR_ST_EXPIRED, 0},
    {"cancelled", SRC_STATUS, CR_ST_CANCELLED, 0},
    /* the reply and survey columns follow these: see put_engagement() */
};
#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

/* What the receipts say about one subscriber: the final status per channel,
 * and the outcome without a channel (skipped), as status + 1 (0 = none). */
struct sub {
    char *id;
    unsigned char st[CR_CH__COUNT + 1];
    unsigned char replied;     /* audit database: the resident replied */
    unsigned char option;      /* audit database: the counted survey answer, 0 = none */
};

/* A provider's receipt whose message (job, pos, channel) had no receipt of
 * crierd's before it in the stream: held until its subscriber is found. */
struct orphan {
    uint32_t pos;
    unsigned char slot;        /* channel */
    unsigned char st;          /* status + 1 */
};

struct report {
    struct sub *subs;          /* in first-seen order */
    size_t nsubs, capsubs;
    uint32_t *index;           /* open addressing: position + 1 into subs, 0 = empty */
    size_t capindex;           /* power of two */
    uint64_t *bypos;           /* open addressing: pos << 32 | (position + 1 into subs), 0 = empty */
    size_t nbypos, capbypos;   /* capbypos a power of two */
    struct orphan *orphans;
    size_t norphans, caporphans;
    long long unmatched;       /* provider receipts whose message was never found */
    char **segs;               /* audience.segments of the job */
    size_t nsegs;
    uint64_t *member;          /* nsubs x words bits: subscriber i is in segment s */
    size_t words;
    long long receipts;
};

struct row {
    long long targeted, reached, messages;
    long long st[CR_ST__COUNT];
    long long ch[CR_CH__COUNT][CR_ST__COUNT];
};

/* What residents answered, as the daemon tallied it (docs/engagement.md):
 * one per segment row and one for the total. */
struct answers {
    long long replies;                      /* residents who replied */
    long long responses;                    /* residents who answered the survey */
    long long option[CR_SURVEY_OPTIONS_MAX]; /* answers per option, 0-based */
};

/* The job's survey: its options' column names; noptions 0 = no survey. */
struct survey_cols {
    size_t noptions;
    char name[CR_SURVEY_OPTIONS_MAX][SLUG_MAX + 16];
};

static int grow_index(struct report *rp)
{
    size_t ncap = rp->capindex ? rp->capindex * 2 : 4096;
    uint32_t *ni = calloc(ncap, sizeof(*ni));
    size_t i;

    if (ni == NULL)
        return -1;
    for (i = 0; i < rp->nsubs; i++) {
        size_t k = (size_t)cr_ctl_hash_str(rp->subs[i].id) & (ncap - 1);

        while (ni[k])
            k = (k + 1) & (ncap - 1);
        ni[k] = (uint32_t)(i + 1);
    }
    free(rp->index);
    rp->index = ni;
    rp->capindex = ncap;
    return 0;
}

/* The subscriber's entry, or NULL when no message named it. */
static struct sub *known_sub(const struct report *rp, const char *id)
{
    size_t k;

    if (rp->capindex == 0)
        return NULL;
    k = (size_t)cr_ctl_hash_str(id) & (rp->capindex - 1);
    while (rp->index[k]) {
        struct sub *s = &rp->subs[rp->index[k] - 1];

        if (strcmp(s->id, id) == 0)
            return s;
        k = (k + 1) & (rp->capindex - 1);
    }
    return NULL;
}

/* The subscriber's entry, added when new; NULL when out of memory or over MAX_SUBS. */
static struct sub *find_sub(struct report *rp, const char *id)
{
    size_t k;
    struct sub *s;

    if (rp->capindex == 0 || rp->nsubs * 2 >= rp->capindex) {
        if (grow_index(rp) < 0)
            return NULL;
    }
    k = (size_t)cr_ctl_hash_str(id) & (rp->capindex - 1);
    while (rp->index[k]) {
        s = &rp->subs[rp->index[k] - 1];
        if (strcmp(s->id, id) == 0)
            return s;
        k = (k + 1) & (rp->capindex - 1);
    }
    if (rp->nsubs >= MAX_SUBS)
        return NULL;
    if (rp->nsubs == rp->capsubs) {
        size_t ncap = rp->capsubs ? rp->capsubs * 2 : 4096;
        struct sub *ns = realloc(rp->subs, ncap * sizeof(*ns));

        if (ns == NULL)
            return NULL;
        rp->subs = ns;
        rp->capsubs = ncap;
    }
    s = &rp->subs[rp->nsubs];
    memset(s, 0, sizeof(*s));
    s->id = strdup(id);
    if (s->id == NULL)
        return NULL;
    rp->index[k] = (uint32_t)(++rp->nsubs);
    return s;
}

/* Takes audience.segments from the job document. */
static int read_segments(struct report *rp, const char *doc)
{
    cJSON *root = cJSON_Parse(doc);
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(root, "audience");
    const cJSON *segs = cJSON_GetObjectItemCaseSensitive(aud, "segments");
    const cJSON *s;
    int rc = 0;

    if (root == NULL) {
        fprintf(stderr, "crierctl report: the job's stored document is not JSON\n");
        return -1;
    }
    cJSON_ArrayForEach(s, segs)
    {
        if (!cJSON_IsString(s))
            continue;
        if (rp->nsegs == MAX_SEGS) {
            fprintf(stderr, "crierctl report: more than %d segments\n", MAX_SEGS);
            rc = -1;
            break;
        }
        rp->segs[rp->nsegs] = strdup(s->valuestring);
        if (rp->segs[rp->nsegs] == NULL) {
            rc = -1;
            break;
        }
        rp->nsegs++;
    }
    cJSON_Delete(root);
    return rc;
}

static size_t pos_hash(uint32_t pos, size_t cap)
{
    return (size_t)(((uint64_t)pos * 0x9E3779B97F4A7C15ULL) >> 32) & (cap - 1);
}

/* Remembers that audience position pos is subscriber s (the latest wins). */
static int remember_pos(struct report *rp, uint32_t pos, const struct sub *s)
{
    uint64_t v = (uint64_t)pos << 32 | (uint64_t)(s - rp->subs + 1);
    size_t k;

    if (rp->capbypos == 0 || rp->nbypos * 2 >= rp->capbypos) {
        size_t ncap = rp->capbypos ? rp->capbypos * 2 : 4096;
        uint64_t *nt = calloc(ncap, sizeof(*nt));
        size_t i;

        if (nt == NULL)
            return -1;
        for (i = 0; i < rp->capbypos; i++) {
            if (rp->bypos[i] == 0)
                continue;
            k = pos_hash((uint32_t)(rp->bypos[i] >> 32), ncap);
            while (nt[k])
                k = (k + 1) & (ncap - 1);
            nt[k] = rp->bypos[i];
        }
        free(rp->bypos);
        rp->bypos = nt;
        rp->capbypos = ncap;
    }
    k = pos_hash(pos, rp->capbypos);
    while (rp->bypos[k] && (uint32_t)(rp->bypos[k] >> 32) != pos)
        k = (k + 1) & (rp->capbypos - 1);
    if (rp->bypos[k] == 0)
        rp->nbypos++;
    rp->bypos[k] = v;
    return 0;
}

/* The subscriber at audience position pos, or NULL when no receipt named it. */
static struct sub *sub_at(const struct report *rp, uint32_t pos)
{
    size_t k;

    if (rp->capbypos == 0)
        return NULL;
    k = pos_hash(pos, rp->capbypos);
    while (rp->bypos[k]) {
        if ((uint32_t)(rp->bypos[k] >> 32) == pos)
            return &rp->subs[(rp->bypos[k] & 0xffffffffu) - 1];
        k = (k + 1) & (rp->capbypos - 1);
    }
    return NULL;
}

static int parse_pos(const char *s, uint32_t *out)
{
    long long v;

    if (s == NULL || cr_ctl_parse_ll(s, 0, UINT32_MAX, &v) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int add_orphan(struct report *rp, uint32_t pos, int slot, enum cr_status st)
{
    if (rp->norphans >= MAX_ORPHANS) {
        rp->unmatched++;
        return 0;
    }
    if (rp->norphans == rp->caporphans) {
        size_t ncap = rp->caporphans ? rp->caporphans * 2 : 256;
        struct orphan *no = realloc(rp->orphans, ncap * sizeof(*no));

        if (no == NULL)
            return -1;
        rp->orphans = no;
        rp->caporphans = ncap;
    }
    rp->orphans[rp->norphans].pos = pos;
    rp->orphans[rp->norphans].slot = (unsigned char)slot;
    rp->orphans[rp->norphans].st = (unsigned char)(st + 1);
    rp->norphans++;
    return 0;
}

/* One receipt of the stream. crierd's own receipts name the subscriber (sub)
 * and the audience position (pos); a provider's receipt from a webhook (source
 * webhook) names only job, pos and channel, and comes after crierd's receipt
 * for the same message (the webhook script applies a receipt only once the
 * message's ledger bit is set, which the same script call that wrote crierd's
 * receipt set). So the position found earlier in the stream gives the
 * subscriber, and the provider's outcome replaces crierd's "sent", as it does
 * in the job's counters. */
static void take_receipt(struct report *rp, const redisReply *f, const char *job, int *oom)
{
    const char *j = cr_ctl_field(f, "job");
    const char *sub = cr_ctl_field(f, "sub");
    const char *chn = cr_ctl_field(f, "channel");
    const char *stn = cr_ctl_field(f, "status");
    enum cr_channel ch;
    enum cr_status st;
    struct sub *s;
    uint32_t pos;
    int has_pos;
    int slot;

    if (j == NULL || strcmp(j, job) != 0 || stn == NULL || cr_status_parse(stn, &st) < 0)
        return;
    has_pos = parse_pos(cr_ctl_field(f, "pos"), &pos) == 0;
    slot = (chn && cr_channel_parse(chn, &ch) == 0) ? (int)ch : CR_CH__COUNT;
    if (sub == NULL) {
        if (!has_pos)
            return; /* names no message: nothing to count it against */
        s = sub_at(rp, pos);
        if (s == NULL) {
            if (add_orphan(rp, pos, slot, st) < 0)
                *oom = 1;
            rp->receipts++;
            return;
        }
    } else {
        s = find_sub(rp, sub);
        if (s == NULL) {
            *oom = 1;
            return;
        }
        if (has_pos && remember_pos(rp, pos, s) < 0) {
            *oom = 1;
            return;
        }
    }
    s->st[slot] = (unsigned char)(st + 1);
    rp->receipts++;
}

/* "<job>/<pos>/<sub>" of crier:sms:last for job: *pos and *sub (into sub). */
static int split_last(const char *v, const char *job, uint32_t *pos, char *sub, size_t sublen)
{
    size_t jl = strlen(job);
    const char *p;
    const char *slash;
    char num[16];

    if (strncmp(v, job, jl) != 0 || v[jl] != '/')
        return -1;
    p = v + jl + 1;
    slash = strchr(p, '/');
    if (slash == NULL || (size_t)(slash - p) >= sizeof(num) || slash == p)
        return -1;
    memcpy(num, p, (size_t)(slash - p));
    num[slash - p] = '\0';
    if (parse_pos(num, pos) < 0 || strlen(slash + 1) >= sublen || slash[1] == '\0')
        return -1;
    memcpy(sub, slash + 1, strlen(slash + 1) + 1);
    return 0;
}

/* Provider receipts whose crierd receipt was trimmed from the stream: the
 * subscriber of an SMS can still be found in crier:sms:last (phone ->
 * "<job>/<pos>/<sub>" of the last SMS to that phone), read with HSCAN only
 * when there is such a receipt. What stays unknown is counted in unmatched. */
static int resolve_orphans(struct ctl *ctl, struct report *rp, const char *job)
{
    const char *argv[5];
    char cursor[32] = "0";
    char sub[256];
    redisReply *r;
    size_t i;
    int code;

    if (rp->norphans == 0)
        return 0;
    argv[0] = "HSCAN";
    argv[1] = ctl->keys.sms_last;
    argv[3] = "COUNT";
    argv[4] = "1000";
    do {
        argv[2] = cursor;
        r = cr_ctl_cmdv(ctl, 5, argv, NULL, &code);
        if (r == NULL)
            return code;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            break; /* not a hash: nothing to learn from it */
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (i = 0; i + 1 < r->element[1]->elements; i += 2) {
            const redisReply *v = r->element[1]->element[i + 1];
            struct sub *s;
            uint32_t pos;

            if (v->type != REDIS_REPLY_STRING ||
                split_last(v->str, job, &pos, sub, sizeof(sub)) < 0 || sub_at(rp, pos) != NULL)
                continue;
            s = find_sub(rp, sub);
            if (s == NULL || remember_pos(rp, pos, s) < 0) {
                freeReplyObject(r);
                fprintf(stderr, "crierctl report: out of memory\n");
                return CTL_EXIT_FAIL;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    for (i = 0; i < rp->norphans; i++) {
        const struct orphan *o = &rp->orphans[i];
        struct sub *s = sub_at(rp, o->pos);

        if (s == NULL)
            rp->unmatched++;
        else
            s->st[o->slot] = o->st;
    }
    return 0;
}

/* XRANGE over the receipts from the job's creation on, keeping its own. */
static int read_receipts(struct ctl *ctl, struct report *rp, const char *job, long long from_ms)
{
    char start[64];
    const char *argv[6];
    redisReply *r;
    size_t i;
    int oom = 0;
    int code;

    /* a minute early: the daemon's clock and Redis's may differ a little */
    snprintf(start, sizeof(start), "%lld-0", from_ms > 60000 ? from_ms - 60000 : 0);
    argv[0] = "XRANGE";
    argv[1] = ctl->keys.receipts;
    argv[3] = "+";
    argv[4] = "COUNT";
    argv[5] = PAGE;
    for (;;) {
        argv[2] = start;
        r = cr_ctl_cmdv(ctl, 6, argv, NULL, &code);
        if (r == NULL)
            return code;
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
            freeReplyObject(r);
            return 0;
        }
        for (i = 0; i < r->elements && !oom; i++) {
            const redisReply *e = r->element[i];

            if (e->type == REDIS_REPLY_ARRAY && e->elements == 2)
                take_receipt(rp, e->element[1], job, &oom);
        }
        snprintf(start, sizeof(start), "(%s", r->element[r->elements - 1]->element[0]->str);
        i = r->elements;
        freeReplyObject(r);
        if (oom) {
            fprintf(stderr, "crierctl report: out of memory, or more than %d subscribers\n",
                    MAX_SUBS);
            return CTL_EXIT_FAIL;
        }
        if (i < PAGE_N)
            return 0;
    }
}

/* SMISMEMBER per segment and chunk of subscribers, pipelined per chunk. */
static int read_membership(struct ctl *ctl, struct report *rp)
{
    const char **argv = NULL;
    char **keys = NULL;
    size_t base;
    size_t s;
    size_t i;
    int code = CTL_EXIT_FAIL;

    rp->words = (rp->nsegs + 63) / 64;
    if (rp->nsegs == 0 || rp->nsubs == 0)
        return 0;
    rp->member = calloc(rp->nsubs * rp->words, sizeof(uint64_t));
    argv = calloc(2 + MEMBER_CHUNK, sizeof(*argv));
    keys = calloc(rp->nsegs, sizeof(*keys));
    if (rp->member == NULL || argv == NULL || keys == NULL)
        goto oom;
    for (s = 0; s < rp->nsegs; s++) {
        keys[s] = malloc(CR_KEY_MAX);
        if (keys[s] == NULL)
            goto oom;
        if (cr_key_for(&ctl->keys, "seg", rp->segs[s], keys[s], CR_KEY_MAX) < 0) {
            fprintf(stderr, "crierctl report: segment name '%s' is too long\n", rp->segs[s]);
            goto out;
        }
    }
    argv[0] = "SMISMEMBER";
    for (base = 0; base < rp->nsubs; base += MEMBER_CHUNK) {
        size_t n = rp->nsubs - base < MEMBER_CHUNK ? rp->nsubs - base : MEMBER_CHUNK;

        for (i = 0; i < n; i++)
            argv[2 + i] = rp->subs[base + i].id;
        for (s = 0; s < rp->nsegs; s++) {
            argv[1] = keys[s];
            code = cr_ctl_pipe_append(ctl, (int)(2 + n), argv, NULL);
            if (code != 0)
                goto out;
        }
        for (s = 0; s < rp->nsegs; s++) {
            redisReply *r = cr_ctl_pipe_read(ctl, &code);

            if (r == NULL)
                goto out;
            if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
                fprintf(stderr, "crierctl report: SMISMEMBER %s failed: %s\n", keys[s],
                        r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
                freeReplyObject(r);
                code = CTL_EXIT_FAIL;
                goto out;
            }
            for (i = 0; i < n; i++)
                if (r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 1)
                    rp->member[(base + i) * rp->words + s / 64] |= (uint64_t)1 << (s % 64);
            freeReplyObject(r);
        }
    }
    code = 0;
    goto out;
oom:
    fprintf(stderr, "crierctl report: out of memory\n");
    code = CTL_EXIT_FAIL;
out:
    if (keys)
        for (s = 0; s < rp->nsegs; s++)
            free(keys[s]);
    free(keys);
    free(argv);
    return code;
}

static void add_sub(struct row *row, const struct sub *s)
{
    int reached = 0;
    int c;

    row->targeted++;
    for (c = 0; c <= CR_CH__COUNT; c++) {
        int st;

        if (s->st[c] == 0)
            continue;
        st = s->st[c] - 1;
        row->messages++;
        row->st[st]++;
        if (c < CR_CH__COUNT)
            row->ch[c][st]++;
        if (st == CR_ST_DELIVERED || st == CR_ST_SENT)
            reached = 1;
    }
    row->reached += reached;
}

static long long value(const struct row *row, const struct column *col)
{
    switch (col->src) {
    case SRC_TARGETED:
        return row->targeted;
    case SRC_REACHED:
        return row->reached;
    case SRC_MESSAGES:
        return row->messages;
    case SRC_STATUS:
        return row->st[col->st];
    case SRC_CHANNEL_STATUS:
        return row->ch[col->ch][col->st];
    }
    return 0;
}

/* A CSV cell: quoted (by libcsv) only when it needs to be. */
static void put_cell(const char *s)
{
    if (strpbrk(s, ",\"\r\n") != NULL)
        csv_fwrite(stdout, s, strlen(s));
    else
        fputs(s, stdout);
}

/* "option_<n>_<slug>": the option's text in lower case, ASCII letters and
 * digits kept, every run of anything else one '_', at most SLUG_MAX bytes,
 * so that a spreadsheet can name the column; "option_<n>" when nothing is left. */
static void option_column(char *out, size_t outlen, size_t n, const char *text)
{
    char slug[SLUG_MAX + 1];
    size_t len = 0;
    int gap = 0;

    for (; *text != '\0' && len < SLUG_MAX; text++) {
        unsigned char c = (unsigned char)*text;

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')) {
            if (gap && len > 0) {
                if (len + 1 >= SLUG_MAX)
                    break; /* no room for '_' and a character: end on a word */
                slug[len++] = '_';
            }
            gap = 0;
            slug[len++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        } else {
            gap = 1;
        }
    }
    slug[len] = '\0';
    if (len > 0)
        snprintf(out, outlen, "option_%zu_%s", n, slug);
    else
        snprintf(out, outlen, "option_%zu", n);
}

/* Reads the job's survey from its document, numbering the options as the
 * daemon does when it tallies answers (cr_survey_from_doc: string options in
 * order, at most CR_SURVEY_OPTIONS_MAX, a survey only with a string question),
 * and names their columns. Returns 0 or CTL_EXIT_FAIL. */
static int read_survey(const char *doc, struct survey_cols *sc)
{
    cJSON *root = cJSON_Parse(doc);
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(root, "survey");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(sv, "question");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(sv, "options");
    const cJSON *it;

    sc->noptions = 0;
    if (root == NULL) {
        fprintf(stderr, "crierctl report: the job's stored document is not JSON\n");
        return CTL_EXIT_FAIL;
    }
    if (cJSON_IsString(q) && cJSON_IsArray(opts)) {
        cJSON_ArrayForEach(it, opts)
        {
            if (!cJSON_IsString(it) || sc->noptions >= CR_SURVEY_OPTIONS_MAX)
                continue;
            option_column(sc->name[sc->noptions], sizeof(sc->name[0]), sc->noptions + 1,
                          it->valuestring);
            sc->noptions++;
        }
    }
    cJSON_Delete(root);
    return 0;
}

/* A count out of a hash value; 0 when it is not a non-negative integer. */
static long long count_of(const redisReply *v)
{
    long long n;

    if (v->type != REDIS_REPLY_STRING || cr_ctl_parse_ll(v->str, 0, LLONG_MAX, &n) != 0)
        return 0;
    return n;
}

/* A survey tally hash (option number -> answers) into a: per option and,
 * when responses is set, the sum as the residents who answered. */
static void take_tally(const redisReply *r, struct answers *a, int responses)
{
    size_t i;

    for (i = 0; i + 1 < r->elements; i += 2) {
        long long opt;
        long long n = count_of(r->element[i + 1]);

        if (r->element[i]->type != REDIS_REPLY_STRING ||
            cr_ctl_parse_ll(r->element[i]->str, 1, CR_SURVEY_OPTIONS_MAX, &opt) != 0)
            continue;
        a->option[opt - 1] += n;
        if (responses)
            a->responses += n;
    }
}

/* Job key + suffix into out; -1 (printed) when too long. */
static int job_subkey(char *out, const char *jobkey, const char *suffix, const char *seg)
{
    int n = snprintf(out, CR_KEY_MAX, "%s%s%s", jobkey, suffix, seg ? seg : "");

    if (n < 0 || n >= CR_KEY_MAX) {
        fprintf(stderr, "crierctl report: key %s%s%s is too long\n", jobkey, suffix,
                seg ? seg : "");
        return -1;
    }
    return 0;
}

/* Reads the reply and survey tallies of the job (jobkey, its hash h) into
 * ans[0..nsegs-1] (per segment) and ans[nsegs] (the job): one pipeline of
 * HGETALL :replies:segments, :survey and :survey:<segment> per segment. */
static int read_answers(struct ctl *ctl, const struct report *rp, const struct survey_cols *sc,
                        const char *jobkey, const redisReply *h, struct answers *ans)
{
    char key[CR_KEY_MAX];
    const char *argv[2];
    struct answers *total = &ans[rp->nsegs];
    size_t nkeys = sc->noptions > 0 ? 2 + rp->nsegs : 1;
    size_t nreq;
    size_t q;
    size_t i;
    size_t s;
    int code = 0;
    int rd = 0;

    total->replies = cr_ctl_field_ll(h, "repliers", 0);
    total->responses = cr_ctl_field_ll(h, "survey_responses", 0);
    argv[0] = "HGETALL";
    argv[1] = key;
    /* keys in reply order: :replies:segments, :survey, :survey:<segment>... */
    for (nreq = 0; nreq < nkeys; nreq++) {
        int bad = nreq == 0   ? job_subkey(key, jobkey, ":replies:segments", NULL)
                  : nreq == 1 ? job_subkey(key, jobkey, ":survey", NULL)
                              : job_subkey(key, jobkey, ":survey:", rp->segs[nreq - 2]);

        code = bad < 0 ? CTL_EXIT_FAIL : cr_ctl_pipe_append(ctl, 2, argv, NULL);
        if (code != 0)
            break;
    }
    /* what was appended is read before an append failure is returned */
    for (q = 0; q < nreq; q++) {
        redisReply *r = cr_ctl_pipe_read(ctl, &rd);

        if (r == NULL)
            return rd;
        if (r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "crierctl report: reading the job's reply and survey tallies "
                            "failed: %s\n",
                    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            return CTL_EXIT_FAIL;
        }
        if (q == 0) {
            for (i = 0; i + 1 < r->elements; i += 2)
                for (s = 0; s < rp->nsegs; s++)
                    if (r->element[i]->type == REDIS_REPLY_STRING &&
                        strcmp(r->element[i]->str, rp->segs[s]) == 0)
                        ans[s].replies = count_of(r->element[i + 1]);
        } else if (q == 1) {
            take_tally(r, total, 0);
        } else {
            take_tally(r, &ans[q - 2], 1);
        }
        freeReplyObject(r);
    }
    return code;
}

static void put_rate(long long n, long long reached)
{
    if (reached > 0)
        printf(",%.3f", (double)n / (double)reached);
    else
        putchar(',');
}

static void put_engagement_header(const struct survey_cols *sc)
{
    size_t i;

    fputs(",replies,reply_rate", stdout);
    if (sc->noptions == 0)
        return;
    fputs(",survey_responses,response_rate", stdout);
    for (i = 0; i < sc->noptions; i++) {
        putchar(',');
        put_cell(sc->name[i]);
    }
}

static void put_engagement(const struct survey_cols *sc, const struct answers *a,
                           long long reached)
{
    size_t i;

    printf(",%lld", a->replies);
    put_rate(a->replies, reached);
    if (sc->noptions == 0)
        return;
    printf(",%lld", a->responses);
    put_rate(a->responses, reached);
    for (i = 0; i < sc->noptions; i++)
        printf(",%lld", a->option[i]);
}

/* responded: the --by column, -1 when not asked for; total: the total row
 * (the only one with the per-job time-to-delivery cells). */
static void put_row(const char *name, const struct row *row, const struct survey_cols *sc,
                    const struct answers *a, long long responded, const struct ctl_job *job,
                    long long confirmed, int total)
{
    size_t c;

    put_cell(name);
    for (c = 0; c < NCOLUMNS; c++)
        printf(",%lld", value(row, &columns[c]));
    put_engagement(sc, a, row->reached);
    if (responded >= 0)
        printf(",%lld", responded);
    cr_ctl_steps_cells(job, (const long long(*)[CR_ST__COUNT])row->ch, confirmed, total);
    putchar('\n');
}

/* --by: the residents who responded to the job, per segment row (membership
 * as read_membership found it) and in total, into *out (nsegs + 1 counts). */
static int count_responded(struct ctl *ctl, struct cr_store *db, struct report *rp,
                           const char *id, const char *doc, long long **out)
{
    unsigned char *seen = calloc(rp->nsubs + 1, 1);
    long long *cnt = calloc(rp->nsegs + 1, sizeof(*cnt));
    char **ids = NULL;
    size_t n = 0, i, s;
    int code = CTL_EXIT_FAIL;

    if (seen == NULL || cnt == NULL)
        goto out;
    code = db ? cr_ctl_report_responders_db(db, id, &ids, &n)
              : cr_ctl_report_responders(ctl, id, doc, &ids, &n);
    for (i = 0; code == 0 && i < n; i++) {
        struct sub *sb = known_sub(rp, ids[i]);
        size_t at = sb ? (size_t)(sb - rp->subs) : 0;

        if (sb == NULL || seen[at])
            continue;
        seen[at] = 1;
        cnt[rp->nsegs]++;
        for (s = 0; s < rp->nsegs; s++)
            if (rp->member[at * rp->words + s / 64] & ((uint64_t)1 << (s % 64)))
                cnt[s]++;
    }
    if (code == 0) {
        *out = cnt;
        cnt = NULL;
    }
out:
    for (i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(seen);
    free(cnt);
    return code;
}

/* Once the messages add up, each status (overall and per channel) must too:
 * a difference means receipts the report could not place. */
static void warn_counters(const char *id, const struct row *total, const struct ctl_job *job,
                          const char *what)
{
    int st;
    int ch;

    for (st = 0; st < CR_ST__COUNT; st++) {
        const char *sn = cr_status_name((enum cr_status)st);

        if (total->st[st] != job->st[st])
            fprintf(stderr,
                    "crierctl report: warning: job %s: the %s say %s %lld, its counters "
                    "say %lld\n",
                    id, what, sn, total->st[st], job->st[st]);
        for (ch = 0; ch < CR_CH__COUNT; ch++)
            if (total->ch[ch][st] != job->ch[ch][st])
                fprintf(stderr,
                        "crierctl report: warning: job %s: the %s say %s:%s %lld, its "
                        "counters say %lld\n",
                        id, what, sn, cr_channel_name((enum cr_channel)ch), total->ch[ch][st],
                        job->ch[ch][st]);
    }
}

/* ---- the audit database: a job Redis no longer holds ---- */

#define JOB_COLS 7      /* state ... messages of the jobs row, as fields */
#define JOB_KV_MAX 512  /* strings: the columns' and the counters' fields and values */

/* A job's row in the audit database, as the field/value strings the job
 * hash had (its columns, then every counter of its counters JSON). */
struct sql_job {
    int found;
    int oom;
    char *doc;
    char *kv[JOB_KV_MAX];
    size_t nkv;
};

static int kv_add(struct sql_job *j, const char *k, const char *v)
{
    if (v == NULL)
        return 0;
    if (j->nkv + 2 > JOB_KV_MAX)
        return 0; /* more counters than any job has: the rest are not needed */
    j->kv[j->nkv] = strdup(k);
    j->kv[j->nkv + 1] = strdup(v);
    j->nkv += 2;
    return j->kv[j->nkv - 2] && j->kv[j->nkv - 1] ? 0 : -1;
}

/* jobs row: doc, state, priority, created_ms, started_ms, completed_ms,
 * targeted, messages, counters */
static int sql_job_row(void *ud, int ncols, const char *const *v)
{
    static const char *const names[JOB_COLS] = {"state",        "priority", "created_ms",
                                                "started_ms",   "completed_ms", "targeted",
                                                "messages"};
    struct sql_job *j = ud;
    cJSON *counters;
    const cJSON *it;
    int i;

    if (ncols < 2 + JOB_COLS)
        return 1;
    j->found = 1;
    j->doc = v[0] ? strdup(v[0]) : NULL;
    if (v[0] && j->doc == NULL)
        j->oom = 1;
    for (i = 0; i < JOB_COLS; i++)
        if (kv_add(j, names[i], v[1 + i]) < 0)
            j->oom = 1;
    counters = v[1 + JOB_COLS] ? cJSON_Parse(v[1 + JOB_COLS]) : NULL;
    cJSON_ArrayForEach(it, counters)
    {
        char num[32];

        if (!cJSON_IsNumber(it) || it->string == NULL)
            continue;
        snprintf(num, sizeof(num), "%.0f", it->valuedouble);
        if (kv_add(j, it->string, num) < 0)
            j->oom = 1;
    }
    cJSON_Delete(counters);
    return 1;
}

static void sql_job_release(struct sql_job *j)
{
    size_t i;

    free(j->doc);
    for (i = 0; i < j->nkv; i++)
        free(j->kv[i]);
    memset(j, 0, sizeof(*j));
}

/* Reads the job's row. Returns 0 (j->found says whether there is one), or
 * CTL_EXIT_FAIL after printing why. */
static int sql_read_job(struct cr_store *db, const char *id, struct sql_job *j)
{
    const char *p[1] = {id};

    if (cr_store_query(db,
                       "SELECT doc, state, priority, created_ms, started_ms, completed_ms, "
                       "targeted, messages, counters FROM jobs WHERE id = $1",
                       1, p, sql_job_row, j) != 0) {
        fprintf(stderr, "crierctl report: reading job %s from the audit database failed: %s\n",
                id, cr_store_errmsg(db));
        return CTL_EXIT_FAIL;
    }
    if (j->oom) {
        fprintf(stderr, "crierctl report: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    return 0;
}

struct sql_ctx {
    struct report *rp;
    struct answers *total;
    int oom;
};

/* messages rows: sub, channel, status: the message's final outcome (a
 * provider's receipt has replaced crierd's there already). */
static int sql_message_row(void *ud, int ncols, const char *const *v)
{
    struct sql_ctx *c = ud;
    enum cr_channel ch;
    enum cr_status st;
    struct sub *s;
    int slot;

    if (ncols < 3 || v[2] == NULL || cr_status_parse(v[2], &st) < 0)
        return 0;
    if (v[0] == NULL || v[0][0] == '\0') {
        c->rp->unmatched++; /* a provider's receipt whose own message was never stored */
        return 0;
    }
    s = find_sub(c->rp, v[0]);
    if (s == NULL) {
        c->oom = 1;
        return 1;
    }
    slot = (v[1] && cr_channel_parse(v[1], &ch) == 0) ? (int)ch : CR_CH__COUNT;
    s->st[slot] = (unsigned char)(st + 1);
    c->rp->receipts++;
    return 0;
}

/* replies rows: the distinct residents who replied */
static int sql_replier_row(void *ud, int ncols, const char *const *v)
{
    struct sql_ctx *c = ud;
    struct sub *s;

    if (ncols < 1 || v[0] == NULL)
        return 0;
    c->total->replies++;
    s = known_sub(c->rp, v[0]);
    if (s)
        s->replied = 1;
    return 0;
}

/* survey_answers rows: sub, option_no of each counted answer */
static int sql_answer_row(void *ud, int ncols, const char *const *v)
{
    struct sql_ctx *c = ud;
    struct sub *s;
    long long opt;

    if (ncols < 2 || v[0] == NULL || v[1] == NULL ||
        cr_ctl_parse_ll(v[1], 1, CR_SURVEY_OPTIONS_MAX, &opt) != 0)
        return 0;
    c->total->option[opt - 1]++;
    c->total->responses++;
    s = known_sub(c->rp, v[0]);
    if (s)
        s->option = (unsigned char)opt;
    return 0;
}

/* Reads the job's messages, repliers and counted survey answers from the
 * audit database: outcomes into rp, job-wide answers into total, and each
 * resident's reply and answer onto its entry for the segment rows. */
static int sql_read_outcomes(struct cr_store *db, struct report *rp, const char *id,
                             struct answers *total)
{
    struct sql_ctx c = {rp, total, 0};
    const char *p[1] = {id};

    if (cr_store_query(db,
                       "SELECT sub, channel, status FROM messages WHERE job = $1 "
                       "ORDER BY pos, channel",
                       1, p, sql_message_row, &c) != 0)
        goto dberr;
    if (c.oom) {
        fprintf(stderr, "crierctl report: out of memory, or more than %d subscribers\n",
                MAX_SUBS);
        return CTL_EXIT_FAIL;
    }
    if (cr_store_query(db,
                       "SELECT DISTINCT sub FROM replies WHERE job = $1 AND type = 'reply' "
                       "AND sub IS NOT NULL AND sub <> ''",
                       1, p, sql_replier_row, &c) != 0 ||
        cr_store_query(db,
                       "SELECT sub, option_no FROM survey_answers WHERE job = $1 "
                       "AND counted = 1 AND sub IS NOT NULL AND sub <> ''",
                       1, p, sql_answer_row, &c) != 0)
        goto dberr;
    return 0;
dberr:
    fprintf(stderr, "crierctl report: reading job %s from the audit database failed: %s\n", id,
            cr_store_errmsg(db));
    return CTL_EXIT_FAIL;
}

struct sql_members {
    struct report *rp;
    long long rows;
};

/* message_segments rows: sub, segment */
static int sql_member_row(void *ud, int ncols, const char *const *v)
{
    struct sql_members *m = ud;
    struct report *rp = m->rp;
    struct sub *s;
    size_t i;
    size_t g;

    if (ncols < 2 || v[0] == NULL || v[1] == NULL)
        return 0;
    m->rows++;
    s = known_sub(rp, v[0]);
    if (s == NULL)
        return 0; /* a resident without a stored message: in no row */
    i = (size_t)(s - rp->subs);
    for (g = 0; g < rp->nsegs; g++)
        if (strcmp(rp->segs[g], v[1]) == 0)
            rp->member[i * rp->words + g / 64] |= (uint64_t)1 << (g % 64);
    return 0;
}

/* Segment membership as crier-audit stored it with the messages. Returns 0
 * (*rows: the rows found; none for a job stored before message_segments
 * existed), or CTL_EXIT_FAIL after printing why. */
static int sql_read_membership(struct cr_store *db, struct report *rp, const char *id,
                               long long *rows)
{
    struct sql_members m = {rp, 0};
    const char *p[1] = {id};

    *rows = 0;
    rp->words = (rp->nsegs + 63) / 64;
    if (rp->nsegs == 0 || rp->nsubs == 0)
        return 0;
    rp->member = calloc(rp->nsubs * rp->words, sizeof(uint64_t));
    if (rp->member == NULL) {
        fprintf(stderr, "crierctl report: out of memory\n");
        return CTL_EXIT_FAIL;
    }
    if (cr_store_query(db, "SELECT sub, segment FROM message_segments WHERE job = $1", 1, p,
                       sql_member_row, &m) != 0) {
        fprintf(stderr, "crierctl report: reading job %s's segments from the audit database "
                        "failed: %s\n",
                id, cr_store_errmsg(db));
        return CTL_EXIT_FAIL;
    }
    *rows = m.rows;
    return 0;
}

/* A segment row's answers from its members' replies and answers (audit database). */
static void add_answers(struct answers *a, const struct sub *s)
{
    a->replies += s->replied;
    if (s->option > 0) {
        a->responses++;
        a->option[s->option - 1]++;
    }
}

static void release(struct report *rp)
{
    size_t i;

    for (i = 0; i < rp->nsubs; i++)
        free(rp->subs[i].id);
    free(rp->subs);
    free(rp->index);
    free(rp->bypos);
    free(rp->orphans);
    for (i = 0; i < rp->nsegs; i++)
        free(rp->segs[i]);
    free(rp->segs);
    free(rp->member);
}

enum { OPT_FROM_AUDIT = CTL_OPT__FIRST_FREE, OPT_BY };
#define MAX_BY 8

int cr_ctl_report(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {CTL_COMMON_LONGOPTS, CTL_DB_LONGOPTS,
                                         {"from-audit", no_argument, NULL, OPT_FROM_AUDIT},
                                         {"by", required_argument, NULL, OPT_BY},
                                         {NULL, 0, NULL, 0}};
    const char *by[MAX_BY];
    size_t nby = 0;
    long long *responded = NULL; /* --by: per segment, then the total */
    struct report rp;
    struct ctl_job job;
    struct row total;
    struct row *rows = NULL;
    struct answers *ans = NULL;
    struct survey_cols sc;
    struct sql_job sj;
    struct ctl_db dbopt;
    struct cr_store *db = NULL;
    const char *doc;
    const char *what = "receipts";
    char key[CR_KEY_MAX];
    redisReply *h = NULL;
    const char *id;
    int from_audit = 0;
    size_t i;
    size_t s;
    int code;
    int c;

    memset(&rp, 0, sizeof(rp));
    memset(&sc, 0, sizeof(sc));
    memset(&sj, 0, sizeof(sj));
    memset(&dbopt, 0, sizeof(dbopt));
    for (;;) {
        c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, opts, NULL);
        if (c == -1)
            break;
        if (c == OPT_FROM_AUDIT) {
            from_audit = 1;
            continue;
        }
        if (c == OPT_BY && nby < MAX_BY) {
            by[nby++] = optarg;
            continue;
        }
        if (cr_ctl_db_opt(&dbopt, c, optarg))
            continue;
        code = cr_ctl_opt_other(ctl, c, optarg, help);
        if (code >= 0)
            return code;
    }
    code = cr_ctl_begin(ctl,
                        optind == argc - 1 && (!from_audit || cr_ctl_db_given(&dbopt)) &&
                            !(dbopt.config && dbopt.target),
                        help);
    if (code != 0)
        return code;
    id = argv[optind];
    code = cr_ctl_job_key(ctl, id, key, sizeof(key));
    if (code != 0)
        return code;
    if (!from_audit) {
        code = cr_ctl_job_hash(ctl, key, &h);
        if (code == CTL_EXIT_NOTFOUND && !cr_ctl_db_given(&dbopt))
            fprintf(stderr,
                    "crierctl report: no job '%s' in Redis (an expired job can be read from "
                    "the audit database: --config, --sqlite or --postgresql)\n",
                    id);
        if (code != 0 && !(code == CTL_EXIT_NOTFOUND && cr_ctl_db_given(&dbopt)))
            return code;
    }
    if (h) {
        cr_ctl_job_from_hash(h, &job);
        doc = cr_ctl_field(h, "doc");
    } else {
        /* the job as the audit database kept it */
        code = cr_ctl_db_open(ctl, &dbopt, &db);
        if (code == 0)
            code = sql_read_job(db, id, &sj);
        if (code == 0 && !sj.found) {
            fprintf(stderr, "crierctl report: no job '%s' in %sthe audit database\n", id,
                    from_audit ? "" : "Redis or ");
            code = CTL_EXIT_NOTFOUND;
        }
        if (code != 0)
            goto out;
        cr_ctl_job_from_fields(sj.nkv, (const char *const *)sj.kv, &job);
        doc = sj.doc;
        what = "messages in the audit database";
    }
    rp.segs = calloc(MAX_SEGS, sizeof(*rp.segs));
    code = CTL_EXIT_FAIL;
    if (rp.segs == NULL || doc == NULL || read_segments(&rp, doc) < 0) {
        if (doc == NULL)
            fprintf(stderr, "crierctl report: job %s has no stored document\n", id);
        goto out;
    }
    if (nby > 0) {
        for (i = 0; i < rp.nsegs; i++)
            free(rp.segs[i]);
        rp.nsegs = 0;
        code = cr_ctl_report_by_segments(ctl, by, nby, rp.segs, MAX_SEGS, &rp.nsegs);
        if (code != 0)
            goto out;
        code = CTL_EXIT_FAIL;
    }
    rows = calloc(rp.nsegs + 1, sizeof(*rows));
    ans = calloc(rp.nsegs + 1, sizeof(*ans));
    if (rows == NULL || ans == NULL) {
        fprintf(stderr, "crierctl report: out of memory\n");
        goto out;
    }
    code = read_survey(doc, &sc);
    if (code == 0 && db)
        code = sql_read_outcomes(db, &rp, id, &ans[rp.nsegs]);
    if (code == 0 && !db)
        code = read_receipts(ctl, &rp, id, job.created_ms);
    if (code == 0 && !db)
        code = resolve_orphans(ctl, &rp, id);
    if (code == 0 && db) {
        long long found = 0;

        if (nby > 0) {
            /* the audit database keeps membership of the job's own segments only */
            fprintf(stderr, "crierctl report: --by: segment membership from Redis's segment "
                            "sets (members now); messages and responses from the audit "
                            "database\n");
            code = read_membership(ctl, &rp);
        } else {
            code = sql_read_membership(db, &rp, id, &found);
        }
        if (code == 0 && nby == 0 && found == 0 && rp.nsegs > 0 && rp.nsubs > 0) {
            fprintf(stderr, "crierctl report: warning: the audit database has no segment "
                            "membership for job %s (stored by an older crier-audit); using "
                            "Redis's segment sets (members now)\n",
                    id);
            free(rp.member);
            rp.member = NULL;
            code = read_membership(ctl, &rp);
        }
    }
    if (code == 0 && !db)
        code = read_membership(ctl, &rp);
    if (code == 0 && !db)
        code = read_answers(ctl, &rp, &sc, key, h, ans);
    if (code == 0 && nby > 0)
        code = count_responded(ctl, db, &rp, id, doc, &responded);
    if (code != 0)
        goto out;
    memset(&total, 0, sizeof(total));
    for (i = 0; i < rp.nsubs; i++) {
        add_sub(&total, &rp.subs[i]);
        for (s = 0; s < rp.nsegs; s++)
            if (rp.member[i * rp.words + s / 64] & ((uint64_t)1 << (s % 64))) {
                add_sub(&rows[s], &rp.subs[i]);
                if (db)
                    add_answers(&ans[s], &rp.subs[i]);
            }
    }
    if (rp.unmatched > 0)
        fprintf(stderr,
                db ? "crierctl report: warning: %lld provider receipts of job %s in the audit "
                     "database name messages whose own receipt it never stored: not counted\n"
                   : "crierctl report: warning: %lld provider receipts of job %s name messages "
                     "whose own receipt was trimmed from the stream: not counted\n",
                rp.unmatched, id);
    if (!cr_ctl_job_finished(&job))
        fprintf(stderr, "crierctl report: job %s is %s: the figures are so far\n", id, job.state);
    else if (job.messages >= 0 && total.messages != job.messages)
        fprintf(stderr,
                "crierctl report: warning: %lld %s found for job %s, its counters say "
                "%lld messages (%s are not counted)\n",
                total.messages, what, id, job.messages,
                db ? "receipts crier-audit never stored" : "receipts trimmed from the stream");
    else
        warn_counters(id, &total, &job, what);
    fputs("segment", stdout);
    for (i = 0; i < NCOLUMNS; i++)
        printf(",%s", columns[i].name);
    put_engagement_header(&sc);
    if (responded)
        fputs(",responded", stdout);
    cr_ctl_steps_header(&job);
    putchar('\n');
    for (s = 0; s < rp.nsegs; s++)
        put_row(rp.segs[s], &rows[s], &sc, &ans[s], responded ? responded[s] : -1, &job,
                db || !job.confirm ? -1 : cr_ctl_confirmed_in(ctl, key, rp.segs[s]), 0);
    put_row("total", &total, &sc, &ans[rp.nsegs], responded ? responded[rp.nsegs] : -1, &job,
            job.confirmed, 1);
    code = CTL_EXIT_OK;
out:
    free(rows);
    free(ans);
    free(responded);
    if (h)
        freeReplyObject(h);
    sql_job_release(&sj);
    cr_store_close(db);
    release(&rp);
    return code;
}
