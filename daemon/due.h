/* A poller for a Redis sorted set of things that fall due: it runs a script
 * that takes what is due and answers when the next thing is, and sleeps until
 * then (capped), so due work is picked up promptly without busy polling.
 * Used for parked retries (retry.c) and scheduled jobs (schedule.c). */
#ifndef CR_DUE_H
#define CR_DUE_H

#include <stdint.h>
#include <uv.h>

#include "daemon.h"

struct cr_due;

/* Runs the poller's script; must call cr_due_done() once with the next due
 * time (unix ms, -1 = none known) when its reply is in, or return nonzero when
 * nothing was sent (the poller tries again after max_sleep_ms). */
typedef int (*cr_due_run_cb)(struct cr_due *p, void *ud);

/* Starts polling on d's loop, at least every max_sleep_ms. */
int cr_due_init(struct cr_daemon *d, long max_sleep_ms, cr_due_run_cb run, void *ud,
                struct cr_due **out);

/* The script's answer: sleep until next_due_ms (or max_sleep_ms). */
void cr_due_done(struct cr_due *p, int64_t next_due_ms);

/* Runs the script again now (new work may be due). */
void cr_due_kick(struct cr_due *p);

/* Stops and frees (after the timer is closed). */
void cr_due_free(struct cr_due *p);

#endif
