/* Config parsing: defaults, comments, secret references, and the exact key
 * path and wording of every kind of mistake an operator can make. Most cases
 * run against fake adapters so that adapter errors are predictable; the
 * shipped example config is loaded with the real ones. */
#include "config.h"
#include "tokens.h"
#include "cr_error.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

/* ---- fake adapters ------------------------------------------------------ */

static const char *const fake_keys[] = {"api_key", "from", NULL};

static int fake_init(const cJSON *cfg, const char *base_url, const char *path, void **state,
                     char *err, size_t errlen)
{
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(cfg, "api_key");
    char *s;

    (void)base_url;
    *state = NULL;
    if (!cJSON_IsString(key)) {
        snprintf(err, errlen, "%s.api_key: missing", path);
        return CR_ECONFIG;
    }
    if (strcmp(key->valuestring, "bad") == 0) {
        snprintf(err, errlen, "%s.api_key: is not a key this provider issues", path);
        return CR_ECONFIG;
    }
    s = strdup(key->valuestring); /* a real allocation, so leaks show under ASan */
    if (s == NULL)
        return CR_ENOMEM;
    *state = s;
    return 0;
}

static void fake_free(void *state)
{
    free(state);
}

static const struct cr_provider_ops fake_email = {
    "fake-email", CR_CH_EMAIL, NULL, 1000, fake_keys, fake_init, fake_free, NULL, NULL, NULL, NULL, 0};
static const struct cr_provider_ops fake_sms = {
    "fake-sms", CR_CH_SMS, NULL, 1, fake_keys, fake_init, fake_free, NULL, NULL, NULL, NULL, 0};
static const struct cr_provider_ops fake_push = {
    "fake-push", CR_CH_PUSH, "fcm", 1, fake_keys, fake_init, fake_free, NULL, NULL, NULL, NULL, 0};
static const struct cr_provider_ops *const fakes[] = {&fake_email, &fake_sms, &fake_push, NULL};

/* ---- helpers ------------------------------------------------------------ */

/* Test configs are written with ' for " to stay readable. */
static char *dq(const char *s)
{
    char *out = strdup(s);
    size_t i;

    for (i = 0; out != NULL && out[i] != '\0'; i++) {
        if (out[i] == '\'')
            out[i] = '"';
    }
    return out;
}

static int parse(const char *text, struct cr_config *cfg, char *err, size_t errlen)
{
    char *json = dq(text);
    int rc = cr_config_parse_with(json, strlen(json), fakes, cfg, err, errlen);

    free(json);
    return rc;
}

/* The error a config gives, or "(accepted)". Also checks that a failed parse
 * leaves nothing behind in cfg. */
static const char *err_of(const char *text)
{
    static char err[512];
    struct cr_config cfg;
    int rc = parse(text, &cfg, err, sizeof err);

    if (rc == 0) {
        cr_config_release(&cfg);
        return "(accepted)";
    }
    if (rc != CR_ECONFIG)
        return "(wrong return code)";
    if (cfg.root != NULL || cfg.nproviders != 0 || cfg.redis_host != NULL)
        return "(cfg not empty after failure)";
    return err;
}

/* A temporary file holding data (written as given); its name goes into path.
 * Returns 0 or -1. */
static int temp_file(char *path, size_t n, const void *data, size_t len)
{
    const char *dir = getenv("TMPDIR");
    int fd;
    ssize_t w;

    snprintf(path, n, "%s/crier-test-XXXXXX", dir != NULL && dir[0] != '\0' ? dir : P_tmpdir);
    fd = mkstemp(path);
    if (fd < 0)
        return -1;
    w = write(fd, data, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

#define PROVIDERS                                                                              \
    "'providers': {'mail': {'type': 'fake-email', 'url': 'http://127.0.0.1:9/', 'api_key': 'k'}," \
    " 'text': {'type': 'fake-sms', 'url': 'http://127.0.0.1:9', 'api_key': 'k'}}"
#define CHANNELS "'channels': {'email': ['mail']}"
#define OK_TAIL PROVIDERS ", " CHANNELS

/* ---- accepted configs --------------------------------------------------- */

TEST(config_minimal_gets_defaults)
{
    struct cr_config cfg;
    char err[256] = "";
    char host[256];

    ASSERT_INT_EQ(parse("{" OK_TAIL "}", &cfg, err, sizeof err), 0);
    ASSERT_STR_EQ(err, "");
    ASSERT_STR_EQ(cfg.redis_host, "127.0.0.1");
    ASSERT_INT_EQ(cfg.redis_port, 6379);
    ASSERT(cfg.redis_password == NULL);
    ASSERT_STR_EQ(cfg.prefix, "crier:");
    ASSERT_INT_EQ(cfg.redis_connect_timeout_ms, 2000);
    ASSERT_INT_EQ(cfg.redis_command_timeout_ms, 5000);
    ASSERT_INT_EQ(cfg.redis_reconnect_max_ms, 5000);
    ASSERT_INT_EQ(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';
    ASSERT_STR_EQ(cfg.consumer, host[0] ? host : "crierd");
    ASSERT_STR_EQ(cfg.group, "crierd");
    ASSERT_INT_EQ(cfg.intake_block_ms, 1000);
    ASSERT_INT_EQ(cfg.intake_max_jobs, 16);
    ASSERT_INT_EQ(cfg.batch_size, 500);
    ASSERT_INT_EQ(cfg.max_batches, 8);
    ASSERT_INT_EQ(cfg.reclaim_idle_ms, 60000);
    ASSERT_INT_EQ(cfg.retry_max_attempts, 5);
    ASSERT_INT_EQ(cfg.retry_base_ms, 500);
    ASSERT_INT_EQ(cfg.retry_max_ms, 30000);
    ASSERT_INT_EQ(cfg.receipts_maxlen, 1000000);
    ASSERT_INT_EQ(cfg.retention_s, 604800);
    ASSERT_STR_EQ(cfg.log_level, "info");
    ASSERT_STR_EQ(cfg.public_url, "http://127.0.0.1");
    ASSERT_INT_EQ(cfg.limits.doc_bytes, 262144);
    ASSERT_INT_EQ(cfg.limits.depth, 8);
    ASSERT_INT_EQ(cfg.limits.sms_segments, 6);
    ASSERT_INT_EQ(cfg.limits.tags, 32);

    ASSERT_INT_EQ(cfg.nproviders, 2);
    ASSERT_STR_EQ(cfg.providers[0].name, "mail");
    ASSERT_STR_EQ(cfg.providers[0].url, "http://127.0.0.1:9"); /* trailing slash gone */
    ASSERT(cfg.providers[0].ops == &fake_email);
    ASSERT_INT_EQ(cfg.providers[0].max_inflight, 64);
    ASSERT_INT_EQ(cfg.providers[0].max_unrecorded, 4 * 64);
    ASSERT_INT_EQ(cfg.providers[0].timeout_ms, 10000);
    ASSERT_INT_EQ(cfg.providers[0].connect_timeout_ms, 2000);
    ASSERT(cfg.providers[0].ca_file == NULL);
    ASSERT_STR_EQ(cfg.providers[0].state, "k");
    ASSERT_INT_EQ(cfg.nchannel_providers[CR_CH_EMAIL], 1);
    ASSERT_INT_EQ(cfg.channel_providers[CR_CH_EMAIL][0], 0);
    ASSERT_INT_EQ(cfg.nchannel_providers[CR_CH_SMS], 0);
    ASSERT(cr_config_provider(&cfg, "text") == &cfg.providers[1]);
    ASSERT(cr_config_provider(&cfg, "nope") == NULL);
    ASSERT(cfg.root != NULL);
    cr_config_release(&cfg);
    ASSERT(cfg.root == NULL);
    cr_config_release(&cfg); /* twice is harmless */
}

TEST(config_every_key_set)
{
    struct cr_config cfg;
    char err[256] = "";

    ASSERT_INT_EQ(parse("{'redis': {'host': 'redis.internal', 'port': 6380, 'password': 'pw',"
                        " 'prefix': 'c2:', 'connect_timeout_ms': 100, 'command_timeout_ms': 3000,"
                        " 'reconnect_max_ms': 900},"
                        " 'consumer': 'node-1', 'group': 'g', 'intake': {'block_ms': 200, 'max_jobs': 4},"
                        " 'fanout': {'batch_size': 1000, 'max_batches': 2, 'reclaim_idle_ms': 90000},"
                        " 'retry': {'max_attempts': 9, 'base_ms': 100, 'max_ms': 80000},"
                        " 'receipts': {'maxlen': 5000}, 'retention_s': 3600, 'log_level': 'debug',"
                        " 'public_url': 'https://alerts.example.org//',"
                        " 'limits': {'doc_bytes': 4096, 'sms_segments': 3, 'subscribers': 0},"
                        " 'providers': {'a': {'type': 'fake-sms', 'url': 'https://x.example', 'api_key': 'k',"
                        "   'max_inflight': 5, 'max_unrecorded': 7, 'timeout_ms': 500,"
                        "   'connect_timeout_ms': 400},"
                        "  'b': {'type': 'fake-sms', 'url': 'https://y.example', 'api_key': 'k2'},"
                        "  'p': {'type': 'fake-push', 'url': 'https://z.example', 'api_key': 'k3'}},"
                        " 'channels': {'sms': ['b', 'a'], 'push': ['p']}}",
                        &cfg, err, sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.redis_host, "redis.internal");
    ASSERT_INT_EQ(cfg.redis_port, 6380);
    ASSERT_STR_EQ(cfg.redis_password, "pw");
    ASSERT_STR_EQ(cfg.prefix, "c2:");
    ASSERT_INT_EQ(cfg.redis_reconnect_max_ms, 900);
    ASSERT_STR_EQ(cfg.consumer, "node-1");
    ASSERT_STR_EQ(cfg.group, "g");
    ASSERT_INT_EQ(cfg.intake_block_ms, 200);
    ASSERT_INT_EQ(cfg.batch_size, 1000);
    ASSERT_INT_EQ(cfg.reclaim_idle_ms, 90000);
    ASSERT_INT_EQ(cfg.retry_max_attempts, 9);
    ASSERT_INT_EQ(cfg.retry_max_ms, 80000);
    ASSERT_INT_EQ(cfg.receipts_maxlen, 5000);
    ASSERT_INT_EQ(cfg.retention_s, 3600);
    ASSERT_STR_EQ(cfg.log_level, "debug");
    ASSERT_STR_EQ(cfg.public_url, "https://alerts.example.org");
    ASSERT_INT_EQ(cfg.limits.doc_bytes, 4096);
    ASSERT_INT_EQ(cfg.limits.sms_segments, 3);
    ASSERT_INT_EQ(cfg.limits.subscribers, 0);
    ASSERT_INT_EQ(cfg.limits.text, 20000);
    ASSERT_INT_EQ(cfg.providers[0].max_inflight, 5);
    ASSERT_INT_EQ(cfg.providers[0].max_unrecorded, 7);
    ASSERT_INT_EQ(cfg.providers[1].max_unrecorded, 4 * 64); /* one message per request */
    ASSERT_INT_EQ(cfg.providers[0].connect_timeout_ms, 400);
    ASSERT_INT_EQ(cfg.nchannel_providers[CR_CH_SMS], 2);
    ASSERT_INT_EQ(cfg.channel_providers[CR_CH_SMS][0], 1); /* failover order as written */
    ASSERT_INT_EQ(cfg.channel_providers[CR_CH_SMS][1], 0);
    ASSERT_INT_EQ(cfg.nchannel_providers[CR_CH_PUSH], 1);
    ASSERT_INT_EQ(cfg.channel_providers[CR_CH_PUSH][0], 2);
    cr_config_release(&cfg);
}

TEST(config_comments_accepted)
{
    static const char text[] =
        "// crierd config\n"
        "{\n"
        "  /* block\n     comment */ 'redis': { 'port': 6390 }, // trailing\n"
        "  'public_url': 'https://a.example/x//y', /* a // inside a comment */\n"
        "  'group': 'g/*not-a-comment*/',\n" OK_TAIL "\n}\n// end";
    struct cr_config cfg;
    char err[256] = "";

    ASSERT_INT_EQ(parse(text, &cfg, err, sizeof err), 0);
    ASSERT_INT_EQ(cfg.redis_port, 6390);
    ASSERT_STR_EQ(cfg.public_url, "https://a.example/x//y"); /* // in strings is kept */
    ASSERT_STR_EQ(cfg.group, "g/*not-a-comment*/");
    cr_config_release(&cfg);
}

/* ---- syntax ------------------------------------------------------------- */

TEST(config_bad_json_names_line_and_column)
{
    ASSERT_STR_EQ(err_of("{\n  // a comment\n  'redis': {\n    'port' 6379\n  }\n}"),
                  "line 4, column 12: invalid JSON near '6379'");
    ASSERT_STR_EQ(err_of("{ /* one */ /* two */ 'a': tru }"),
                  "line 1, column 28: invalid JSON near 'tru }'");
    ASSERT_STR_EQ(err_of("{\n'redis': {\n"), "line 3, column 1: invalid JSON: unexpected end of file");
    ASSERT_STR_EQ(err_of(""), "line 1, column 1: invalid JSON: unexpected end of file");
    ASSERT_STR_EQ(err_of("{\n  'group': 'g',\n  'consumer':\n}"),
                  "line 4, column 1: invalid JSON near '}'");
    ASSERT_STR_EQ(err_of("{'a': [1,\n  ]}"), "line 2, column 3: invalid JSON near ']}'");
}

TEST(config_tokens_split_by_space_or_comment_are_errors)
{
    /* A minifier would join these into 6379 and true. */
    ASSERT_STR_EQ(err_of("{'redis': {'port': 63 79}}"), "line 1, column 23: invalid JSON near '79}}'");
    ASSERT_STR_EQ(err_of("{'a': tr/**/ue}"), "line 1, column 7: invalid JSON near 'tr    ue}'");
}

TEST(config_unclosed_comment)
{
    ASSERT_STR_EQ(err_of("{\n 'a': 1 /* never\n closed }"),
                  "line 2, column 9: comment is never closed with */");
}

TEST(config_not_an_object)
{
    ASSERT_STR_EQ(err_of("[1, 2]"), "the config must be a JSON object, got an array");
}

TEST(config_nul_byte)
{
    struct cr_config cfg;
    char err[256];

    ASSERT_INT_EQ(cr_config_parse_with("{\n }\0 x", 6, fakes, &cfg, err, sizeof err), CR_ECONFIG);
    ASSERT_STR_EQ(err, "line 2, column 3: NUL byte in the config");
}

/* ---- keys and types ----------------------------------------------------- */

TEST(config_unknown_key_with_hint)
{
    ASSERT_STR_EQ(err_of("{'redis': {'prot': 6379}, " OK_TAIL "}"),
                  "redis.prot: unknown key (did you mean 'port'?)");
    ASSERT_STR_EQ(err_of("{'fanuot': {}, " OK_TAIL "}"),
                  "fanuot: unknown key (did you mean 'fanout'?)");
    ASSERT_STR_EQ(err_of("{'limits': {'sms_segment': 2}, " OK_TAIL "}"),
                  "limits.sms_segment: unknown key (did you mean 'sms_segments'?)");
}

TEST(config_unknown_key_without_hint)
{
    ASSERT_STR_EQ(err_of("{'redis': {'colour': 'red'}, " OK_TAIL "}"), "redis.colour: unknown key");
}

TEST(config_duplicate_key)
{
    ASSERT_STR_EQ(err_of("{'redis': {'port': 1, 'port': 2}, " OK_TAIL "}"),
                  "redis.port: key appears twice");
}

TEST(config_wrong_types)
{
    ASSERT_STR_EQ(err_of("{'redis': {'port': '6379'}, " OK_TAIL "}"),
                  "redis.port: must be an integer from 1 to 65535, got a string");
    ASSERT_STR_EQ(err_of("{'redis': 6379, " OK_TAIL "}"), "redis: must be an object, got a number");
    ASSERT_STR_EQ(err_of("{'redis': {'host': 7}, " OK_TAIL "}"),
                  "redis.host: must be a string, got a number");
    ASSERT_STR_EQ(err_of("{'redis': {'password': false}, " OK_TAIL "}"),
                  "redis.password: must be a string or null, got a boolean");
    ASSERT_STR_EQ(err_of("{'retry': {'base_ms': 1.5}, " OK_TAIL "}"),
                  "retry.base_ms: must be an integer from 1 to 3600000, got 1.5");
    ASSERT_STR_EQ(err_of("{'consumer': null, " OK_TAIL "}"), "consumer: must be a string, got null");
}

/* ---- ranges and values -------------------------------------------------- */

TEST(config_ranges)
{
    ASSERT_STR_EQ(err_of("{'fanout': {'batch_size': 0}, " OK_TAIL "}"),
                  "fanout.batch_size: must be an integer from 1 to 10000, got 0");
    ASSERT_STR_EQ(err_of("{'fanout': {'max_batches': 2000}, " OK_TAIL "}"),
                  "fanout.max_batches: must be an integer from 1 to 1024, got 2000");
    ASSERT_STR_EQ(err_of("{'redis': {'port': 70000}, " OK_TAIL "}"),
                  "redis.port: must be an integer from 1 to 65535, got 70000");
    ASSERT_STR_EQ(err_of("{'redis': {'command_timeout_ms': -5}, " OK_TAIL "}"),
                  "redis.command_timeout_ms: must be an integer from 1 to 300000, got -5");
    ASSERT_STR_EQ(err_of("{'retry': {'max_attempts': 0}, " OK_TAIL "}"),
                  "retry.max_attempts: must be an integer from 1 to 100, got 0");
    ASSERT_STR_EQ(err_of("{'retention_s': 1e300, " OK_TAIL "}"),
                  "retention_s: must be an integer from 60 to 315360000, got 1e+300");
}

TEST(config_retry_base_over_max)
{
    ASSERT_STR_EQ(err_of("{'retry': {'base_ms': 4000, 'max_ms': 3000}, " OK_TAIL "}"),
                  "retry.base_ms: must not exceed retry.max_ms (3000), got 4000");
}

TEST(config_retry_must_be_shorter_than_reclaim)
{
    ASSERT_STR_EQ(err_of("{'retry': {'max_ms': 60000}, " OK_TAIL "}"),
                  "retry.max_ms: must be less than fanout.reclaim_idle_ms (60000), got 60000: a "
                  "retry delay longer than the reclaim idle time lets another crierd reclaim the "
                  "batch and send it again");
}

TEST(config_block_must_be_shorter_than_command_timeout)
{
    ASSERT_STR_EQ(err_of("{'intake': {'block_ms': 5000}, " OK_TAIL "}"),
                  "intake.block_ms: must be less than redis.command_timeout_ms (5000), got 5000: "
                  "a blocking read longer than the command timeout would be cut off as a Redis "
                  "failure");
}

TEST(config_prefix)
{
    ASSERT_STR_EQ(err_of("{'redis': {'prefix': ''}, " OK_TAIL "}"), "redis.prefix: must not be empty");
    ASSERT_STR_EQ(err_of("{'redis': {'prefix': 'my app:'}, " OK_TAIL "}"),
                  "redis.prefix: must not contain spaces or control characters");
    ASSERT_STR_EQ(
        err_of("{'redis': {'prefix': '0123456789012345678901234567890123456789012345678901234567890123'}, " OK_TAIL "}"),
        "redis.prefix: must be at most 63 bytes, got 64");
}

TEST(config_log_level)
{
    ASSERT_STR_EQ(err_of("{'log_level': 'verbose', " OK_TAIL "}"),
                  "log_level: must be one of error, warn, info, debug, got 'verbose'");
}

TEST(config_log_format_and_repeat_window)
{
    struct cr_config cfg;
    char err[512];

    ASSERT_STR_EQ(err_of("{'log_format': 'syslog', " OK_TAIL "}"),
                  "log_format: must be one of auto, text, journal, json, got 'syslog'");
    ASSERT_STR_EQ(err_of("{'log_repeat_s': 3601, " OK_TAIL "}"),
                  "log_repeat_s: must be an integer from 0 to 3600, got 3601");
    ASSERT_INT_EQ(parse("{" OK_TAIL "}", &cfg, err, sizeof err), 0);
    ASSERT_STR_EQ(cfg.log_format, "auto");
    ASSERT_INT_EQ(cfg.log_repeat_s, 10);
    cr_config_release(&cfg);
    ASSERT_INT_EQ(parse("{'log_format': 'json', 'log_repeat_s': 0, " OK_TAIL "}", &cfg, err,
                        sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.log_format, "json");
    ASSERT_INT_EQ(cfg.log_repeat_s, 0);
    cr_config_release(&cfg);
}

TEST(config_urls)
{
    ASSERT_STR_EQ(err_of("{'public_url': 'ftp://x', " OK_TAIL "}"),
                  "public_url: must start with http:// or https://");
    ASSERT_STR_EQ(err_of("{'public_url': 'https://', " OK_TAIL "}"),
                  "public_url: must name a host after https://");
    ASSERT_STR_EQ(err_of("{'providers': {'twilio': {'type': 'fake-sms', 'url': 'api.twilio.com',"
                         " 'api_key': 'k'}}, 'channels': {'sms': ['twilio']}}"),
                  "providers.twilio.url: must start with http:// or https://");
    ASSERT_STR_EQ(err_of("{'providers': {'t': {'type': 'fake-sms', 'api_key': 'k'}},"
                         " 'channels': {'sms': ['t']}}"),
                  "providers.t.url: missing; it is the provider's base URL, e.g. "
                  "https://api.example.com");
}

/* ---- providers and channels --------------------------------------------- */

TEST(config_providers_and_channels_required)
{
    ASSERT_STR_EQ(err_of("{" CHANNELS "}"), "providers: missing; configure at least one provider");
    ASSERT_STR_EQ(err_of("{'providers': {}, " CHANNELS "}"),
                  "providers: must configure at least one provider");
    ASSERT_STR_EQ(err_of("{" PROVIDERS "}"),
                  "channels: missing; list the providers of at least one of email, sms, push, whatsapp");
    ASSERT_STR_EQ(err_of("{" PROVIDERS ", 'channels': {}}"),
                  "channels: must list the providers of at least one of email, sms, push, whatsapp");
    ASSERT_STR_EQ(err_of("{" PROVIDERS ", 'channels': {'sms': []}}"),
                  "channels.sms: must list 1 to 4 provider names, got 0");
    ASSERT_STR_EQ(err_of("{" PROVIDERS ", 'channels': {'fax': ['mail']}}"),
                  "channels.fax: unknown key");
}

TEST(config_unknown_provider_type)
{
    ASSERT_STR_EQ(err_of("{'providers': {'x': {'type': 'fake-smss', 'url': 'http://h'}}, " CHANNELS "}"),
                  "providers.x.type: unknown provider type 'fake-smss' (did you mean 'fake-sms'?)");
    ASSERT_STR_EQ(err_of("{'providers': {'x': {'type': 'carrier-pigeon', 'url': 'http://h'}}, " CHANNELS "}"),
                  "providers.x.type: unknown provider type 'carrier-pigeon'; known types: "
                  "fake-email, fake-sms, fake-push");
    ASSERT_STR_EQ(err_of("{'providers': {'x': {'url': 'http://h'}}, " CHANNELS "}"),
                  "providers.x.type: missing; it names the provider adapter (e.g. \"twilio\")");
}

TEST(config_provider_keys_include_adapter_keys)
{
    ASSERT_STR_EQ(err_of("{'providers': {'m': {'type': 'fake-email', 'url': 'http://h', 'api_key': 'k',"
                         " 'fron': 'a@b'}}, 'channels': {'email': ['m']}}"),
                  "providers.m.fron: unknown key (did you mean 'from'?)");
    ASSERT_STR_EQ(err_of("{'providers': {'m': {'type': 'fake-email', 'url': 'http://h', 'api_key': 'k',"
                         " 'max_inflight': 0}}, 'channels': {'email': ['m']}}"),
                  "providers.m.max_inflight: must be an integer from 1 to 10000, got 0");
    ASSERT_STR_EQ(err_of("{'providers': {'m': {'type': 'fake-email', 'url': 'http://h', 'api_key': 'k',"
                         " 'max_inflight': 10, 'max_unrecorded': 9}}, 'channels': {'email': ['m']}}"),
                  "providers.m.max_unrecorded: must be at least max_inflight (10), got 9");
    ASSERT_STR_EQ(err_of("{'providers': {'m m': {'type': 'fake-email', 'url': 'http://h'}},"
                         " 'channels': {'email': ['m']}}"),
                  "providers.m m: a provider name must be 1 to 32 letters, digits, '-' or '_'");
    ASSERT_STR_EQ(err_of("{'providers': {'m': {'type': 'fake-email', 'url': 'http://h', 'api_key': 'k',"
                         " 'ca_file': '/nonexistent/ca.pem'}}, 'channels': {'email': ['m']}}"),
                  "providers.m.ca_file: cannot read /nonexistent/ca.pem: No such file or directory");
}

TEST(config_adapter_init_error_surfaces_with_path)
{
    ASSERT_STR_EQ(err_of("{'providers': {'mail': {'type': 'fake-email', 'url': 'http://h'}}, " CHANNELS "}"),
                  "providers.mail.api_key: missing");
    ASSERT_STR_EQ(err_of("{'providers': {'ok': {'type': 'fake-email', 'url': 'http://h', 'api_key': 'k'},"
                         " 'mail': {'type': 'fake-email', 'url': 'http://h', 'api_key': 'bad'}}, " CHANNELS "}"),
                  "providers.mail.api_key: is not a key this provider issues");
}

TEST(config_channel_provider_mismatch)
{
    ASSERT_STR_EQ(err_of("{" PROVIDERS ", 'channels': {'sms': ['mail']}}"),
                  "channels.sms[0]: provider 'mail' sends email, not sms");
    ASSERT_STR_EQ(err_of("{" PROVIDERS ", 'channels': {'sms': ['text', 'txet']}}"),
                  "channels.sms[1]: no provider called 'txet' (did you mean 'text'?)");
    ASSERT_STR_EQ(err_of("{" PROVIDERS ", 'channels': {'sms': ['sendgrid']}}"),
                  "channels.sms[0]: no provider called 'sendgrid' under providers");
    ASSERT_STR_EQ(err_of("{" PROVIDERS ", 'channels': {'sms': ['text', 'text']}}"),
                  "channels.sms[1]: provider 'text' is listed twice");
    ASSERT_STR_EQ(err_of("{" PROVIDERS ", 'channels': {'sms': 'text'}}"),
                  "channels.sms: must be an array of provider names, got a string");
}

/* ---- secrets ------------------------------------------------------------ */

TEST(config_env_secret)
{
    struct cr_config cfg;
    char err[256] = "";

    /* Longer than the reference it replaces, so the string is reallocated. */
    setenv("CRIER_TEST_REDIS_PW", "s3cret-longer-than-the-reference-text", 1);
    ASSERT_INT_EQ(parse("{'redis': {'password': '$env:CRIER_TEST_REDIS_PW'}, " OK_TAIL "}", &cfg, err,
                        sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.redis_password, "s3cret-longer-than-the-reference-text");
    cr_config_release(&cfg);
    unsetenv("CRIER_TEST_REDIS_PW");
}

TEST(config_missing_env_var)
{
    unsetenv("TWILIO_TOKEN");
    ASSERT_STR_EQ(err_of("{'providers': {'twilio': {'type': 'fake-sms', 'url': 'http://h',"
                         " 'api_key': '$env:TWILIO_TOKEN'}}, 'channels': {'sms': ['twilio']}}"),
                  "providers.twilio.api_key: environment variable TWILIO_TOKEN is not set");
    ASSERT_STR_EQ(err_of("{'group': '$env:', " OK_TAIL "}"),
                  "group: '$env:' needs a variable name of letters, digits and '_'");
}

TEST(config_file_secret)
{
    struct cr_config cfg;
    char path[512];
    char err[256] = "";
    char text[1024];

    ASSERT_INT_EQ(temp_file(path, sizeof path, "tok en\n", 7), 0);
    snprintf(text, sizeof text, "{'redis': {'password': '$file:%s'}, " OK_TAIL "}", path);
    ASSERT_INT_EQ(parse(text, &cfg, err, sizeof err), 0);
    ASSERT_STR_EQ(cfg.redis_password, "tok en"); /* one trailing newline removed */
    cr_config_release(&cfg);
    unlink(path);
}

TEST(config_unreadable_file_secret)
{
    ASSERT_STR_EQ(err_of("{'redis': {'password': '$file:/nonexistent/crier/pw'}, " OK_TAIL "}"),
                  "redis.password: cannot read /nonexistent/crier/pw: No such file or directory");
    ASSERT_STR_EQ(err_of("{'redis': {'password': '$file:/'}, " OK_TAIL "}"),
                  "redis.password: cannot read /: Is a directory");
}

TEST(config_file_secret_over_cap)
{
    static char big[64 * 1024 + 1];
    char path[512];
    char text[1024], expect[1024];

    memset(big, 'a', sizeof big);
    ASSERT_INT_EQ(temp_file(path, sizeof path, big, sizeof big), 0);
    snprintf(text, sizeof text, "{'redis': {'password': '$file:%s'}, " OK_TAIL "}", path);
    snprintf(expect, sizeof expect, "redis.password: %s is larger than 65536 bytes", path);
    ASSERT_STR_EQ(err_of(text), expect);
    unlink(path);
}

TEST(config_dollar_escape_and_unknown_reference)
{
    struct cr_config cfg;
    char err[256] = "";

    ASSERT_INT_EQ(parse("{'redis': {'password': '$$env:NOT_A_REF'}, 'group': '$$', " OK_TAIL "}", &cfg,
                        err, sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.redis_password, "$env:NOT_A_REF");
    ASSERT_STR_EQ(cfg.group, "$");
    cr_config_release(&cfg);
    ASSERT_STR_EQ(err_of("{'redis': {'password': '$ENV:X'}, " OK_TAIL "}"),
                  "redis.password: starts with '$' but is not $env:NAME or $file:/path (write $$ "
                  "for a literal $)");
}

TEST(config_secrets_resolved_in_arrays_and_providers)
{
    struct cr_config cfg;
    char err[256] = "";

    setenv("CRIER_TEST_KEY", "from-env", 1);
    setenv("CRIER_TEST_CHANNEL", "mail", 1);
    ASSERT_INT_EQ(parse("{'providers': {'mail': {'type': 'fake-email', 'url': 'http://h',"
                        " 'api_key': '$env:CRIER_TEST_KEY'}},"
                        " 'channels': {'email': ['$env:CRIER_TEST_CHANNEL']}}",
                        &cfg, err, sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.providers[0].state, "from-env");
    ASSERT_INT_EQ(cfg.nchannel_providers[CR_CH_EMAIL], 1);
    cr_config_release(&cfg);
    unsetenv("CRIER_TEST_CHANNEL");
    ASSERT_STR_EQ(err_of("{'providers': {'mail': {'type': 'fake-email', 'url': 'http://h',"
                         " 'api_key': 'k'}}, 'channels': {'email': ['$env:CRIER_TEST_CHANNEL']}}"),
                  "channels.email[0]: environment variable CRIER_TEST_CHANNEL is not set");
    unsetenv("CRIER_TEST_KEY");
}

/* ---- files -------------------------------------------------------------- */

TEST(config_load_missing_file)
{
    struct cr_config cfg;
    char err[256];

    ASSERT_INT_EQ(cr_config_load("/nonexistent/crierd.json", &cfg, err, sizeof err), CR_ECONFIG);
    ASSERT_STR_EQ(err, "/nonexistent/crierd.json: No such file or directory");
    ASSERT(cfg.root == NULL);
}

TEST(config_release_zeroed)
{
    struct cr_config cfg;

    memset(&cfg, 0, sizeof cfg);
    cr_config_release(&cfg);
    cr_config_release(NULL);
    ASSERT(cfg.root == NULL);
}

/* The operator's reference must itself be a valid config for the real adapters.
 * Its Twilio token is read from the systemd credential path; the test splices
 * in a temporary file instead. */
TEST(config_example_loads)
{
    static const char marker[] = "/run/credentials/crierd.service/twilio_auth_token";
    struct cr_config cfg;
    char err[512] = "";
    char cred[512];
    char *text, *spliced;
    const char *at;
    size_t len, head;
    FILE *f;
    long size;
    int rc;

    f = fopen("config/crierd.example.json", "rb");
    ASSERT(f != NULL);
    ASSERT_INT_EQ(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    rewind(f);
    text = calloc(1, (size_t)size + 1);
    spliced = calloc(1, (size_t)size + sizeof cred + 1);
    if (text != NULL && fread(text, 1, (size_t)size, f) != (size_t)size)
        size = -1;
    fclose(f);
    at = text != NULL ? strstr(text, marker) : NULL;
    if (at == NULL || spliced == NULL || size < 0) {
        free(text);
        free(spliced);
        ASSERT(!"example unreadable or without the twilio credential path");
    }
    if (temp_file(cred, sizeof cred, "twilio-token\n", 13) != 0) {
        free(text);
        free(spliced);
        ASSERT(!"cannot make a temporary credential file");
    }
    head = (size_t)(at - text);
    memcpy(spliced, text, head);
    memcpy(spliced + head, cred, strlen(cred));
    len = head + strlen(cred);
    memcpy(spliced + len, at + strlen(marker), (size_t)size - head - strlen(marker));
    len += (size_t)size - head - strlen(marker);
    free(text);

    setenv("SENDGRID_API_KEY", "SG.test", 1);
    setenv("FCM_ACCESS_TOKEN", "ya29.test", 1);
    setenv("CRIER_DASH_COMMS", "comms-token-0123456789", 1);
    setenv("CRIER_DASH_OPS", "ops-token-0123456789", 1);
    setenv("CRIER_KEY_WEB", "web-key-secret-0123456789", 1);
    rc = cr_config_parse(spliced, len, &cfg, err, sizeof err);
    free(spliced);
    unlink(cred);
    unsetenv("SENDGRID_API_KEY");
    unsetenv("FCM_ACCESS_TOKEN");
    unsetenv("CRIER_DASH_COMMS");
    unsetenv("CRIER_DASH_OPS");
    unsetenv("CRIER_KEY_WEB");
    if (rc != 0)
        fprintf(stderr, "  example: %s\n", err);
    ASSERT_INT_EQ(rc, 0);
    ASSERT(cfg.redis_password == NULL);
    ASSERT_STR_EQ(cfg.prefix, "crier:");
    ASSERT_INT_EQ(cfg.batch_size, 500);
    ASSERT(cr_config_provider(&cfg, "sendgrid") != NULL);
    ASSERT(cr_config_provider(&cfg, "twilio") != NULL);
    ASSERT(cr_config_provider(&cfg, "fcm") != NULL);
    ASSERT_INT_EQ(cfg.nchannel_providers[CR_CH_EMAIL], 1);
    ASSERT_INT_EQ(cfg.nchannel_providers[CR_CH_SMS], 1);
    ASSERT_INT_EQ(cfg.nchannel_providers[CR_CH_PUSH], 1);
    ASSERT(cfg.dashboard != NULL && cfg.dashboard->ntokens == 2);
    cr_config_release(&cfg);
}

/* ---- the HTTP side: listener, webhooks, links ---------------------------- */

TEST(config_http_side_defaults_and_values)
{
    struct cr_config cfg;
    char err[256] = "";

    ASSERT_INT_EQ(parse("{" OK_TAIL ", 'public_url': 'https://a.example/'}", &cfg, err, sizeof err), 0);
    ASSERT(cfg.http_listen == NULL);
    ASSERT_INT_EQ(cfg.http_max_connections, 1024);
    ASSERT_INT_EQ(cfg.http_max_header_bytes, 16384);
    ASSERT_INT_EQ(cfg.http_max_headers, 64);
    ASSERT_INT_EQ(cfg.http_max_body_bytes, 1048576);
    ASSERT_INT_EQ(cfg.http_idle_timeout_ms, 30000);
    ASSERT_INT_EQ(cfg.http_read_timeout_ms, 10000);
    ASSERT_STR_EQ(cfg.webhooks_public_url, "https://a.example"); /* from public_url */
    ASSERT(cfg.webhooks_sendgrid_public_key == NULL);
    ASSERT(cfg.webhooks_generic_secret == NULL);
    ASSERT_INT_EQ(cfg.webhooks_window_s, 300);
    ASSERT(cfg.links_secret == NULL);
    ASSERT_INT_EQ(cfg.links_ttl_days, 90);
    cr_config_release(&cfg);

    ASSERT_INT_EQ(parse("{" OK_TAIL ", 'http': {'listen': '127.0.0.1:0', 'max_connections': 3,"
                        " 'max_body_bytes': 2048, 'read_timeout_ms': 50},"
                        " 'webhooks': {'public_url': 'https://hooks.example/', 'generic_secret': 'g',"
                        "  'window_s': 60, 'sendgrid_public_key': 'MFkw'},"
                        " 'links': {'secret': '0123456789abcdef', 'ttl_days': 7}}",
                        &cfg, err, sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.http_listen, "127.0.0.1:0");
    ASSERT_INT_EQ(cfg.http_max_connections, 3);
    ASSERT_INT_EQ(cfg.http_max_body_bytes, 2048);
    ASSERT_INT_EQ(cfg.http_read_timeout_ms, 50);
    ASSERT_STR_EQ(cfg.webhooks_public_url, "https://hooks.example");
    ASSERT_STR_EQ(cfg.webhooks_generic_secret, "g");
    ASSERT_STR_EQ(cfg.webhooks_sendgrid_public_key, "MFkw");
    ASSERT_INT_EQ(cfg.webhooks_window_s, 60);
    ASSERT_STR_EQ(cfg.links_secret, "0123456789abcdef");
    ASSERT_INT_EQ(cfg.links_ttl_days, 7);
    cr_config_release(&cfg);
}

TEST(config_http_side_errors)
{
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'http': {'listen': 'localhost'}}"),
                  "http.listen: must be host:port (e.g. 127.0.0.1:8080), got 'localhost'");
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'http': {'listen': '127.0.0.1:99999'}}"),
                  "http.listen: must be host:port (e.g. 127.0.0.1:8080), got '127.0.0.1:99999'");
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'http': {'max_bodybytes': 5}}"),
                  "http.max_bodybytes: unknown key (did you mean 'max_body_bytes'?)");
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'http': {'max_connections': 0}}"),
                  "http.max_connections: must be an integer from 1 to 100000, got 0");
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'webhooks': {'public_url': 'ftp://x'}}"),
                  "webhooks.public_url: must start with http:// or https://");
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'links': {'secret': 'short'}}"),
                  "links.secret: must be at least 16 bytes, got 5");
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'links': {'ttl_days': 0}}"),
                  "links.ttl_days: must be an integer from 1 to 3650, got 0");
}

TEST(config_links_need_https)
{
    struct cr_config cfg;
    char err[512] = "";

    /* RFC 8058 section 3.1: one-click unsubscribe only over HTTPS. */
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'links': {'secret': '0123456789abcdef'}}"),
                  "public_url: must be https:// when links.secret is set: one-click unsubscribe "
                  "links (List-Unsubscribe-Post) must be HTTPS (RFC 8058 section 3.1); for tests "
                  "and demos only, set links.allow_insecure_http to true");
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'public_url': 'http://alerts.example',"
                         " 'links': {'secret': '0123456789abcdef'}}"),
                  "public_url: must be https:// when links.secret is set: one-click unsubscribe "
                  "links (List-Unsubscribe-Post) must be HTTPS (RFC 8058 section 3.1); for tests "
                  "and demos only, set links.allow_insecure_http to true");
    /* The links are made from webhooks.public_url when it is given. */
    ASSERT_STR_CONTAINS(err_of("{" OK_TAIL ", 'public_url': 'https://alerts.example',"
                               " 'webhooks': {'public_url': 'http://hooks.example'},"
                               " 'links': {'secret': '0123456789abcdef'}}"),
                        "webhooks.public_url: must be https:// when links.secret is set");
    ASSERT_STR_EQ(err_of("{" OK_TAIL ", 'links': {'allow_insecure_http': 'yes'}}"),
                  "links.allow_insecure_http: must be true or false, got a string");

    ASSERT_INT_EQ(parse("{" OK_TAIL ", 'public_url': 'HTTPS://alerts.example',"
                        " 'links': {'secret': '0123456789abcdef'}}", &cfg, err, sizeof err), 0);
    cr_config_release(&cfg);
    ASSERT_INT_EQ(parse("{" OK_TAIL ", 'links': {'secret': '0123456789abcdef',"
                        " 'allow_insecure_http': true}}", &cfg, err, sizeof err), 0);
    ASSERT_STR_EQ(cfg.webhooks_public_url, "http://127.0.0.1");
    cr_config_release(&cfg);
    /* http:// without links is fine: nothing one-click is made from it. */
    ASSERT_INT_EQ(parse("{" OK_TAIL ", 'public_url': 'http://alerts.example'}", &cfg, err,
                        sizeof err), 0);
    cr_config_release(&cfg);
}

/* ---- workers ------------------------------------------------------------ */

TEST(config_workers)
{
    struct cr_config cfg;
    char err[512];
    unsigned cores = uv_available_parallelism();

    ASSERT_INT_EQ(parse("{" OK_TAIL "}", &cfg, err, sizeof err), 0);
    ASSERT_INT_EQ(cfg.workers, 1);
    cr_config_release(&cfg);
    ASSERT_INT_EQ(parse("{'workers': 3, " OK_TAIL "}", &cfg, err, sizeof err), 0);
    ASSERT_INT_EQ(cfg.workers, 3);
    cr_config_release(&cfg);
    ASSERT_INT_EQ(parse("{'workers': 'auto', " OK_TAIL "}", &cfg, err, sizeof err), 0);
    ASSERT_INT_EQ(cfg.workers, cores > CR_WORKERS_MAX ? CR_WORKERS_MAX : (int)cores);
    cr_config_release(&cfg);
    ASSERT_STR_EQ(err_of("{'workers': 0, " OK_TAIL "}"),
                  "workers: must be a whole number from 1 to 64 or \"auto\", got 0");
    ASSERT_STR_EQ(err_of("{'workers': 65, " OK_TAIL "}"),
                  "workers: must be a whole number from 1 to 64 or \"auto\", got 65");
    ASSERT_STR_EQ(err_of("{'workers': 1.5, " OK_TAIL "}"),
                  "workers: must be a whole number from 1 to 64 or \"auto\", got 1.5");
    ASSERT_STR_EQ(err_of("{'workers': 'many', " OK_TAIL "}"),
                  "workers: must be a whole number from 1 to 64 or \"auto\", got a string");
}

/* Each worker's share: the shares add up to what the provider allows, each
 * worker has its own consumer name and its own listener port. */
TEST(config_for_worker_shares)
{
    static const char text[] =
        "{'workers': 3, 'consumer': 'node-a', 'http': {'listen': '127.0.0.1:9100'},"
        " 'providers': {'mail': {'type': 'fake-email', 'url': 'http://127.0.0.1:9',"
        " 'api_key': 'k', 'max_inflight': 64}, 'text': {'type': 'fake-sms',"
        " 'url': 'http://127.0.0.1:9', 'api_key': 'k', 'max_inflight': 2,"
        " 'max_unrecorded': 7}}, " CHANNELS "}";
    static const int inflight[3][2] = {{22, 1}, {21, 1}, {21, 1}};
    static const int unrecorded[3][2] = {{86, 3}, {85, 2}, {85, 2}};
    static const char *const names[3] = {"node-a-0", "node-a-1", "node-a-2"};
    static const char *const listens[3] = {"127.0.0.1:9100", "127.0.0.1:9101", "127.0.0.1:9102"};
    int sum_inflight = 0, sum_unrecorded = 0;
    int i;

    for (i = 0; i < 3; i++) {
        struct cr_config cfg;
        char err[256] = "";

        ASSERT_INT_EQ(parse(text, &cfg, err, sizeof err), 0);
        ASSERT_INT_EQ(cr_config_for_worker(&cfg, i, 3, err, sizeof err), 0);
        ASSERT_INT_EQ(cfg.workers, 1);
        ASSERT_INT_EQ(cfg.worker_index, i);
        ASSERT_STR_EQ(cfg.consumer, names[i]);
        ASSERT_STR_EQ(cfg.http_listen, listens[i]);
        ASSERT_INT_EQ(cfg.providers[0].max_inflight, inflight[i][0]);
        ASSERT_INT_EQ(cfg.providers[1].max_inflight, inflight[i][1]);
        ASSERT_INT_EQ(cfg.providers[0].max_unrecorded, unrecorded[i][0]);
        ASSERT_INT_EQ(cfg.providers[1].max_unrecorded, unrecorded[i][1]);
        sum_inflight += cfg.providers[0].max_inflight;
        sum_unrecorded += cfg.providers[0].max_unrecorded;
        cr_config_release(&cfg);
    }
    ASSERT_INT_EQ(sum_inflight, 64);
    ASSERT_INT_EQ(sum_unrecorded, 256);
}

TEST(config_for_worker_errors)
{
    struct cr_config cfg;
    char err[256] = "";

    ASSERT_INT_EQ(parse("{'http': {'listen': '127.0.0.1:65535'}, 'workers': 2, " OK_TAIL "}",
                        &cfg, err, sizeof err),
                  0);
    ASSERT_INT_EQ(cr_config_for_worker(&cfg, 2, 2, err, sizeof err), CR_EINVAL);
    ASSERT_STR_EQ(err, "worker 2 of 2 does not exist");
    ASSERT_INT_EQ(cr_config_for_worker(&cfg, 1, 2, err, sizeof err), CR_EINVAL);
    ASSERT_STR_EQ(err, "http.listen: port 65535 + worker 1 is over 65535");
    /* a refused share leaves the config as it was */
    ASSERT_INT_EQ(cfg.workers, 2);
    ASSERT_STR_EQ(cfg.http_listen, "127.0.0.1:65535");
    ASSERT_INT_EQ(cr_config_for_worker(&cfg, 0, 2, err, sizeof err), 0);
    ASSERT_STR_EQ(cfg.http_listen, "127.0.0.1:65535");
    cr_config_release(&cfg);
    /* port 0 (any free port) stays 0 for every worker */
    ASSERT_INT_EQ(parse("{'http': {'listen': '[::1]:0'}, 'workers': 2, " OK_TAIL "}", &cfg, err,
                        sizeof err),
                  0);
    ASSERT_INT_EQ(cr_config_for_worker(&cfg, 1, 2, err, sizeof err), 0);
    ASSERT_STR_EQ(cfg.http_listen, "[::1]:0");
    cr_config_release(&cfg);
}

/* ---- how crierd reaches Redis -------------------------------------------- */

TEST(config_redis_unix_socket_user_and_tls)
{
    struct cr_config cfg;
    char err[256] = "";

    ASSERT_INT_EQ(parse("{'redis': {'path': '/run/redis/redis.sock', 'username': 'crier',"
                        " 'password': 'pw', 'tls': true}, " OK_TAIL "}",
                        &cfg, err, sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.redis_path, "/run/redis/redis.sock");
    ASSERT_STR_EQ(cfg.redis_username, "crier");
    ASSERT_STR_EQ(cfg.redis_password, "pw");
    ASSERT_INT_EQ(cfg.redis_tls.enabled, 1);
    ASSERT(cfg.redis_tls.ca_file == NULL);
    cr_config_release(&cfg);

    ASSERT_INT_EQ(parse("{'redis': {'tls': {'server_name': 'redis.internal'}}, " OK_TAIL "}", &cfg,
                        err, sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.redis_tls.server_name, "redis.internal");
    ASSERT(cfg.redis_path == NULL);
    cr_config_release(&cfg);
    ASSERT_STR_EQ(err_of("{'redis': {'tls': false}, " OK_TAIL "}"), "(accepted)");

    /* the ACL user is a secret reference like the password */
    setenv("CRIER_TEST_REDIS_USER", "crier-acl", 1);
    ASSERT_INT_EQ(parse("{'redis': {'username': '$env:CRIER_TEST_REDIS_USER', 'password': 'p'}, "
                        OK_TAIL "}",
                        &cfg, err, sizeof err),
                  0);
    ASSERT_STR_EQ(cfg.redis_username, "crier-acl");
    cr_config_release(&cfg);
    unsetenv("CRIER_TEST_REDIS_USER");
}

TEST(config_redis_connection_mistakes)
{
    ASSERT_STR_EQ(err_of("{'redis': {'path': '/tmp/r.sock', 'port': 6380}, " OK_TAIL "}"),
                  "redis.path: a unix socket replaces host and port: give one or the other");
    ASSERT_STR_EQ(err_of("{'redis': {'username': 'crier'}, " OK_TAIL "}"),
                  "redis.username: needs redis.password (AUTH takes both)");
    ASSERT_STR_EQ(err_of("{'redis': {'tls': 'yes'}, " OK_TAIL "}"),
                  "redis.tls: must be an object (ca_file, cert_file, key_file, server_name), "
                  "true or false, got a string");
    ASSERT_STR_EQ(err_of("{'redis': {'tls': {'ca_flie': '/x'}}, " OK_TAIL "}"),
                  "redis.tls.ca_flie: unknown key (did you mean 'ca_file'?)");
    ASSERT_STR_EQ(err_of("{'redis': {'tls': {'ca_file': '/nonexistent/ca.pem'}}, " OK_TAIL "}"),
                  "redis.tls.ca_file: cannot read /nonexistent/ca.pem: No such file or directory");
}

TEST(config_redis_tls_files_must_load)
{
    char path[512];
    char text[2048];
    const char *e;

    ASSERT_INT_EQ(temp_file(path, sizeof path, "not a certificate\n", 18), 0);
    snprintf(text, sizeof text, "{'redis': {'tls': {'ca_file': '%s'}}, " OK_TAIL "}", path);
    e = err_of(text);
    ASSERT_STR_CONTAINS(e, "redis.tls.ca_file: does not load: ");
    snprintf(text, sizeof text, "{'redis': {'tls': {'cert_file': '%s'}}, " OK_TAIL "}", path);
    ASSERT_STR_EQ(err_of(text), "redis.tls.key_file: missing: cert_file and key_file go together");
    snprintf(text, sizeof text,
             "{'redis': {'tls': {'cert_file': '%s', 'key_file': '%s'}}, " OK_TAIL "}", path, path);
    ASSERT_STR_CONTAINS(err_of(text), "redis.tls.cert_file: does not load: ");
    unlink(path);
}
