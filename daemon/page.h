/* The HTML that every resident page (links to confirm, answer a survey or
 * unsubscribe) shares: escaping, the opening in a built-in language and the
 * closing. */
#ifndef CR_PAGE_H
#define CR_PAGE_H

#include "cr_buf.h"

/* What closes a page that cr_page_head opened. */
#define CR_PAGE_TAIL "</main></body></html>\n"

/* Appends s to b with &, <, >, " and ' written as HTML character references,
 * so that it may stand in text or in a quoted attribute. Returns 0 or the
 * cr_buf error (CR_ETOOBIG past b's cap, CR_ENOMEM); b may then hold part. */
int cr_page_escaped(struct cr_buf *b, const char *s);

/* Appends the opening of a page in built-in language wl (words.h): doctype,
 * <html lang="wl">, the viewport, the title word and "<body><main>". Returns
 * as cr_page_escaped. */
int cr_page_head(struct cr_buf *b, const char *wl);

#endif
