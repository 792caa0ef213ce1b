/* systemd service notifications (sd_notify): READY=1 once crierd serves,
 * STOPPING=1 when it starts to stop, and WATCHDOG=1 from the event loop while
 * it turns. Every call does nothing when crierd was not started by systemd
 * (no $NOTIFY_SOCKET). */
#ifndef CR_SDNOTIFY_H
#define CR_SDNOTIFY_H

#include <uv.h>

/* Starts the watchdog on loop when the service manager asks for one
 * ($WATCHDOG_USEC, for this process's pid): WATCHDOG=1 every half of that
 * interval, from a timer, so a loop that stops turning stops the pings. The
 * timer does not keep the loop alive. Returns 0 (a watchdog started or none
 * asked for) or a negative CR_ code. */
int cr_sd_watchdog_start(uv_loop_t *loop);

/* Stops and closes the watchdog timer (before the loop's last run). */
void cr_sd_watchdog_stop(void);

/* Tells the service manager crierd is ready, with a STATUS= line. */
void cr_sd_ready(const char *status);

/* Tells the service manager crierd is stopping. */
void cr_sd_stopping(void);

/* The watchdog interval asked for, in microseconds, or 0 for none. */
unsigned long long cr_sd_watchdog_usec(void);

#endif
