/* The pure parts of a durable record: WAIT coalescing and slot bookkeeping
 * (replicas.c), the acknowledgement's plan in the ledger's layout
 * (cr_fanout_plan), the Redis settings judgement (redischeck.c) and the
 * redis.wait_replicas / wait_timeout_ms config keys. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cr_error.h"
#include "fanout.h"
#include "redischeck.h"
#include "replicas.h"
#include "test.h"

/* ---- WAIT bookkeeping ---------------------------------------------------- */

struct freed {
    uint32_t per[4];
    uint32_t calls;
};

static void on_release(void *ud, size_t prov, uint32_t n)
{
    struct freed *f = ud;

    f->per[prov] += n;
    f->calls++;
}

TEST(replicas_one_wait_covers_what_was_written_before_it)
{
    struct freed f;
    struct cr_replicas *w = NULL;

    memset(&f, 0, sizeof(f));
    ASSERT_INT_EQ(cr_replicas_init(NULL, 3, 1, 1000, on_release, &f, &w), 0);
    ASSERT_INT_EQ(cr_replicas_take(w), 0); /* nothing written: no WAIT */
    cr_replicas_hold(w, 0);
    cr_replicas_hold(w, 0);
    cr_replicas_hold(w, 2);
    ASSERT_INT_EQ(cr_replicas_waiting(w), 3);
    ASSERT_INT_EQ(cr_replicas_take(w), 1); /* WAIT sent, covering those three */
    ASSERT_INT_EQ(cr_replicas_covered(w), 3);
    /* written while the WAIT is under way: the next WAIT's */
    cr_replicas_hold(w, 1);
    ASSERT_INT_EQ(cr_replicas_take(w), 0); /* one at a time */
    ASSERT_INT_EQ(f.per[0] + f.per[1] + f.per[2], 0);
    cr_replicas_answered(w, 1, 1000);
    ASSERT_INT_EQ(f.per[0], 2);
    ASSERT_INT_EQ(f.per[1], 0);
    ASSERT_INT_EQ(f.per[2], 1);
    ASSERT_INT_EQ(cr_replicas_covered(w), 0);
    ASSERT_INT_EQ(cr_replicas_waiting(w), 1);
    ASSERT_INT_EQ(cr_replicas_take(w), 1);
    cr_replicas_answered(w, 2, 1010);
    ASSERT_INT_EQ(f.per[1], 1);
    ASSERT_INT_EQ(cr_replicas_short_total(w), 0);
    ASSERT_INT_EQ(cr_replicas_degraded(w, NULL, 0), 0);
    cr_replicas_free(w);
}

TEST(replicas_shortfall_frees_slots_counts_and_degrades)
{
    struct freed f;
    struct cr_replicas *w = NULL;
    char why[256];

    memset(&f, 0, sizeof(f));
    ASSERT_INT_EQ(cr_replicas_init(NULL, 2, 1, 200, on_release, &f, &w), 0);
    cr_replicas_hold(w, 1);
    ASSERT_INT_EQ(cr_replicas_take(w), 1);
    cr_replicas_hold(w, 0); /* after the WAIT was sent */
    cr_replicas_answered(w, 0, 5000);
    /* the appeal goes on: covered and waiting slots are both freed */
    ASSERT_INT_EQ(f.per[1], 1);
    ASSERT_INT_EQ(f.per[0], 1);
    ASSERT_INT_EQ(cr_replicas_short_total(w), 1);
    ASSERT_INT_EQ(cr_replicas_degraded(w, why, sizeof(why)), 1);
    ASSERT_STR_CONTAINS(why, "0 of 1 replicas acknowledged within 200 ms");
    /* degraded: slots are freed at once, no WAIT */
    cr_replicas_hold(w, 0);
    ASSERT_INT_EQ(f.per[0], 2);
    ASSERT_INT_EQ(cr_replicas_take(w), 0);
    /* back in step: WAITs guard the slots again */
    cr_replicas_recovered(w, 6000);
    ASSERT_INT_EQ(cr_replicas_degraded(w, NULL, 0), 0);
    cr_replicas_hold(w, 0);
    ASSERT_INT_EQ(f.per[0], 2);
    ASSERT_INT_EQ(cr_replicas_take(w), 1);
    cr_replicas_answered(w, 1, 6100);
    ASSERT_INT_EQ(f.per[0], 3);
    ASSERT_INT_EQ(cr_replicas_short_total(w), 1);
    cr_replicas_free(w);
}

TEST(replicas_lost_connection_frees_without_a_shortfall)
{
    struct freed f;
    struct cr_replicas *w = NULL;

    memset(&f, 0, sizeof(f));
    ASSERT_INT_EQ(cr_replicas_init(NULL, 1, 2, 1000, on_release, &f, &w), 0);
    cr_replicas_hold(w, 0);
    cr_replicas_hold(w, 5); /* no such provider: ignored */
    ASSERT_INT_EQ(cr_replicas_take(w), 1);
    cr_replicas_answered(w, -1, 10);
    ASSERT_INT_EQ(f.per[0], 1);
    ASSERT_INT_EQ(cr_replicas_short_total(w), 0);
    ASSERT_INT_EQ(cr_replicas_degraded(w, NULL, 0), 0);
    cr_replicas_free(w);
}

/* ---- the acknowledgement's plan ------------------------------------------- */

TEST(plan_bits_in_the_ledger_layout)
{
    struct cr_sub subs[3];
    struct cr_batch b;
    unsigned char plan[8];
    uint64_t first = 99;
    size_t n;

    memset(&b, 0, sizeof(b));
    memset(subs, 0, sizeof(subs));
    b.kind = CR_BATCH_STREAM;
    b.subs = subs;
    b.nsubs = 3;
    b.pos0 = 5; /* the plan starts at position 5's byte, not at the ledger's start */
    subs[0].pos = 5;
    subs[0].plan = CR_CH_BIT(CR_CH_EMAIL) | CR_CH_BIT(CR_CH_PUSH);
    subs[1].pos = 6;
    subs[1].plan = CR_CH_BIT(CR_CH__COUNT); /* skipped */
    subs[2].pos = 7;
    subs[2].plan = CR_CH_BIT(CR_CH_SMS);
    n = cr_fanout_plan(&b, plan, sizeof(plan), &first);
    ASSERT_INT_EQ(n, 3);
    ASSERT_INT_EQ(first, 5); /* one byte per position */
    /* position 5: email (bit 40, MSB) and push (bit 42) */
    ASSERT_INT_EQ(plan[0], 0xA0);
    /* position 6: skipped = slot 4 (bit 52); position 7: sms = bit 57 */
    ASSERT_INT_EQ(plan[1], 0x08);
    ASSERT_INT_EQ(plan[2], 0x40);
    /* too small a buffer says how much is needed */
    ASSERT_INT_EQ(cr_fanout_plan(&b, plan, 1, &first), 3);
    /* nothing planned (all parked): no plan */
    subs[0].plan = subs[1].plan = subs[2].plan = 0;
    ASSERT_INT_EQ(cr_fanout_plan(&b, plan, sizeof(plan), &first), 0);
    /* retry batches have none */
    b.kind = CR_BATCH_RETRY;
    subs[0].plan = 1;
    ASSERT_INT_EQ(cr_fanout_plan(&b, plan, sizeof(plan), &first), 0);
}

/* ---- Redis settings ------------------------------------------------------- */

static void settings(struct cr_redis_settings *s, const char *aof, const char *fsync,
                     long min_replicas, long replicas)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->appendonly, sizeof(s->appendonly), "%s", aof);
    snprintf(s->appendfsync, sizeof(s->appendfsync), "%s", fsync);
    snprintf(s->role, sizeof(s->role), "master");
    s->min_replicas_to_write = min_replicas;
    s->min_replicas_max_lag = 10;
    s->connected_replicas = replicas;
}

TEST(redis_settings_judged)
{
    struct cr_redis_settings s;
    char out[1024];

    settings(&s, "yes", "always", 0, 0);
    ASSERT_INT_EQ(cr_redis_settings_judge(&s, 0, out, sizeof(out)), 0);
    ASSERT_STR_EQ(out, "");
    settings(&s, "yes", "everysec", 0, 0);
    ASSERT_INT_EQ(cr_redis_settings_judge(&s, 0, out, sizeof(out)), 1);
    ASSERT_STR_CONTAINS(out, "appendonly yes and appendfsync everysec");
    settings(&s, "no", "everysec", 0, 0);
    ASSERT_INT_EQ(cr_redis_settings_judge(&s, 0, out, sizeof(out)), 1);
    /* with replicas the node need not fsync every write */
    settings(&s, "no", "everysec", 1, 1);
    ASSERT_INT_EQ(cr_redis_settings_judge(&s, 1, out, sizeof(out)), 0);
    settings(&s, "yes", "everysec", 0, 1);
    ASSERT_INT_EQ(cr_redis_settings_judge(&s, 1, out, sizeof(out)), 1);
    ASSERT_STR_CONTAINS(out, "min-replicas-to-write is 0");
    settings(&s, "yes", "always", 1, 0);
    ASSERT_INT_EQ(cr_redis_settings_judge(&s, 1, out, sizeof(out)), 1);
    ASSERT_STR_CONTAINS(out, "0 replicas connected");
    settings(&s, "", "", -1, 0);
    s.config_refused = 1;
    snprintf(s.refusal, sizeof(s.refusal), "ERR unknown command 'CONFIG'");
    ASSERT_INT_EQ(cr_redis_settings_judge(&s, 0, out, sizeof(out)), 1);
    ASSERT_STR_CONTAINS(out, "could not be checked");
    ASSERT_STR_CONTAINS(out, "unknown command");
    /* a tiny buffer stays terminated */
    settings(&s, "no", "no", 0, 0);
    ASSERT_INT_EQ(cr_redis_settings_judge(&s, 0, out, 8), 1);
    ASSERT(strlen(out) < 8);
}

/* ---- config ---------------------------------------------------------------- */

static const char *const tail_ok =
    ", \"providers\": {\"m\": {\"type\": \"sendgrid\", \"url\": \"http://127.0.0.1:9\","
    " \"api_key\": \"k\", \"from_email\": \"a@b.test\"}}, \"channels\": {\"email\": [\"m\"]}}";

static int parse_redis(const char *redis, struct cr_config *cfg, char *err, size_t n)
{
    char text[1024];

    snprintf(text, sizeof(text), "{\"redis\": %s%s", redis, tail_ok);
    return cr_config_parse(text, strlen(text), cfg, err, n);
}

TEST(config_wait_replicas)
{
    struct cr_config cfg;
    char err[512];

    ASSERT_INT_EQ(parse_redis("{}", &cfg, err, sizeof(err)), 0);
    ASSERT_INT_EQ(cfg.redis_wait_replicas, cr_config_wait_replicas_auto(0));
    ASSERT_INT_EQ(cfg.redis_wait_replicas, 0);
    ASSERT_INT_EQ(cfg.redis_wait_timeout_ms, 1000);
    cr_config_release(&cfg);
    ASSERT_INT_EQ(cr_config_wait_replicas_auto(1), 1);
    ASSERT_INT_EQ(parse_redis("{\"wait_replicas\": \"auto\"}", &cfg, err, sizeof(err)), 0);
    ASSERT_INT_EQ(cfg.redis_wait_replicas, 0);
    cr_config_release(&cfg);
    ASSERT_INT_EQ(parse_redis("{\"wait_replicas\": 2, \"wait_timeout_ms\": 250}", &cfg, err,
                              sizeof(err)),
                  0);
    ASSERT_INT_EQ(cfg.redis_wait_replicas, 2);
    ASSERT_INT_EQ(cfg.redis_wait_timeout_ms, 250);
    cr_config_release(&cfg);
    ASSERT(parse_redis("{\"wait_replicas\": 17}", &cfg, err, sizeof(err)) != 0);
    ASSERT_STR_EQ(err, "redis.wait_replicas: must be a whole number from 0 to 16 or \"auto\", "
                       "got 17");
    ASSERT(parse_redis("{\"wait_replicas\": \"two\"}", &cfg, err, sizeof(err)) != 0);
    ASSERT_STR_CONTAINS(err, "redis.wait_replicas: must be a whole number");
    ASSERT(parse_redis("{\"wait_replicas\": 1, \"wait_timeout_ms\": 5000}", &cfg, err,
                       sizeof(err)) != 0);
    ASSERT_STR_CONTAINS(err, "redis.wait_timeout_ms: must be less than "
                             "redis.command_timeout_ms (5000), got 5000");
    /* not waiting: the timeout is not judged */
    ASSERT_INT_EQ(parse_redis("{\"wait_replicas\": 0, \"wait_timeout_ms\": 5000}", &cfg, err,
                              sizeof(err)),
                  0);
    cr_config_release(&cfg);
}
