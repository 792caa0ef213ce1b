/* Batch rendering for providers that take many recipients per request: tags in
 * place of values, HTML escaping in the html substitutions only, the messages
 * that must go alone, and that tags plus substitutions give each recipient
 * exactly what rendering the message alone gives. */
#include <stdlib.h>

#include "config.h"
#include "cr_error.h"
#include "cr_provider.h"
#include "links.h"
#include "render.h"
#include "test.h"

#define NSUBS 4

struct fixture {
    struct cr_keys keys;
    struct cr_job_limits lim;
    struct cr_config cfg;
    struct cr_daemon d;
    struct cr_jobctx *jc;
    struct cr_batch b;
    struct cr_sub subs[NSUBS];
    char *kv[NSUBS][8];
    char ids[NSUBS][16];
    char addr[NSUBS][48];
    struct cr_msg msgs[NSUBS];
    struct cr_msg *ptrs[NSUBS];
    struct cr_render r;
    struct cr_message out[NSUBS];
    unsigned char alone[NSUBS];
};

/* A job with message (JSON object text) and NSUBS email messages; sub i has
 * the fields in its kv row (name, value, ...; NULL-terminated). */
static int fixture_init(struct fixture *f, const char *message)
{
    char doc[4096];
    struct cr_job_error err;
    size_t i;
    int rc;

    memset(f, 0, sizeof(*f));
    memset(&f->lim, 0, sizeof(f->lim));
    cr_job_limits_default(&f->lim);
    cr_keys_init(&f->keys, "crier:");
    snprintf(doc, sizeof(doc),
             "{\"id\":\"batch-1\",\"priority\":\"urgent\",\"audience\":{\"segments\":[\"a\"]},"
             "\"channels\":[\"email\"],\"sender\":{\"name\":\"PC Jane Smith\"},\"message\":%s}",
             message);
    rc = cr_jobctx_create(&f->keys, "batch-1", doc, strlen(doc), &f->lim, &f->jc, &err);
    if (rc < 0) {
        fprintf(stderr, "  job: %s %s\n", err.code, err.message);
        return rc;
    }
    f->d.cfg = &f->cfg;
    f->b.d = &f->d;
    f->b.jc = f->jc;
    f->b.prio = f->jc->job.priority;
    snprintf(f->b.job_id, sizeof(f->b.job_id), "batch-1");
    for (i = 0; i < NSUBS; i++) {
        snprintf(f->ids[i], sizeof(f->ids[i]), "s%zu", i);
        snprintf(f->addr[i], sizeof(f->addr[i]), "s%zu@mail.example", i);
        f->subs[i].id = f->ids[i];
        f->subs[i].pos = (uint32_t)(10 + i);
        f->subs[i].kv = f->kv[i];
        f->msgs[i].batch = &f->b;
        f->msgs[i].sub = &f->subs[i];
        f->msgs[i].address = f->addr[i];
        f->msgs[i].channel = CR_CH_EMAIL;
        f->ptrs[i] = &f->msgs[i];
    }
    cr_render_init(&f->r, &f->lim);
    return 0;
}

/* Sets sub i's fields: name, value pairs, NULL-terminated. */
static void fields(struct fixture *f, size_t i, const char *const *kv)
{
    size_t n = 0;

    while (kv[n] != NULL && n < 8) {
        f->kv[i][n] = (char *)(uintptr_t)kv[n];
        n++;
    }
    f->subs[i].nkv = n;
}

static void fixture_release(struct fixture *f)
{
    cr_render_release(&f->r);
    if (f->jc)
        cr_jobctx_unref(f->jc);
}

/* The value of tag in m's substitutions, or NULL. */
static const char *subst(const struct cr_message *m, const char *tag)
{
    size_t i;

    for (i = 0; i < m->nsubst; i++) {
        if (strcmp(m->subst[i].tag, tag) == 0)
            return m->subst[i].value;
    }
    return NULL;
}

/* s with every tag of m replaced by its value, as the provider does; a
 * malloc'd string (at most 64 KiB) the caller frees. */
static char *apply(const struct cr_message *m, const char *s)
{
    struct cr_buf b;
    const char *p = s;

    cr_buf_init(&b, 65536);
    cr_buf_appends(&b, "");
    while (*p) {
        size_t i;
        size_t hit = m->nsubst;

        for (i = 0; i < m->nsubst; i++) {
            if (strncmp(p, m->subst[i].tag, strlen(m->subst[i].tag)) == 0)
                hit = i;
        }
        if (hit < m->nsubst) {
            cr_buf_appends(&b, m->subst[hit].value);
            p += strlen(m->subst[hit].tag);
        } else {
            cr_buf_append(&b, p, 1);
            p++;
        }
    }
    return cr_buf_steal(&b);
}

static const char tagged_msg[] =
    "{\"lang\":\"en\",\"subject\":\"Flood warning, {{name}}\","
    "\"text\":\"Hello {{name}} from {{sender.name}}. Area {{area}}.\","
    "\"html\":\"<p>Hello {{ name }} in {{area}}</p>\"}";

TEST(render_batch_tags_and_html_escaping)
{
    static const char *const s0[] = {"name", "Tom & Jerry <b>", "area", "LE1", NULL};
    static const char *const s1[] = {"name", "Ann", NULL};
    static const char *const s2[] = {"name", "O'Neil \"Z\"", "area", "LE2 & 3", NULL};
    static const char *const s3[] = {"name", "Bob", "area", "x", NULL};
    struct fixture f;

    ASSERT_INT_EQ(fixture_init(&f, tagged_msg), 0);
    fields(&f, 0, s0);
    fields(&f, 1, s1);
    fields(&f, 2, s2);
    fields(&f, 3, s3);
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, NSUBS, CR_SUBST_MAX_BYTES, 1700000000000,
                                  f.out, f.alone),
                  0);
    /* one rendering with tags: text parts name fields by t-tags, html by h-tags */
    ASSERT_STR_EQ(f.out[0].subject, "Flood warning, -crier-t-0-");
    ASSERT_STR_EQ(f.out[0].text, "Hello -crier-t-0- from -crier-t-1-. Area -crier-t-2-.");
    ASSERT_STR_EQ(f.out[0].html, "<p>Hello -crier-h-0- in -crier-h-2-</p>");
    ASSERT(f.out[3].subject == f.out[0].subject && f.out[3].html == f.out[0].html);
    ASSERT_INT_EQ(f.alone[0] + f.alone[1] + f.alone[2] + f.alone[3], 0);

    /* raw values for text tags, escaped ones for html tags */
    ASSERT_STR_EQ(subst(&f.out[0], "-crier-t-0-"), "Tom & Jerry <b>");
    ASSERT_STR_EQ(subst(&f.out[0], "-crier-h-0-"), "Tom &amp; Jerry &lt;b&gt;");
    ASSERT_STR_EQ(subst(&f.out[0], "-crier-t-1-"), "PC Jane Smith");
    ASSERT(subst(&f.out[0], "-crier-h-1-") == NULL); /* sender.name is not in the html */
    ASSERT_STR_EQ(subst(&f.out[2], "-crier-h-0-"), "O&#39;Neil &quot;Z&quot;");
    ASSERT_STR_EQ(subst(&f.out[2], "-crier-t-2-"), "LE2 & 3");
    ASSERT_STR_EQ(subst(&f.out[2], "-crier-h-2-"), "LE2 &amp; 3");
    ASSERT_STR_EQ(subst(&f.out[1], "-crier-h-2-"), ""); /* no such field: empty */
    ASSERT_INT_EQ(f.out[0].nsubst, 5);

    /* each message its own address and reference */
    ASSERT_STR_EQ(f.out[2].address, "s2@mail.example");
    ASSERT_STR_EQ(f.out[2].ref, "batch-1/12/email");
    ASSERT_STR_EQ(f.out[3].ref, "batch-1/13/email");
    ASSERT_STR_EQ(f.out[1].sub_id, "s1");
    ASSERT(f.out[1].unsubscribe_url == NULL); /* links are off */
    fixture_release(&f);
}

/* For every message: the tagged rendering with its substitutions applied is
 * exactly the message rendered alone. */
TEST(render_batch_substitutions_equal_single_rendering)
{
    static const char *const s0[] = {"name", "Tom & Jerry <b>", "area", "LE1", NULL};
    static const char *const s1[] = {"name", "Zo\xc3\xab", NULL};
    static const char *const s2[] = {"name", "a-crier", "area", "<script>", NULL};
    static const char *const s3[] = {"area", "'", NULL};
    const char *const *rows[NSUBS] = {s0, s1, s2, s3};
    struct fixture f;
    size_t i;

    ASSERT_INT_EQ(fixture_init(&f, tagged_msg), 0);
    for (i = 0; i < NSUBS; i++)
        fields(&f, i, rows[i]);
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, NSUBS, CR_SUBST_MAX_BYTES, 1700000000000,
                                  f.out, f.alone),
                  0);
    for (i = 0; i < NSUBS; i++) {
        struct cr_message batch = f.out[i];
        struct cr_message one;
        char *subject = apply(&batch, batch.subject);
        char *text = apply(&batch, batch.text);
        char *html = apply(&batch, batch.html);

        ASSERT_INT_EQ(f.alone[i], 0);
        ASSERT_INT_EQ(cr_render_message(&f.r, &f.msgs[i], &one), 0);
        ASSERT_STR_EQ(subject, one.subject);
        ASSERT_STR_EQ(text, one.text);
        ASSERT_STR_EQ(html, one.html);
        free(subject);
        free(text);
        free(html);
        /* the batch rendering is gone once another message is rendered */
        ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, NSUBS, CR_SUBST_MAX_BYTES, 1700000000000,
                                      f.out, f.alone),
                      0);
    }
    fixture_release(&f);
}

TEST(render_batch_tag_like_values_and_text_go_alone)
{
    static const char *const s0[] = {"name", "Ann", NULL};
    static const char *const s1[] = {"name", "-crier-t-0-", NULL};
    static const char *const s2[] = {"name", "Bob", "area", "x-crier-h-9-y", NULL};
    static const char *const s3[] = {"name", "Line\r\nBcc: x@example.org", NULL};
    struct fixture f;

    ASSERT_INT_EQ(fixture_init(&f, tagged_msg), 0);
    fields(&f, 0, s0);
    fields(&f, 1, s1);
    fields(&f, 2, s2);
    fields(&f, 3, s3);
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, NSUBS, CR_SUBST_MAX_BYTES, 1700000000000,
                                  f.out, f.alone),
                  0);
    ASSERT_INT_EQ(f.alone[0], 0);
    ASSERT_INT_EQ(f.alone[1], 1); /* holds a tag */
    ASSERT_INT_EQ(f.alone[2], 1); /* holds the mark, even in a field of the html only */
    ASSERT_INT_EQ(f.alone[3], 1); /* CR/LF would land in the subject */
    ASSERT_STR_EQ(subst(&f.out[0], "-crier-t-0-"), "Ann");
    fixture_release(&f);

    /* The template's own text holding the mark: no tagged rendering at all. */
    ASSERT_INT_EQ(fixture_init(&f, "{\"lang\":\"en\",\"subject\":\"s\","
                                   "\"text\":\"see -crier-t-0- and {{name}}\"}"),
                  0);
    fields(&f, 0, s0);
    fields(&f, 1, s0);
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, 2, CR_SUBST_MAX_BYTES, 1700000000000, f.out,
                                  f.alone),
                  CR_EINVAL);
    /* and a provider without substitutions cannot batch a template with fields */
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, 2, 0, 1700000000000, f.out, f.alone),
                  CR_EINVAL);
    fixture_release(&f);
}

TEST(render_batch_substitution_bytes_over_the_limit_go_alone)
{
    char *big = malloc(9990 + 1);
    char *fits = malloc(4900 + 1);
    const char *s0[] = {"name", "Ann", NULL};
    const char *s1[] = {"name", big, NULL};
    const char *s2[] = {"name", fits, NULL};
    struct fixture f;
    size_t i;
    size_t bytes = 0;

    ASSERT(big != NULL && fits != NULL);
    memset(big, 'b', 9990);
    big[9990] = '\0';
    memset(fits, 'f', 4900);
    fits[4900] = '\0';
    ASSERT_INT_EQ(fixture_init(&f, tagged_msg), 0);
    fields(&f, 0, s0);
    fields(&f, 1, s1);
    fields(&f, 2, s2);
    fields(&f, 3, s0);
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, NSUBS, CR_SUBST_MAX_BYTES, 1700000000000,
                                  f.out, f.alone),
                  0);
    /* 9,990 bytes used in text and html: twice over 10,000 with the tags */
    ASSERT_INT_EQ(f.alone[1], 1);
    /* 4,900 twice plus tags and the other fields stays under it */
    ASSERT_INT_EQ(f.alone[2], 0);
    for (i = 0; i < f.out[2].nsubst; i++)
        bytes += strlen(f.out[2].subst[i].tag) + strlen(f.out[2].subst[i].value);
    ASSERT(bytes <= CR_SUBST_MAX_BYTES);
    ASSERT(bytes > 9800);
    /* what the one that went alone left behind is not in the others' values */
    ASSERT_STR_EQ(subst(&f.out[3], "-crier-t-0-"), "Ann");
    ASSERT_STR_EQ(f.out[3].ref, "batch-1/13/email");
    fixture_release(&f);
    free(big);
    free(fits);
}

TEST(render_batch_without_fields_shares_one_rendering)
{
    static const char *const s0[] = {"name", "Ann", NULL};
    struct fixture f;
    size_t i;

    ASSERT_INT_EQ(fixture_init(&f, "{\"lang\":\"en\",\"subject\":\"Road closed\","
                                   "\"text\":\"The A6 is closed.\",\"html\":\"<p>A6 & M1</p>\"}"),
                  0);
    for (i = 0; i < NSUBS; i++)
        fields(&f, i, s0);
    /* without substitutions too: the rendering is shared */
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, NSUBS, 0, 1700000000000, f.out, f.alone), 0);
    for (i = 0; i < NSUBS; i++) {
        ASSERT_INT_EQ(f.alone[i], 0);
        ASSERT(f.out[i].subst == NULL);
        ASSERT_INT_EQ(f.out[i].nsubst, 0);
        ASSERT_STR_EQ(f.out[i].subject, "Road closed");
        ASSERT_STR_EQ(f.out[i].html, "<p>A6 & M1</p>");
        ASSERT_STR_EQ(f.out[i].address, f.addr[i]);
    }
    ASSERT_STR_EQ(f.out[3].ref, "batch-1/13/email");
    ASSERT_STR_EQ(f.out[0].sender_name, "PC Jane Smith");
    fixture_release(&f);
}

TEST(render_batch_same_job_priority_and_translation)
{
    static const char *const en[] = {"name", "Ann", "lang", "en", NULL};
    static const char *const pl[] = {"name", "Ewa", "lang", "pl", NULL};
    static const char *const de[] = {"name", "Jo", "lang", "de", NULL};
    static const char *const none[] = {"name", "Bo", NULL};
    struct fixture f;
    struct cr_batch other;

    ASSERT_INT_EQ(fixture_init(&f, "{\"lang\":\"en\",\"subject\":\"Hi {{name}}\",\"text\":\"t\","
                                   "\"translations\":{\"pl\":{\"subject\":\"Czesc {{name}}\","
                                   "\"text\":\"Tekst\"}}}"),
                  0);
    fields(&f, 0, en);
    fields(&f, 1, pl);
    fields(&f, 2, de);
    fields(&f, 3, none);
    ASSERT(!cr_render_same(&f.msgs[0], &f.msgs[1])); /* Polish email */
    ASSERT(cr_render_same(&f.msgs[0], &f.msgs[2]));  /* no German: the default */
    ASSERT(cr_render_same(&f.msgs[0], &f.msgs[3]));
    other = f.b;
    other.prio = CR_PRIO_BULK;
    f.msgs[3].batch = &other;
    ASSERT(!cr_render_same(&f.msgs[0], &f.msgs[3]));
    fixture_release(&f);

    /* a Polish subject alone cannot make a Polish email: English whole, shared */
    ASSERT_INT_EQ(fixture_init(&f, "{\"lang\":\"en\",\"subject\":\"Hi {{name}}\",\"text\":\"t\","
                                   "\"translations\":{\"pl\":{\"subject\":\"Czesc {{name}}\"}}}"),
                  0);
    fields(&f, 0, en);
    fields(&f, 1, pl);
    ASSERT(cr_render_same(&f.msgs[0], &f.msgs[1]));
    fixture_release(&f);
}

/* A Welsh translation with subject and text but no html: a Welsh resident's
 * email is Welsh text only (never Welsh text beside English html); an English
 * resident's is English in every part; alone and in a batch alike. */
TEST(render_partial_translation_is_one_language_per_message)
{
    static const char *const cy[] = {"name", "Siân", "lang", "cy", NULL};
    static const char *const cy2[] = {"name", "Dafydd", "lang", "cy-GB", NULL};
    static const char *const en[] = {"name", "Ann", "lang", "en", NULL};
    static const char msg[] =
        "{\"lang\":\"en\",\"subject\":\"Flood warning, {{name}}\","
        "\"text\":\"Hello {{name}}, the river is rising.\","
        "\"html\":\"<p>Hello {{name}}, the river is rising.</p>\","
        "\"translations\":{\"cy\":{\"subject\":\"Rhybudd llifogydd, {{name}}\","
        "\"text\":\"Helo {{name}}, mae'r afon yn codi.\"}}}";
    struct cr_message one;
    struct fixture f;

    struct cr_link link;

    ASSERT_INT_EQ(fixture_init(&f, msg), 0);
    f.cfg.links_secret = (char *)(uintptr_t) "link-secret-0123456789";
    f.cfg.webhooks_public_url = (char *)(uintptr_t) "https://a.example";
    f.cfg.links_ttl_days = 1;
    fields(&f, 0, cy);
    fields(&f, 1, cy2);
    fields(&f, 2, en);
    fields(&f, 3, cy);
    ASSERT_INT_EQ(cr_render_message(&f.r, &f.msgs[0], &one), 0);
    ASSERT_STR_EQ(one.subject, "Rhybudd llifogydd, Siân");
    ASSERT_STR_EQ(one.text, "Helo Siân, mae'r afon yn codi.");
    ASSERT(one.html == NULL);
    /* its link's page is shown in the message's language */
    ASSERT(one.unsubscribe_url != NULL &&
           strncmp(one.unsubscribe_url, "https://a.example/u/", 20) == 0);
    ASSERT_INT_EQ(cr_link_verify(f.cfg.links_secret, one.unsubscribe_url + 20,
                                 strlen(one.unsubscribe_url + 20), 0, &link),
                  0);
    ASSERT_STR_EQ(link.lang, "cy");
    ASSERT_INT_EQ(cr_render_message(&f.r, &f.msgs[2], &one), 0);
    ASSERT_STR_EQ(one.subject, "Flood warning, Ann");
    ASSERT_STR_EQ(one.text, "Hello Ann, the river is rising.");
    ASSERT_STR_EQ(one.html, "<p>Hello Ann, the river is rising.</p>");
    ASSERT_INT_EQ(cr_link_verify(f.cfg.links_secret, one.unsubscribe_url + 20,
                                 strlen(one.unsubscribe_url + 20), 0, &link),
                  0);
    ASSERT_STR_EQ(link.lang, "en");

    ASSERT(cr_render_same(&f.msgs[0], &f.msgs[1]));
    ASSERT(!cr_render_same(&f.msgs[0], &f.msgs[2]));
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, 2, CR_SUBST_MAX_BYTES, 1700000000000, f.out,
                                  f.alone),
                  0);
    ASSERT_STR_EQ(f.out[0].subject, "Rhybudd llifogydd, -crier-t-0-");
    ASSERT_STR_EQ(f.out[1].text, "Helo -crier-t-0-, mae'r afon yn codi.");
    ASSERT(f.out[0].html == NULL && f.out[1].html == NULL);
    ASSERT_INT_EQ(cr_link_verify(f.cfg.links_secret, f.out[1].unsubscribe_url + 20,
                                 strlen(f.out[1].unsubscribe_url + 20), 0, &link),
                  0);
    ASSERT_STR_EQ(link.lang, "cy");
    fixture_release(&f);
}

/* The string member key of o, or "(none)". */
static const char *member(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

    return cJSON_IsString(it) ? it->valuestring : "(none)";
}

/* The batch through the SendGrid adapter: one request, the tags in the shared
 * subject and content, each personalization with its own substitutions. */
TEST(render_batch_sendgrid_request)
{
    static const char *const s0[] = {"name", "Tom & Jerry <b>", "area", "LE1", NULL};
    static const char *const s1[] = {"name", "Ann", NULL};
    const struct cr_provider_ops *ops = cr_provider_find("sendgrid");
    const struct cr_message *ptrs[2];
    struct cr_request req;
    struct fixture f;
    cJSON *cfg = cJSON_Parse("{\"api_key\":\"k\",\"from_email\":\"a@police.example\"}");
    cJSON *doc;
    const cJSON *pers;
    const cJSON *subs;
    char err[128];
    void *state = NULL;
    int i;

    ASSERT(ops != NULL && ops->max_batch == 1000 && (ops->flags & CR_PROVIDER_SUBST));
    ASSERT_INT_EQ(ops->init(cfg, "http://127.0.0.1:9", "providers.sendgrid", &state, err,
                            sizeof(err)),
                  0);
    cJSON_Delete(cfg);
    ASSERT_INT_EQ(fixture_init(&f, tagged_msg), 0);
    fields(&f, 0, s0);
    fields(&f, 1, s1);
    ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, 2, CR_SUBST_MAX_BYTES, 1700000000000, f.out,
                                  f.alone),
                  0);
    ptrs[0] = &f.out[0];
    ptrs[1] = &f.out[1];
    memset(&req, 0, sizeof(req));
    cr_buf_init(&req.url, 4096);
    cr_buf_init(&req.body, 1 << 20);
    ASSERT_INT_EQ(ops->build(state, ptrs, 2, &req), 0);
    doc = cJSON_Parse(cr_buf_cstr(&req.body));
    ASSERT(doc != NULL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(doc, "subject")->valuestring, "Flood warning, -crier-t-0-");
    pers = cJSON_GetObjectItem(doc, "personalizations");
    ASSERT_INT_EQ(cJSON_GetArraySize(pers), 2);
    subs = cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 0), "substitutions");
    ASSERT_STR_EQ(cJSON_GetObjectItem(subs, "-crier-t-0-")->valuestring, "Tom & Jerry <b>");
    ASSERT_STR_EQ(cJSON_GetObjectItem(subs, "-crier-h-0-")->valuestring,
                  "Tom &amp; Jerry &lt;b&gt;");
    subs = cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 1), "substitutions");
    ASSERT_STR_EQ(cJSON_GetObjectItem(subs, "-crier-t-0-")->valuestring, "Ann");
    ASSERT_STR_EQ(cJSON_GetObjectItem(subs, "-crier-h-2-")->valuestring, "");
    ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, 1),
                                                          "custom_args"),
                                      "crier_ref")
                      ->valuestring,
                  "batch-1/11/email");
    /* what a request for one message says, a batch says too: the sender's
     * name in from, the job in every personalization's custom_args */
    ASSERT_STR_EQ(member(cJSON_GetObjectItem(doc, "from"), "name"), "PC Jane Smith");
    for (i = 0; i < 2; i++)
        ASSERT_STR_EQ(member(cJSON_GetObjectItem(cJSON_GetArrayItem(pers, i), "custom_args"),
                             "crier_job"),
                      "batch-1");
    cJSON_Delete(doc);
    cr_buf_release(&req.url);
    cr_buf_release(&req.body);
    curl_slist_free_all(req.headers);
    ops->free_state(state);
    fixture_release(&f);
}

/* Everything about a message that does not depend on its recipient is in
 * each message of a batch exactly as in the message rendered alone, with
 * tags (the shared rendering of render_tagged) and without. */
TEST(render_batch_messages_carry_the_job_fields)
{
    static const char *const s0[] = {"name", "Ann", NULL};
    static const char *const msgs[2] = {
        tagged_msg, "{\"lang\":\"en\",\"subject\":\"Road closed\",\"text\":\"The A6.\"}"};
    struct fixture f;
    size_t k;
    size_t i;

    for (k = 0; k < 2; k++) {
        struct cr_message one;

        ASSERT_INT_EQ(fixture_init(&f, msgs[k]), 0);
        f.jc->job.expires_at_ms = 1700000900000;
        for (i = 0; i < NSUBS; i++)
            fields(&f, i, s0);
        ASSERT_INT_EQ(cr_render_message(&f.r, &f.msgs[1], &one), 0);
        ASSERT_INT_EQ(cr_render_batch(&f.r, f.ptrs, NSUBS, CR_SUBST_MAX_BYTES, 1700000000000,
                                      f.out, f.alone),
                      0);
        for (i = 0; i < NSUBS; i++) {
            ASSERT_INT_EQ(f.alone[i], 0);
            ASSERT(f.out[i].job_id != NULL && f.out[i].sender_name != NULL);
            ASSERT_STR_EQ(f.out[i].job_id, "batch-1");
            ASSERT_STR_EQ(f.out[i].sender_name, one.sender_name);
            ASSERT_INT_EQ(f.out[i].priority, CR_PRIO_URGENT);
            ASSERT_INT_EQ(f.out[i].channel, CR_CH_EMAIL);
            ASSERT_INT_EQ(f.out[i].expires_at_ms, 1700000900000);
        }
        fixture_release(&f);
    }
}
