/* Per-message and per-batch rendering (see render.h). */
#include "render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "links.h"
#include "whatsapp_doc.h"

void cr_render_init(struct cr_render *r, const struct cr_job_limits *lim)
{
    cr_buf_init(&r->part[CR_PART_SUBJECT], lim->subject * 4 + 256);
    cr_buf_init(&r->part[CR_PART_TEXT], lim->text * 4 + 1024);
    cr_buf_init(&r->part[CR_PART_HTML], lim->html * 4 + 1024);
    cr_buf_init(&r->part[CR_PART_SMS], 8192);
    cr_buf_init(&r->part[CR_PART_PUSH_TITLE], lim->push_title * 4 + 256);
    cr_buf_init(&r->part[CR_PART_PUSH_BODY], lim->push_body * 4 + 256);
    cr_buf_init(&r->part[CR_PART_WA_VARS], (size_t)CR_WA_VARS_MAX * CR_WA_VAR_MAX * 4 + 256);
    cr_buf_init(&r->part[CR_PART_WA_TEXT], (size_t)CR_WA_TEXT_MAX * 4 + 256);
    /* refs, links and substitutions of a full batch: about 12 KiB a message */
    cr_buf_init(&r->arena, (size_t)16 << 20);
    r->nfields = 0;
    r->subst = NULL;
    r->off = NULL;
    r->escape = NULL;
}

void cr_render_release(struct cr_render *r)
{
    int p;

    for (p = 0; p < CR_PART__COUNT; p++)
        cr_buf_release(&r->part[p]);
    cr_buf_release(&r->arena);
    free(r->subst);
    free(r->off);
    cr_tpl_free(r->escape);
    r->subst = NULL;
    r->off = NULL;
    r->escape = NULL;
}

struct lookup_ctx {
    const struct cr_sub *sub;
    const struct cr_job *job;
    struct cr_render *r;
    const struct cr_msg *m;
    int64_t now_ms;
    const char *lang; /* the language of the message's content: its links' pages */
};

/* The message's signed unsubscribe link (made on first use), or NULL when
 * links are off or the subscriber id cannot be carried in one. */
static const char *unsubscribe_url(struct lookup_ctx *lc)
{
    struct cr_render *r = lc->r;
    const struct cr_msg *m = lc->m;

    if (r->unsubscribe_url[0] == '\0' &&
        cr_link_url(m->batch->d->cfg, CR_LINK_UNSUBSCRIBE, m->sub->id,
                    cr_channel_name(m->channel), lc->lang, lc->now_ms, r->unsubscribe_url,
                    sizeof(r->unsubscribe_url)) != 0)
        r->unsubscribe_url[0] = '\0';
    return r->unsubscribe_url[0] ? r->unsubscribe_url : NULL;
}

static const char *survey_url(struct lookup_ctx *lc)
{
    struct cr_render *r = lc->r;
    const struct cr_msg *m = lc->m;

    if (lc->job->survey_question == NULL && lc->job->survey_id == NULL)
        return NULL;
    if (r->survey_url[0] == '\0' &&
        cr_link_url(m->batch->d->cfg, CR_LINK_SURVEY, m->sub->id, m->batch->job_id, lc->lang,
                    lc->now_ms, r->survey_url, sizeof(r->survey_url)) != 0)
        r->survey_url[0] = '\0';
    return r->survey_url[0] ? r->survey_url : NULL;
}

/* A job with "confirm": the message's signed confirmation link. */
static const char *confirm_url(struct lookup_ctx *lc)
{
    struct cr_render *r = lc->r;
    const struct cr_msg *m = lc->m;
    char ref[CR_JOB_ID_MAX + 48];

    if (!lc->job->confirm)
        return NULL;
    snprintf(ref, sizeof(ref), "%s/%u/%s", m->batch->job_id, m->sub->pos,
             cr_channel_name(m->channel));
    if (r->confirm_url[0] == '\0' &&
        cr_link_url(m->batch->d->cfg, CR_LINK_CONFIRM, m->sub->id, ref, lc->lang, lc->now_ms,
                    r->confirm_url, sizeof(r->confirm_url)) != 0)
        r->confirm_url[0] = '\0';
    return r->confirm_url[0] ? r->confirm_url : NULL;
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
    if (len == 11 && memcmp(name, "confirm_url", 11) == 0)
        return confirm_url(lc);
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

/* Points out's content fields at the rendered parts (NULL where absent). */
static void set_parts(struct cr_message *out, const char *const slot[CR_PART__COUNT])
{
    out->subject = slot[CR_PART_SUBJECT];
    out->text = slot[CR_PART_TEXT];
    out->html = slot[CR_PART_HTML];
    out->sms = slot[CR_PART_SMS];
    out->push_title = slot[CR_PART_PUSH_TITLE];
    out->push_body = slot[CR_PART_PUSH_BODY];
    out->wa_vars = slot[CR_PART_WA_VARS];
    out->wa_text = slot[CR_PART_WA_TEXT];
}

/* The parts a message of channel ch is made of. */
static int part_of(enum cr_channel ch, int p)
{
    switch (ch) {
    case CR_CH_EMAIL:
        return p == CR_PART_SUBJECT || p == CR_PART_TEXT || p == CR_PART_HTML;
    case CR_CH_SMS:
        return p == CR_PART_SMS;
    case CR_CH_PUSH:
        return p == CR_PART_PUSH_TITLE || p == CR_PART_PUSH_BODY;
    case CR_CH_WHATSAPP:
        return p == CR_PART_WA_VARS || p == CR_PART_WA_TEXT;
    default:
        return 0;
    }
}

/* The fields every message of m's job carries whatever its recipient: a
 * batch's shared message gets them exactly as a message rendered alone, so
 * that a request for many says everything a request for one says. */
static void job_fields(struct cr_message *out, const struct cr_msg *m)
{
    const struct cr_job *job = &m->batch->jc->job;

    out->job_id = m->batch->job_id;
    out->channel = m->channel;
    out->priority = job->priority;
    out->sender_name = job->sender_name;
    out->expires_at_ms = job->expires_at_ms;
}

int cr_render_message(struct cr_render *r, const struct cr_msg *m, struct cr_message *out)
{
    const struct cr_batch *b = m->batch;
    const struct cr_jobctx *jc = b->jc;
    size_t row = cr_jobctx_row(jc, field(m->sub, "lang"), m->channel);
    struct lookup_ctx lc = {m->sub, &jc->job, r, m, cr_now_ms(), cr_job_row_lang(&jc->job, row)};
    const char *slot[CR_PART__COUNT];
    int p;

    memset(out, 0, sizeof(*out));
    r->unsubscribe_url[0] = r->survey_url[0] = r->confirm_url[0] = '\0'; /* links are made when first used */
    for (p = 0; p < CR_PART__COUNT; p++) {
        const struct cr_tpl *t = cr_jobctx_tpl(jc, row, (enum cr_part)p);
        int rc;

        slot[p] = NULL;
        if (t == NULL || !part_of(m->channel, p))
            continue;
        if (p == CR_PART_WA_TEXT && !cr_wa_window_open(field(m->sub, "whatsapp_last_inbound"),
                                                       lc.now_ms))
            continue; /* outside the service window only the template may go */
        cr_buf_reset(&r->part[p]);
        rc = cr_tpl_render(t, lookup, &lc, p == CR_PART_HTML, &r->part[p]);
        if (rc < 0)
            return rc;
        slot[p] = cr_buf_cstr(&r->part[p]);
    }
    snprintf(r->ref, sizeof(r->ref), "%s/%u/%s", b->job_id, m->sub->pos,
             cr_channel_name(m->channel));
    job_fields(out, m);
    out->sub_id = m->sub->id;
    out->ref = r->ref;
    out->address = m->address;
    out->platform = m->platform;
    set_parts(out, slot);
    out->unsubscribe_url = m->channel == CR_CH_EMAIL ? unsubscribe_url(&lc) : NULL;
    if (m->channel == CR_CH_WHATSAPP) {
        const struct cr_content *ct = cr_job_row_content(&jc->job, row);

        out->wa_template = ct->wa_template;
        out->wa_language = ct->wa_language;
    }
    return 0;
}

/* ---- batches ---- */

int cr_render_same(const struct cr_msg *a, const struct cr_msg *b)
{
    const struct cr_jobctx *jc = a->batch->jc;
    const char *la;
    const char *lb;

    if (b->batch->jc != jc || b->batch->prio != a->batch->prio || b->channel != a->channel)
        return 0;
    la = field(a->sub, "lang");
    lb = field(b->sub, "lang");
    if (la == lb || (la != NULL && lb != NULL && strcmp(la, lb) == 0))
        return 1;
    /* the same content row: the same templates and the same language in links */
    return cr_jobctx_row(jc, la, a->channel) == cr_jobctx_row(jc, lb, b->channel);
}

struct tag_ctx {
    struct cr_render *r;
    unsigned use;
};

/* A template lookup that names each distinct field by a tag instead of
 * giving its value, and notes where the field is used. */
static const char *tag_lookup(void *ud, const char *name, size_t len)
{
    struct tag_ctx *tc = ud;
    struct cr_render *r = tc->r;
    struct cr_render_field *f;
    size_t i;

    for (i = 0; i < r->nfields; i++) {
        if (r->field[i].len == len && memcmp(r->field[i].name, name, len) == 0)
            break;
    }
    if (i == r->nfields) {
        if (r->nfields == CR_RENDER_FIELDS_MAX) {
            r->tag_err = CR_EINVAL;
            return NULL;
        }
        f = &r->field[r->nfields++];
        f->name = name;
        f->len = len;
        f->use = 0;
        snprintf(f->ttag, sizeof(f->ttag), CR_RENDER_TAG_MARK "t-%zu-", i);
        snprintf(f->htag, sizeof(f->htag), CR_RENDER_TAG_MARK "h-%zu-", i);
    }
    f = &r->field[i];
    f->use |= tc->use;
    r->ntags++;
    return (tc->use & CR_RENDER_USE_HTML) ? f->htag : f->ttag;
}

/* How many times the tag mark occurs in s. */
static size_t count_marks(const char *s)
{
    size_t n = 0;
    const char *p = strstr(s, CR_RENDER_TAG_MARK);

    while (p != NULL) {
        n++;
        p = strstr(p + sizeof(CR_RENDER_TAG_MARK) - 1, CR_RENDER_TAG_MARK);
    }
    return n;
}

static const char *value_lookup(void *ud, const char *name, size_t len)
{
    (void)name;
    (void)len;
    return ud;
}

/* Appends s and its NUL to the arena; *off = where it starts. */
static int arena_add(struct cr_render *r, const char *s, size_t *off)
{
    *off = r->arena.len;
    return cr_buf_append(&r->arena, s, strlen(s) + 1);
}

/* Appends the HTML-escaped s and a NUL; *off = where it starts. */
static int arena_add_escaped(struct cr_render *r, const char *s, size_t *off)
{
    int rc;

    *off = r->arena.len;
    /* the lookup's user data is not const; value_lookup only hands it back */
    rc = cr_tpl_render(r->escape, value_lookup, (void *)(uintptr_t)s, 1, &r->arena);
    if (rc == 0)
        rc = cr_buf_append(&r->arena, "", 1);
    return rc;
}

/* Renders the channel's parts of row's templates with tags into r->part
 * and out's part pointers. Returns 0, CR_EINVAL or as cr_tpl_render. */
static int render_tagged(struct cr_render *r, const struct cr_msg *m0, size_t row,
                         struct cr_message *out)
{
    const struct cr_jobctx *jc = m0->batch->jc;
    const char *slot[CR_PART__COUNT];
    int p;

    r->nfields = 0;
    r->tag_err = 0;
    for (p = 0; p < CR_PART__COUNT; p++) {
        const struct cr_tpl *t = cr_jobctx_tpl(jc, row, (enum cr_part)p);
        struct tag_ctx tc = {r, p == CR_PART_HTML ? CR_RENDER_USE_HTML : CR_RENDER_USE_TEXT};
        int rc;

        slot[p] = NULL;
        if (t == NULL || !part_of(m0->channel, p))
            continue;
        if (p == CR_PART_SUBJECT)
            tc.use |= CR_RENDER_USE_HEADER;
        cr_buf_reset(&r->part[p]);
        r->ntags = 0;
        rc = cr_tpl_render(t, tag_lookup, &tc, p == CR_PART_HTML, &r->part[p]);
        if (rc == 0 && r->tag_err < 0)
            rc = r->tag_err;
        if (rc < 0)
            return rc;
        slot[p] = cr_buf_cstr(&r->part[p]);
        if (count_marks(slot[p]) != r->ntags)
            return CR_EINVAL; /* the template's own text holds the mark */
    }
    set_parts(out, slot);
    return 0;
}

/* The values of m for every field: substitutions in r->subst/r->off from
 * *nsubst on. Returns 1 when m must go alone (the entries are dropped), 0,
 * or a negative code. */
static int add_values(struct cr_render *r, struct lookup_ctx *lc, size_t subst_max,
                      size_t *nsubst)
{
    size_t start = *nsubst;
    size_t mark = r->arena.len;
    size_t bytes = 0;
    size_t i;
    int rc = 0;

    for (i = 0; i < r->nfields && rc == 0; i++) {
        const struct cr_render_field *f = &r->field[i];
        const char *v = lookup(lc, f->name, f->len);
        size_t k;

        if (v == NULL)
            v = "";
        if (strstr(v, CR_RENDER_TAG_MARK) != NULL ||
            ((f->use & CR_RENDER_USE_HEADER) && strpbrk(v, "\r\n") != NULL)) {
            rc = 1;
            break;
        }
        if (f->use & CR_RENDER_USE_TEXT) {
            k = (*nsubst)++;
            r->subst[k].tag = f->ttag;
            rc = arena_add(r, v, &r->off[k]);
            bytes += strlen(f->ttag) + strlen(v);
        }
        if (rc == 0 && (f->use & CR_RENDER_USE_HTML)) {
            k = (*nsubst)++;
            r->subst[k].tag = f->htag;
            rc = arena_add_escaped(r, v, &r->off[k]);
            bytes += strlen(f->htag) + strlen(r->arena.data + r->off[k]);
        }
        if (rc == 0 && bytes > subst_max)
            rc = 1;
    }
    if (rc == 1 || rc == CR_ETOOBIG) {
        /* alone: a value too long for the arena is also too long to share */
        *nsubst = start;
        r->arena.len = mark;
        if (r->arena.data != NULL)
            r->arena.data[mark] = '\0';
        return 1;
    }
    return rc;
}

/* Room for a batch's substitutions and offsets, on first use. */
static int batch_room(struct cr_render *r)
{
    size_t nsub = (size_t)CR_RENDER_BATCH_MAX * 2 * CR_RENDER_FIELDS_MAX;

    char err[64];

    if (r->escape == NULL && cr_tpl_compile("{{v}}", &r->escape, err, sizeof(err)) < 0)
        return CR_ENOMEM;
    if (r->subst == NULL)
        r->subst = malloc(nsub * sizeof(*r->subst));
    if (r->off == NULL)
        r->off = malloc((nsub + 3 * (size_t)CR_RENDER_BATCH_MAX) * sizeof(*r->off));
    return r->subst && r->off ? 0 : CR_ENOMEM;
}

int cr_render_batch(struct cr_render *r, struct cr_msg *const *msgs, size_t n, size_t subst_max,
                    int64_t now_ms, struct cr_message *out, unsigned char *alone)
{
    const struct cr_msg *m0 = msgs[0];
    const struct cr_jobctx *jc = m0->batch->jc;
    size_t row = cr_jobctx_row(jc, field(m0->sub, "lang"), m0->channel);
    const char *lang = cr_job_row_lang(&jc->job, row);
    struct cr_message shared;
    size_t *moff;
    size_t nsubst = 0;
    size_t i;
    int tagged = 0;
    int p;
    int rc;

    if (n == 0 || n > CR_RENDER_BATCH_MAX)
        return CR_EINVAL;
    rc = batch_room(r);
    if (rc < 0)
        return rc;
    for (p = 0; p < CR_PART__COUNT; p++) {
        const struct cr_tpl *t = cr_jobctx_tpl(jc, row, (enum cr_part)p);

        if (t != NULL && part_of(m0->channel, p) && cr_tpl_has_fields(t))
            tagged = 1;
    }
    if (tagged && subst_max == 0)
        return CR_EINVAL;
    memset(&shared, 0, sizeof(shared));
    if (tagged)
        rc = render_tagged(r, m0, row, &shared);
    else
        rc = cr_render_message(r, m0, &shared);
    if (rc < 0)
        return rc;
    job_fields(&shared, m0);

    /* per message: substitutions, ref and link into the arena (offsets now,
     * pointers once the arena has stopped moving) */
    cr_buf_reset(&r->arena);
    moff = r->off + (size_t)CR_RENDER_BATCH_MAX * 2 * CR_RENDER_FIELDS_MAX;
    for (i = 0; i < n; i++) {
        const struct cr_msg *m = msgs[i];
        struct lookup_ctx lc = {m->sub, &jc->job, r, m, now_ms, lang};
        const char *unsub;
        size_t first = nsubst;

        alone[i] = 0;
        r->unsubscribe_url[0] = r->survey_url[0] = r->confirm_url[0] = '\0';
        if (tagged) {
            rc = add_values(r, &lc, subst_max, &nsubst);
            if (rc < 0)
                return rc;
            if (rc == 1) {
                alone[i] = 1;
                continue;
            }
        }
        out[i] = shared;
        out[i].sub_id = m->sub->id;
        out[i].address = m->address;
        out[i].platform = m->platform;
        out[i].nsubst = nsubst - first;
        moff[3 * i + 2] = first;
        snprintf(r->ref, sizeof(r->ref), "%s/%u/%s", m->batch->job_id, m->sub->pos,
                 cr_channel_name(m->channel));
        unsub = m->channel == CR_CH_EMAIL ? unsubscribe_url(&lc) : NULL;
        rc = arena_add(r, r->ref, &moff[3 * i]);
        if (rc == 0)
            rc = arena_add(r, unsub ? unsub : "", &moff[3 * i + 1]);
        if (rc < 0)
            return rc;
        if (unsub == NULL)
            moff[3 * i + 1] = (size_t)-1;
    }
    for (i = 0; i < nsubst; i++)
        r->subst[i].value = r->arena.data + r->off[i];
    for (i = 0; i < n; i++) {
        if (alone[i])
            continue;
        out[i].subst = out[i].nsubst ? &r->subst[moff[3 * i + 2]] : NULL;
        out[i].ref = r->arena.data + moff[3 * i];
        out[i].unsubscribe_url =
            moff[3 * i + 1] == (size_t)-1 ? NULL : r->arena.data + moff[3 * i + 1];
    }
    return 0;
}
