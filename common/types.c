/* Names of channels, priorities and statuses as they appear in Redis and JSON. */
#include "cr_types.h"
#include "cr_error.h"

#include <string.h>

static const char *const channel_names[CR_CH__COUNT] = {"email", "sms", "push", "whatsapp"};
static const char *const priority_names[CR_PRIO__COUNT] = {"urgent", "high", "normal", "bulk"};
static const char *const status_names[CR_ST__COUNT] = {
#define XX(code, name) name,
    CR_STATUS_MAP(XX)
#undef XX
};

static int find(const char *const *names, int n, const char *name)
{
    int i;

    for (i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0)
            return i;
    }
    return CR_EINVAL;
}

const char *cr_channel_name(enum cr_channel ch)
{
    return (unsigned)ch < CR_CH__COUNT ? channel_names[ch] : NULL;
}

int cr_channel_parse(const char *name, enum cr_channel *out)
{
    int i = find(channel_names, CR_CH__COUNT, name);

    if (i < 0)
        return i;
    *out = (enum cr_channel)i;
    return 0;
}

const char *cr_priority_name(enum cr_priority p)
{
    return (unsigned)p < CR_PRIO__COUNT ? priority_names[p] : NULL;
}

int cr_priority_parse(const char *name, enum cr_priority *out)
{
    int i = find(priority_names, CR_PRIO__COUNT, name);

    if (i < 0)
        return i;
    *out = (enum cr_priority)i;
    return 0;
}

const char *cr_status_name(enum cr_status st)
{
    return (unsigned)st < CR_ST__COUNT ? status_names[st] : NULL;
}

int cr_status_parse(const char *name, enum cr_status *out)
{
    int i = find(status_names, CR_ST__COUNT, name);

    if (i < 0)
        return i;
    *out = (enum cr_status)i;
    return 0;
}
