/* {{field}} templates (see template.h): compiled once into a list of literal
 * and field parts over a private copy of the source, rendered per subscriber
 * by copying parts and looked-up values into a capped buffer. */
#include "template.h"
#include "cr_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A template with more fields than this is refused: no message needs it, and
 * it bounds the part list whatever the source length. */
#define TPL_MAX_FIELDS 1024

enum part_kind { PART_LITERAL, PART_FIELD };

struct part {
    enum part_kind kind;
    size_t off; /* into cr_tpl.text */
    size_t len;
};

struct cr_tpl {
    char *text; /* copy of the source; field names are NUL-terminated in it */
    struct part *parts;
    size_t nparts;
    size_t nfields;
};

static int is_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static void set_err(char *err, size_t errlen, size_t at, const char *what)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "at byte %zu: %s", at, what);
}

static void add_part(struct cr_tpl *t, enum part_kind kind, size_t off, size_t len)
{
    t->parts[t->nparts].kind = kind;
    t->parts[t->nparts].off = off;
    t->parts[t->nparts].len = len;
    t->nparts++;
}

/* Checks the inside of "{{ ... }}" spanning [open, close) where open is the
 * offset of "{{" and close the offset of "}}"; on success sets the name's
 * span. Returns 0 or CR_EPARSE with err set. */
static int check_field(const char *s, size_t open, size_t close, size_t *name_off, size_t *name_len,
                       char *err, size_t errlen)
{
    size_t b = open + 2;
    size_t e = close;
    size_t i;
    char what[64];

    while (b < e && s[b] == ' ')
        b++;
    while (e > b && s[e - 1] == ' ')
        e--;
    if (b == e) {
        set_err(err, errlen, open, "empty field name in '{{ }}'");
        return CR_EPARSE;
    }
    for (i = b; i < e; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!is_name_char(c)) {
            if (c > 0x20 && c < 0x7f)
                snprintf(what, sizeof(what), "'%c' is not allowed in a field name", c);
            else if (c == ' ')
                snprintf(what, sizeof(what), "a space is not allowed inside a field name");
            else
                snprintf(what, sizeof(what), "field names use only A-Z a-z 0-9 _ . -");
            set_err(err, errlen, i, what);
            return CR_EPARSE;
        }
    }
    *name_off = b;
    *name_len = e - b;
    return 0;
}

int cr_tpl_compile(const char *src, struct cr_tpl **out, char *err, size_t errlen)
{
    size_t len = strlen(src);
    size_t maxparts = 2 * TPL_MAX_FIELDS + 1;
    struct cr_tpl *t = NULL;
    size_t lit = 0; /* start of the pending literal */
    size_t i = 0;
    int rc = CR_ENOMEM;

    *out = NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        goto out;
    t->text = malloc(len + 1);
    if (t->text == NULL)
        goto out;
    memcpy(t->text, src, len + 1);
    /* never more parts than two per "{{" plus the tail, and never more than the cap */
    if (len / 4 * 2 + 1 < maxparts)
        maxparts = len / 4 * 2 + 1;
    t->parts = calloc(maxparts, sizeof(*t->parts));
    if (t->parts == NULL)
        goto out;

    while (i + 1 < len) {
        const char *close;
        size_t name_off;
        size_t name_len;

        if (t->text[i] != '{' || t->text[i + 1] != '{') {
            i++;
            continue;
        }
        close = strstr(t->text + i + 2, "}}");
        if (close == NULL) {
            set_err(err, errlen, i, "'{{' is not closed");
            rc = CR_EPARSE;
            goto out;
        }
        rc = check_field(t->text, i, (size_t)(close - t->text), &name_off, &name_len, err, errlen);
        if (rc < 0)
            goto out;
        if (t->nfields == TPL_MAX_FIELDS) {
            set_err(err, errlen, i, "too many fields (the limit is 1024)");
            rc = CR_EPARSE;
            goto out;
        }
        if (i > lit)
            add_part(t, PART_LITERAL, lit, i - lit);
        add_part(t, PART_FIELD, name_off, name_len);
        t->nfields++;
        i = (size_t)(close - t->text) + 2;
        lit = i;
        /* the byte after a name is a space or '}', never part of a literal */
        t->text[name_off + name_len] = '\0';
    }
    if (len > lit)
        add_part(t, PART_LITERAL, lit, len - lit);
    *out = t;
    t = NULL;
    rc = 0;
out:
    if (rc == CR_ENOMEM && err && errlen > 0)
        snprintf(err, errlen, "out of memory");
    cr_tpl_free(t);
    return rc;
}

static int append_escaped(struct cr_buf *out, const char *v)
{
    const char *run = v;
    const char *p;
    int rc;

    for (p = v; *p; p++) {
        const char *ent;

        switch (*p) {
        case '&':
            ent = "&amp;";
            break;
        case '<':
            ent = "&lt;";
            break;
        case '>':
            ent = "&gt;";
            break;
        case '"':
            ent = "&quot;";
            break;
        case '\'':
            ent = "&#39;";
            break;
        default:
            continue;
        }
        rc = cr_buf_append(out, run, (size_t)(p - run));
        if (rc < 0)
            return rc;
        rc = cr_buf_appends(out, ent);
        if (rc < 0)
            return rc;
        run = p + 1;
    }
    return cr_buf_append(out, run, (size_t)(p - run));
}

int cr_tpl_render(const struct cr_tpl *t, cr_tpl_lookup_cb lookup, void *ud, int html_escape,
                  struct cr_buf *out)
{
    size_t i;
    int rc;

    for (i = 0; i < t->nparts; i++) {
        const struct part *p = &t->parts[i];
        const char *v;

        if (p->kind == PART_LITERAL) {
            rc = cr_buf_append(out, t->text + p->off, p->len);
        } else {
            v = lookup ? lookup(ud, t->text + p->off, p->len) : NULL;
            if (v == NULL)
                continue;
            rc = html_escape ? append_escaped(out, v) : cr_buf_appends(out, v);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cr_tpl_has_fields(const struct cr_tpl *t)
{
    return t->nfields > 0;
}

void cr_tpl_free(struct cr_tpl *t)
{
    if (t == NULL)
        return;
    free(t->parts);
    free(t->text);
    free(t);
}
