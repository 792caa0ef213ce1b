/* Due-time poller (see due.h). */
#include "due.h"

#include <stdlib.h>

#include "cr_error.h"

struct cr_due {
    struct cr_daemon *d;
    long max_sleep_ms;
    cr_due_run_cb run;
    void *ud;
    int running;
    uv_timer_t timer;
};

static void on_timer(uv_timer_t *t)
{
    struct cr_due *p = t->data;

    if (p->running || p->d->stopping)
        return;
    p->running = 1;
    if (p->run(p, p->ud) != 0) {
        p->running = 0;
        uv_timer_start(&p->timer, on_timer, (uint64_t)p->max_sleep_ms, 0);
    }
}

int cr_due_init(struct cr_daemon *d, long max_sleep_ms, cr_due_run_cb run, void *ud,
                struct cr_due **out)
{
    struct cr_due *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return CR_ENOMEM;
    p->d = d;
    p->max_sleep_ms = max_sleep_ms;
    p->run = run;
    p->ud = ud;
    uv_timer_init(d->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, on_timer, (uint64_t)max_sleep_ms, 0);
    *out = p;
    return 0;
}

void cr_due_done(struct cr_due *p, int64_t next_due_ms)
{
    int64_t wait = p->max_sleep_ms;

    p->running = 0;
    if (next_due_ms >= 0) {
        int64_t until = next_due_ms - cr_now_ms();

        if (until < wait)
            wait = until < 0 ? 0 : until;
    }
    uv_timer_start(&p->timer, on_timer, (uint64_t)wait, 0);
}

void cr_due_kick(struct cr_due *p)
{
    if (!p->running)
        uv_timer_start(&p->timer, on_timer, 0, 0);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void cr_due_free(struct cr_due *p)
{
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_closed);
}
