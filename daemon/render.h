/* Rendering messages just before they are sent: the job's templates in the
 * subscriber's language, filled from the subscriber's hash, into buffers that
 * are reused from message to message; and for providers that take many
 * recipients per request, one rendering for a whole batch (shared, or with
 * per-recipient substitution tags). */
#ifndef CR_RENDER_H
#define CR_RENDER_H

#include <stdint.h>

#include "cr_buf.h"
#include "cr_provider.h"
#include "fanout.h"
#include "jobctx.h"

/* The most distinct fields a batch's templates may substitute, and the most
 * messages one batch rendering takes. */
#define CR_RENDER_FIELDS_MAX 32
#define CR_RENDER_BATCH_MAX 1000
/* Every tag starts with this; no value or template text may contain it. */
#define CR_RENDER_TAG_MARK "-crier-"

/* A distinct field name of a batch's templates and its two tags. */
struct cr_render_field {
    const char *name;  /* borrowed from the compiled template */
    size_t len;
    unsigned use;      /* where it appears: CR_RENDER_USE_* */
    char ttag[24];     /* "-crier-t-<n>-": raw value (subject, text) */
    char htag[24];     /* "-crier-h-<n>-": HTML-escaped value (html) */
};

enum {
    CR_RENDER_USE_TEXT = (1 << 0),
    CR_RENDER_USE_HTML = (1 << 1),
    CR_RENDER_USE_HEADER = (1 << 2) /* in the subject: no CR or LF */
};

struct cr_render {
    struct cr_buf part[CR_PART__COUNT];
    char ref[CR_JOB_ID_MAX + 48];
    char unsubscribe_url[2048]; /* the message's signed links; "" when links are off */
    char survey_url[2048];
    char confirm_url[2048];
    /* batches */
    struct cr_render_field field[CR_RENDER_FIELDS_MAX];
    size_t nfields;
    size_t ntags;              /* tags written by the part being rendered */
    int tag_err;
    struct cr_buf arena;       /* per-message strings of the batch (NUL-separated) */
    struct cr_subst *subst;    /* CR_RENDER_BATCH_MAX * 2 * CR_RENDER_FIELDS_MAX, on first use */
    size_t *off;               /* arena offsets matching subst, then 3 per message */
    struct cr_tpl *escape;     /* "{{v}}": escapes a value exactly as an html part does */
};

/* Prepares the buffers, each capped at four times the job limit for its part. */
void cr_render_init(struct cr_render *r, const struct cr_job_limits *lim);

/* Fills out for m (pointers into r and into m's batch, valid until the next
 * render): the parts of m's channel from one content row (cr_jobctx_row), the
 * parts that row lacks left NULL. Returns 0, or CR_ETOOBIG when a rendering
 * is over its cap. */
int cr_render_message(struct cr_render *r, const struct cr_msg *m, struct cr_message *out);

/* Whether b may go in the same request as a: the same job, priority and
 * channel, and the same content (the default language or the translation
 * cr_jobctx_row picks for each subscriber's language: one language per
 * message, in every part and in its links' pages). */
int cr_render_same(const struct cr_msg *a, const struct cr_msg *b);

/* Renders msgs[0..n) (n <= CR_RENDER_BATCH_MAX, each cr_render_same as
 * msgs[0]) for one request, filling out[0..n). When no template part of the
 * channel has fields, every message shares one rendering. Otherwise, when
 * subst_max > 0, the parts are rendered once with substitution tags
 * (CR_RENDER_TAG_MARK "t-<n>-" in text parts, "h-<n>-" in html) and each
 * message gets its values as substitutions (raw for text tags, HTML-escaped
 * for html tags); a message whose values contain the tag mark, put CR or LF
 * into the subject, or add up (tags + values) to more than subst_max bytes is
 * marked alone[i] = 1 and must be rendered and sent by itself. Pointers in out
 * are valid until the next render. Returns 0; CR_EINVAL when the batch cannot
 * share a rendering (fields but subst_max 0, the template text holds the tag
 * mark, more than CR_RENDER_FIELDS_MAX fields); CR_ETOOBIG or CR_ENOMEM. On an
 * error every message must be sent by itself. */
int cr_render_batch(struct cr_render *r, struct cr_msg *const *msgs, size_t n, size_t subst_max,
                    int64_t now_ms, struct cr_message *out, unsigned char *alone);

void cr_render_release(struct cr_render *r);

#endif
