/* Sentinel discovery's pure parts: Sentinel addresses, the +switch-master
 * payload, get-master-addr-by-name and SENTINEL sentinels replies, the order
 * Sentinels are asked in, and the redis.sentinel config section. */
#include "config.h"
#include "cr_error.h"
#include "sentinel.h"
#include "test.h"

#include <stdlib.h>

/* ---- replies built by hand --------------------------------------------- */

static redisReply *str_reply(const char *s)
{
    redisReply *r = calloc(1, sizeof(*r));

    r->type = REDIS_REPLY_STRING;
    r->str = strdup(s);
    r->len = strlen(s);
    return r;
}

static redisReply *arr_reply(size_t n, redisReply **items)
{
    redisReply *r = calloc(1, sizeof(*r));

    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof(redisReply *));
    for (size_t i = 0; i < n; i++)
        r->element[i] = items[i];
    return r;
}

static redisReply *addr_reply(const char *host, const char *port)
{
    redisReply *items[2] = {str_reply(host), str_reply(port)};

    return arr_reply(2, items);
}

TEST(sentinel_parse_node)
{
    struct cr_redis_addr a;

    ASSERT_INT_EQ(cr_sentinel_parse_node("127.0.0.1:26379", &a), 0);
    ASSERT_STR_EQ(a.host, "127.0.0.1");
    ASSERT_INT_EQ(a.port, 26379);
    ASSERT_INT_EQ(a.path[0], 0);
    ASSERT_INT_EQ(cr_sentinel_parse_node("sentinel-2.internal:1", &a), 0);
    ASSERT_STR_EQ(a.host, "sentinel-2.internal");
    ASSERT_INT_EQ(cr_sentinel_parse_node("[::1]:26380", &a), 0);
    ASSERT_STR_EQ(a.host, "::1");
    ASSERT_INT_EQ(a.port, 26380);

    ASSERT_INT_EQ(cr_sentinel_parse_node("127.0.0.1", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node("127.0.0.1:", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node(":26379", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node("host:0", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node("host:65536", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node("host:99999999999999999999", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node("host:26379x", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node("::1:26379", &a), CR_EINVAL); /* needs brackets */
    ASSERT_INT_EQ(cr_sentinel_parse_node("[::1]26379", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node("a b:26379", &a), CR_EINVAL);
    ASSERT_INT_EQ(cr_sentinel_parse_node("", &a), CR_EINVAL);
}

TEST(sentinel_format_addr)
{
    struct cr_redis_addr a = {.host = "10.0.0.7", .port = 6380};
    struct cr_redis_addr b = {.host = "fe80::1", .port = 6379};
    char buf[300];

    cr_sentinel_format_addr(&a, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "10.0.0.7:6380");
    cr_sentinel_format_addr(&b, buf, sizeof buf);
    ASSERT_STR_EQ(buf, "[fe80::1]:6379");
    ASSERT(cr_sentinel_same_addr(&a, &a));
    ASSERT(!cr_sentinel_same_addr(&a, &b));
}

TEST(sentinel_switch_master_for_our_master)
{
    const char *msg = "crier 127.0.0.1 6380 127.0.0.1 6381";
    struct cr_redis_addr from, to;

    ASSERT_INT_EQ(cr_sentinel_parse_switch(msg, strlen(msg), "crier", &from, &to), 0);
    ASSERT_STR_EQ(from.host, "127.0.0.1");
    ASSERT_INT_EQ(from.port, 6380);
    ASSERT_STR_EQ(to.host, "127.0.0.1");
    ASSERT_INT_EQ(to.port, 6381);
}

TEST(sentinel_switch_master_other_master_or_malformed)
{
    struct cr_redis_addr from = {.port = 1}, to = {.port = 2};
    const char *other = "cache 10.0.0.1 6379 10.0.0.2 6379";
    const char *prefix = "crier-2 10.0.0.1 6379 10.0.0.2 6379";
    static const char *const bad[] = {
        "crier 127.0.0.1 6380 127.0.0.1",            /* four fields */
        "crier 127.0.0.1 6380 127.0.0.1 6381 extra", /* six */
        "crier 127.0.0.1 6380 127.0.0.1 63a1",       /* port not a number */
        "crier 127.0.0.1 6380 127.0.0.1 0",          /* port out of range */
        "crier 127.0.0.1 6380 127.0.0.1 70000",
        "",
    };

    ASSERT_INT_EQ(cr_sentinel_parse_switch(other, strlen(other), "crier", &from, &to),
                  CR_ENOTFOUND);
    ASSERT_INT_EQ(cr_sentinel_parse_switch(prefix, strlen(prefix), "crier", &from, &to),
                  CR_ENOTFOUND);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_INT_EQ(cr_sentinel_parse_switch(bad[i], strlen(bad[i]), "crier", &from, &to),
                      CR_EPARSE);
    /* untouched on anything but a match */
    ASSERT_INT_EQ(from.port, 1);
    ASSERT_INT_EQ(to.port, 2);
    /* only len bytes are read: the payload is not NUL-terminated on the wire */
    ASSERT_INT_EQ(cr_sentinel_parse_switch("crier a 1 b 2XYZ", 13, "crier", &from, &to), 0);
    ASSERT_STR_EQ(to.host, "b");
    ASSERT_INT_EQ(to.port, 2);
}

TEST(sentinel_addr_reply)
{
    struct cr_redis_addr a;
    redisReply nil = {.type = REDIS_REPLY_NIL};
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = (char *)"NOAUTH", .len = 6};
    redisReply *ok = addr_reply("127.0.0.1", "6381");
    redisReply *badport = addr_reply("127.0.0.1", "x");
    redisReply *one = arr_reply(1, (redisReply *[]){str_reply("127.0.0.1")});

    ASSERT_INT_EQ(cr_sentinel_parse_addr_reply(ok, &a), 0);
    ASSERT_STR_EQ(a.host, "127.0.0.1");
    ASSERT_INT_EQ(a.port, 6381);
    ASSERT_INT_EQ(cr_sentinel_parse_addr_reply(&nil, &a), CR_ENOTFOUND);
    ASSERT_INT_EQ(cr_sentinel_parse_addr_reply(&err, &a), CR_EREDIS);
    ASSERT_INT_EQ(cr_sentinel_parse_addr_reply(badport, &a), CR_EPARSE);
    ASSERT_INT_EQ(cr_sentinel_parse_addr_reply(one, &a), CR_EPARSE);
    ASSERT_INT_EQ(cr_sentinel_parse_addr_reply(NULL, &a), CR_EPARSE);
    freeReplyObject(ok);
    freeReplyObject(badport);
    freeReplyObject(one);
}

TEST(sentinel_answering_sentinel_goes_first)
{
    struct cr_redis_addr l[4] = {
        {.host = "a", .port = 1}, {.host = "b", .port = 2}, {.host = "c", .port = 3},
        {.host = "d", .port = 4}};

    cr_sentinel_promote(l, 4, 2);
    ASSERT_STR_EQ(l[0].host, "c");
    ASSERT_STR_EQ(l[1].host, "a");
    ASSERT_STR_EQ(l[2].host, "b");
    ASSERT_STR_EQ(l[3].host, "d");
    cr_sentinel_promote(l, 4, 0); /* already first */
    ASSERT_STR_EQ(l[0].host, "c");
    cr_sentinel_promote(l, 4, 3);
    ASSERT_STR_EQ(l[0].host, "d");
    ASSERT_STR_EQ(l[1].host, "c");
    ASSERT_STR_EQ(l[3].host, "b");
    cr_sentinel_promote(l, 4, 9); /* out of range: nothing moves */
    ASSERT_STR_EQ(l[0].host, "d");
}

static redisReply *peer(const char *ip, const char *port)
{
    redisReply *items[6] = {str_reply("name"), str_reply("x"), str_reply("ip"),
                            str_reply(ip), str_reply("port"), str_reply(port)};

    return arr_reply(6, items);
}

TEST(sentinel_peers_learnt_once_up_to_cap)
{
    struct cr_redis_addr l[3] = {{.host = "127.0.0.1", .port = 26379}};
    size_t n = 1;
    redisReply *r = arr_reply(4, (redisReply *[]){peer("127.0.0.1", "26379"),
                                                  peer("127.0.0.1", "26380"),
                                                  peer("127.0.0.1", "bad"),
                                                  peer("127.0.0.1", "26381")});
    redisReply *more = arr_reply(1, (redisReply *[]){peer("127.0.0.1", "26382")});

    ASSERT_INT_EQ(cr_sentinel_merge_peers(r, l, &n, 3), 2);
    ASSERT_INT_EQ(n, 3);
    ASSERT_INT_EQ(l[1].port, 26380);
    ASSERT_INT_EQ(l[2].port, 26381);
    ASSERT_INT_EQ(cr_sentinel_merge_peers(more, l, &n, 3), 0); /* full */
    ASSERT_INT_EQ(n, 3);
    freeReplyObject(r);
    freeReplyObject(more);
}

/* ---- the config section ------------------------------------------------ */

#define PROVIDERS                                                                          \
    "\"providers\": {\"t\": {\"type\": \"twilio\", \"url\": \"http://127.0.0.1:9\", "      \
    "\"account_sid\": \"AC00000000000000000000000000000000\", \"auth_token\": \"x\", "     \
    "\"from\": \"+447700900000\"}}, \"channels\": {\"sms\": [\"t\"]}"

static const char *sentinel_err(const char *redis)
{
    static char err[512];
    char doc[2048];
    struct cr_config cfg;
    int rc;

    snprintf(doc, sizeof doc, "{\"redis\": %s, " PROVIDERS "}", redis);
    memset(&cfg, 0, sizeof cfg);
    rc = cr_config_parse(doc, strlen(doc), &cfg, err, sizeof err);
    if (rc == 0) {
        cr_config_release(&cfg);
        return "(accepted)";
    }
    return err;
}

TEST(sentinel_config_accepted)
{
    const char *doc = "{\"redis\": {\"sentinel\": {\"master\": \"crier\", \"nodes\": "
                      "[\"127.0.0.1:26379\", \"127.0.0.1:26380\"], \"username\": \"crier\", "
                      "\"password\": \"pw\", \"timeout_ms\": 300}, \"password\": \"data\"}, "
                      PROVIDERS "}";
    struct cr_config cfg;
    char err[256] = "";

    memset(&cfg, 0, sizeof cfg);
    ASSERT_INT_EQ(cr_config_parse(doc, strlen(doc), &cfg, err, sizeof err), 0);
    ASSERT_STR_EQ(cfg.redis_sentinel_master, "crier");
    ASSERT_INT_EQ(cfg.redis_sentinel_nnodes, 2);
    ASSERT_STR_EQ(cfg.redis_sentinel_nodes[1], "127.0.0.1:26380");
    ASSERT_STR_EQ(cfg.redis_sentinel_username, "crier");
    ASSERT_STR_EQ(cfg.redis_sentinel_password, "pw");
    ASSERT_INT_EQ(cfg.redis_sentinel_timeout_ms, 300);
    ASSERT_STR_EQ(cfg.redis_password, "data");
    cr_config_release(&cfg);

    memset(&cfg, 0, sizeof cfg);
    doc = "{" PROVIDERS "}";
    ASSERT_INT_EQ(cr_config_parse(doc, strlen(doc), &cfg, err, sizeof err), 0);
    ASSERT(cfg.redis_sentinel_master == NULL);
    ASSERT_INT_EQ(cfg.redis_sentinel_timeout_ms, 500);
    cr_config_release(&cfg);
}

TEST(sentinel_config_errors)
{
    ASSERT_STR_CONTAINS(
        sentinel_err("{\"host\": \"10.0.0.1\", \"sentinel\": {\"master\": \"crier\", \"nodes\": "
                     "[\"127.0.0.1:26379\"]}}"),
        "redis.sentinel: cannot be used together with redis.host, redis.port or redis.path");
    ASSERT_STR_CONTAINS(
        sentinel_err("{\"port\": 6380, \"sentinel\": {\"master\": \"crier\", \"nodes\": "
                     "[\"127.0.0.1:26379\"]}}"),
        "redis.sentinel: cannot be used together");
    ASSERT_STR_CONTAINS(sentinel_err("{\"sentinel\": {\"nodes\": [\"127.0.0.1:26379\"]}}"),
                        "redis.sentinel.master: is required");
    ASSERT_STR_EQ(sentinel_err("{\"sentinel\": {\"master\": \"\", \"nodes\": [\"a:1\"]}}"),
                  "redis.sentinel.master: must not be empty");
    ASSERT_STR_CONTAINS(sentinel_err("{\"sentinel\": {\"master\": \"crier\"}}"),
                        "redis.sentinel.nodes: is required");
    ASSERT_STR_EQ(sentinel_err("{\"sentinel\": {\"master\": \"crier\", \"nodes\": []}}"),
                  "redis.sentinel.nodes: must name at least one Sentinel");
    ASSERT_STR_CONTAINS(sentinel_err("{\"sentinel\": {\"master\": \"crier\", \"nodes\": "
                                     "\"127.0.0.1:26379\"}}"),
                        "redis.sentinel.nodes: must be an array");
    ASSERT_STR_CONTAINS(sentinel_err("{\"sentinel\": {\"master\": \"crier\", \"nodes\": "
                                     "[\"127.0.0.1:26379\", \"127.0.0.1\"]}}"),
                        "redis.sentinel.nodes[1]: must be \"host:port\"");
    ASSERT_STR_EQ(sentinel_err("{\"sentinel\": {\"master\": \"crier\", \"nodes\": "
                               "[\"a:1\", \"a:1\"]}}"),
                  "redis.sentinel.nodes[1]: names the same Sentinel as redis.sentinel.nodes[0]");
    ASSERT_STR_EQ(sentinel_err("{\"sentinel\": {\"master\": \"crier\", \"nodes\": [\"a:1\"], "
                               "\"mastr\": 1}}"),
                  "redis.sentinel.mastr: unknown key (did you mean 'master'?)");
    ASSERT_STR_EQ(sentinel_err("{\"sentinel\": {\"master\": \"crier\", \"nodes\": [\"a:1\"], "
                               "\"username\": \"u\"}}"),
                  "redis.sentinel.username: needs redis.sentinel.password as well");
    ASSERT_STR_EQ(sentinel_err("{\"sentinel\": [\"a:1\"]}"),
                  "redis.sentinel: must be an object, got an array");
    ASSERT_STR_EQ(sentinel_err("{\"sentinel\": {\"master\": \"crier\", \"nodes\": [\"a:1\"], "
                               "\"password\": \"$env:CRIER_TEST_UNSET_SENTINEL_PW\"}}"),
                  "redis.sentinel.password: environment variable CRIER_TEST_UNSET_SENTINEL_PW "
                  "is not set");
}
