/* crier-sim: simulates the SendGrid, Twilio and FCM APIs on loopback for the
 * tests, the benchmark and the demo. This file reads the flags, starts the
 * server, announces the port and shuts down cleanly on SIGTERM/SIGINT. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

#include "cr_error.h"
#include "cr_log.h"
#include "callbacks.h"
#include "record.h"
#include "server.h"
#include "sim.h"
#include "tls.h"

#define EXIT_USAGE 2

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_PORT_FILE,
    OPT_LATENCY,
    OPT_JITTER,
    OPT_ERROR_RATE,
    OPT_RATE_429,
    OPT_RETRY_AFTER,
    OPT_SEED,
    OPT_MAX_LOG,
    OPT_MAX_LOG_BYTES,
    OPT_LOG_BODY,
    OPT_SG_KEY,
    OPT_TW_SID,
    OPT_TW_TOKEN,
    OPT_FCM_PROJECT,
    OPT_FCM_TOKEN,
    OPT_QUIET,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_APNS_PORT,
    OPT_APNS_PORT_FILE,
    OPT_HTTPS_PORT,
    OPT_HTTPS_PORT_FILE,
    OPT_APNS_KEY,
    OPT_APNS_TEAM,
    OPT_APNS_KEY_ID,
    OPT_APNS_TOPIC,
    OPT_SMTP_PORT,
    OPT_SMTP_PORT_FILE,
    OPT_SMTP_USER,
    OPT_SMTP_PASS,
    OPT_SMTP_REQUIRE_TLS,
    OPT_GW_AUTH_HEADER,
    OPT_GW_AUTH_VALUE,
    OPT_FCM_SERVICE_ACCOUNT,
    OPT_FCM_TOKEN_TTL,
    OPT_CALLBACK_DELAY,
    OPT_CALLBACK_QUEUE,
    OPT_SG_WEBHOOK_URL,
    OPT_SG_WEBHOOK_KEY,
    OPT_TW_INBOUND_URL,
    OPT_META_TOKEN,
    OPT_META_PHONE_ID,
    OPT_META_APP_SECRET,
    OPT_META_WEBHOOK_URL,
    OPT_META_MPS,
    OPT_WA_TIER,
    OPT_WA_OPEN_PREFIX,
    OPT_WA_UNKNOWN_PREFIX,
    OPT_WA_UNAPPROVED,
    OPT_GENERIC_URL,
    OPT_GENERIC_SECRET,
    OPT_DELIVER_RATE,
    OPT_NEVER_DELIVER,
    OPT_HELP,
};

static const struct option long_options[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"latency-ms", required_argument, NULL, OPT_LATENCY},
    {"jitter-ms", required_argument, NULL, OPT_JITTER},
    {"error-rate", required_argument, NULL, OPT_ERROR_RATE},
    {"rate-429", required_argument, NULL, OPT_RATE_429},
    {"retry-after", required_argument, NULL, OPT_RETRY_AFTER},
    {"seed", required_argument, NULL, OPT_SEED},
    {"max-log", required_argument, NULL, OPT_MAX_LOG},
    {"max-log-bytes", required_argument, NULL, OPT_MAX_LOG_BYTES},
    {"log-body-bytes", required_argument, NULL, OPT_LOG_BODY},
    {"sendgrid-key", required_argument, NULL, OPT_SG_KEY},
    {"twilio-sid", required_argument, NULL, OPT_TW_SID},
    {"twilio-token", required_argument, NULL, OPT_TW_TOKEN},
    {"fcm-project", required_argument, NULL, OPT_FCM_PROJECT},
    {"fcm-token", required_argument, NULL, OPT_FCM_TOKEN},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"apns-port", required_argument, NULL, OPT_APNS_PORT},
    {"apns-port-file", required_argument, NULL, OPT_APNS_PORT_FILE},
    {"https-port", required_argument, NULL, OPT_HTTPS_PORT},
    {"https-port-file", required_argument, NULL, OPT_HTTPS_PORT_FILE},
    {"apns-key", required_argument, NULL, OPT_APNS_KEY},
    {"apns-team", required_argument, NULL, OPT_APNS_TEAM},
    {"apns-key-id", required_argument, NULL, OPT_APNS_KEY_ID},
    {"apns-topic", required_argument, NULL, OPT_APNS_TOPIC},
    {"smtp-port", required_argument, NULL, OPT_SMTP_PORT},
    {"smtp-port-file", required_argument, NULL, OPT_SMTP_PORT_FILE},
    {"smtp-user", required_argument, NULL, OPT_SMTP_USER},
    {"smtp-pass", required_argument, NULL, OPT_SMTP_PASS},
    {"smtp-require-tls", no_argument, NULL, OPT_SMTP_REQUIRE_TLS},
    {"gateway-auth-header", required_argument, NULL, OPT_GW_AUTH_HEADER},
    {"gateway-auth-value", required_argument, NULL, OPT_GW_AUTH_VALUE},
    {"fcm-service-account", required_argument, NULL, OPT_FCM_SERVICE_ACCOUNT},
    {"fcm-token-ttl", required_argument, NULL, OPT_FCM_TOKEN_TTL},
    {"callback-delay-ms", required_argument, NULL, OPT_CALLBACK_DELAY},
    {"callback-queue", required_argument, NULL, OPT_CALLBACK_QUEUE},
    {"sendgrid-webhook-url", required_argument, NULL, OPT_SG_WEBHOOK_URL},
    {"sendgrid-webhook-key", required_argument, NULL, OPT_SG_WEBHOOK_KEY},
    {"twilio-inbound-url", required_argument, NULL, OPT_TW_INBOUND_URL},
    {"meta-token", required_argument, NULL, OPT_META_TOKEN},
    {"meta-phone-id", required_argument, NULL, OPT_META_PHONE_ID},
    {"meta-app-secret", required_argument, NULL, OPT_META_APP_SECRET},
    {"meta-webhook-url", required_argument, NULL, OPT_META_WEBHOOK_URL},
    {"meta-mps", required_argument, NULL, OPT_META_MPS},
    {"wa-tier", required_argument, NULL, OPT_WA_TIER},
    {"wa-open-prefix", required_argument, NULL, OPT_WA_OPEN_PREFIX},
    {"wa-unknown-prefix", required_argument, NULL, OPT_WA_UNKNOWN_PREFIX},
    {"wa-unapproved", required_argument, NULL, OPT_WA_UNAPPROVED},
    {"generic-webhook-url", required_argument, NULL, OPT_GENERIC_URL},
    {"generic-webhook-secret", required_argument, NULL, OPT_GENERIC_SECRET},
    {"deliver-rate", required_argument, NULL, OPT_DELIVER_RATE},
    {"never-deliver", required_argument, NULL, OPT_NEVER_DELIVER},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static const char usage[] =
    "usage: crier-sim [--host 127.0.0.1] [--port N] [--port-file PATH]\n"
    "                 [--latency-ms N] [--jitter-ms N] [--error-rate F] [--rate-429 F]\n"
    "                 [--retry-after S] [--seed N] [--max-log N] [--max-log-bytes N]\n"
    "                 [--log-body-bytes N] [--sendgrid-key KEY] [--twilio-sid SID]\n"
    "                 [--twilio-token TOKEN] [--fcm-project ID] [--fcm-token TOKEN] [--quiet]\n"
    "                 [--tls-cert FILE --tls-key FILE] [--https-port N] [--https-port-file PATH]\n"
    "                 [--apns-port N] [--apns-port-file PATH] [--apns-key FILE]\n"
    "                 [--apns-team ID] [--apns-key-id ID] [--apns-topic BUNDLE]\n"
    "                 [--smtp-port N] [--smtp-port-file PATH] [--smtp-user U --smtp-pass P]\n"
    "                 [--smtp-require-tls]\n"
    "                 [--gateway-auth-header NAME] [--gateway-auth-value VALUE]\n"
    "                 [--fcm-service-account FILE] [--fcm-token-ttl S] [--callback-delay-ms N]\n"
    "                 [--callback-queue N]\n"
    "                 [--sendgrid-webhook-url URL --sendgrid-webhook-key FILE]\n"
    "                 [--twilio-inbound-url URL]\n"
    "                 [--meta-token T] [--meta-phone-id ID] [--meta-mps N]\n"
    "                 [--wa-tier N]\n"
    "                 [--meta-webhook-url URL --meta-app-secret S]\n"
    "                 [--wa-open-prefix +E164] [--wa-unknown-prefix +E164] [--wa-unapproved LIST]\n"
    "                 [--generic-webhook-url URL --generic-webhook-secret S]\n"
    "                 [--deliver-rate F] [--never-deliver SUFFIX,...]\n";

static uv_signal_t sig_term, sig_int;
static struct sim *the_sim; /* for the signal callback only */

static void bad_flag(const char *flag, const char *why)
{
    fprintf(stderr, "crier-sim: --%s %s\n%s", flag, why, usage);
    exit(EXIT_USAGE);
}

static uint64_t flag_uint(const char *flag, const char *v, uint64_t max)
{
    char *end;
    unsigned long long n;

    errno = 0;
    n = strtoull(v, &end, 10);
    if (*v == '\0' || *v == '-' || *end != '\0' || errno != 0 || n > max) {
        char why[96];

        snprintf(why, sizeof(why), "needs a whole number from 0 to %llu, not '%.20s'",
                 (unsigned long long)max, v);
        bad_flag(flag, why);
    }
    return n;
}

static double flag_fraction(const char *flag, const char *v)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || isnan(d) || d < 0 || d > 1) {
        char why[96];

        snprintf(why, sizeof(why), "needs a fraction from 0 to 1, not '%.20s'", v);
        bad_flag(flag, why);
    }
    return d;
}

static const char *flag_text(const char *flag, const char *v)
{
    if (*v == '\0' || strlen(v) > 200)
        bad_flag(flag, "needs a non-empty value of at most 200 characters");
    return v;
}

static void parse_flags(int argc, char **argv, struct sim_options *o)
{
    int c;

    o->host = "127.0.0.1";
    o->port = 0;
    o->port_file = NULL;
    o->behaviour.latency_ms = 0;
    o->behaviour.jitter_ms = 0;
    o->behaviour.error_rate = 0;
    o->behaviour.rate_429 = 0;
    o->behaviour.retry_after = 1;
    o->behaviour.deliver_rate = 1.0;
    o->behaviour.never_deliver[0] = '\0';
    o->seed = 1;
    o->max_log = 2000000;
    o->max_log_bytes = (size_t)1 << 30;
    o->log_body_bytes = 4096;
    o->sendgrid_key = "SG.test-key";
    o->twilio_sid = "AC00000000000000000000000000000000";
    o->twilio_token = "test-token";
    o->fcm_project = "crier-demo";
    o->fcm_token = "fcm-test-token";
    o->quiet = 0;
    o->gateway_auth_header = "Authorization";
    o->gateway_auth_value = "Bearer gw-test-key";
    o->fcm_service_account = NULL;
    o->fcm_token_ttl = 3600;
    o->callback_delay_ms = 50;
    o->callback_queue = SIM_CALLBACK_QUEUE;
    o->sendgrid_webhook_url = NULL;
    o->sendgrid_webhook_key = NULL;
    o->twilio_inbound_url = NULL;
    o->meta_token = "meta-test-token";
    o->meta_phone_id = "106540352242922";
    o->meta_app_secret = NULL;
    o->meta_webhook_url = NULL;
    o->meta_mps = 0;
    o->wa_tier = 0;
    o->wa_open_prefix = "+4477009111";
    o->wa_unknown_prefix = "+4477009999";
    o->wa_unapproved = "unapproved_template";
    o->apns_port = -1;
    o->https_port = -1;
    o->apns_team = "TEAM000000";
    o->apns_key_id = "KEY0000000";
    o->apns_topic = "org.crier.app";
    o->smtp_port = -1;

    opterr = 0;
    for (;;) {
        int idx = -1;
        const char *name;

        c = getopt_long(argc, argv, ":", long_options, &idx);
        if (c == -1)
            break;
        name = idx >= 0 ? long_options[idx].name : "";
        switch (c) {
        case OPT_HOST: o->host = flag_text(name, optarg); break;
        case OPT_PORT: o->port = (int)flag_uint(name, optarg, 65535); break;
        case OPT_PORT_FILE: o->port_file = flag_text(name, optarg); break;
        case OPT_LATENCY:
            o->behaviour.latency_ms = (uint32_t)flag_uint(name, optarg, SIM_MAX_LATENCY_MS);
            break;
        case OPT_JITTER:
            o->behaviour.jitter_ms = (uint32_t)flag_uint(name, optarg, SIM_MAX_LATENCY_MS);
            break;
        case OPT_ERROR_RATE: o->behaviour.error_rate = flag_fraction(name, optarg); break;
        case OPT_RATE_429: o->behaviour.rate_429 = flag_fraction(name, optarg); break;
        case OPT_RETRY_AFTER:
            o->behaviour.retry_after = (uint32_t)flag_uint(name, optarg, SIM_MAX_RETRY_AFTER);
            break;
        case OPT_SEED: o->seed = flag_uint(name, optarg, UINT64_MAX); break;
        case OPT_MAX_LOG: o->max_log = (size_t)flag_uint(name, optarg, 100000000); break;
        case OPT_MAX_LOG_BYTES:
            o->max_log_bytes = (size_t)flag_uint(name, optarg, (uint64_t)1 << 40);
            break;
        case OPT_LOG_BODY:
            o->log_body_bytes = (size_t)flag_uint(name, optarg, 1024 * 1024);
            break;
        case OPT_SG_KEY: o->sendgrid_key = flag_text(name, optarg); break;
        case OPT_TW_SID:
            o->twilio_sid = flag_text(name, optarg);
            if (strchr(o->twilio_sid, '/') || strchr(o->twilio_sid, ':'))
                bad_flag(name, "must not contain '/' or ':'");
            break;
        case OPT_TW_TOKEN: o->twilio_token = flag_text(name, optarg); break;
        case OPT_FCM_PROJECT:
            o->fcm_project = flag_text(name, optarg);
            if (strchr(o->fcm_project, '/'))
                bad_flag(name, "must not contain '/'");
            break;
        case OPT_FCM_TOKEN: o->fcm_token = flag_text(name, optarg); break;
        case OPT_QUIET: o->quiet = 1; break;
        case OPT_TLS_CERT: o->tls_cert = flag_text(name, optarg); break;
        case OPT_TLS_KEY: o->tls_key = flag_text(name, optarg); break;
        case OPT_APNS_PORT: o->apns_port = (int)flag_uint(name, optarg, 65535); break;
        case OPT_APNS_PORT_FILE: o->apns_port_file = flag_text(name, optarg); break;
        case OPT_HTTPS_PORT: o->https_port = (int)flag_uint(name, optarg, 65535); break;
        case OPT_HTTPS_PORT_FILE: o->https_port_file = flag_text(name, optarg); break;
        case OPT_APNS_KEY: o->apns_key = flag_text(name, optarg); break;
        case OPT_APNS_TEAM: o->apns_team = flag_text(name, optarg); break;
        case OPT_APNS_KEY_ID: o->apns_key_id = flag_text(name, optarg); break;
        case OPT_APNS_TOPIC: o->apns_topic = flag_text(name, optarg); break;
        case OPT_SMTP_PORT: o->smtp_port = (int)flag_uint(name, optarg, 65535); break;
        case OPT_SMTP_PORT_FILE: o->smtp_port_file = flag_text(name, optarg); break;
        case OPT_SMTP_USER: o->smtp_user = flag_text(name, optarg); break;
        case OPT_SMTP_PASS: o->smtp_pass = flag_text(name, optarg); break;
        case OPT_SMTP_REQUIRE_TLS: o->smtp_require_tls = 1; break;
        case OPT_GW_AUTH_HEADER:
            o->gateway_auth_header = flag_text(name, optarg);
            if (strpbrk(o->gateway_auth_header, ": \t\r\n") != NULL)
                bad_flag(name, "must be a header name");
            break;
        case OPT_GW_AUTH_VALUE: o->gateway_auth_value = flag_text(name, optarg); break;
        case OPT_FCM_SERVICE_ACCOUNT: o->fcm_service_account = flag_text(name, optarg); break;
        case OPT_FCM_TOKEN_TTL:
            o->fcm_token_ttl = (uint32_t)flag_uint(name, optarg, 86400);
            if (o->fcm_token_ttl == 0)
                bad_flag(name, "must be at least 1 second");
            break;
        case OPT_CALLBACK_DELAY:
            o->callback_delay_ms = (uint32_t)flag_uint(name, optarg, SIM_MAX_LATENCY_MS);
            break;
        case OPT_CALLBACK_QUEUE:
            o->callback_queue = (uint32_t)flag_uint(name, optarg, SIM_MAX_CALLBACK_QUEUE);
            if (o->callback_queue < 3)
                bad_flag(name, "must be at least 3 (one message's callbacks)");
            break;
        case OPT_SG_WEBHOOK_URL: o->sendgrid_webhook_url = flag_text(name, optarg); break;
        case OPT_SG_WEBHOOK_KEY: o->sendgrid_webhook_key = flag_text(name, optarg); break;
        case OPT_TW_INBOUND_URL: o->twilio_inbound_url = flag_text(name, optarg); break;
        case OPT_META_TOKEN: o->meta_token = flag_text(name, optarg); break;
        case OPT_META_PHONE_ID:
            o->meta_phone_id = flag_text(name, optarg);
            if (strspn(o->meta_phone_id, "0123456789") != strlen(o->meta_phone_id))
                bad_flag(name, "must be digits");
            break;
        case OPT_META_APP_SECRET: o->meta_app_secret = flag_text(name, optarg); break;
        case OPT_META_WEBHOOK_URL: o->meta_webhook_url = flag_text(name, optarg); break;
        case OPT_META_MPS: o->meta_mps = (uint32_t)flag_uint(name, optarg, 1000000); break;
        case OPT_WA_TIER: o->wa_tier = (uint32_t)flag_uint(name, optarg, 1000000); break;
        case OPT_WA_OPEN_PREFIX: o->wa_open_prefix = flag_text(name, optarg); break;
        case OPT_WA_UNKNOWN_PREFIX: o->wa_unknown_prefix = flag_text(name, optarg); break;
        case OPT_WA_UNAPPROVED: o->wa_unapproved = flag_text(name, optarg); break;
        case OPT_GENERIC_URL: o->generic_webhook_url = flag_text(name, optarg); break;
        case OPT_GENERIC_SECRET: o->generic_webhook_secret = flag_text(name, optarg); break;
        case OPT_DELIVER_RATE: o->behaviour.deliver_rate = flag_fraction(name, optarg); break;
        case OPT_NEVER_DELIVER:
            if (strlen(optarg) >= SIM_NEVER_DELIVER_MAX)
                bad_flag(name, "is longer than 127 bytes");
            snprintf(o->behaviour.never_deliver, SIM_NEVER_DELIVER_MAX, "%s", optarg);
            break;
        case OPT_HELP: fputs(usage, stdout); exit(0);
        case ':':
            fprintf(stderr, "crier-sim: %s needs a value\n%s", argv[optind - 1], usage);
            exit(EXIT_USAGE);
        default:
            fprintf(stderr, "crier-sim: unknown flag '%s'\n%s", argv[optind - 1], usage);
            exit(EXIT_USAGE);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "crier-sim: unexpected argument '%s'\n%s", argv[optind], usage);
        exit(EXIT_USAGE);
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL))
        bad_flag(o->tls_cert ? "tls-key" : "tls-cert", "is needed with the other TLS flag");
    if (o->https_port >= 0 && o->tls_cert == NULL)
        bad_flag("https-port", "needs --tls-cert and --tls-key");
    if (o->apns_port >= 0 && o->tls_cert == NULL)
        bad_flag("apns-port", "needs --tls-cert and --tls-key");
    if (o->apns_port >= 0 && o->apns_key == NULL)
        bad_flag("apns-port", "needs --apns-key");
    if ((o->smtp_user == NULL) != (o->smtp_pass == NULL))
        bad_flag(o->smtp_user ? "smtp-pass" : "smtp-user", "is needed with the other");
    if (o->smtp_require_tls && o->tls_cert == NULL)
        bad_flag("smtp-require-tls", "needs --tls-cert and --tls-key");
    if ((o->sendgrid_webhook_url == NULL) != (o->sendgrid_webhook_key == NULL))
        bad_flag(o->sendgrid_webhook_url ? "sendgrid-webhook-key" : "sendgrid-webhook-url",
                 "is needed with the other SendGrid webhook flag");
    if ((o->generic_webhook_url == NULL) != (o->generic_webhook_secret == NULL))
        bad_flag(o->generic_webhook_url ? "generic-webhook-secret" : "generic-webhook-url",
                 "is needed with the other generic webhook flag");
}

/* Writes the port to path via path.tmp and rename(), so readers never see a
 * partial file. Returns 0 or CR_EIO (logged). */
static int write_port_file(const char *path, int port)
{
    char tmp[PATH_MAX];
    FILE *f;
    int ok;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        cr_error("sim port file %s: path too long, not written", path);
        return CR_EIO;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        cr_error("sim port file %s: %s, not written", tmp, strerror(errno));
        return CR_EIO;
    }
    ok = fprintf(f, "%d\n", port) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        cr_error("sim port file %s: %s, not written", path, strerror(errno));
        remove(tmp);
        return CR_EIO;
    }
    return 0;
}

/* Up to SIM_MAX_CONNECTIONS sockets may be open at once: lift the soft limit
 * on descriptors towards the hard one. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    rlim_t want = SIM_MAX_CONNECTIONS + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        cr_warn("sim file descriptor limit: %s, fewer connections possible", strerror(errno));
}

/* Starts the HTTPS, APNs and SMTP listeners the flags ask for (and the TLS
 * contexts they use: h1 for HTTPS, which never selects h2) and writes their
 * port files. Returns 0 or a negative code (logged); what did start is left in
 * sim for stop_tls_listeners. */
static int start_tls_listeners(struct sim *sim, SSL_CTX **ctx, SSL_CTX **h1)
{
    const struct sim_options *o = &sim->opt;
    int rc = 0;

    if (o->tls_cert != NULL)
        rc = sim_tls_ctx_new(o->tls_cert, o->tls_key, ctx);
    if (rc == 0 && o->https_port >= 0) {
        rc = sim_tls_ctx_new(o->tls_cert, o->tls_key, h1);
        if (rc == 0) {
            sim_tls_ctx_http1(*h1);
            rc = sim_server_start_tls(sim, *h1, o->host, o->https_port, &sim->https);
        }
        if (rc == 0 && o->https_port_file != NULL)
            rc = write_port_file(o->https_port_file, sim_server_port(sim->https));
        if (rc == 0)
            cr_info("sim https listening on %s:%d (HTTP/1.1 over TLS)", o->host,
                    sim_server_port(sim->https));
    }
    if (rc == 0 && o->apns_port >= 0) {
        rc = sim_apns_start(sim, *ctx, o->host, o->apns_port, &sim->apns);
        if (rc == 0 && o->apns_port_file != NULL)
            rc = write_port_file(o->apns_port_file, sim_apns_port(sim->apns));
        if (rc == 0)
            cr_info("sim apns listening on %s:%d (HTTP/2 over TLS)", o->host,
                    sim_apns_port(sim->apns));
    }
    if (rc == 0 && o->smtp_port >= 0) {
        rc = sim_smtp_start(sim, *ctx, o->host, o->smtp_port, &sim->smtp);
        if (rc == 0 && o->smtp_port_file != NULL)
            rc = write_port_file(o->smtp_port_file, sim_smtp_port(sim->smtp));
        if (rc == 0)
            cr_info("sim smtp listening on %s:%d%s", o->host, sim_smtp_port(sim->smtp),
                    *ctx ? " (STARTTLS offered)" : "");
    }
    return rc;
}

static void stop_tls_listeners(struct sim *sim)
{
    if (sim->https != NULL) {
        sim_server_close(sim->https);
        sim->https = NULL;
    }
    if (sim->apns != NULL) {
        sim_apns_close(sim->apns);
        sim->apns = NULL;
    }
    if (sim->smtp != NULL) {
        sim_smtp_close(sim->smtp);
        sim->smtp = NULL;
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (!the_sim->opt.quiet)
        cr_info("sim got signal %d, shutting down", signum);
    if (the_sim->server != NULL) {
        sim_server_close(the_sim->server);
        the_sim->server = NULL;
    }
    stop_tls_listeners(the_sim);
    sim_callbacks_close(the_sim);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

int main(int argc, char **argv)
{
    struct sim sim;
    struct sim_record rec;
    struct timeval tv;
    SSL_CTX *tls_ctx = NULL;
    SSL_CTX *https_ctx = NULL;
    int rc;
    int i;

    memset(&sim, 0, sizeof(sim));
    parse_flags(argc, argv, &sim.opt);
    if (sim.opt.quiet)
        cr_log_set_level(CR_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    sim.loop = uv_default_loop();
    gettimeofday(&tv, NULL);
    uv_update_time(sim.loop);
    sim.start_loop_ms = uv_now(sim.loop);
    sim.start_wall_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    for (i = 0; i < SIM_EP_COUNT; i++)
        sim.behaviour[i] = sim.opt.behaviour;
    sim_rng_seed(&sim.rng, sim.opt.seed);
    sim_record_init(&rec, sim.opt.max_log, sim.opt.max_log_bytes, sim.opt.log_body_bytes);
    sim.rec = &rec;
    if (sim_oauth_init(&sim) < 0) {
        fprintf(stderr, "crier-sim: --fcm-service-account: unusable key file (see the log)\n");
        return EXIT_USAGE;
    }
    the_sim = &sim;

    rc = sim_server_start(&sim, sim.opt.host, sim.opt.port, &sim.server);
    if (rc == CR_EINVAL) {
        fprintf(stderr, "crier-sim: --host needs an IP address, not '%s'\n", sim.opt.host);
        return EXIT_USAGE;
    }
    if (rc < 0) {
        uv_run(sim.loop, UV_RUN_DEFAULT);
        sim_record_release(&rec);
        return 1;
    }
    if (sim.opt.port_file != NULL && write_port_file(sim.opt.port_file, sim_server_port(sim.server)) < 0) {
        sim_server_close(sim.server);
        uv_run(sim.loop, UV_RUN_DEFAULT);
        sim_record_release(&rec);
        return 1;
    }
    if (start_tls_listeners(&sim, &tls_ctx, &https_ctx) < 0) {
        stop_tls_listeners(&sim);
        sim_server_close(sim.server);
        uv_run(sim.loop, UV_RUN_DEFAULT);
        SSL_CTX_free(tls_ctx);
        SSL_CTX_free(https_ctx);
        sim_record_release(&rec);
        return 1;
    }
    if (sim_callbacks_init(&sim) < 0) {
        fprintf(stderr, "crier-sim: provider callbacks could not start (see the log)\n");
        stop_tls_listeners(&sim);
        sim_server_close(sim.server);
        uv_run(sim.loop, UV_RUN_DEFAULT);
        SSL_CTX_free(tls_ctx);
        SSL_CTX_free(https_ctx);
        sim_oauth_release(&sim);
        sim_record_release(&rec);
        return EXIT_USAGE;
    }
    uv_signal_init(sim.loop, &sig_term);
    uv_signal_init(sim.loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    printf("crier-sim listening on %s:%d\n", sim.opt.host, sim_server_port(sim.server));
    fflush(stdout);

    uv_run(sim.loop, UV_RUN_DEFAULT);
    uv_loop_close(sim.loop);
    SSL_CTX_free(tls_ctx);
    SSL_CTX_free(https_ctx);
    sim_oauth_release(&sim);
    sim_record_release(&rec);
    return 0;
}
