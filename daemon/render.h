/* Rendering one message just before it is sent: the job's templates in the
 * subscriber's language, filled from the subscriber's hash, into buffers that
 * are reused from message to message. */
#ifndef CR_RENDER_H
#define CR_RENDER_H

#include "cr_buf.h"
#include "cr_provider.h"
#include "fanout.h"
#include "jobctx.h"

struct cr_render {
    struct cr_buf part[CR_PART__COUNT];
    char ref[CR_JOB_ID_MAX + 48];
    char unsubscribe_url[2048]; /* the message's signed links; "" when links are off */
    char survey_url[2048];
};

/* Prepares the buffers, each capped at four times the job limit for its part. */
void cr_render_init(struct cr_render *r, const struct cr_job_limits *lim);

/* Fills out for m (pointers into r and into m's batch, valid until the next
 * render). Returns 0, or CR_ETOOBIG when a rendering is over its cap. */
int cr_render_message(struct cr_render *r, const struct cr_msg *m, struct cr_message *out);

void cr_render_release(struct cr_render *r);

#endif
