/* Per-message rendering (see render.h). */
#include "render.h"

#include <stdio.h>
#include <string.h>

#include "cr_error.h"
#include "links.h"

void cr_render_init(struct cr_render *r, const struct cr_job_limits *lim)
{
    cr_buf_init(&r->part[CR_PART_SUBJECT], lim->subject * 4 + 256);
    cr_buf_init(&r->part[CR_PART_TEXT], lim->text * 4 + 1024);
    cr_buf_init(&r->part[CR_PART_HTML], lim->html * 4 + 1024);
    cr_buf_init(&r->part[CR_PART_SMS], 8192);
    cr_buf_init(&r->part[CR_PART_PUSH_TITLE], lim->push_title * 4 + 256);
    cr_buf_init(&r->part[CR_PART_PUSH_BODY], lim->push_body * 4 + 256);
}

void cr_render_release(struct cr_render *r)
{
    int p;

    for (p = 0; p < CR_PART__COUNT; p++)
        cr_buf_release(&r->part[p]);
}

struct lookup_ctx {
    const struct cr_sub *sub;
    const struct cr_job *job;
    struct cr_render *r;
    const struct cr_msg *m;
    int64_t now_ms;
};

/* The message's signed unsubscribe link (made on first use), or NULL when
 * links are off or the subscriber id cannot be carried in one. */
static const char *unsubscribe_url(struct lookup_ctx *lc)
{
    struct cr_render *r = lc->r;
    const struct cr_msg *m = lc->m;

    if (r->unsubscribe_url[0] == '\0' &&
        cr_link_url(m->batch->d->cfg, CR_LINK_UNSUBSCRIBE, m->sub->id,
                    cr_channel_name(m->channel), lc->now_ms, r->unsubscribe_url,
                    sizeof(r->unsubscribe_url)) != 0)
        r->unsubscribe_url[0] = '\0';
    return r->unsubscribe_url[0] ? r->unsubscribe_url : NULL;
}

static const char *survey_url(struct lookup_ctx *lc)
{
    struct cr_render *r = lc->r;
    const struct cr_msg *m = lc->m;

    if (lc->job->survey_question == NULL)
        return NULL;
    if (r->survey_url[0] == '\0' &&
        cr_link_url(m->batch->d->cfg, CR_LINK_SURVEY, m->sub->id, m->batch->job_id, lc->now_ms,
                    r->survey_url, sizeof(r->survey_url)) != 0)
        r->survey_url[0] = '\0';
    return r->survey_url[0] ? r->survey_url : NULL;
}

static const char *lookup(void *ud, const char *name, size_t len)
{
    struct lookup_ctx *lc = ud;
    size_t i;

    if (len == 11 && memcmp(name, "sender.name", 11) == 0)
        return lc->job->sender_name;
    if (len == 11 && memcmp(name, "sender.team", 11) == 0)
        return lc->job->sender_team;
    if (len == 15 && memcmp(name, "unsubscribe_url", 15) == 0)
        return unsubscribe_url(lc);
    if (len == 10 && memcmp(name, "survey_url", 10) == 0)
        return survey_url(lc);
    for (i = 0; i + 1 < lc->sub->nkv; i += 2) {
        const char *k = lc->sub->kv[i];

        if (strlen(k) == len && memcmp(k, name, len) == 0)
            return lc->sub->kv[i + 1];
    }
    return NULL;
}

static const char *field(const struct cr_sub *s, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < s->nkv; i += 2) {
        if (strcmp(s->kv[i], name) == 0)
            return s->kv[i + 1];
    }
    return NULL;
}

int cr_render_message(struct cr_render *r, const struct cr_msg *m, struct cr_message *out)
{
    const struct cr_batch *b = m->batch;
    const struct cr_jobctx *jc = b->jc;
    struct lookup_ctx lc = {m->sub, &jc->job, r, m, cr_now_ms()};
    const char *lang = field(m->sub, "lang");
    const char *slot[CR_PART__COUNT];
    int p;

    memset(out, 0, sizeof(*out));
    r->unsubscribe_url[0] = r->survey_url[0] = '\0'; /* links are made when first used */
    for (p = 0; p < CR_PART__COUNT; p++) {
        const struct cr_tpl *t = cr_jobctx_tpl(jc, lang, (enum cr_part)p);
        int rc;

        slot[p] = NULL;
        if (t == NULL)
            continue;
        cr_buf_reset(&r->part[p]);
        rc = cr_tpl_render(t, lookup, &lc, p == CR_PART_HTML, &r->part[p]);
        if (rc < 0)
            return rc;
        slot[p] = cr_buf_cstr(&r->part[p]);
    }
    snprintf(r->ref, sizeof(r->ref), "%s/%u/%s", b->job_id, m->sub->pos,
             cr_channel_name(m->channel));
    out->job_id = b->job_id;
    out->sub_id = m->sub->id;
    out->ref = r->ref;
    out->channel = m->channel;
    out->priority = jc->job.priority;
    out->address = m->address;
    out->platform = m->platform;
    out->subject = slot[CR_PART_SUBJECT];
    out->text = slot[CR_PART_TEXT];
    out->html = slot[CR_PART_HTML];
    out->sms = slot[CR_PART_SMS];
    out->push_title = slot[CR_PART_PUSH_TITLE];
    out->push_body = slot[CR_PART_PUSH_BODY];
    out->sender_name = jc->job.sender_name;
    out->unsubscribe_url = m->channel == CR_CH_EMAIL ? unsubscribe_url(&lc) : NULL;
    out->expires_at_ms = jc->job.expires_at_ms;
    return 0;
}
