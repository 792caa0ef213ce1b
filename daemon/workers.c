/* The supervisor (see workers.h): one uv_process_t per worker on its own
 * loop, a restart timer per worker, and the two stop signals. Workers share
 * every job through Redis's consumer groups, as separate crierd do. */
#include "workers.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <uv.h>

#include "cr_error.h"
#include "cr_log.h"
#include "sdnotify.h"

#define RESTART_FIRST_MS 1000
#define RESTART_MAX_MS 30000
#define STEADY_MS 10000 /* a worker up this long is healthy again: backoff resets */
#define EXE_MAX 4096

struct worker;

struct supervisor {
    uv_loop_t *loop;
    const char *config_path;
    char exe[EXE_MAX];
    char pid_arg[32]; /* ":PID" of this process, for -W */
    struct worker *w;
    int n;
    int stopping;
    int failed;  /* a worker ended badly while stopping */
    int running; /* workers whose process is alive */
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    /* systemd: the workers notify this relay; READY=1 goes to systemd once
     * every worker is ready, and a worker whose loop stops pinging is killed */
    struct cr_sd_relay *relay;
    int announced;
    uint64_t watchdog_ms; /* the workers' watchdog interval, 0 = none */
    uv_timer_t watchdog_check;
};

/* One worker slot: its process while it runs, and the timer that restarts it. */
struct worker {
    struct supervisor *s;
    int index;
    uv_process_t proc;
    uv_timer_t restart;
    int alive;       /* proc is a running child */
    int proc_open;   /* proc is initialised and not yet closed */
    long backoff_ms; /* wait before the next restart */
    uint64_t started_ms;
    int ready;             /* sent READY=1 since it started */
    uint64_t last_ping_ms; /* its last WATCHDOG=1 (or its start) */
};

static void start_worker(struct worker *w);

static void on_proc_closed(uv_handle_t *h)
{
    struct worker *w = h->data;

    w->proc_open = 0;
}

/* Closes every handle once the last worker is gone and the supervisor stops. */
static void maybe_finish(struct supervisor *s)
{
    int i;

    if (!s->stopping || s->running > 0)
        return;
    cr_sd_watchdog_stop();
    cr_sd_relay_close(s->relay);
    s->relay = NULL;
    if (s->watchdog_ms > 0 && !uv_is_closing((uv_handle_t *)&s->watchdog_check))
        uv_close((uv_handle_t *)&s->watchdog_check, NULL);
    for (i = 0; i < s->n; i++) {
        if (!uv_is_closing((uv_handle_t *)&s->w[i].restart))
            uv_close((uv_handle_t *)&s->w[i].restart, NULL);
    }
    if (!uv_is_closing((uv_handle_t *)&s->sig_term))
        uv_close((uv_handle_t *)&s->sig_term, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->sig_int))
        uv_close((uv_handle_t *)&s->sig_int, NULL);
}

static void on_restart(uv_timer_t *t)
{
    struct worker *w = t->data;

    if (!w->s->stopping)
        start_worker(w);
}

/* Starts worker w again after its backoff, and doubles the backoff (up to
 * RESTART_MAX_MS) for the time after. */
static void schedule_restart(struct worker *w)
{
    uv_timer_start(&w->restart, on_restart, (uint64_t)w->backoff_ms, 0);
    w->backoff_ms = w->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : w->backoff_ms * 2;
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    struct worker *w = p->data;
    struct supervisor *s = w->s;
    uint64_t up_ms = uv_now(s->loop) - w->started_ms;
    int pid = p->pid;
    char how[64];

    w->alive = 0;
    s->running--;
    uv_close((uv_handle_t *)p, on_proc_closed);
    if (term_signal != 0)
        snprintf(how, sizeof how, "was killed by signal %d", term_signal);
    else
        snprintf(how, sizeof how, "exited with code %d", (int)status);
    if (s->stopping) {
        if (term_signal != 0 || status != 0) {
            s->failed = 1;
            cr_warn("crierd: worker %d (pid %d) %s while stopping", w->index, pid, how);
        }
        maybe_finish(s);
        return;
    }
    if (up_ms >= STEADY_MS)
        w->backoff_ms = RESTART_FIRST_MS;
    cr_error("crierd: worker %d (pid %d) %s; restarting in %ld ms (its batches are taken back "
             "as consumer of the same name)",
             w->index, pid, how, w->backoff_ms);
    schedule_restart(w);
}

static void start_worker(struct worker *w)
{
    struct supervisor *s = w->s;
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    char warg[48];
    char *args[6];
    int rc;

    if (w->proc_open) {
        /* the last process's handle is still closing: come back shortly */
        uv_timer_start(&w->restart, on_restart, 10, 0);
        return;
    }
    snprintf(warg, sizeof warg, "%d%s", w->index, s->pid_arg);
    args[0] = s->exe;
    args[1] = (char *)"-c";
    args[2] = (char *)s->config_path;
    args[3] = (char *)"-W";
    args[4] = warg;
    args[5] = NULL;
    memset(&o, 0, sizeof o);
    memset(io, 0, sizeof io);
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_INHERIT_FD;
    io[1].data.fd = STDOUT_FILENO;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = STDERR_FILENO;
    o.file = s->exe;
    o.args = args;
    o.exit_cb = on_exit_cb;
    o.stdio = io;
    o.stdio_count = 3;
    o.env = cr_sd_relay_env(s->relay); /* NULL: this process's environment */
    o.flags = UV_PROCESS_DETACHED;
    w->proc.data = w;
    rc = uv_spawn(s->loop, &w->proc, &o);
    w->proc_open = 1;
    if (rc < 0) {
        /* uv_spawn initialised the handle; it must still be closed */
        uv_close((uv_handle_t *)&w->proc, on_proc_closed);
        cr_error("crierd: starting worker %d (%s) failed: %s; trying again in %ld ms", w->index,
                 s->exe, uv_strerror(rc), w->backoff_ms);
        schedule_restart(w);
        return;
    }
    w->alive = 1;
    w->started_ms = uv_now(s->loop);
    w->last_ping_ms = w->started_ms;
    w->ready = 0;
    s->running++;
    cr_info("crierd: worker %d started (pid %d)", w->index, w->proc.pid);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct supervisor *s = h->data;
    int i;

    if (!s->stopping) {
        cr_info("crierd: signal %d: stopping %d workers", signum, s->running);
        cr_sd_stopping();
    }
    s->stopping = 1;
    for (i = 0; i < s->n; i++) {
        uv_timer_stop(&s->w[i].restart);
        if (s->w[i].alive)
            uv_process_kill(&s->w[i].proc, SIGTERM);
    }
    maybe_finish(s);
}

/* Whether msg (newline-separated assignments) has the line want. */
static int has_line(const char *msg, const char *want)
{
    size_t n = strlen(want);

    while (msg != NULL && *msg != '\0') {
        if (strncmp(msg, want, n) == 0 && (msg[n] == '\n' || msg[n] == '\0'))
            return 1;
        msg = strchr(msg, '\n');
        if (msg != NULL)
            msg++;
    }
    return 0;
}

/* A worker's notification, through the relay. */
static void on_notify(void *ud, long pid, const char *msg)
{
    struct supervisor *s = ud;
    struct worker *w = NULL;
    int i;

    for (i = 0; i < s->n; i++) {
        if (s->w[i].alive && (long)s->w[i].proc.pid == pid)
            w = &s->w[i];
    }
    if (w == NULL)
        return; /* not a worker of ours (any more) */
    if (has_line(msg, "WATCHDOG=1"))
        w->last_ping_ms = uv_now(s->loop);
    if (!has_line(msg, "READY=1") || w->ready)
        return;
    w->ready = 1;
    for (i = 0; i < s->n; i++) {
        if (!s->w[i].ready)
            return;
    }
    if (!s->announced && !s->stopping) {
        s->announced = 1;
        cr_info("crierd: every worker is ready; telling systemd");
        cr_sd_ready("ready: every worker taking jobs");
    }
}

/* Kills (SIGKILL) a worker whose event loop has not pinged for a whole
 * watchdog interval: it is stuck, and is restarted like one that died. */
static void on_watchdog_check(uv_timer_t *t)
{
    struct supervisor *s = t->data;
    uint64_t now = uv_now(s->loop);
    int i;

    if (s->stopping)
        return;
    for (i = 0; i < s->n; i++) {
        struct worker *w = &s->w[i];

        if (!w->alive || now - w->last_ping_ms <= s->watchdog_ms)
            continue;
        cr_error("crierd: worker %d (pid %d) sent no watchdog ping for %llu ms (its event "
                 "loop is stuck); killing it to restart it",
                 w->index, w->proc.pid, (unsigned long long)(now - w->last_ping_ms));
        w->last_ping_ms = now; /* once per interval while it dies */
        uv_process_kill(&w->proc, SIGKILL);
    }
}

/* The relay for the workers' notifications, when systemd supervises this
 * process; without one (not under systemd, or it failed) READY=1 goes out
 * once every worker is started. */
static void open_relay(struct supervisor *s)
{
    int rc = cr_sd_relay_open(s->loop, on_notify, s, &s->relay);

    if (rc < 0)
        cr_warn("crierd: cannot relay the workers' systemd notifications (%s); telling "
                "systemd READY=1 once they are started",
                cr_strerror(rc));
    if (s->relay == NULL)
        return;
    s->watchdog_ms = cr_sd_watchdog_usec() / 1000;
    if (s->watchdog_ms == 0)
        return;
    uv_timer_init(s->loop, &s->watchdog_check);
    s->watchdog_check.data = s;
    uv_timer_start(&s->watchdog_check, on_watchdog_check, s->watchdog_ms / 2 + 1,
                   s->watchdog_ms / 2 + 1);
    uv_unref((uv_handle_t *)&s->watchdog_check);
}

int cr_workers_run(const char *config_path, int n)
{
    struct supervisor s;
    size_t len = sizeof s.exe;
    int rc;
    int i;

    memset(&s, 0, sizeof s);
    s.loop = uv_default_loop();
    s.config_path = config_path;
    s.n = n;
    rc = uv_exepath(s.exe, &len);
    if (rc < 0) {
        cr_error("crierd: cannot find its own executable to start workers: %s", uv_strerror(rc));
        return 1;
    }
    snprintf(s.pid_arg, sizeof s.pid_arg, ":%ld", (long)getpid());
    s.w = calloc((size_t)n, sizeof(*s.w));
    if (s.w == NULL) {
        cr_error("crierd: out of memory for %d workers", n);
        return 1;
    }
    uv_signal_init(s.loop, &s.sig_term);
    uv_signal_init(s.loop, &s.sig_int);
    s.sig_term.data = s.sig_int.data = &s;
    uv_signal_start(&s.sig_term, on_signal, SIGTERM);
    uv_signal_start(&s.sig_int, on_signal, SIGINT);
    cr_info("crierd: supervising %d workers (one event loop each), config %s", n, config_path);
    open_relay(&s);
    for (i = 0; i < n; i++) {
        s.w[i].s = &s;
        s.w[i].index = i;
        s.w[i].backoff_ms = RESTART_FIRST_MS;
        uv_timer_init(s.loop, &s.w[i].restart);
        s.w[i].restart.data = &s.w[i];
        start_worker(&s.w[i]);
    }
    /* systemd hears from the supervisor alone (NotifyAccess=main): ready once
     * every worker is (on_notify), and alive while this loop turns */
    if (cr_sd_watchdog_start(s.loop) < 0)
        cr_warn("crierd: systemd watchdog timer could not start");
    if (s.relay == NULL)
        cr_sd_ready("ready: supervising workers");
    uv_run(s.loop, UV_RUN_DEFAULT);
    uv_loop_close(s.loop);
    free(s.w);
    cr_info("crierd: every worker stopped; supervisor exits");
    return s.failed ? 1 : 0;
}

int cr_workers_parse_arg(const char *arg, int n, int *index, long *pid)
{
    char *end = NULL;
    long i, p;

    errno = 0;
    i = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end != ':' || i < 0 || i >= n)
        return CR_EINVAL;
    arg = end + 1;
    p = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || p < 1)
        return CR_EINVAL;
    *index = (int)i;
    *pid = p;
    return 0;
}

int cr_workers_bind(long supervisor_pid)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        return CR_EINVAL;
    /* the supervisor may have died before the line above took effect */
    if ((long)getppid() != supervisor_pid)
        return CR_ECLOSED;
    return 0;
}
