/* cr_job_parse: the documents in tests/data/jobs (listed with their expected
 * code and message in cases.txt), every field of the good job, defaults,
 * limits, content_for fallback and RFC 3339 time parsing. */
#include "config.h"
#include "cr_error.h"
#include "job.h"
#include "test.h"

#include <stdlib.h>

#define DATA_DIR "tests/data/jobs/"

/* Reads a whole file (at most 1 MB); returns a malloc'd buffer or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL)
        return NULL;
    buf = malloc(1 << 20);
    if (buf == NULL) {
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Parses a NUL-terminated document with the default limits; on success the
 * job is released at once. */
static int parse(const char *doc, struct cr_job_error *err)
{
    struct cr_job_limits lim;
    struct cr_job job;
    int rc;

    cr_job_limits_default(&lim);
    rc = cr_job_parse(doc, strlen(doc), &lim, &job, err);
    if (rc == 0)
        cr_job_release(&job);
    return rc;
}

/* A minimal valid job with extra top-level members spliced in front. */
static const char *with(char *buf, size_t len, const char *extra)
{
    snprintf(buf, len,
             "{%s\"audience\":{\"segments\":[\"area:LE1\"]},\"channels\":[\"sms\"],"
             "\"message\":{\"sms\":\"Road closed on London Road until 18:00.\"}}",
             extra);
    return buf;
}

/* A minimal job whose message object is msg and channels chans. */
static const char *with_message(char *buf, size_t len, const char *chans, const char *msg)
{
    snprintf(buf, len,
             "{\"audience\":{\"subscribers\":[\"10442\"]},\"channels\":[%s],\"message\":{%s}}",
             chans, msg);
    return buf;
}

#define ASSERT_REFUSED(doc, want_code, want_message)                                               \
    do {                                                                                           \
        struct cr_job_error e_;                                                                    \
        ASSERT_INT_EQ(parse((doc), &e_), CR_EINVAL);                                               \
        ASSERT_STR_EQ(e_.code, (want_code));                                                       \
        ASSERT_STR_EQ(e_.message, (want_message));                                                 \
    } while (0)

TEST(job_cases_from_data)
{
    struct cr_job_limits lim;
    char line[1024];
    FILE *f = fopen(DATA_DIR "cases.txt", "r");
    int ncases = 0;
    int nbad = 0;

    ASSERT(f != NULL);
    cr_job_limits_default(&lim);
    while (fgets(line, sizeof(line), f)) {
        char *file = line;
        char *code;
        char *message;
        char path[256];
        char *doc;
        size_t len;
        struct cr_job job;
        struct cr_job_error err;
        int rc;
        int n;

        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        code = strchr(file, '\t');
        ASSERT(code != NULL);
        *code++ = '\0';
        message = strchr(code, '\t');
        if (message)
            *message++ = '\0';
        n = snprintf(path, sizeof(path), DATA_DIR "%s", file);
        ASSERT(n > 0 && (size_t)n < sizeof(path));
        doc = slurp(path, &len);
        if (doc == NULL)
            fprintf(stderr, "  cannot read %s\n", path);
        ASSERT(doc != NULL);
        rc = cr_job_parse(doc, len, &lim, &job, &err);
        free(doc);
        if (strcmp(code, "ok") == 0) {
            if (rc != 0)
                fprintf(stderr, "  %s: %s: %s\n", file, err.code, err.message);
            ASSERT_INT_EQ(rc, 0);
            cr_job_release(&job);
        } else {
            if (rc == 0) {
                cr_job_release(&job);
                fprintf(stderr, "  %s: accepted\n", file);
            }
            ASSERT_INT_EQ(rc, CR_EINVAL);
            if (strcmp(err.code, code) != 0 || strcmp(err.message, message) != 0)
                fprintf(stderr, "  in %s\n", file);
            ASSERT_STR_EQ(err.code, code);
            ASSERT(message != NULL);
            ASSERT_STR_EQ(err.message, message);
            nbad++;
        }
        ncases++;
    }
    fclose(f);
    ASSERT(nbad >= 15);
    ASSERT(ncases == nbad + 1);
}

TEST(job_oversized_document)
{
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    size_t len = 300123;
    char *doc = malloc(len);
    char *base = NULL;
    size_t blen;
    int rc;

    ASSERT(doc != NULL);
    /* the good job padded with spaces: valid JSON, only too big */
    base = slurp(DATA_DIR "good-full.json", &blen);
    if (base == NULL)
        free(doc);
    ASSERT(base != NULL);
    memset(doc, ' ', len);
    memcpy(doc, base, blen);
    free(base);
    cr_job_limits_default(&lim);
    rc = cr_job_parse(doc, len, &lim, &job, &err);
    free(doc);
    ASSERT_INT_EQ(rc, CR_EINVAL);
    ASSERT_STR_EQ(err.code, "too_large");
    ASSERT_STR_EQ(err.message, "document is 300123 bytes, over the limit of 262144");
}

TEST(job_good_full_every_field)
{
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    size_t len;
    char *doc = slurp(DATA_DIR "good-full.json", &len);
    int rc;

    ASSERT(doc != NULL);
    cr_job_limits_default(&lim);
    rc = cr_job_parse(doc, len, &lim, &job, &err);
    free(doc);
    ASSERT_INT_EQ(rc, 0);
    ASSERT_STR_EQ(job.id, "appeal-2026-11-22-0001");
    ASSERT_INT_EQ(job.priority, CR_PRIO_URGENT);
    ASSERT_INT_EQ(job.segments.n, 2);
    ASSERT_STR_EQ(job.segments.v[0], "area:LE1");
    ASSERT_STR_EQ(job.segments.v[1], "area:LE2");
    ASSERT_INT_EQ(job.require.n, 1);
    ASSERT_STR_EQ(job.require.v[0], "consent:police");
    ASSERT_INT_EQ(job.exclude.n, 1);
    ASSERT_STR_EQ(job.exclude.v[0], "optout:appeals");
    ASSERT_INT_EQ(job.subscribers.n, 2);
    ASSERT_STR_EQ(job.subscribers.v[0], "10442");
    ASSERT_STR_EQ(job.subscribers.v[1], "10443");
    ASSERT_INT_EQ(job.channels,
                  CR_CH_BIT(CR_CH_EMAIL) | CR_CH_BIT(CR_CH_SMS) | CR_CH_BIT(CR_CH_PUSH));
    ASSERT_STR_EQ(job.sender_name, "PC Jane Smith");
    ASSERT_STR_EQ(job.sender_team, "Leicester City Centre NPT");
    ASSERT_STR_EQ(job.lang, "en");
    ASSERT_STR_EQ(job.content.subject, "Missing person: can you help?");
    ASSERT_STR_CONTAINS(job.content.text, "Hello {{name}}, we are looking for Sam");
    ASSERT_STR_CONTAINS(job.content.html, "<p>Hello {{ name }},</p>");
    ASSERT_STR_EQ(job.content.sms, "Police appeal: Sam, 14, missing near the Clock Tower, red "
                                   "coat. Seen Sam? Call 101 quoting 123.");
    ASSERT_STR_EQ(job.content.push_title, "Police appeal");
    ASSERT_STR_EQ(job.content.push_body,
                  "Missing person in LE1: Sam, 14, red coat. Call 101 quoting 123.");
    ASSERT_INT_EQ(job.ntranslations, 2);
    ASSERT_STR_EQ(job.translations[0].lang, "pl");
    ASSERT_STR_EQ(job.translations[0].content.subject, "Zaginiona osoba: czy możesz pomóc?");
    ASSERT_STR_CONTAINS(job.translations[0].content.text, "Dzień dobry {{name}}");
    ASSERT_STR_CONTAINS(job.translations[0].content.sms, "czerwony płaszcz");
    ASSERT(job.translations[0].content.html == NULL);
    ASSERT(job.translations[0].content.push_title == NULL);
    ASSERT(job.translations[0].content.push_body == NULL);
    ASSERT_STR_EQ(job.translations[1].lang, "cy");
    ASSERT_STR_EQ(job.translations[1].content.push_title, "Apêl yr heddlu");
    ASSERT(job.translations[1].content.sms == NULL);
    ASSERT_STR_EQ(job.survey_question, "Do you feel safe in your area?");
    ASSERT_INT_EQ(job.survey_options.n, 3);
    ASSERT_STR_EQ(job.survey_options.v[0], "Yes");
    ASSERT_STR_EQ(job.survey_options.v[1], "No");
    ASSERT_STR_EQ(job.survey_options.v[2], "Not sure");
    ASSERT_INT_EQ(job.send_at_ms, 1795338000000LL);
    ASSERT_INT_EQ(job.expires_at_ms, 1795381200000LL);
    ASSERT_STR_EQ(job.tags_json, "{\"campaign\":\"missing-person\",\"npa\":\"city\"}");
    cr_job_release(&job);
    ASSERT(job.segments.v == NULL && job.translations == NULL && job.tags_json == NULL);
    cr_job_release(&job); /* twice is harmless */
}

TEST(job_defaults)
{
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    char buf[512];
    const char *doc = with(buf, sizeof(buf), "");

    cr_job_limits_default(&lim);
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), 0);
    ASSERT_STR_EQ(job.id, "");
    ASSERT_INT_EQ(job.priority, CR_PRIO_NORMAL);
    ASSERT_STR_EQ(job.lang, "en");
    ASSERT_INT_EQ(job.channels, CR_CH_BIT(CR_CH_SMS));
    ASSERT_INT_EQ(job.require.n, 0);
    ASSERT_INT_EQ(job.subscribers.n, 0);
    ASSERT(job.sender_name == NULL && job.sender_team == NULL);
    ASSERT(job.content.subject == NULL && job.content.text == NULL);
    ASSERT(job.survey_question == NULL && job.survey_options.n == 0);
    ASSERT_INT_EQ(job.send_at_ms, 0);
    ASSERT_INT_EQ(job.expires_at_ms, 0);
    ASSERT(job.tags_json == NULL);
    ASSERT_INT_EQ(job.ntranslations, 0);
    cr_job_release(&job);
}

TEST(job_not_nul_terminated)
{
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    char buf[512];
    char *copy;
    size_t len;

    with(buf, sizeof(buf), "\"priority\":\"bulk\",");
    len = strlen(buf);
    copy = malloc(len); /* exactly the document, no terminator */
    ASSERT(copy != NULL);
    memcpy(copy, buf, len);
    cr_job_limits_default(&lim);
    ASSERT_INT_EQ(cr_job_parse(copy, len, &lim, &job, &err), 0);
    free(copy);
    ASSERT_INT_EQ(job.priority, CR_PRIO_BULK);
    cr_job_release(&job);
}

TEST(job_refusals_name_the_path)
{
    char buf[2048];

    ASSERT_REFUSED("", "not_json", "document is empty");
    ASSERT_REFUSED("{\"id\": }", "not_json", "document is not JSON: syntax error at byte 7");
    ASSERT_REFUSED("\"appeal\"", "bad_type", "document: must be a JSON object");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"prority\":\"high\","), "unknown_field",
                   "prority: unknown field");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"id\":42,"), "bad_type", "id: must be a string");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"priority\":null,"), "bad_type",
                   "priority: must be a string");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"sender\":\"PC Smith\","), "bad_type",
                   "sender: must be an object");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"sender\":{\"name\":\"PC Smith\",\"rank\":\"PC\"},"),
                   "unknown_field", "sender.rank: unknown field");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"sender\":{\"name\":\"PC Smith\\nBcc: x@y\"},"),
                   "bad_header",
                   "sender.name: must not contain line breaks (it becomes an email header)");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"tags\":{\"npa\":7},"), "bad_type",
                   "tags.npa: must be a string");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"tags\":{\"npa\":\"a\",\"npa\":\"b\"},"),
                   "duplicate_field", "tags.npa: given more than once");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"send_at\":\"2026-11-22 09:00\","), "bad_time",
                   "send_at: '2026-11-22 09:00' is not a valid RFC 3339 time like "
                   "2026-11-22T09:00:00Z");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"send_at\":\"1970-01-01T00:00:00Z\","), "bad_time",
                   "send_at: '1970-01-01T00:00:00Z' is not after 1970-01-01T00:00:00Z");
    ASSERT_REFUSED(with(buf, sizeof(buf),
                        "\"send_at\":\"2026-11-22T09:00:00Z\","
                        "\"expires_at\":\"2026-11-22T09:00:00Z\","),
                   "bad_time", "expires_at: must be after send_at");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"survey\":{\"options\":[\"Yes\",\"No\"]},"),
                   "missing_field", "survey.question: required when a survey is given");
    ASSERT_REFUSED(with(buf, sizeof(buf),
                        "\"survey\":{\"question\":\"Safe?\","
                        "\"options\":[\"Yes\",\"\"]},"),
                   "bad_survey", "survey.options[1]: must not be empty");
    ASSERT_REFUSED(with(buf, sizeof(buf),
                        "\"survey\":{\"question\":\"Safe?\",\"options\":"
                        "[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\"]},"),
                   "bad_survey", "survey.options: 11 given, a survey needs 2 to 10");
    ASSERT_REFUSED("{\"audience\":{\"segments\":[\"area:LE1\"]},\"message\":{\"sms\":\"x\"}}",
                   "missing_field", "channels: required (any of email, sms, push, whatsapp)");
    ASSERT_REFUSED("{\"channels\":[\"sms\"],\"message\":{\"sms\":\"x\"}}", "missing_field",
                   "audience: required (segments and/or subscribers)");
    ASSERT_REFUSED("{\"audience\":{\"segments\":[\"area:LE1\"]},\"channels\":[],"
                   "\"message\":{\"sms\":\"x\"}}",
                   "unknown_channel", "channels: must name at least one of email, sms, push, whatsapp");
    ASSERT_REFUSED("{\"audience\":{\"segments\":[\"area LE1\"]},\"channels\":[\"sms\"],"
                   "\"message\":{\"sms\":\"x\"}}",
                   "bad_name",
                   "audience.segments[0]: 'area LE1' must be 1 to 128 printable ASCII characters "
                   "without spaces");
    ASSERT_REFUSED("{\"audience\":{\"segments\":[\"area:LE1\"],\"exclude\":[7]},"
                   "\"channels\":[\"sms\"],\"message\":{\"sms\":\"x\"}}",
                   "bad_type", "audience.exclude[0]: must be a string");
}

TEST(job_content_rules)
{
    char buf[4096];
    char big[300];

    /* email needs a subject and a body; html alone will do */
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"email\"", "\"text\":\"Hello\""), "no_content",
                   "message.subject: required because channels include email");
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"email\"", "\"subject\":\"Road closed\""),
                   "no_content",
                   "message.text: required (or message.html) because channels include email");
    ASSERT_INT_EQ(parse(with_message(buf, sizeof(buf), "\"email\"",
                                     "\"subject\":\"Road closed\",\"html\":\"<p>Hi</p>\""),
                        NULL),
                  0);
    /* an empty string is no content */
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"sms\"", "\"sms\":\"\""), "no_content",
                   "message.sms: required because channels include sms");
    ASSERT_INT_EQ(
        parse(with_message(buf, sizeof(buf), "\"push\"", "\"push\":{\"body\":\"Hi\"}"), NULL), 0);
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"push\"", "\"push\":{\"badge\":1}"),
                   "unknown_field", "message.push.badge: unknown field");
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"push\"", "\"push\":{\"title\":\"{{ }}\"}"),
                   "bad_template", "message.push.title: at byte 0: empty field name in '{{ }}'");
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"sms\"", "\"sms\":\"x\",\"lang\":\"e\""),
                   "bad_lang", "message.lang: 'e' is not a language tag (2 to 15 of A-Z a-z -)");
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"sms\"",
                                "\"sms\":\"x\",\"translations\":{\"pl\":\"tekst\"}"),
                   "bad_type", "message.translations.pl: must be an object");
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"sms\"",
                                "\"sms\":\"x\",\"translations\":{\"pl\":{},\"pl\":{}}"),
                   "duplicate_field", "message.translations.pl: given more than once");
    ASSERT_REFUSED(with_message(buf, sizeof(buf), "\"sms\"",
                                "\"sms\":\"x\",\"translations\":{\"pl\":"
                                "{\"subject\":\"Zamknięta\\r\\nX: y\"}}"),
                   "bad_header",
                   "message.translations.pl.subject: must not contain line breaks (it becomes "
                   "an email header)");
    /* lengths are bytes */
    memset(big, 'a', 201);
    big[201] = '\0';
    snprintf(buf, sizeof(buf),
             "{\"audience\":{\"subscribers\":[\"1\"]},\"channels\":[\"email\"],"
             "\"message\":{\"subject\":\"%s\",\"text\":\"x\"}}",
             big);
    ASSERT_REFUSED(buf, "too_long", "message.subject: 201 bytes, over the limit of 200");
    big[200] = '\0';
    snprintf(buf, sizeof(buf),
             "{\"audience\":{\"subscribers\":[\"1\"]},\"channels\":[\"email\"],"
             "\"message\":{\"subject\":\"%s\",\"text\":\"x\"}}",
             big);
    ASSERT_INT_EQ(parse(buf, NULL), 0);
    memset(big, 'a', 121);
    big[121] = '\0';
    snprintf(buf, sizeof(buf),
             "{\"audience\":{\"subscribers\":[\"1\"]},\"channels\":[\"push\"],"
             "\"message\":{\"push\":{\"title\":\"%s\"}}}",
             big);
    ASSERT_REFUSED(buf, "too_long", "message.push.title: 121 bytes, over the limit of 120");
}

TEST(job_sms_segments_limit)
{
    char text[1200];
    char buf[1600];

    /* 6 x 153 = 918 septets is the most; 919 is a seventh part */
    memset(text, 'a', 918);
    text[918] = '\0';
    snprintf(buf, sizeof(buf),
             "{\"audience\":{\"subscribers\":[\"1\"]},\"channels\":[\"sms\"],"
             "\"message\":{\"sms\":\"%s\"}}",
             text);
    ASSERT_INT_EQ(parse(buf, NULL), 0);
    memset(text, 'a', 919);
    text[919] = '\0';
    snprintf(buf, sizeof(buf),
             "{\"audience\":{\"subscribers\":[\"1\"]},\"channels\":[\"sms\"],"
             "\"message\":{\"sms\":\"%s\"}}",
             text);
    ASSERT_REFUSED(buf, "too_long", "message.sms: 7 SMS segments (GSM-7), over the limit of 6");
}

TEST(job_id_rules)
{
    char buf[1024];
    char extra[128];

    ASSERT_INT_EQ(parse(with(buf, sizeof(buf), "\"id\":\"appeal:2026.11_22-1\","), NULL), 0);
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"id\":\"-appeal\","), "bad_id",
                   "id: '-appeal' must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, starting "
                   "with a letter or digit");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"id\":\"\","), "bad_id",
                   "id: '' must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, starting with a "
                   "letter or digit");
    snprintf(extra, sizeof(extra), "\"id\":\"%0*d\",", 64, 7);
    ASSERT_INT_EQ(parse(with(buf, sizeof(buf), extra), NULL), 0);
    snprintf(extra, sizeof(extra), "\"id\":\"%0*d\",", 65, 7);
    ASSERT_REFUSED(with(buf, sizeof(buf), extra), "bad_id",
                   "id: '0000000000000000000000000000000000000000...' must be 1 to 64 "
                   "characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit");
}

TEST(job_list_limits)
{
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    const char *doc =
        "{\"audience\":{\"segments\":[\"a\",\"b\",\"c\"],\"subscribers\":[\"1\",\"2\"]},"
        "\"channels\":[\"sms\"],\"message\":{\"sms\":\"x\",\"translations\":"
        "{\"pl\":{},\"cy\":{}}},\"tags\":{\"a\":\"1\",\"b\":\"2\"}}";

    cr_job_limits_default(&lim);
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), 0);
    cr_job_release(&job);
    lim.segments = 2;
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), CR_EINVAL);
    ASSERT_STR_EQ(err.code, "too_long");
    ASSERT_STR_EQ(err.message, "audience.segments: 3 names, over the limit of 2");
    cr_job_limits_default(&lim);
    lim.subscribers = 1;
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), CR_EINVAL);
    ASSERT_STR_EQ(err.message, "audience.subscribers: 2 names, over the limit of 1");
    cr_job_limits_default(&lim);
    lim.translations = 1;
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), CR_EINVAL);
    ASSERT_STR_EQ(err.message, "message.translations: 2 languages, over the limit of 1");
    cr_job_limits_default(&lim);
    lim.tags = 1;
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), CR_EINVAL);
    ASSERT_STR_EQ(err.message, "tags: 2 tags, over the limit of 1");
    cr_job_limits_default(&lim);
    lim.depth = 3; /* message.translations.pl is the fourth level */
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), CR_EINVAL);
    ASSERT_STR_EQ(err.code, "too_deep");
    ASSERT_STR_EQ(err.message, "message.translations.pl: nested 4 deep, over the limit of 3");
    lim.depth = 4;
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), 0);
    cr_job_release(&job);
    cr_job_limits_default(&lim);
    lim.doc_bytes = strlen(doc);
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), 0);
    cr_job_release(&job);
    lim.doc_bytes--;
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), CR_EINVAL);
    ASSERT_STR_EQ(err.code, "too_large");
}

TEST(job_encoding)
{
    char buf[1024];

    /* overlong '/', a UTF-16 surrogate in UTF-8, a cut sequence, a bad key */
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"tags\":{\"npa\":\"a\xc0\xaf\"},"), "bad_encoding",
                   "tags.npa: not valid UTF-8 (at byte 1 of the string)");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"tags\":{\"npa\":\"\xed\xa0\x80\"},"), "bad_encoding",
                   "tags.npa: not valid UTF-8 (at byte 0 of the string)");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"tags\":{\"npa\":\"ab\xe2\x82\"},"), "bad_encoding",
                   "tags.npa: not valid UTF-8 (at byte 2 of the string)");
    ASSERT_REFUSED(with(buf, sizeof(buf), "\"tags\":{\"n\xffpa\":\"x\"},"), "bad_encoding",
                   "tags.n?pa: field name is not valid UTF-8");
    /* a lone surrogate escape is not JSON cJSON accepts */
    ASSERT_INT_EQ(parse(with(buf, sizeof(buf), "\"tags\":{\"npa\":\"\\ud800\"},"), NULL),
                  CR_EINVAL);
    /* an escaped backslash followed by u0000 is ordinary text */
    ASSERT_INT_EQ(parse(with(buf, sizeof(buf), "\"tags\":{\"path\":\"C:\\\\u0000\"},"), NULL), 0);
    /* astral characters, escaped or raw, are fine */
    ASSERT_INT_EQ(
        parse(with(buf, sizeof(buf), "\"tags\":{\"a\":\"\\ud83d\\udea8\",\"b\":\"🚨\"},"), NULL), 0);
}

/* One language per message: a translation is used for a channel's message
 * only when it can make all of it, else the default language whole. */
TEST(job_pick_one_language_per_message)
{
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    const struct cr_content *ct;
    size_t len;
    char *doc = slurp(DATA_DIR "good-full.json", &len);
    int rc;

    ASSERT(doc != NULL);
    cr_job_limits_default(&lim);
    rc = cr_job_parse(doc, len, &lim, &job, &err);
    free(doc);
    ASSERT_INT_EQ(rc, 0);
    ASSERT_STR_EQ(job.translations[0].lang, "pl");
    ASSERT_STR_EQ(job.translations[1].lang, "cy");

    /* pl has subject, text and sms: its email is text only, in Polish */
    ASSERT_INT_EQ(cr_job_pick(&job, "pl", CR_CH_EMAIL), 1);
    ct = cr_job_row_content(&job, 1);
    ASSERT_STR_EQ(ct->subject, "Zaginiona osoba: czy możesz pomóc?");
    ASSERT(ct->text != NULL && ct->html == NULL);
    ASSERT_STR_EQ(cr_job_row_lang(&job, 1), "pl");
    ASSERT_INT_EQ(cr_job_pick(&job, "pl", CR_CH_SMS), 1);
    ASSERT_INT_EQ(cr_job_pick(&job, "pl", CR_CH_PUSH), 0); /* no push in Polish */
    ASSERT_INT_EQ(cr_job_pick(&job, "pl-PL", CR_CH_EMAIL), 1); /* region falls back */
    ASSERT_INT_EQ(cr_job_pick(&job, "PL", CR_CH_EMAIL), 1);    /* any case */

    /* cy has a subject and a push title only: nothing whole, so English whole,
     * never a Welsh subject over an English body or title over body */
    ASSERT_INT_EQ(cr_job_pick(&job, "cy", CR_CH_EMAIL), 0);
    ASSERT_INT_EQ(cr_job_pick(&job, "cy", CR_CH_PUSH), 0);
    ASSERT_INT_EQ(cr_job_pick(&job, "cy", CR_CH_SMS), 0);
    ASSERT_STR_EQ(cr_job_row_lang(&job, 0), "en");
    ASSERT(cr_job_row_content(&job, 0) == &job.content);

    ASSERT_INT_EQ(cr_job_pick(&job, "de-DE", CR_CH_EMAIL), 0);
    ASSERT_INT_EQ(cr_job_pick(&job, "p", CR_CH_EMAIL), 0); /* a prefix is not a match */
    ASSERT_INT_EQ(cr_job_pick(&job, "", CR_CH_SMS), 0);
    ASSERT_INT_EQ(cr_job_pick(&job, NULL, CR_CH_PUSH), 0);
    cr_job_release(&job);
}

TEST(job_pick_per_channel_table)
{
    static const struct {
        const char *tr;      /* the cy translation */
        const char *def_push; /* the default's push object */
        int email, sms, push;
    } cases[] = {
        {"{\"subject\":\"S\",\"text\":\"T\"}", "{\"title\":\"t\",\"body\":\"b\"}", 1, 0, 0},
        {"{\"subject\":\"S\",\"html\":\"<p>H</p>\"}", "{\"title\":\"t\",\"body\":\"b\"}", 1, 0, 0},
        {"{\"text\":\"T\",\"html\":\"H\"}", "{\"title\":\"t\",\"body\":\"b\"}", 0, 0, 0},
        {"{\"subject\":\"S\"}", "{\"title\":\"t\",\"body\":\"b\"}", 0, 0, 0},
        {"{\"sms\":\"X\"}", "{\"title\":\"t\",\"body\":\"b\"}", 0, 1, 0},
        {"{\"push\":{\"title\":\"t\"}}", "{\"title\":\"t\",\"body\":\"b\"}", 0, 0, 0},
        {"{\"push\":{\"body\":\"b\"}}", "{\"title\":\"t\",\"body\":\"b\"}", 0, 0, 0},
        {"{\"push\":{\"title\":\"t\",\"body\":\"b\"}}", "{\"title\":\"t\",\"body\":\"b\"}", 0, 0,
         1},
        {"{\"push\":{\"body\":\"b\"}}", "{\"body\":\"b\"}", 0, 0, 1},
        {"{\"push\":{\"title\":\"t\",\"body\":\"b\"}}", "{\"body\":\"b\"}", 0, 0, 1},
        {"{\"push\":{\"title\":\"t\"}}", "{\"body\":\"b\"}", 0, 0, 0},
    };
    struct cr_job_limits lim;
    size_t i;

    cr_job_limits_default(&lim);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_job job;
        struct cr_job_error err;
        char doc[1024];

        snprintf(doc, sizeof(doc),
                 "{\"audience\":{\"segments\":[\"a\"]},\"channels\":[\"email\",\"sms\",\"push\"],"
                 "\"message\":{\"subject\":\"s\",\"text\":\"t\",\"html\":\"h\",\"sms\":\"m\","
                 "\"push\":%s,\"translations\":{\"cy\":%s}}}",
                 cases[i].def_push, cases[i].tr);
        ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), 0);
        ASSERT_INT_EQ(cr_job_pick(&job, "cy", CR_CH_EMAIL), cases[i].email);
        ASSERT_INT_EQ(cr_job_pick(&job, "cy", CR_CH_SMS), cases[i].sms);
        ASSERT_INT_EQ(cr_job_pick(&job, "cy", CR_CH_PUSH), cases[i].push);
        cr_job_release(&job);
    }
}

TEST(job_pick_exact_region_first)
{
    struct cr_job_limits lim;
    struct cr_job job;
    struct cr_job_error err;
    const char *doc = "{\"audience\":{\"segments\":[\"area:LE1\"]},\"channels\":[\"sms\"],"
                      "\"message\":{\"sms\":\"en\",\"translations\":{\"pt\":{\"sms\":\"pt\"},"
                      "\"pt-BR\":{\"sms\":\"br\"},\"es-MX\":{\"subject\":\"mx\"},"
                      "\"es\":{\"sms\":\"es\"}}}}";

    cr_job_limits_default(&lim);
    ASSERT_INT_EQ(cr_job_parse(doc, strlen(doc), &lim, &job, &err), 0);
    ASSERT_STR_EQ(cr_job_row_content(&job, cr_job_pick(&job, "pt-BR", CR_CH_SMS))->sms, "br");
    ASSERT_STR_EQ(cr_job_row_content(&job, cr_job_pick(&job, "pt-PT", CR_CH_SMS))->sms, "pt");
    ASSERT_STR_EQ(cr_job_row_content(&job, cr_job_pick(&job, "pt", CR_CH_SMS))->sms, "pt");
    /* es-MX has no sms: the language alone */
    ASSERT_STR_EQ(cr_job_row_content(&job, cr_job_pick(&job, "es-MX", CR_CH_SMS))->sms, "es");
    ASSERT_STR_EQ(cr_job_row_content(&job, cr_job_pick(&job, "fr", CR_CH_SMS))->sms, "en");
    cr_job_release(&job);
}

/* A translation may carry the survey in its language: the same number of
 * options (answers are counted by number), and only for a job with a survey. */
TEST(job_translated_survey)
{
    static const char head[] = "{\"audience\":{\"segments\":[\"a\"]},\"channels\":[\"sms\"],"
                               "\"message\":{\"sms\":\"m\",\"translations\":{\"cy\":{\"sms\":"
                               "\"c\",\"survey\":";
    static const struct {
        const char *tr_survey;
        const char *survey; /* the job's, "" for none */
        const char *code;   /* "" = accepted */
    } cases[] = {
        {"{\"question\":\"Ydych chi'n teimlo'n ddiogel?\",\"options\":[\"Ydw\",\"Nac ydw\"]}",
         ",\"survey\":{\"question\":\"Safe?\",\"options\":[\"Yes\",\"No\"]}", ""},
        {"{\"question\":\"Q\",\"options\":[\"Ydw\",\"Nac ydw\",\"Efallai\"]}",
         ",\"survey\":{\"question\":\"Safe?\",\"options\":[\"Yes\",\"No\"]}", "bad_survey"},
        {"{\"question\":\"Q\",\"options\":[\"Ydw\",\"Nac ydw\"]}", "", "bad_survey"},
        {"{\"question\":\"Q\"}", ",\"survey\":{\"question\":\"S\",\"options\":[\"Y\",\"N\"]}",
         "missing_field"},
        {"{\"question\":\"Q\",\"options\":[\"Y\",\"N\"],\"x\":1}",
         ",\"survey\":{\"question\":\"S\",\"options\":[\"Y\",\"N\"]}", "unknown_field"},
        {"[]", ",\"survey\":{\"question\":\"S\",\"options\":[\"Y\",\"N\"]}", "bad_type"},
    };
    struct cr_job_limits lim;
    size_t i;

    cr_job_limits_default(&lim);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_job job;
        struct cr_job_error err;
        char doc[1024];
        int rc;

        snprintf(doc, sizeof(doc), "%s%s}}}%s}", head, cases[i].tr_survey, cases[i].survey);
        rc = cr_job_parse(doc, strlen(doc), &lim, &job, &err);
        if (cases[i].code[0] == '\0') {
            ASSERT_INT_EQ(rc, 0);
            ASSERT_STR_EQ(job.translations[0].survey_question, "Ydych chi'n teimlo'n ddiogel?");
            ASSERT_INT_EQ(job.translations[0].survey_options.n, 2);
            ASSERT_STR_EQ(job.translations[0].survey_options.v[1], "Nac ydw");
            ASSERT_INT_EQ(cr_job_pick_survey(&job, "cy"), 1);
            ASSERT_INT_EQ(cr_job_pick_survey(&job, "cy-GB"), 1);
            ASSERT_INT_EQ(cr_job_pick_survey(&job, "en"), 0);
            cr_job_release(&job);
        } else {
            ASSERT_INT_EQ(rc, CR_EINVAL);
            ASSERT_STR_EQ(err.code, cases[i].code);
            ASSERT(strstr(err.message, "message.translations.cy.survey") != NULL);
        }
    }
}

TEST(time_parse_forms)
{
    int64_t ms = -1;

    ASSERT_INT_EQ(cr_time_parse("2026-11-22T09:00:00Z", &ms), 0);
    ASSERT_INT_EQ(ms, 1795338000000LL);
    ASSERT_INT_EQ(cr_time_parse("2026-11-22T10:00:00+01:00", &ms), 0);
    ASSERT_INT_EQ(ms, 1795338000000LL);
    ASSERT_INT_EQ(cr_time_parse("2026-11-22T03:30:00-05:30", &ms), 0);
    ASSERT_INT_EQ(ms, 1795338000000LL);
    ASSERT_INT_EQ(cr_time_parse("2026-11-22t09:00:00z", &ms), 0);
    ASSERT_INT_EQ(ms, 1795338000000LL);
    ASSERT_INT_EQ(cr_time_parse("2024-02-29T23:59:59.999Z", &ms), 0);
    ASSERT_INT_EQ(ms, 1709251199999LL);
    ASSERT_INT_EQ(cr_time_parse("1970-01-01T00:00:00.5Z", &ms), 0);
    ASSERT_INT_EQ(ms, 500);
    ASSERT_INT_EQ(cr_time_parse("1970-01-01T00:00:00.123456789Z", &ms), 0);
    ASSERT_INT_EQ(ms, 123);
    ASSERT_INT_EQ(cr_time_parse("2000-03-01T00:00:00Z", &ms), 0);
    ASSERT_INT_EQ(ms, 951868800000LL);
    ASSERT_INT_EQ(cr_time_parse("9999-12-31T23:59:59Z", &ms), 0);
    ASSERT_INT_EQ(ms, 253402300799000LL);
    ASSERT_INT_EQ(cr_time_parse("1969-12-31T23:59:59Z", &ms), 0);
    ASSERT_INT_EQ(ms, -1000);
}

TEST(time_parse_rejects)
{
    static const char *const bad[] = {
        "2026-02-30T09:00:00Z", /* no such day */
        "2025-02-29T09:00:00Z", /* not a leap year */
        "1900-02-29T09:00:00Z", /* century, not a leap year */
        "2026-04-31T09:00:00Z", /* April has 30 */
        "2026-13-01T09:00:00Z",
        "2026-00-10T09:00:00Z",
        "2026-11-00T09:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T09:60:00Z",
        "2026-11-22T09:00:60Z",
        "2026-11-22T09:00:00", /* no zone */
        "2026-11-22T09:00Z",   /* no seconds */
        "2026-11-22",
        "2026-11-22T09:00:00.Z",
        "2026-11-22T09:00:00.1234567890Z",
        "2026-11-22T09:00:00+0100",
        "2026-11-22T09:00:00+24:00",
        "2026-11-22T09:00:00Zjunk",
        "2026-1-22T09:00:00Z",
        "+2026-11-22T09:00:00Z",
        "",
        "2026-11-22T09:00:00+01:60",
        "２026-11-22T09:00:00Z",
    };
    size_t i;
    int64_t ms = 42;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cr_time_parse(bad[i], &ms) != CR_EINVAL)
            fprintf(stderr, "  accepted '%s'\n", bad[i]);
        ASSERT_INT_EQ(cr_time_parse(bad[i], &ms), CR_EINVAL);
    }
    ASSERT_INT_EQ(ms, 42);
}

TEST(job_limits_defaults_are_the_documented_ones)
{
    struct cr_job_limits l;

    memset(&l, 0, sizeof(l));
    cr_job_limits_default(&l);
    ASSERT_INT_EQ((long)l.doc_bytes, 262144);
    ASSERT_INT_EQ(l.depth, 8);
    ASSERT_INT_EQ((long)l.id_length, 64);
    ASSERT_INT_EQ((long)l.segments, 64);
    ASSERT_INT_EQ((long)l.subscribers, 10000);
    ASSERT_INT_EQ((long)l.subject, 200);
    ASSERT_INT_EQ((long)l.text, 20000);
    ASSERT_INT_EQ((long)l.html, 100000);
    ASSERT_INT_EQ(l.sms_segments, 6);
    ASSERT_INT_EQ((long)l.push_title, 120);
    ASSERT_INT_EQ((long)l.push_body, 2000);
    ASSERT_INT_EQ((long)l.translations, 16);
    ASSERT_INT_EQ((long)l.tags, 32);
}
