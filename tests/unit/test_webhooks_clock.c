/* The two daemon entry points main.c defines (the loop-edge clock and the
 * shutdown check), for the unit runner, which links the daemon's modules
 * without main.c: the webhook and metrics modules reach them. */
#include <time.h>

#include "daemon.h"

int64_t cr_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cr_daemon_maybe_done(struct cr_daemon *d)
{
    (void)d;
}
