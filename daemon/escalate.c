/* Escalation steps (see escalate.h): the document's "escalate" checked like
 * every other field, and the form the job hash keeps them in. Running them
 * is escalate_run.c. */
#include "escalate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "job.h"

static int efail(struct cr_job_error *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int efail(struct cr_job_error *err, const char *code, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->code, sizeof(err->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return CR_EINVAL;
}

static int parse_to(const cJSON *to, size_t k, unsigned taken, unsigned content,
                    unsigned *out, struct cr_job_error *err)
{
    const cJSON *v;
    size_t i = 0;

    *out = 0;
    if (to == NULL)
        return efail(err, "missing_field", "escalate[%zu].to: required (channels to send on)", k);
    if (!cJSON_IsArray(to))
        return efail(err, "bad_type", "escalate[%zu].to: must be an array of strings", k);
    if (to->child == NULL)
        return efail(err, "unknown_channel", "escalate[%zu].to: must name at least one channel", k);
    for (v = to->child; v; v = v->next, i++) {
        enum cr_channel ch;

        if (!cJSON_IsString(v))
            return efail(err, "bad_type", "escalate[%zu].to[%zu]: must be a string", k, i);
        if (cr_channel_parse(v->valuestring, &ch) < 0)
            return efail(err, "unknown_channel",
                         "escalate[%zu].to[%zu]: not one of email, sms, push, whatsapp", k, i);
        if ((taken | *out) & CR_CH_BIT(ch))
            return efail(err, "unknown_channel",
                         "escalate[%zu].to[%zu]: '%s' is already used by the job or an earlier "
                         "step",
                         k, i, v->valuestring);
        if (!(content & CR_CH_BIT(ch)))
            return efail(err, "no_content",
                         "escalate[%zu].to[%zu]: the message has no %s content in its default "
                         "language",
                         k, i, v->valuestring);
        *out |= CR_CH_BIT(ch);
    }
    return 0;
}

static int parse_step(const cJSON *o, size_t k, unsigned taken, int confirm, unsigned content,
                      uint32_t prev_after, struct cr_esc_step *st, struct cr_job_error *err)
{
    const cJSON *f;
    const cJSON *after = NULL;
    const cJSON *to = NULL;
    const cJSON *unless = NULL;

    if (!cJSON_IsObject(o))
        return efail(err, "bad_type", "escalate[%zu]: must be an object", k);
    for (f = o->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "after_s") == 0  ? &after
                             : strcmp(f->string, "to") == 0     ? &to
                             : strcmp(f->string, "unless") == 0 ? &unless
                                                                : NULL;

        if (slot == NULL)
            return efail(err, "unknown_field", "escalate[%zu].%.40s: unknown field", k, f->string);
        if (*slot)
            return efail(err, "duplicate_field", "escalate[%zu].%s: given more than once", k,
                         f->string);
        *slot = f;
    }
    if (after == NULL)
        return efail(err, "missing_field", "escalate[%zu].after_s: required (seconds)", k);
    if (!cJSON_IsNumber(after) || after->valuedouble != (double)(long long)after->valuedouble)
        return efail(err, "bad_type", "escalate[%zu].after_s: must be a whole number of seconds",
                     k);
    if (after->valuedouble < CR_ESC_AFTER_MIN_S || after->valuedouble > CR_ESC_AFTER_MAX_S)
        return efail(err, "bad_escalate", "escalate[%zu].after_s: must be from %d to %d, got %.0f",
                     k, CR_ESC_AFTER_MIN_S, CR_ESC_AFTER_MAX_S, after->valuedouble);
    st->after_s = (uint32_t)after->valuedouble;
    if (st->after_s <= prev_after)
        return efail(err, "bad_escalate",
                     "escalate[%zu].after_s: %u is not after the previous step's %u (each step's "
                     "after_s counts from the job's start)",
                     k, st->after_s, prev_after);
    st->unless = CR_ESC_UNLESS_DELIVERED;
    if (unless) {
        if (!cJSON_IsString(unless))
            return efail(err, "bad_type", "escalate[%zu].unless: must be a string", k);
        if (strcmp(unless->valuestring, "confirmed") == 0)
            st->unless = CR_ESC_UNLESS_CONFIRMED;
        else if (strcmp(unless->valuestring, "delivered") != 0)
            return efail(err, "bad_escalate",
                         "escalate[%zu].unless: must be \"delivered\" or \"confirmed\"", k);
        if (st->unless == CR_ESC_UNLESS_CONFIRMED && !confirm)
            return efail(err, "bad_escalate",
                         "escalate[%zu].unless: \"confirmed\" needs \"confirm\": true", k);
    }
    return parse_to(to, k, taken, content, &st->channels, err);
}

int cr_escalate_parse(const cJSON *v, unsigned used, int confirm, unsigned content_channels,
                      struct cr_escalation *out, struct cr_job_error *err)
{
    const cJSON *o;
    unsigned taken = used;
    size_t k = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (v == NULL)
        return 0;
    if (!cJSON_IsArray(v))
        return efail(err, "bad_type", "escalate: must be an array of steps");
    if (v->child == NULL)
        return efail(err, "bad_escalate", "escalate: must hold 1 to %d steps (or be left out)",
                     CR_ESC_STEPS_MAX);
    if (cJSON_GetArraySize(v) > CR_ESC_STEPS_MAX)
        return efail(err, "too_long", "escalate: %d steps, over the limit of %d",
                     cJSON_GetArraySize(v), CR_ESC_STEPS_MAX);
    for (o = v->child; o; o = o->next, k++) {
        rc = parse_step(o, k, taken, confirm, content_channels,
                        k ? out->steps[k - 1].after_s : 0, &out->steps[k], err);
        if (rc < 0) {
            memset(out, 0, sizeof(*out));
            return rc;
        }
        taken |= out->steps[k].channels;
        out->n = k + 1;
    }
    return 0;
}

void cr_escalate_spec(const struct cr_escalation *e, char *out, size_t outlen)
{
    size_t i;
    size_t n = 0;

    out[0] = '\0';
    for (i = 0; i < e->n && n < outlen; i++) {
        int w = snprintf(out + n, outlen - n, "%s%u:%u:%c", i ? "," : "", e->steps[i].after_s,
                         e->steps[i].channels,
                         e->steps[i].unless == CR_ESC_UNLESS_CONFIRMED ? 'c' : 'd');

        if (w < 0)
            break;
        n += (size_t)w;
    }
}

int64_t cr_escalate_first_due(const struct cr_escalation *e, int64_t start_ms,
                              int64_t expires_at_ms)
{
    int64_t due = start_ms + (int64_t)e->steps[0].after_s * 1000;

    if (expires_at_ms > 0 && expires_at_ms < due)
        due = expires_at_ms;
    return due;
}
