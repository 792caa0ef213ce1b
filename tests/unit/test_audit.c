/* crier-audit's pure parts: the config file's checks and secrets, stream id
 * order (the trim floor), and the writer against an in-memory SQLite:
 * storing a batch twice changes nothing, a provider's receipt updates the
 * message, retention deletes in chunks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "audit_trim.h"
#include "conf.h"
#include "cr_error.h"
#include "store.h"
#include "test.h"

static int load_text(const char *text, struct cr_audit_config *cfg, char *err, size_t n)
{
    char path[] = "/tmp/crier-audit-conf-XXXXXX";
    int fd = mkstemp(path);
    int rc;

    if (fd < 0)
        return -1;
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        close(fd);
        unlink(path);
        return -1;
    }
    close(fd);
    memset(cfg, 0, sizeof(*cfg));
    rc = cr_audit_config_load(path, cfg, err, n);
    unlink(path);
    return rc;
}

TEST(audit_config_defaults_comments_and_secrets)
{
    struct cr_audit_config cfg;
    char err[256];

    setenv("CRIER_AUDIT_TEST_PG", "host=db user=crier", 1);
    ASSERT_INT_EQ(load_text("// comment\n{ /* block */ \"database\": {\"type\": \"postgresql\",\n"
                            " \"conninfo\": \"$env:CRIER_AUDIT_TEST_PG\"}, \"batch\": 10}",
                            &cfg, err, sizeof(err)),
                  0);
    ASSERT_INT_EQ(cfg.db_kind, CR_STORE_POSTGRESQL);
    ASSERT_STR_EQ(cfg.db_target, "host=db user=crier");
    ASSERT_INT_EQ(cfg.batch, 10);
    ASSERT_STR_EQ(cfg.group, "audit");
    ASSERT_STR_EQ(cfg.prefix, "crier:");
    ASSERT_INT_EQ(cfg.redis_port, 6379);
    ASSERT_INT_EQ(cfg.survey_min_cell, 10);
    cr_audit_config_release(&cfg);
}

TEST(audit_config_errors_name_the_key)
{
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"{\"bacth\": 5}", "bacth: unknown key"},
        {"{\"batch\": 0}", "batch: must be a whole number from 1 to 10000"},
        {"{\"database\": {\"type\": \"mysql\"}}", "database.type: must be"},
        {"{\"database\": {\"type\": \"postgresql\"}}", "database.conninfo: is required"},
        {"{\"database\": {\"conninfo\": \"x\"}}", "database.conninfo: is for"},
        {"{\"redis\": {\"password\": \"$env:CRIER_AUDIT_NOT_SET_ANYWHERE\"}}",
         "redis.password: environment variable CRIER_AUDIT_NOT_SET_ANYWHERE is not set"},
        {"{\"redis\": {\"password\": \"$nope\"}}", "redis.password: starts with '$'"},
        {"{\"redis\": {\"password\": \"$env:A-B\"}}",
         "redis.password: '$env:' needs a variable name of letters, digits and '_'"},
        {"{\"redis\": {\"port\": \"6379\"}}", "redis.port: must be a whole number"},
        {"{\"lookup_lang\": 1}", "lookup_lang: must be true or false"},
        {"{\"batch\": 5,}", "line 1: not valid JSON"},
        {"{\"survey\": {\"min_cell\": 0}}", "survey.min_cell: must be a whole number from 1"},
        {"{\"survey\": {\"min_cells\": 5}}", "survey.min_cells: unknown key"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_audit_config cfg;
        char err[256] = "";

        ASSERT_INT_EQ(load_text(cases[i].text, &cfg, err, sizeof(err)), CR_ECONFIG);
        ASSERT_STR_CONTAINS(err, cases[i].want);
        cr_audit_config_release(&cfg);
    }
}

TEST(audit_stream_id_order)
{
    ASSERT(cr_stream_id_cmp("1-0", "2-0") < 0);
    ASSERT(cr_stream_id_cmp("10-0", "9-5") > 0);
    ASSERT(cr_stream_id_cmp("5-2", "5-10") < 0);
    ASSERT_INT_EQ(cr_stream_id_cmp("1700000000000-3", "1700000000000-3"), 0);
    ASSERT(cr_stream_id_cmp("0-0", "1-0") < 0);
}

/* ---- the writer ------------------------------------------------------------- */

static void add(struct cr_audit_batch *b, enum cr_audit_stream s, const char *id,
                const char *const *kv)
{
    struct cr_audit_entry *e;
    size_t n = 0;
    size_t i;

    while (kv[n])
        n++;
    b->e[s] = realloc(b->e[s], (b->n[s] + 1) * sizeof(*b->e[s]));
    e = &b->e[s][b->n[s]++];
    memset(e, 0, sizeof(*e));
    e->id = strdup(id);
    e->nkv = n;
    e->kv = calloc(n, sizeof(*e->kv));
    for (i = 0; i < n; i++)
        e->kv[i] = strdup(kv[i]);
}

static int count_cb(void *ud, int ncols, const char *const *vals)
{
    char *out = ud;

    snprintf(out, 64, "%s", ncols > 0 && vals[0] ? vals[0] : "NULL");
    return 1;
}

static const char *one(struct cr_store *s, const char *sql, char *buf)
{
    snprintf(buf, 64, "?");
    if (cr_store_query(s, sql, 0, NULL, count_cb, buf) != 0)
        snprintf(buf, 64, "error: %s", cr_store_errmsg(s));
    return buf;
}

TEST(audit_store_is_idempotent_and_receipts_update)
{
    struct cr_store *s = NULL;
    struct cr_audit_batch b;
    char err[256];
    char buf[64];
    long deleted = 0;
    int version = -1;

    memset(&b, 0, sizeof(b));
    ASSERT_INT_EQ(cr_store_open(CR_STORE_SQLITE, ":memory:", &s, err, sizeof(err)), 0);
    ASSERT_INT_EQ(cr_audit_migrate(s), 0);
    ASSERT_INT_EQ(cr_audit_migrate(s), 0); /* a second start finds the schema */
    ASSERT_INT_EQ(cr_audit_schema_version(s, &version), 0);
    ASSERT_INT_EQ(version, CR_AUDIT_SCHEMA_VERSION);

    add(&b, CR_AS_RECEIPTS, "1000-0",
        (const char *const[]){"job",         "j1",  "sub",      "s1",     "pos",        "0",
                              "channel",     "sms", "provider", "twilio", "status",     "sent",
                              "attempt",     "1",   "code",     "201",    "latency_us", "900",
                              "provider_id", "SM1", NULL});
    add(&b, CR_AS_RECEIPTS, "1000-1",
        (const char *const[]){"job",         "j1",    "sub",      "s2",       "pos",        "1",
                              "channel",     "email", "provider", "sendgrid", "status",     "sent",
                              "attempt",     "1",     "code",     "202",      "latency_us", "900",
                              "provider_id", "",      NULL});
    add(&b, CR_AS_RECEIPTS, "2000-0",
        (const char *const[]){"job", "j1", "pos", "0", "channel", "sms", "provider", "twilio",
                              "status", "delivered", "code", "", "provider_id", "", "source",
                              "webhook", "t_ms", "2500", NULL});
    add(&b, CR_AS_REPLIES, "3000-0",
        (const char *const[]){"type", "survey", "channel", "sms", "job", "j1", "sub", "s1", "t_ms",
                              "3000", "body", "1", "option", "1", "counted", "1", NULL});
    add(&b, CR_AS_EVENTS, "900-0",
        (const char *const[]){"job", "j1", "event", "accepted", "t_ms", "900", NULL});
    b.jobs = calloc(1, sizeof(*b.jobs));
    b.njobs = 1;
    b.jobs[0].id = strdup("j1");
    ASSERT_INT_EQ(cr_audit_store(s, &b), 0);
    ASSERT_INT_EQ(cr_audit_store(s, &b), 0); /* read again after a crash: no change */
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM messages", buf), "2");
    ASSERT_STR_EQ(one(s, "SELECT status FROM messages WHERE pos = 0", buf), "delivered");
    ASSERT_STR_EQ(one(s, "SELECT delivered_ms FROM messages WHERE pos = 0", buf), "2500");
    ASSERT_STR_EQ(one(s, "SELECT provider_id FROM messages WHERE pos = 0", buf), "SM1");
    ASSERT_STR_EQ(one(s, "SELECT sent_ms FROM messages WHERE pos = 0", buf), "1000");
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM replies", buf), "1");
    ASSERT_STR_EQ(one(s, "SELECT option_no FROM survey_answers", buf), "1");
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM job_events", buf), "1");
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM jobs", buf), "1");

    /* retention: everything is older than 10,000 ms; chunks of one row */
    ASSERT_INT_EQ(cr_audit_retain(s, 10000, 1, &deleted), 0);
    ASSERT_INT_EQ(deleted, 5); /* one row of each table */
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM messages", buf), "1");
    ASSERT_INT_EQ(cr_audit_retain(s, 10000, 100, &deleted), 0);
    ASSERT_INT_EQ(deleted, 1);
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM messages", buf), "0");
    ASSERT_INT_EQ(cr_audit_retain(s, 10000, 100, &deleted), 0);
    ASSERT_INT_EQ(deleted, 0);
    cr_audit_batch_clear(&b);
    cr_store_close(s);
}

TEST(audit_store_parameters_out_of_order)
{
    struct cr_store *s = NULL;
    const char *p[2] = {"a", "b"};
    char err[256];
    char buf[64];

    ASSERT_INT_EQ(cr_store_open(CR_STORE_SQLITE, ":memory:", &s, err, sizeof(err)), 0);
    ASSERT_INT_EQ(cr_store_exec(s, "CREATE TABLE t (x TEXT, y TEXT)", 0, NULL), 0);
    ASSERT_INT_EQ(cr_store_exec(s, "INSERT INTO t (x, y) VALUES ($2, $1)", 2, p), 0);
    ASSERT_STR_EQ(one(s, "SELECT x || y FROM t", buf), "ba");
    ASSERT_INT_EQ(cr_store_exec(s, "INSERT INTO t (x, y) VALUES ($1, $1)", 2, p), 0);
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM t WHERE x = 'a' AND y = 'a'", buf), "1");
    cr_store_close(s);
}

/* Multi-question survey answers: the last answer per resident and question
 * wins, within a batch and across batches (an older entry read again
 * changes nothing; sequence numbers compare as numbers), a free text taken
 * back is NULL, and the job of the first answer of the wave is kept. */
TEST(audit_store_wave_answers_last_wins)
{
    struct cr_store *s = NULL;
    struct cr_audit_batch b, old;
    char err[256];
    char buf[64];

    memset(&b, 0, sizeof(b));
    memset(&old, 0, sizeof(old));
    ASSERT_INT_EQ(cr_store_open(CR_STORE_SQLITE, ":memory:", &s, err, sizeof(err)), 0);
    ASSERT_INT_EQ(cr_audit_migrate(s), 0);
    add(&b, CR_AS_REPLIES, "1000-9",
        (const char *const[]){"type", "survey", "channel", "link", "job", "w1", "sub", "r1",
                              "survey", "yv", "wave", "2026-11", "answers", "safe=2,trust=3",
                              "changed", "2", "text", "Parking", "t_ms", "1000", NULL});
    add(&b, CR_AS_REPLIES, "1000-10",
        (const char *const[]){"type", "survey", "channel", "sms", "job", "w2", "sub", "r1",
                              "survey", "yv", "wave", "2026-11", "answers", "safe=4", "changed",
                              "1", "text_cleared", "1", "t_ms", "1000", NULL});
    add(&b, CR_AS_REPLIES, "1001-0",
        (const char *const[]){"type", "survey", "channel", "link", "job", "w1", "sub", "r2",
                              "survey", "yv", "wave", "2026-11", "answers", "safe=1", "changed",
                              "1", "t_ms", "1001", NULL});
    add(&b, CR_AS_REPLIES, "1002-0", /* what is not question=step is left out */
        (const char *const[]){"type", "survey", "channel", "link", "job", "w1", "sub", "r3",
                              "survey", "yv", "wave", "2026-11", "answers",
                              "safe=x,=2,informed,trust=5,good=12345", "t_ms", "1002", NULL});
    add(&old, CR_AS_REPLIES, "1000-9",
        (const char *const[]){"type", "survey", "channel", "link", "job", "w1", "sub", "r1",
                              "survey", "yv", "wave", "2026-11", "answers", "safe=2,trust=3",
                              "changed", "2", "text", "Parking", "t_ms", "1000", NULL});
    ASSERT_INT_EQ(cr_audit_store(s, &b), 0);
    ASSERT_INT_EQ(cr_audit_store(s, &b), 0);   /* read again after a crash */
    ASSERT_INT_EQ(cr_audit_store(s, &old), 0); /* alone: older than what is kept */
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM wave_answers", buf), "4");
    ASSERT_STR_EQ(one(s, "SELECT question || step FROM wave_answers WHERE sub = 'r3'", buf),
                  "trust5");
    ASSERT_STR_EQ(one(s, "SELECT step FROM wave_answers WHERE sub = 'r1' AND question = 'safe'",
                      buf),
                  "4");
    ASSERT_STR_EQ(one(s, "SELECT job FROM wave_answers WHERE sub = 'r1' AND question = 'safe'",
                      buf),
                  "w2");
    ASSERT_STR_EQ(one(s, "SELECT step FROM wave_answers WHERE sub = 'r1' AND question = 'trust'",
                      buf),
                  "3");
    ASSERT_STR_EQ(one(s, "SELECT step FROM wave_answers WHERE sub = 'r2'", buf), "1");
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM wave_texts", buf), "1");
    ASSERT_STR_EQ(one(s, "SELECT answer FROM wave_texts", buf), "NULL");
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM wave_respondents", buf), "3");
    ASSERT_STR_EQ(one(s, "SELECT job FROM wave_respondents WHERE sub = 'r1'", buf), "w1");
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM replies", buf), "4");
    ASSERT_STR_EQ(one(s, "SELECT count(*) FROM survey_answers", buf), "0");
    cr_audit_batch_clear(&b);
    cr_audit_batch_clear(&old);
    cr_store_close(s);
}

/* messages.lang is the language the message went out in: the resident's
 * translation only where it makes that channel's whole message. */
TEST(audit_store_lang_is_the_language_sent)
{
    static const char doc[] =
        "{\"id\": \"j2\", \"audience\": {\"segments\": [\"a\"]}, "
        "\"channels\": [\"email\", \"sms\", \"push\"], "
        "\"message\": {\"lang\": \"en\", \"subject\": \"S\", \"text\": \"T\", \"sms\": \"M\", "
        "\"push\": {\"title\": \"P\", \"body\": \"B\"}, "
        "\"translations\": {\"pl\": {\"sms\": \"Mpl\"}, "
        "\"pt\": {\"push\": {\"title\": \"Ppt\", \"body\": \"Bpt\"}}}}}";
    static const struct {
        const char *pos, *channel, *lang, *want;
    } cases[] = {
        {"0", "sms", "pl", "pl"},     /* the translation has sms */
        {"1", "email", "pl", "en"},   /* it has no subject or text */
        {"2", "push", "pt-BR", "pt"}, /* the language without the region */
        {"3", "sms", "", "en"},       /* no lang: the default */
        {"4", "email", NULL, "NULL"}, /* not looked up: not known */
        {"5", "", "pl", "NULL"},      /* skipped: no message */
    };
    struct cr_store *s = NULL;
    struct cr_audit_batch b;
    char err[256];
    char buf[64];
    char sql[128];
    size_t i;

    memset(&b, 0, sizeof(b));
    ASSERT_INT_EQ(cr_store_open(CR_STORE_SQLITE, ":memory:", &s, err, sizeof(err)), 0);
    ASSERT_INT_EQ(cr_audit_migrate(s), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char id[16];

        snprintf(id, sizeof(id), "100-%zu", i);
        add(&b, CR_AS_RECEIPTS, id,
            (const char *const[]){"job", "j2", "sub", "s", "pos", cases[i].pos, "channel",
                                  cases[i].channel, "status",
                                  cases[i].channel[0] ? "sent" : "skipped", NULL});
        b.e[CR_AS_RECEIPTS][i].lang = cases[i].lang ? strdup(cases[i].lang) : NULL;
    }
    b.jobs = calloc(1, sizeof(*b.jobs));
    b.njobs = 1;
    b.jobs[0].id = strdup("j2");
    b.jobs[0].nkv = 2;
    b.jobs[0].kv = calloc(2, sizeof(char *));
    b.jobs[0].kv[0] = strdup("doc");
    b.jobs[0].kv[1] = strdup(doc);
    ASSERT_INT_EQ(cr_audit_store(s, &b), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(sql, sizeof(sql), "SELECT lang FROM messages WHERE pos = %s", cases[i].pos);
        ASSERT_STR_EQ(one(s, sql, buf), cases[i].want);
    }
    cr_audit_batch_clear(&b);
    cr_store_close(s);
}
