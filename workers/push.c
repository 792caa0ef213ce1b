/* How long a push service may keep an alert for an offline device and how
 * urgently it should wake the device: one decision shared by the APNs adapter
 * and by the FCM adapter (Android options and the APNs headers it passes on),
 * so that an alert is treated alike whichever way it reaches a phone. */
#include "adapter.h"
#include "cr_error.h"

#include <stdio.h>

/* Priorities (Apple, "Sending notification requests to APNs"; Firebase,
 * "Set and manage Android message priority"):
 *
 *   crier    apns-priority  android   why
 *   urgent   10             high      at once, whatever the power state
 *   high     10             high      an appeal marked high must not wait for
 *                                     the device's power budget
 *   normal   10             normal    APNs 5 may group, throttle and "in some
 *                                     cases" not deliver: a resident signed up
 *                                     for these alerts, so none is left to be
 *                                     dropped; FCM normal only waits for the
 *                                     device to leave Doze, it does not drop
 *   bulk     5              normal    newsletters and surveys: the device's
 *                                     power budget first
 *
 * Expiry: the job's expires_at when it has one (a push is worth nothing
 * after it), else the provider's default_ttl_s; never more than the longest
 * either service keeps a message (FCM: 28 days; APNs: 30). An expiry already
 * past is 0: deliver now or not at all (apns-expiration 0, ttl "0s"). */
void cr_push_delivery(const struct cr_message *m, int64_t now_ms, long default_ttl_s,
                      struct cr_push_delivery *out)
{
    int64_t ttl_s;

    if (m->expires_at_ms > 0) {
        ttl_s = m->expires_at_ms > now_ms ? (m->expires_at_ms - now_ms) / 1000 : 0;
        if (ttl_s > CR_PUSH_TTL_MAX_S)
            ttl_s = CR_PUSH_TTL_MAX_S;
    } else {
        ttl_s = default_ttl_s < 0                   ? 0
                : default_ttl_s > CR_PUSH_TTL_MAX_S ? CR_PUSH_TTL_MAX_S
                                                    : default_ttl_s;
    }
    out->ttl_s = ttl_s;
    if (ttl_s == 0)
        out->apns_expiration = 0;
    else if (m->expires_at_ms > 0 && ttl_s < CR_PUSH_TTL_MAX_S)
        out->apns_expiration = m->expires_at_ms / 1000; /* the job's own second */
    else
        out->apns_expiration = now_ms / 1000 + ttl_s;
    out->apns_priority = m->priority == CR_PRIO_BULK ? "5" : "10";
    out->android_priority =
        m->priority == CR_PRIO_URGENT || m->priority == CR_PRIO_HIGH ? "high" : "normal";
}

int cr_cfg_push_ttl(const cJSON *cfg, const char *path, long *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "default_ttl_s");
    double d;

    *out = CR_PUSH_TTL_DEFAULT_S;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d != (double)(long)d || d < 0 || d > CR_PUSH_TTL_MAX_S)
        return cr_cfg_fail(err, errlen, path, "default_ttl_s",
                           "must be a whole number of seconds from 0 to %d (28 days)",
                           CR_PUSH_TTL_MAX_S);
    *out = (long)d;
    return 0;
}
