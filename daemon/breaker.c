/* Circuit breaker (see breaker.h). */
#include "breaker.h"

void cr_breaker_init(struct cr_breaker *b, int threshold, long open_ms)
{
    b->state = CR_BREAKER_CLOSED;
    b->threshold = threshold;
    b->failures = 0;
    b->base_open_ms = open_ms;
    b->open_ms = open_ms;
    b->max_open_ms = open_ms * 16;
    b->open_until_ms = 0;
    b->probing = 0;
}

int cr_breaker_allow(struct cr_breaker *b, int64_t now_ms)
{
    switch (b->state) {
    case CR_BREAKER_CLOSED:
        return 1;
    case CR_BREAKER_OPEN:
        if (now_ms < b->open_until_ms)
            return 0;
        b->state = CR_BREAKER_HALF_OPEN;
        b->probing = 0;
        /* fall through */
    case CR_BREAKER_HALF_OPEN:
    default:
        if (b->probing)
            return 0;
        b->probing = 1;
        return 1;
    }
}

enum cr_breaker_state cr_breaker_success(struct cr_breaker *b)
{
    b->failures = 0;
    b->probing = 0;
    b->state = CR_BREAKER_CLOSED;
    b->open_ms = b->base_open_ms;
    return b->state;
}

enum cr_breaker_state cr_breaker_failure(struct cr_breaker *b, int64_t now_ms)
{
    if (b->state == CR_BREAKER_HALF_OPEN) {
        b->probing = 0;
        b->open_ms = b->open_ms * 2 > b->max_open_ms ? b->max_open_ms : b->open_ms * 2;
        b->state = CR_BREAKER_OPEN;
        b->open_until_ms = now_ms + b->open_ms;
        return b->state;
    }
    if (b->state == CR_BREAKER_OPEN || b->threshold <= 0)
        return b->state;
    if (++b->failures >= b->threshold) {
        b->state = CR_BREAKER_OPEN;
        b->open_until_ms = now_ms + b->open_ms;
    }
    return b->state;
}

const char *cr_breaker_state_name(enum cr_breaker_state s)
{
    switch (s) {
    case CR_BREAKER_OPEN:
        return "open";
    case CR_BREAKER_HALF_OPEN:
        return "half_open";
    case CR_BREAKER_CLOSED:
    default:
        return "closed";
    }
}
