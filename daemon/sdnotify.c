/* sd_notify from libsystemd, with the watchdog fed by a uv timer so that a
 * stuck loop (a callback that never returns) is seen by systemd and the
 * service restarted (WatchdogSec= in crierd.service). */
#include "sdnotify.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>

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
