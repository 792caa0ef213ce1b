/* Failure counts per step (see strikes.h). */
#include "strikes.h"

#include <stdio.h>
#include <string.h>

static struct cr_strike *find(struct cr_strikes *s, const char *subject)
{
    size_t i;

    for (i = 0; i < CR_STRIKES_SLOTS; i++) {
        if (s->slot[i].subject[0] && strcmp(s->slot[i].subject, subject) == 0)
            return &s->slot[i];
    }
    return NULL;
}

/* A free slot, else the one that failed longest ago. */
static struct cr_strike *take_slot(struct cr_strikes *s)
{
    struct cr_strike *old = &s->slot[0];
    size_t i;

    for (i = 0; i < CR_STRIKES_SLOTS; i++) {
        if (s->slot[i].subject[0] == '\0')
            return &s->slot[i];
        if (s->slot[i].last_ms < old->last_ms)
            old = &s->slot[i];
    }
    return old;
}

unsigned cr_strikes_add(struct cr_strikes *s, const char *subject, const char *reason,
                        int64_t now_ms, long base_ms, long max_ms, long *wait_ms)
{
    struct cr_strike *k = find(s, subject);
    long wait = base_ms;
    unsigned i;

    if (k != NULL && (strncmp(k->reason, reason, sizeof(k->reason) - 1) != 0 ||
                      now_ms - k->last_ms > CR_STRIKES_FORGET_MS))
        k->count = 0;
    if (k == NULL) {
        k = take_slot(s);
        memset(k, 0, sizeof(*k));
        snprintf(k->subject, sizeof(k->subject), "%s", subject);
    }
    snprintf(k->reason, sizeof(k->reason), "%s", reason);
    k->count++;
    k->last_ms = now_ms;
    for (i = 1; i < k->count && wait < max_ms; i++)
        wait *= 2;
    *wait_ms = wait < max_ms ? wait : max_ms;
    return k->count;
}

void cr_strikes_clear(struct cr_strikes *s, const char *subject)
{
    struct cr_strike *k = find(s, subject);

    if (k != NULL)
        memset(k, 0, sizeof(*k));
}

unsigned cr_strikes_count(const struct cr_strikes *s, const char *subject, const char **reason)
{
    const struct cr_strike *k = find((struct cr_strikes *)s, subject);

    if (reason)
        *reason = k ? k->reason : NULL;
    return k ? k->count : 0;
}
