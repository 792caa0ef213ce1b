/* Parsed jobs with their templates compiled per language (see jobctx.h). */
#include "jobctx.h"

#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"

static char *part_of(struct cr_content *c, enum cr_part p)
{
    switch (p) {
    case CR_PART_SUBJECT:
        return c->subject;
    case CR_PART_TEXT:
        return c->text;
    case CR_PART_HTML:
        return c->html;
    case CR_PART_SMS:
        return c->sms;
    case CR_PART_PUSH_TITLE:
        return c->push_title;
    case CR_PART_PUSH_BODY:
        return c->push_body;
    case CR_PART_WA_VARS:
        return c->wa_vars;
    case CR_PART_WA_TEXT:
        return c->wa_text;
    default:
        return NULL;
    }
}

static int compile_content(struct cr_content *c, struct cr_tpl **row, struct cr_job_error *err)
{
    char msg[160];
    int p;

    for (p = 0; p < CR_PART__COUNT; p++) {
        const char *src = part_of(c, (enum cr_part)p);

        if (src == NULL)
            continue;
        if (cr_tpl_compile(src, &row[p], msg, sizeof(msg)) < 0) {
            snprintf(err->code, sizeof(err->code), "bad_template");
            snprintf(err->message, sizeof(err->message), "message: %s", msg);
            return CR_EINVAL;
        }
    }
    return 0;
}

static void free_tpls(struct cr_jobctx *jc)
{
    size_t i;
    size_t n = (1 + jc->job.ntranslations) * CR_PART__COUNT;

    if (jc->tpl == NULL)
        return;
    for (i = 0; i < n; i++)
        cr_tpl_free(jc->tpl[i]);
    free(jc->tpl);
    jc->tpl = NULL;
}

int cr_jobctx_create(const struct cr_keys *keys, const char *id, const char *doc, size_t len,
                     const struct cr_job_limits *lim, struct cr_jobctx **out,
                     struct cr_job_error *err)
{
    struct cr_jobctx *jc = calloc(1, sizeof(*jc));
    size_t t;
    int rc = CR_ENOMEM;

    if (jc == NULL)
        goto out;
    rc = cr_job_parse(doc, len, lim, &jc->job, err);
    if (rc < 0) {
        free(jc);
        jc = NULL;
        goto out;
    }
    snprintf(jc->id, sizeof(jc->id), "%s", id);
    cr_key_for(keys, "job", id, jc->key, sizeof(jc->key));
    snprintf(jc->ledger, sizeof(jc->ledger), "%s:ledger", jc->key);
    jc->refs = 1;
    rc = CR_ENOMEM;
    jc->tpl = calloc((1 + jc->job.ntranslations) * CR_PART__COUNT, sizeof(*jc->tpl));
    if (jc->tpl == NULL)
        goto out;
    rc = compile_content(&jc->job.content, jc->tpl, err);
    for (t = 0; rc == 0 && t < jc->job.ntranslations; t++)
        rc = compile_content(&jc->job.translations[t].content,
                             jc->tpl + (1 + t) * CR_PART__COUNT, err);
out:
    if (rc < 0 && jc) {
        free_tpls(jc);
        cr_job_release(&jc->job);
        free(jc);
        jc = NULL;
    }
    *out = jc;
    return rc;
}

size_t cr_jobctx_row(const struct cr_jobctx *jc, const char *lang, enum cr_channel ch)
{
    return cr_job_pick(&jc->job, lang, ch);
}

const struct cr_tpl *cr_jobctx_tpl(const struct cr_jobctx *jc, size_t row, enum cr_part part)
{
    if (row > jc->job.ntranslations || part < 0 || part >= CR_PART__COUNT)
        return NULL;
    return jc->tpl[row * CR_PART__COUNT + part];
}

void cr_jobctx_ref(struct cr_jobctx *jc)
{
    jc->refs++;
}

void cr_jobctx_unref(struct cr_jobctx *jc)
{
    if (jc == NULL || --jc->refs > 0)
        return;
    free_tpls(jc);
    cr_job_release(&jc->job);
    free(jc);
}
