/* The resident pages' shared HTML (see page.h): one escaper and one head, so
 * that the confirmation, survey and unsubscribe pages look and escape alike. */
#include "page.h"

#include "httpd.h"
#include "words.h"

#define PAGE_WORD_MAX (16 * 1024) /* a page of one or two fixed words */

int cr_page_escaped(struct cr_buf *b, const char *s)
{
    int rc = 0;

    for (; rc == 0 && *s != '\0'; s++) {
        switch (*s) {
        case '&': rc = cr_buf_appends(b, "&amp;"); break;
        case '<': rc = cr_buf_appends(b, "&lt;"); break;
        case '>': rc = cr_buf_appends(b, "&gt;"); break;
        case '"': rc = cr_buf_appends(b, "&quot;"); break;
        case '\'': rc = cr_buf_appends(b, "&#39;"); break;
        default: rc = cr_buf_append(b, s, 1); break;
        }
    }
    return rc;
}

int cr_page_head(struct cr_buf *b, const char *wl)
{
    int rc = cr_buf_appendf(b,
                            "<!doctype html><html lang=\"%s\"><head><meta charset=\"utf-8\">"
                            "<meta name=\"viewport\" content=\"width=device-width, "
                            "initial-scale=1\"><title>",
                            wl);

    if (rc == 0)
        rc = cr_page_escaped(b, cr_word(wl, CR_WORD_TITLE));
    if (rc == 0)
        rc = cr_buf_appends(b, "</title></head><body><main>");
    return rc;
}

void cr_page_word(struct cr_httpd_req *req, int status, const char *wl, enum cr_word w,
                  const char *form, enum cr_word button)
{
    struct cr_buf b;
    int rc;

    cr_buf_init(&b, PAGE_WORD_MAX);
    rc = cr_page_head(&b, wl);
    if (rc == 0)
        rc = cr_buf_appends(&b, "<p>");
    if (rc == 0)
        rc = cr_page_escaped(&b, cr_word(wl, w));
    if (rc == 0)
        rc = cr_buf_appends(&b, "</p>");
    if (rc == 0 && form != NULL) {
        rc = cr_buf_appendf(&b, "<form method=\"post\">%s<button type=\"submit\">", form);
        if (rc == 0)
            rc = cr_page_escaped(&b, cr_word(wl, button));
        if (rc == 0)
            rc = cr_buf_appends(&b, "</button></form>");
    }
    if (rc == 0)
        rc = cr_buf_appends(&b, CR_PAGE_TAIL);
    cr_httpd_respond(req, status, "text/html; charset=utf-8", NULL, b.data, rc == 0 ? b.len : 0);
    cr_buf_release(&b);
}
