/* Quiet hours: a resident's "22:00-07:00" in their own time zone. Pure apart
 * from reading the system's time zone database; the time is an argument. */
#ifndef CR_QUIET_H
#define CR_QUIET_H

#include <stdint.h>

/* Zone used for residents without a "tz" field. */
#define CR_DEFAULT_TZ "Europe/London"

/* Parses "HH:MM-HH:MM" into minutes of the day. Returns 0 or CR_EINVAL. */
int cr_quiet_parse(const char *spec, int *start_min, int *end_min);

/* Offset of zone tz from UTC at unix time t_ms, in seconds (cached per zone
 * and hour). An unknown zone is treated as UTC. */
long cr_tz_offset(const char *tz, int64_t t_ms);

/* Returns 1 and sets *until_ms (unix ms, the end of the period) when now_ms
 * falls inside the quiet period spec in zone tz (NULL or "" = CR_DEFAULT_TZ);
 * 0 when it does not or spec is NULL/empty; CR_EINVAL for an unreadable spec.
 * A period whose start equals its end is empty. */
int cr_quiet_until(const char *spec, const char *tz, int64_t now_ms, int64_t *until_ms);

#endif
