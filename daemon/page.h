/* The HTML that every resident page (links to confirm, answer a survey or
 * unsubscribe) shares: escaping, the opening in a built-in language and the
 * closing. */
#ifndef CR_PAGE_H
#define CR_PAGE_H

#include "cr_buf.h"
#include "words.h"

struct cr_httpd_req;

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

/* Answers req with status and a page in language wl: word w in a paragraph
 * and then, when form is not NULL, a form that POSTs to the same address:
 * form (trusted markup such as hidden inputs, "" for none) and a submit
 * button labelled with word button (ignored when form is NULL). Should the
 * page not fit (16 KiB) the answer has an empty body. */
void cr_page_word(struct cr_httpd_req *req, int status, const char *wl, enum cr_word w,
                  const char *form, enum cr_word button);

#endif
