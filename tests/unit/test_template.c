/* {{field}} templates: substitution, spacing, missing fields, HTML escaping of
 * values only, compile errors with byte offsets, values copied literally. */
#include "cr_buf.h"
#include "cr_error.h"
#include "template.h"
#include "test.h"

/* Fields for the tests: name/value pairs ending with a NULL name. */
/* clang-format off */
static const char *const fields[] = {
    "name",            "Jane",
    "sender.name",     "PC Jane Smith",
    "unsubscribe_url", "https://alerts.example.org/u/abc?x=1&y=2",
    "evil",            "<script>alert('x') & \"y\"</script>",
    "fmt",             "%s%n%d",
    "braces",          "{{name}}",
    NULL,
};
/* clang-format on */

static const char *lookup(void *ud, const char *name, size_t len)
{
    size_t i;

    (void)ud;
    for (i = 0; fields[i]; i += 2) {
        if (strlen(fields[i]) == len && memcmp(fields[i], name, len) == 0)
            return fields[i + 1];
    }
    return NULL;
}

/* Names the callback was asked for, to check they arrive NUL-terminated. */
static const char *last_name;

static const char *record(void *ud, const char *name, size_t len)
{
    (void)len;
    last_name = name;
    return lookup(ud, name, len);
}

/* Compiles and renders src into out (cap 4096); returns the first error. */
static int render(const char *src, int html, struct cr_buf *out)
{
    struct cr_tpl *t = NULL;
    char err[128];
    int rc;

    cr_buf_init(out, 4096);
    rc = cr_tpl_compile(src, &t, err, sizeof(err));
    if (rc < 0)
        return rc;
    rc = cr_tpl_render(t, lookup, NULL, html, out);
    cr_tpl_free(t);
    return rc;
}

#define ASSERT_RENDERS(src, html, expect)                                                          \
    do {                                                                                           \
        struct cr_buf b_;                                                                          \
        int rc_ = render((src), (html), &b_);                                                      \
        if (rc_ < 0)                                                                               \
            cr_buf_release(&b_);                                                                   \
        ASSERT_INT_EQ(rc_, 0);                                                                     \
        if (strcmp(cr_buf_cstr(&b_), (expect)) != 0) {                                             \
            fprintf(stderr, "  got \"%s\"\n", cr_buf_cstr(&b_));                                   \
            cr_buf_release(&b_);                                                                   \
        }                                                                                          \
        ASSERT_STR_EQ(cr_buf_cstr(&b_), (expect));                                                 \
        cr_buf_release(&b_);                                                                       \
    } while (0)

#define ASSERT_COMPILE_ERR(src, expect)                                                            \
    do {                                                                                           \
        struct cr_tpl *t_ = (struct cr_tpl *)1;                                                    \
        char e_[128];                                                                              \
        ASSERT_INT_EQ(cr_tpl_compile((src), &t_, e_, sizeof(e_)), CR_EPARSE);                      \
        ASSERT(t_ == NULL);                                                                        \
        ASSERT_STR_EQ(e_, (expect));                                                               \
    } while (0)

TEST(tpl_substitutes_fields)
{
    ASSERT_RENDERS("Hello {{name}}, from {{sender.name}}.", 0, "Hello Jane, from PC Jane Smith.");
    ASSERT_RENDERS("{{name}}{{name}}", 0, "JaneJane");
    ASSERT_RENDERS("{{name}}", 0, "Jane");
    ASSERT_RENDERS("", 0, "");
    ASSERT_RENDERS("no fields at all", 0, "no fields at all");
}

TEST(tpl_spaces_inside_braces)
{
    ASSERT_RENDERS("Hello {{ name }}!", 0, "Hello Jane!");
    ASSERT_RENDERS("Hello {{name }}{{  name}}!", 0, "Hello JaneJane!");
}

TEST(tpl_missing_fields_render_empty)
{
    ASSERT_RENDERS("Hello {{nickname}}!", 0, "Hello !");
    ASSERT_RENDERS("[{{ward}}]", 1, "[]");
}

TEST(tpl_html_escapes_values_only)
{
    ASSERT_RENDERS("<p>{{evil}}</p>", 1,
                   "<p>&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;</p>");
    ASSERT_RENDERS("<a href=\"{{unsubscribe_url}}\">Stop</a> & 'more'", 1,
                   "<a href=\"https://alerts.example.org/u/abc?x=1&amp;y=2\">Stop</a> & 'more'");
    ASSERT_RENDERS("{{evil}}", 0, "<script>alert('x') & \"y\"</script>");
}

TEST(tpl_values_copied_literally)
{
    ASSERT_RENDERS("a {{fmt}} b", 0, "a %s%n%d b");
    ASSERT_RENDERS("a {{braces}} b", 0, "a {{name}} b");
    ASSERT_RENDERS("100% {{name}} %s", 0, "100% Jane %s");
}

TEST(tpl_lone_braces_are_text)
{
    ASSERT_RENDERS("a } b }} c { d", 0, "a } b }} c { d");
    ASSERT_RENDERS("{name} {{name}}}", 0, "{name} Jane}");
    ASSERT_RENDERS("{ {name} }", 0, "{ {name} }");
    ASSERT_RENDERS("x{", 0, "x{");
}

TEST(tpl_compile_errors_with_offsets)
{
    ASSERT_COMPILE_ERR("Hello {{name, call 101", "at byte 6: '{{' is not closed");
    ASSERT_COMPILE_ERR("{{name}} and {{", "at byte 13: '{{' is not closed");
    ASSERT_COMPILE_ERR("Hi {{}}", "at byte 3: empty field name in '{{ }}'");
    ASSERT_COMPILE_ERR("Hi {{   }}", "at byte 3: empty field name in '{{ }}'");
    ASSERT_COMPILE_ERR("Hi {{first name}}",
                       "at byte 10: a space is not allowed inside a field name");
    ASSERT_COMPILE_ERR("Hi {{na$me}}", "at byte 7: '$' is not allowed in a field name");
    ASSERT_COMPILE_ERR("Hi {{{name}}}", "at byte 5: '{' is not allowed in a field name");
    ASSERT_COMPILE_ERR("Hi {{imię}}", "at byte 8: field names use only A-Z a-z 0-9 _ . -");
    ASSERT_COMPILE_ERR("{{a\nb}}", "at byte 3: field names use only A-Z a-z 0-9 _ . -");
}

TEST(tpl_compile_error_buffer_optional)
{
    struct cr_tpl *t = NULL;
    char small[8];

    ASSERT_INT_EQ(cr_tpl_compile("{{", &t, NULL, 0), CR_EPARSE);
    ASSERT_INT_EQ(cr_tpl_compile("{{", &t, small, sizeof(small)), CR_EPARSE);
    ASSERT_STR_EQ(small, "at byte");
}

TEST(tpl_has_fields_and_names)
{
    struct cr_tpl *t = NULL;
    struct cr_buf b;
    char err[64];

    ASSERT_INT_EQ(cr_tpl_compile("plain text", &t, err, sizeof(err)), 0);
    ASSERT(!cr_tpl_has_fields(t));
    cr_tpl_free(t);
    ASSERT_INT_EQ(cr_tpl_compile("x {{ sender.name }} y", &t, err, sizeof(err)), 0);
    ASSERT(cr_tpl_has_fields(t));
    cr_buf_init(&b, 64);
    last_name = NULL;
    ASSERT_INT_EQ(cr_tpl_render(t, record, NULL, 0, &b), 0);
    ASSERT_STR_EQ(last_name, "sender.name"); /* NUL-terminated, without spaces */
    ASSERT_STR_EQ(cr_buf_cstr(&b), "x PC Jane Smith y");
    /* rendering twice appends */
    ASSERT_INT_EQ(cr_tpl_render(t, lookup, NULL, 0, &b), 0);
    ASSERT_STR_EQ(cr_buf_cstr(&b), "x PC Jane Smith yx PC Jane Smith y");
    cr_buf_release(&b);
    cr_tpl_free(t);
    cr_tpl_free(NULL);
}

TEST(tpl_render_respects_cap)
{
    struct cr_tpl *t = NULL;
    struct cr_buf b;
    char err[64];

    ASSERT_INT_EQ(cr_tpl_compile("<{{evil}}>", &t, err, sizeof(err)), 0);
    cr_buf_init(&b, 10);
    ASSERT_INT_EQ(cr_tpl_render(t, lookup, NULL, 1, &b), CR_ETOOBIG);
    cr_buf_release(&b);
    cr_buf_init(&b, 1000);
    ASSERT_INT_EQ(cr_tpl_render(t, NULL, NULL, 1, &b), 0); /* no callback: fields empty */
    ASSERT_STR_EQ(cr_buf_cstr(&b), "<>");
    cr_buf_release(&b);
    cr_tpl_free(t);
}

TEST(tpl_field_cap)
{
    static char src[8 * 1100];
    struct cr_tpl *t = NULL;
    char err[64];
    size_t i;

    for (i = 0; i < 1024; i++)
        memcpy(src + i * 5, "{{a}}", 5);
    src[1024 * 5] = '\0';
    ASSERT_INT_EQ(cr_tpl_compile(src, &t, err, sizeof(err)), 0);
    cr_tpl_free(t);
    memcpy(src + 1024 * 5, "{{a}}", 6);
    ASSERT_INT_EQ(cr_tpl_compile(src, &t, err, sizeof(err)), CR_EPARSE);
    ASSERT_STR_EQ(err, "at byte 5120: too many fields (the limit is 1024)");
}
