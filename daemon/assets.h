/* The dashboard's files, built into crierd from dashboard/ by scripts/embed.sh
 * (a generated C file): served from memory, so the page needs nothing but the
 * binary. */
#ifndef CR_ASSETS_H
#define CR_ASSETS_H

#include <stddef.h>

struct cr_asset {
    const char *name; /* base name: "index.html", "app.css", "app.js" */
    const unsigned char *data;
    size_t len;
};

extern const struct cr_asset cr_assets[];
extern const size_t cr_nassets;

#endif
