/* {{field}} templates: compiled once per job, rendered per subscriber. Values
 * are only ever copied, never used as a format; the HTML form escapes them. */
#ifndef CR_TEMPLATE_H
#define CR_TEMPLATE_H

#include <stddef.h>

#include "cr_buf.h"

struct cr_tpl;

/* Looks up a field for rendering: returns the value (borrowed, valid until
 * render returns) or NULL when the subscriber has no such field (rendered as ""). */
typedef const char *(*cr_tpl_lookup_cb)(void *ud, const char *name, size_t name_len);

/* Compiles src (NUL-terminated). Field names are [A-Za-z0-9_.-]+ with optional
 * spaces inside the braces ("{{ name }}"). Returns 0 and *out (free with
 * cr_tpl_free), or CR_EPARSE with err = "at byte 14: '{{' is not closed" etc. */
int cr_tpl_compile(const char *src, struct cr_tpl **out, char *err, size_t errlen);

/* Appends the rendering to out. html_escape escapes & < > " ' in substituted
 * values (the template's own text is copied as it is). Returns 0, CR_ETOOBIG
 * when out's cap is reached, or CR_ENOMEM. */
int cr_tpl_render(const struct cr_tpl *t, cr_tpl_lookup_cb lookup, void *ud, int html_escape,
                  struct cr_buf *out);

/* Returns nonzero when the template substitutes anything. */
int cr_tpl_has_fields(const struct cr_tpl *t);

void cr_tpl_free(struct cr_tpl *t);

#endif
