/* The resident pages' shared HTML (see page.h): one escaper and one head, so
 * that the confirmation, survey and unsubscribe pages look and escape alike. */
#include "page.h"

#include "words.h"

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
