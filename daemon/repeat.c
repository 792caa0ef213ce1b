/* Repeat suppression for log lines (see repeat.h). */
#include "repeat.h"

#include <stdio.h>
#include <string.h>

void cr_repeat_init(struct cr_repeat *rp, long window_ms)
{
    memset(rp, 0, sizeof(*rp));
    rp->window_ms = window_ms;
}

/* The summary of the counted repeats of the last line; the count restarts. */
static void sum_up(struct cr_repeat *rp, uint64_t now, char *summary, size_t cap,
                   int *summary_level)
{
    uint64_t secs = (now - rp->since_ms + 500) / 1000;

    snprintf(summary, cap, "%s (repeated %lu times in %llu s)", rp->last, rp->count,
             (unsigned long long)(secs ? secs : 1));
    *summary_level = rp->last_level;
    rp->count = 0;
    rp->since_ms = now;
}

int cr_repeat_note(struct cr_repeat *rp, int level, const char *line, uint64_t now, char *summary,
                   size_t cap, int *summary_level)
{
    int action = 0;

    if (rp->last[0] != '\0' && strncmp(rp->last, line, sizeof(rp->last) - 1) == 0) {
        if (now - rp->since_ms < (uint64_t)rp->window_ms) {
            rp->count++;
            return 0;
        }
        if (rp->count == 0) { /* a quiet window since: the line is news again */
            rp->since_ms = now;
            return CR_REPEAT_WRITE;
        }
        rp->count++;
        sum_up(rp, now, summary, cap, summary_level);
        return CR_REPEAT_SUMMARY;
    }
    if (rp->count > 0) {
        sum_up(rp, now, summary, cap, summary_level);
        action |= CR_REPEAT_SUMMARY;
    }
    snprintf(rp->last, sizeof(rp->last), "%s", line);
    rp->last_level = level;
    rp->count = 0;
    rp->since_ms = now;
    return action | CR_REPEAT_WRITE;
}

int cr_repeat_flush(struct cr_repeat *rp, uint64_t now, char *summary, size_t cap,
                    int *summary_level)
{
    if (rp->count == 0 || now - rp->since_ms < (uint64_t)rp->window_ms)
        return 0;
    sum_up(rp, now, summary, cap, summary_level);
    return 1;
}

int cr_repeat_reset(struct cr_repeat *rp, uint64_t now, char *summary, size_t cap,
                    int *summary_level)
{
    int wrote = 0;

    if (rp->count > 0) {
        sum_up(rp, now, summary, cap, summary_level);
        wrote = 1;
    }
    rp->last[0] = '\0';
    rp->count = 0;
    return wrote;
}
