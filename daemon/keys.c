/* Key names from the prefix (see keys.h). */
#include "keys.h"

#include <stdio.h>
#include <string.h>

#include "cr_error.h"

static int fmt_key(char *out, size_t n, const char *prefix, const char *a, const char *b)
{
    int k = snprintf(out, n, "%s%s%s%s", prefix, a, b ? ":" : "", b ? b : "");

    return (k < 0 || (size_t)k >= n) ? CR_ETOOBIG : 0;
}

int cr_keys_init(struct cr_keys *keys, const char *prefix)
{
    int i;
    int rc = 0;

    if (strlen(prefix) >= sizeof(keys->prefix))
        return CR_ETOOBIG;
    memset(keys, 0, sizeof(*keys));
    memcpy(keys->prefix, prefix, strlen(prefix) + 1);
    rc |= fmt_key(keys->jobs, sizeof(keys->jobs), prefix, "jobs", NULL);
    rc |= fmt_key(keys->dead, sizeof(keys->dead), prefix, "jobs:dead", NULL);
    rc |= fmt_key(keys->recent, sizeof(keys->recent), prefix, "jobs:recent", NULL);
    rc |= fmt_key(keys->receipts, sizeof(keys->receipts), prefix, "receipts", NULL);
    rc |= fmt_key(keys->retry, sizeof(keys->retry), prefix, "retry", NULL);
    rc |= fmt_key(keys->scheduled, sizeof(keys->scheduled), prefix, "scheduled", NULL);
    rc |= fmt_key(keys->sms_last, sizeof(keys->sms_last), prefix, "sms:last", NULL);
    rc |= fmt_key(keys->events, sizeof(keys->events), prefix, "events", NULL);
    rc |= fmt_key(keys->fleet, sizeof(keys->fleet), prefix, "fleet", NULL);
    for (i = 0; i < CR_PRIO__COUNT; i++)
        rc |= fmt_key(keys->batches[i], CR_KEY_MAX, prefix, "batches",
                      cr_priority_name((enum cr_priority)i));
    for (i = 0; i < CR_CH__COUNT; i++)
        rc |= fmt_key(keys->suppress[i], CR_KEY_MAX, prefix, "suppress",
                      cr_channel_name((enum cr_channel)i));
    return rc ? CR_ETOOBIG : 0;
}

int cr_key_for(const struct cr_keys *keys, const char *kind, const char *id, char *out,
               size_t outlen)
{
    return fmt_key(out, outlen, keys->prefix, kind, id);
}
