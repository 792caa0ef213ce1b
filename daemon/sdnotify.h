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

/* ---- the supervisor's relay ----
 * With "workers" over 1 the supervisor is the service's main process: its
 * workers send their notifications (READY=1, WATCHDOG=1, ...) to a socket
 * of the supervisor's instead of systemd's, and the supervisor decides what
 * systemd hears. */
struct cr_sd_relay;

/* Called with the sender's pid and the notification's text (NUL-terminated,
 * borrowed for the call). */
typedef void (*cr_sd_relay_cb)(void *ud, long pid, const char *msg);

/* Opens the relay socket on loop when the supervisor itself runs under
 * systemd ($NOTIFY_SOCKET set); *out is NULL (and 0 returned) when it does
 * not. Returns 0 or a negative CR_ code. */
int cr_sd_relay_open(uv_loop_t *loop, cr_sd_relay_cb cb, void *ud, struct cr_sd_relay **out);

/* The environment a worker is started with: this process's, with
 * NOTIFY_SOCKET naming the relay, WATCHDOG_USEC kept and WATCHDOG_PID
 * dropped. NULL-terminated, owned by the relay (valid until it is closed);
 * NULL when r is NULL (the workers inherit the environment as it is). */
char **cr_sd_relay_env(struct cr_sd_relay *r);

/* Closes the socket; the relay is freed once its handle is closed. NULL is
 * allowed. */
void cr_sd_relay_close(struct cr_sd_relay *r);

#endif
