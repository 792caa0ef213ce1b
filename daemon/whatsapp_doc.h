/* message.whatsapp in a job document: the approved template (name or content
 * id, language, numbered variables) sent outside a resident's 24-hour service
 * window, and the free text allowed inside it. */
#ifndef CR_WHATSAPP_DOC_H
#define CR_WHATSAPP_DOC_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"

#define CR_WA_VAR_SEP '\x1f'       /* between rendered variables (ASCII unit separator) */
#define CR_WA_VARS_MAX 10          /* variables of one template */
#define CR_WA_VAR_MAX 1024         /* bytes of one variable's template */
#define CR_WA_TEMPLATE_MAX 512     /* bytes of a template name or content id */
#define CR_WA_LANGUAGE_MAX 15      /* "en_GB", "pt_BR", "en" */
#define CR_WA_TEXT_MAX 4096        /* WhatsApp's limit on a text message body */

/* Reads obj (the "whatsapp" object found at path, e.g. "message.whatsapp")
 * into ct's wa_* fields (owned by ct, freed by cr_job_release). Keys:
 * template (required, [A-Za-z0-9_.-]), language (required with a template
 * name, [A-Za-z_-]), variables (an object "1".."n", n <= CR_WA_VARS_MAX, each
 * a string template up to CR_WA_VAR_MAX bytes), text (optional template up to
 * CR_WA_TEXT_MAX bytes). Returns 0; CR_EINVAL with code ("bad_type",
 * "missing_field", "unknown_field", "too_long", "bad_template",
 * "bad_whatsapp") and msg naming the key; CR_ENOMEM. */
int cr_wa_doc_parse(const cJSON *obj, const char *path, struct cr_content *ct, char *code,
                    size_t codelen, char *msg, size_t msglen);

#define CR_WA_WINDOW_MS (24LL * 3600 * 1000) /* the customer service window */

/* Whether a resident whose last inbound WhatsApp message was at last_inbound
 * (unix ms as a decimal string, from the subscriber hash; NULL or unreadable =
 * never) may get free text at now_ms: within CR_WA_WINDOW_MS of it. */
int cr_wa_window_open(const char *last_inbound, int64_t now_ms);

/* Frees ct's wa_* fields and sets them to NULL. */
void cr_wa_doc_release(struct cr_content *ct);

#endif
