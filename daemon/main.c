/* crierd: startup, the loop, and shutdown. main() loads the config, opens the
 * two Redis connections and the HTTP client on one libuv loop, and runs it;
 * SIGTERM/SIGINT stop taking work, let in-flight requests finish, write what
 * is known, hand the rest back to Redis (unacknowledged) and exit 0. */
#include <curl/curl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "audit_trim.h"
#include "cr_error.h"
#include "cr_log.h"
#include "daemon.h"
#include "dispatch.h"
#include "expander.h"
#include "fanout.h"
#include "fleet.h"
#include "intake.h"
#include "metrics.h"
#include "preflight.h"
#include "reader.h"
#include "redischeck.h"
#include "replicas.h"
#include "routes.h"
#include "retry.h"
#include "schedule.h"
#include "escalate.h"
#include "scripts.h"
#include "sdnotify.h"
#include "sentinel.h"
#include "workers.h"

#define SHUTDOWN_GRACE_MS 15000

static struct cr_daemon daemon_state;
static uv_signal_t sig_term;
static uv_signal_t sig_int;
static uv_timer_t grace_timer;
static uv_timer_t log_timer; /* writes the summaries of repeated log lines */
static int announced_ready;
static int closing;

int64_t cr_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The modules go last: closing Redis and the HTTP client fires their pending
 * callbacks (with failures), which still reach the modules. */
static void on_http_closed(void *ud)
{
    struct cr_daemon *d = ud;

    cr_reader_free(d->reader);
    cr_expander_free(d->expander);
    cr_retry_free(d->retry);
    cr_schedule_free(d->schedule);
    if (d->escalate)
        cr_escalate_free(d->escalate);
    cr_audit_trim_free(d->audit_trim);
    cr_fanout_free(d->fanout);
    cr_replicas_free(d->replicas);
    cr_redischeck_free(d->redischeck);
    cr_fleet_free(d->fleet);
    cr_dispatch_free(d->dispatch);
}

static void close_all(struct cr_daemon *d)
{
    if (closing)
        return;
    closing = 1;
    uv_timer_stop(&grace_timer);
    uv_close((uv_handle_t *)&grace_timer, NULL);
    uv_timer_stop(&log_timer);
    uv_close((uv_handle_t *)&log_timer, NULL);
    cr_sd_watchdog_stop();
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    cr_reader_stop(d->reader);
    cr_sentinel_close(d->sentinel); /* first: it resets the connections below */
    d->sentinel = NULL;
    cr_fleet_stop(d->fleet);
    cr_audit_trim_stop(d->audit_trim);
    cr_redis_close(d->rb);
    cr_redis_close(d->ru);
    cr_redis_close(d->rc);
    cr_routes_stop(d);
    cr_http_close(d->http, on_http_closed, d);
}

void cr_daemon_maybe_done(struct cr_daemon *d)
{
    if (!d->stopping || closing)
        return;
    if (cr_fanout_active(d->fanout) || cr_dispatch_inflight(d->dispatch) ||
        cr_intake_active(d->intake) || cr_expander_active(d->expander) ||
        cr_fleet_leaving(d->fleet))
        return;
    cr_info("crierd: nothing in flight; exiting");
    close_all(d);
}

static void on_grace(uv_timer_t *t)
{
    struct cr_daemon *d = t->data;

    cr_warn("crierd: shutdown grace of %d ms over; %zu batches handed back unfinished",
            SHUTDOWN_GRACE_MS, cr_fanout_active(d->fanout));
    close_all(d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct cr_daemon *d = s->data;

    if (d->stopping) {
        cr_warn("crierd: second signal %d; exiting now", signum);
        close_all(d);
        return;
    }
    cr_info("crierd: signal %d: stopping intake, finishing %zu requests in flight, handing back "
            "the rest",
            signum, cr_dispatch_inflight(d->dispatch));
    d->stopping = 1;
    cr_sd_stopping();
    cr_fleet_stop(d->fleet); /* leaves the fleet now: the key would outlive the exit */
    cr_reader_stop(d->reader);
    cr_dispatch_stop(d->dispatch);
    cr_fanout_stop(d->fanout);
    uv_timer_start(&grace_timer, on_grace, SHUTDOWN_GRACE_MS, 0);
    cr_daemon_maybe_done(d);
}

static void announce(struct cr_daemon *d)
{
    if (announced_ready || !cr_redis_ready(d->rc) || !cr_redis_ready(d->rb) ||
        !cr_redis_ready(d->ru))
        return;
    announced_ready = 1;
    cr_info("crierd ready: consumer '%s' in group '%s', prefix '%s', %zu providers",
            d->cfg->consumer, d->cfg->group, d->cfg->prefix, d->cfg->nproviders);
    cr_sd_ready("ready: taking jobs");
}

static void on_log_timer(uv_timer_t *t)
{
    (void)t;
    cr_log_repeat_flush(0);
}

static void on_rc_state(struct cr_redis *r, int connected, void *ud)
{
    struct cr_daemon *d = ud;

    if (connected)
        cr_scripts_load(r); /* first on the connection: later EVALSHAs find them */
    if (d->stopping)
        return;
    cr_reader_redis_state(d->reader, 0, connected);
    if (connected) {
        size_t again;

        cr_redischeck_connected(d->redischeck);
        /* Redis may have come back without writes it acknowledged */
        again = cr_fanout_redis_ready(d->fanout);
        if (again > 0)
            cr_warn("redis 'commands': reconnected; writing again the %zu outcomes held here "
                    "that Redis had acknowledged (a restart may have lost them; the ledger "
                    "skips what it has)",
                    again);
        announce(d);
    }
}

static void on_ru_state(struct cr_redis *r, int connected, void *ud)
{
    struct cr_daemon *d = ud;

    if (connected)
        cr_scripts_load(r); /* urgent jobs' accept and expand scripts run here */
    if (connected && !d->stopping) {
        cr_reader_kick(d->reader); /* reads of urgent batches go here */
        announce(d);
    }
}

static void on_rb_state(struct cr_redis *r, int connected, void *ud)
{
    struct cr_daemon *d = ud;

    (void)r;
    if (d->stopping)
        return;
    cr_reader_redis_state(d->reader, 1, connected);
    if (connected)
        announce(d);
}

static void usage(FILE *f)
{
    fputs("usage: crierd -c FILE [-t]\n"
          "crier's alert dispatch daemon: takes jobs from Redis, sends them over email,\n"
          "SMS and push, and writes every outcome back to Redis.\n"
          "\n"
          "  -c, --config FILE  configuration (JSON, comments allowed); every key is\n"
          "                     described in crierd.example.json\n"
          "  -t, --test         check the configuration and exit (0 good, 1 bad)\n"
          "  -W I:PID           run as worker I of supervisor PID (crierd starts its own\n"
          "                     workers when the config has \"workers\" over 1)\n"
          "  -h, --help         this help\n"
          "\n"
          "Runs in the foreground and logs to stderr (\"log_format\": text, journal, json).\n"
          "SIGTERM or SIGINT: stop taking work, finish what is in flight, exit 0.\n"
          "Under systemd (Type=notify) it sends READY=1, STOPPING=1 and, with\n"
          "WatchdogSec=, WATCHDOG=1 from its event loop.\n"
          "Exit codes: 0 stopped cleanly or config valid, 1 config or startup error,\n"
          "2 usage error.\n",
          f);
}

/* The log's level, format and repeat window from the config; "auto" picks
 * journald's format when stderr is the journal. */
static void setup_log(const struct cr_config *cfg)
{
    enum cr_log_level level;
    enum cr_log_format format;

    if (cr_log_parse_level(cfg->log_level, &level) == 0)
        cr_log_set_level(level);
    if (cr_log_parse_format(cfg->log_format, &format) == 0)
        cr_log_set_format(format);
    cr_log_set_repeat_window((int64_t)cfg->log_repeat_s * 1000);
}

static int open_redis(struct cr_daemon *d, const char *name, cr_redis_state_cb cb,
                      struct cr_redis **out)
{
    struct cr_redis_opts o;
    int rc;

    memset(&o, 0, sizeof(o));
    o.name = name;
    o.host = d->cfg->redis_host;
    o.port = d->cfg->redis_port;
    o.path = d->cfg->redis_path;
    o.username = d->cfg->redis_username;
    o.password = d->cfg->redis_password;
    o.tls.enabled = d->cfg->redis_tls.enabled;
    o.tls.ca_file = d->cfg->redis_tls.ca_file;
    o.tls.cert_file = d->cfg->redis_tls.cert_file;
    o.tls.key_file = d->cfg->redis_tls.key_file;
    o.tls.server_name = d->cfg->redis_tls.server_name;
    o.check_role = 1; /* every connection writes, or reads work it then writes */
    o.connect_timeout_ms = d->cfg->redis_connect_timeout_ms;
    o.command_timeout_ms = d->cfg->redis_command_timeout_ms;
    o.reconnect_max_ms = d->cfg->redis_reconnect_max_ms;
    if (d->sentinel == NULL)
        return cr_redis_init(d->loop, &o, cb, d, out);
    cr_sentinel_hooks(d->sentinel, &o);
    rc = cr_redis_init(d->loop, &o, cb, d, out);
    if (rc == 0)
        rc = cr_sentinel_watch(d->sentinel, *out);
    return rc;
}

/* With redis.sentinel, the primary is found and followed through Sentinel;
 * every connection open_redis makes after this moves with it. */
static int open_sentinel(struct cr_daemon *d)
{
    const struct cr_config *cfg = d->cfg;
    struct cr_sentinel_opts so;

    if (cfg->redis_sentinel_master == NULL)
        return 0;
    memset(&so, 0, sizeof(so));
    so.master = cfg->redis_sentinel_master;
    so.nodes = (const char *const *)cfg->redis_sentinel_nodes;
    so.nnodes = cfg->redis_sentinel_nnodes;
    so.username = cfg->redis_sentinel_username;
    so.password = cfg->redis_sentinel_password;
    /* the Sentinels are reached as the data nodes are: the same redis.tls */
    so.tls.enabled = cfg->redis_tls.enabled;
    so.tls.ca_file = cfg->redis_tls.ca_file;
    so.tls.cert_file = cfg->redis_tls.cert_file;
    so.tls.key_file = cfg->redis_tls.key_file;
    so.tls.server_name = cfg->redis_tls.server_name;
    so.timeout_ms = cfg->redis_sentinel_timeout_ms;
    so.retry_max_ms = cfg->redis_reconnect_max_ms;
    return cr_sentinel_init(d->loop, &so, &d->sentinel);
}

/* Keeps one open connection per request the providers may have in flight
 * (plus room for token and callback requests), so a lull between batches does
 * not close connections the next batch has to open again. */
static long idle_connections(const struct cr_config *cfg)
{
    long n = 16;

    for (size_t i = 0; i < cfg->nproviders; i++)
        n += cfg->providers[i].max_inflight;
    return n;
}

/* Frees n unrecorded slots of provider prov once replicas have their outcomes. */
static void release_slots(void *ud, size_t prov, uint32_t n)
{
    struct cr_daemon *d = ud;

    while (n-- > 0)
        cr_dispatch_release(d->dispatch, prov);
}

static int start(struct cr_daemon *d)
{
    struct cr_http_opts ho;
    int rc;

    memset(&ho, 0, sizeof(ho));
    ho.max_idle_connections = idle_connections(d->cfg);
    rc = cr_http_init(d->loop, &ho, &d->http);
    if (rc == 0)
        rc = cr_intake_init(d, &d->intake);
    if (rc == 0)
        rc = cr_expander_init(d, &d->expander);
    if (rc == 0)
        rc = cr_dispatch_init(d, &d->dispatch);
    if (rc == 0)
        rc = cr_fanout_init(d, &d->fanout);
    if (rc == 0 && d->cfg->redis_wait_replicas > 0)
        rc = cr_replicas_init(d, d->cfg->nproviders, d->cfg->redis_wait_replicas,
                              d->cfg->redis_wait_timeout_ms, release_slots, d, &d->replicas);
    if (rc == 0)
        rc = cr_redischeck_init(d, &d->redischeck);
    if (rc == 0)
        rc = cr_reader_init(d, &d->reader);
    if (rc == 0)
        rc = cr_retry_init(d, &d->retry);
    if (rc == 0)
        rc = cr_schedule_init(d, &d->schedule);
    if (rc == 0)
        rc = cr_escalate_init(d, &d->escalate);
    if (rc == 0)
        rc = open_sentinel(d);
    if (rc == 0)
        rc = cr_audit_trim_init(d, &d->audit_trim);
    if (rc == 0)
        rc = open_redis(d, "commands", on_rc_state, &d->rc);
    if (rc == 0)
        rc = open_redis(d, "reader", on_rb_state, &d->rb);
    if (rc == 0)
        rc = open_redis(d, "urgent", on_ru_state, &d->ru);
    if (rc == 0)
        rc = cr_metrics_init(d->cfg->nproviders, &d->metrics);
    if (rc == 0)
        rc = cr_fleet_init(d, &d->fleet);
    if (rc == 0)
        rc = cr_routes_start(d);
    return rc;
}

/* This process is one of a supervisor's workers (-W I:PID): it dies with the
 * supervisor and runs with its own share of the config. */
static int become_worker(struct cr_config *cfg, const char *arg)
{
    char err[256];
    char tag[16];
    long pid;
    int index;
    int rc;

    rc = cr_workers_parse_arg(arg, cfg->workers, &index, &pid);
    if (rc < 0) {
        fprintf(stderr, "crierd: -W %s: want I:PID with I below workers (%d)\n", arg, cfg->workers);
        return rc;
    }
    rc = cr_workers_bind(pid);
    if (rc < 0) {
        fprintf(stderr, "crierd: worker %d: supervisor %ld is gone; not starting\n", index, pid);
        return rc;
    }
    rc = cr_config_for_worker(cfg, index, cfg->workers, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "crierd: worker %d: config: %s\n", index, err);
        return rc;
    }
    snprintf(tag, sizeof tag, "w%d", index);
    cr_log_set_tag(tag);
    /* under systemd, NOTIFY_SOCKET names the supervisor's relay (sdnotify.h) */
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"test", no_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    static struct cr_config cfg;
    struct cr_daemon *d = &daemon_state;
    const char *path = NULL;
    const char *worker_arg = NULL;
    char err[512];
    int check = 0;
    int opt;
    int rc;

    while ((opt = getopt_long(argc, argv, "c:tW:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'W':
            worker_arg = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (cr_config_load(path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "crierd: config: %s\n", err);
        return 1;
    }
    /* the same checks for -t and for a start: what -t accepts, startup accepts */
    if (cr_preflight(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "crierd: config: %s\n", err);
        cr_config_release(&cfg);
        return 1;
    }
    if (check) {
        printf("crierd: config %s is valid (%zu providers, %d worker%s)\n", path, cfg.nproviders,
               cfg.workers, cfg.workers == 1 ? "" : "s");
        cr_config_release(&cfg);
        return 0;
    }
    setup_log(&cfg);
    if (worker_arg == NULL && cfg.workers > 1) {
        rc = cr_workers_run(path, cfg.workers);
        cr_config_release(&cfg);
        return rc;
    }
    if (worker_arg != NULL && become_worker(&cfg, worker_arg) < 0) {
        cr_config_release(&cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(d, 0, sizeof(*d));
    d->loop = uv_default_loop();
    d->cfg = &cfg;
    if (cr_keys_init(&d->keys, cfg.prefix) < 0) {
        fprintf(stderr, "crierd: config: redis.prefix: too long\n");
        return 1;
    }
    uv_signal_init(d->loop, &sig_term);
    uv_signal_init(d->loop, &sig_int);
    uv_timer_init(d->loop, &grace_timer);
    uv_timer_init(d->loop, &log_timer);
    uv_timer_start(&log_timer, on_log_timer, 1000, 1000);
    uv_unref((uv_handle_t *)&log_timer);
    sig_term.data = sig_int.data = grace_timer.data = d;
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    rc = start(d);
    if (rc < 0) {
        cr_error("crierd: startup failed: %s", cr_strerror(rc));
        return 1;
    }
    if (cfg.redis_sentinel_master != NULL)
        cr_info("crierd starting: redis primary '%s' through %zu Sentinels%s, consumer '%s'",
                cfg.redis_sentinel_master, cfg.redis_sentinel_nnodes,
                cfg.redis_tls.enabled ? " (TLS)" : "", cfg.consumer);
    else if (cfg.redis_path)
        cr_info("crierd starting: redis %s%s, consumer '%s'", cfg.redis_path,
                cfg.redis_tls.enabled ? " (TLS)" : "", cfg.consumer);
    else
        cr_info("crierd starting: redis %s:%d%s, consumer '%s'", cfg.redis_host, cfg.redis_port,
                cfg.redis_tls.enabled ? " (TLS)" : "", cfg.consumer);
    if (cr_sd_watchdog_start(d->loop) < 0)
        cr_warn("crierd: systemd watchdog timer could not start; systemd will restart crierd "
                "when WatchdogSec passes");
    uv_run(d->loop, UV_RUN_DEFAULT);
    cr_log_repeat_flush(1);
    cr_intake_free(d->intake);
    cr_metrics_free(d->metrics);
    uv_loop_close(d->loop);
    cr_config_release(&cfg);
    curl_global_cleanup();
    cr_info("crierd: stopped");
    return d->exit_code;
}
