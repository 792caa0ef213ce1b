/* sd_notify from libsystemd, with the watchdog fed by a uv timer so that a
 * stuck loop (a callback that never returns) is seen by systemd and the
 * service restarted (WatchdogSec= in crierd.service); and the supervisor's
 * relay, a datagram socket its workers notify instead of systemd. */
#include "sdnotify.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "cr_error.h"
#include "cr_log.h"

static uv_timer_t watchdog_timer;
static int watchdog_on;

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

unsigned long long cr_sd_watchdog_usec(void)
{
    uint64_t usec = 0;

    /* only when $WATCHDOG_PID is unset or names this process */
    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    return (unsigned long long)usec;
}

int cr_sd_watchdog_start(uv_loop_t *loop)
{
    unsigned long long usec = cr_sd_watchdog_usec();
    uint64_t every_ms;
    int rc;

    if (usec == 0 || watchdog_on)
        return 0;
    every_ms = usec / 2000;
    if (every_ms < 1)
        every_ms = 1;
    rc = uv_timer_init(loop, &watchdog_timer);
    if (rc < 0)
        return CR_ENOMEM;
    uv_timer_start(&watchdog_timer, on_watchdog, 0, every_ms);
    uv_unref((uv_handle_t *)&watchdog_timer);
    watchdog_on = 1;
    cr_info("systemd watchdog: WATCHDOG=1 every %llu ms (WatchdogSec %llu ms)",
            (unsigned long long)every_ms, usec / 1000);
    return 0;
}

void cr_sd_watchdog_stop(void)
{
    if (!watchdog_on)
        return;
    watchdog_on = 0;
    uv_timer_stop(&watchdog_timer);
    uv_close((uv_handle_t *)&watchdog_timer, NULL);
}

void cr_sd_ready(const char *status)
{
    char msg[320];

    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status);
    sd_notify(0, msg);
}

void cr_sd_stopping(void)
{
    sd_notify(0, "STOPPING=1\nSTATUS=stopping: finishing requests in flight");
}

/* ---- the supervisor's relay --------------------------------------------- */

#define RELAY_MSG_MAX 4096
#define RELAY_ENV_EXTRA 2 /* NOTIFY_SOCKET, and the closing NULL */

struct cr_sd_relay {
    uv_poll_t poll;
    int fd;
    cr_sd_relay_cb cb;
    void *ud;
    char **env;
    char notify[128]; /* "NOTIFY_SOCKET=@crierd-<pid>-notify" */
};

extern char **environ;

static void relay_free(uv_handle_t *h)
{
    struct cr_sd_relay *r = h->data;

    close(r->fd);
    free(r->env);
    free(r);
}

static void on_relay(uv_poll_t *h, int status, int events)
{
    struct cr_sd_relay *r = h->data;
    char buf[RELAY_MSG_MAX + 1];
    char ctl[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {buf, RELAY_MSG_MAX};
    struct msghdr mh;
    struct cmsghdr *c;
    ssize_t n;
    long pid;
    int i;

    if (status < 0 || !(events & UV_READABLE))
        return;
    for (i = 0; i < 64; i++) { /* a bounded number per wakeup */
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl;
        mh.msg_controllen = sizeof ctl;
        n = recvmsg(r->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
            return; /* EAGAIN: drained */
        buf[n] = '\0';
        pid = 0;
        for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred uc;

                memcpy(&uc, CMSG_DATA(c), sizeof uc);
                pid = (long)uc.pid;
            }
        }
        if (pid > 0)
            r->cb(r->ud, pid, buf);
    }
}

/* The environment for workers: environ less NOTIFY_SOCKET and WATCHDOG_PID,
 * plus the relay's NOTIFY_SOCKET. The strings are environ's (not copied). */
static int relay_env(struct cr_sd_relay *r)
{
    size_t n = 0;
    size_t k = 0;
    size_t i;

    while (environ[n] != NULL)
        n++;
    r->env = calloc(n + RELAY_ENV_EXTRA, sizeof(char *));
    if (r->env == NULL)
        return CR_ENOMEM;
    for (i = 0; i < n; i++) {
        if (strncmp(environ[i], "NOTIFY_SOCKET=", 14) == 0 ||
            strncmp(environ[i], "WATCHDOG_PID=", 13) == 0)
            continue;
        r->env[k++] = environ[i];
    }
    r->env[k++] = r->notify;
    r->env[k] = NULL;
    return 0;
}

int cr_sd_relay_open(uv_loop_t *loop, cr_sd_relay_cb cb, void *ud, struct cr_sd_relay **out)
{
    struct cr_sd_relay *r = NULL;
    struct sockaddr_un sa;
    socklen_t len;
    int one = 1;
    int rc = CR_EIO;
    int n;

    *out = NULL;
    if (getenv("NOTIFY_SOCKET") == NULL)
        return 0;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return CR_ENOMEM;
    r->cb = cb;
    r->ud = ud;
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (r->fd < 0)
        goto fail;
    /* an abstract name: nothing on disk to clean up, gone with the process */
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "crierd-%ld-notify", (long)getpid());
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    if (setsockopt(r->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0 ||
        bind(r->fd, (struct sockaddr *)&sa, len) != 0)
        goto fail;
    snprintf(r->notify, sizeof r->notify, "NOTIFY_SOCKET=@%s", sa.sun_path + 1);
    rc = relay_env(r);
    if (rc < 0)
        goto fail;
    rc = uv_poll_init(loop, &r->poll, r->fd);
    if (rc < 0) {
        rc = CR_EIO;
        goto fail;
    }
    r->poll.data = r;
    uv_poll_start(&r->poll, UV_READABLE, on_relay);
    *out = r;
    return 0;
fail:
    if (r->fd >= 0)
        close(r->fd);
    free(r->env);
    free(r);
    return rc;
}

char **cr_sd_relay_env(struct cr_sd_relay *r)
{
    return r != NULL ? r->env : NULL;
}

void cr_sd_relay_close(struct cr_sd_relay *r)
{
    if (r == NULL || uv_is_closing((uv_handle_t *)&r->poll))
        return;
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, relay_free);
}
