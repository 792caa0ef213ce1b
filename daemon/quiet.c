/* Quiet hours (see quiet.h). Zone offsets come from the C library's zone
 * database through localtime_r with TZ set, cached per zone for the hour,
 * since changing TZ makes the library read the zone file again. */
#include "quiet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cr_error.h"

#define CACHE 64
#define HOUR_MS 3600000LL

struct tz_entry {
    char tz[64];
    int64_t hour; /* t_ms / HOUR_MS this offset is for */
    long offset;
};

static struct tz_entry cache[CACHE];
static size_t cache_next;

int cr_quiet_parse(const char *spec, int *start_min, int *end_min)
{
    int h1, m1, h2, m2;
    char tail;

    if (spec == NULL || sscanf(spec, "%2d:%2d-%2d:%2d%c", &h1, &m1, &h2, &m2, &tail) != 4)
        return CR_EINVAL;
    if (h1 < 0 || h1 > 23 || h2 < 0 || h2 > 23 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59)
        return CR_EINVAL;
    *start_min = h1 * 60 + m1;
    *end_min = h2 * 60 + m2;
    return 0;
}

static int zone_name_ok(const char *tz)
{
    size_t i;

    if (tz[0] == '\0' || strlen(tz) >= sizeof(cache[0].tz) || strstr(tz, ".."))
        return 0;
    for (i = 0; tz[i]; i++) {
        char c = tz[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+'))
            return 0;
    }
    return 1;
}

static long lookup_offset(const char *tz, int64_t t_ms)
{
    char *saved = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    char spec[80];
    time_t t = (time_t)(t_ms / 1000);
    struct tm tm;
    long off = 0;

    snprintf(spec, sizeof(spec), ":%s", tz);
    setenv("TZ", spec, 1);
    tzset();
    if (localtime_r(&t, &tm))
        off = tm.tm_gmtoff;
    if (saved) {
        setenv("TZ", saved, 1);
        free(saved);
    } else {
        unsetenv("TZ");
    }
    tzset();
    return off;
}

long cr_tz_offset(const char *tz, int64_t t_ms)
{
    int64_t hour = t_ms / HOUR_MS;
    struct tz_entry *e;
    size_t i;

    if (!zone_name_ok(tz))
        return 0;
    for (i = 0; i < CACHE; i++) {
        if (cache[i].hour == hour && strcmp(cache[i].tz, tz) == 0)
            return cache[i].offset;
    }
    e = &cache[cache_next];
    cache_next = (cache_next + 1) % CACHE;
    snprintf(e->tz, sizeof(e->tz), "%s", tz);
    e->hour = hour;
    e->offset = lookup_offset(tz, t_ms);
    return e->offset;
}

int cr_quiet_until(const char *spec, const char *tz, int64_t now_ms, int64_t *until_ms)
{
    int start;
    int end;
    int64_t local;
    int64_t day_ms = 86400000LL;
    int64_t into_day;
    int64_t minute;
    int64_t left;
    int inside;

    if (spec == NULL || spec[0] == '\0')
        return 0;
    if (cr_quiet_parse(spec, &start, &end) < 0)
        return CR_EINVAL;
    if (start == end)
        return 0;
    local = now_ms + (int64_t)cr_tz_offset(tz && *tz ? tz : CR_DEFAULT_TZ, now_ms) * 1000;
    into_day = ((local % day_ms) + day_ms) % day_ms;
    minute = into_day / 60000;
    inside = start < end ? (minute >= start && minute < end) : (minute >= start || minute < end);
    if (!inside)
        return 0;
    left = ((int64_t)end * 60000 - into_day + day_ms) % day_ms;
    *until_ms = now_ms + left;
    return 1;
}
