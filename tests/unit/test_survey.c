/* Multi-question surveys (daemon/survey.c): the checks a job's survey gets at
 * intake, reading it back in a language, matching SMS answers, the follow-up
 * job that asks the next question, and the answered audience. */
#include "config.h"
#include "cr_error.h"
#include "job.h"
#include "survey.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static const char doc_ok[] =
    "{\"id\":\"v1\",\"audience\":{\"segments\":[\"area:A\"]},\"channels\":[\"sms\"],"
    "\"message\":{\"sms\":\"Q1?\",\"translations\":{\"cy\":{\"sms\":\"C1?\",\"survey\":{"
    "\"questions\":[{\"text\":\"Diogel?\",\"scale\":[\"Cytuno\",\"Anghytuno\"]},"
    "{\"text\":\"Ymddiried?\",\"scale\":[\"Cytuno\",\"Anghytuno\"]}],"
    "\"free_text\":{\"text\":\"Beth?\"}}}}},"
    "\"survey\":{\"id\":\"your-views\",\"wave\":\"2026-11\",\"questions\":["
    "{\"id\":\"safe\",\"text\":\"Safe?\",\"scale\":[\"Agree\",\"Disagree\"],\"score\":[100,0]},"
    "{\"id\":\"trust\",\"text\":\"Trust?\",\"scale\":[\"Agree\",\"Disagree\"],\"score\":[100,0]}],"
    "\"free_text\":{\"id\":\"concerns\",\"text\":\"What?\"}},"
    "\"priority\":\"high\"}";

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

/* doc_ok with the first occurrence of from replaced by to. */
static char *edited(const char *from, const char *to)
{
    const char *at = strstr(doc_ok, from);
    size_t n = strlen(doc_ok) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);

    if (at == NULL || out == NULL) {
        free(out);
        return NULL;
    }
    snprintf(out, n, "%.*s%s%s", (int)(at - doc_ok), doc_ok, to, at + strlen(from));
    return out;
}

TEST(survey_multi_accepted_and_refused)
{
    static const struct {
        const char *from, *to, *code, *msg;
    } bad[] = {
        {"[100,0]}]", "[100]}]", "bad_survey", "survey.questions[1].score: must be an array of 2"},
        {"[100,0]}]", "[100,101]}]", "bad_survey", "survey.questions[1].score[1]"},
        {"\"trust\"", "\"safe\"", "bad_survey", "survey.questions[1].id: 'safe' is used"},
        {"\"2026-11\"", "\"2026:11\"", "bad_survey", "survey.wave"},
        {"\"id\":\"concerns\"", "\"id\":\"trust\"", "bad_survey", "free_text.id"},
        {"{\"text\":\"Ymddiried?\",\"scale\":[\"Cytuno\",\"Anghytuno\"]}",
         "{\"text\":\"x\","
         "\"scale\":[\"a\",\"b\",\"c\"]}",
         "bad_survey", "translations.cy.survey.questions[1].scale"},
        {"\"free_text\":{\"id\"", "\"ask\":\"nope\",\"free_text\":{\"id\"", "bad_survey",
         "survey.ask"},
        {"\"free_text\":{\"id\"", "\"closes_at\":\"soon\",\"free_text\":{\"id\"", "bad_time",
         "survey.closes_at"},
        {"\"free_text\":{\"id\"", "\"weights\":1,\"free_text\":{\"id\"", "unknown_field",
         "survey.weights"},
    };
    struct cr_job_error err;
    size_t i;

    ASSERT_INT_EQ(parse(doc_ok, &err), 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *doc = edited(bad[i].from, bad[i].to);

        ASSERT(doc != NULL);
        ASSERT_INT_EQ(parse(doc, &err), CR_EINVAL);
        ASSERT_STR_EQ(err.code, bad[i].code);
        ASSERT_STR_CONTAINS(err.message, bad[i].msg);
        free(doc);
    }
}

TEST(survey_multi_read_in_a_language_and_match)
{
    struct cr_msurvey s;

    ASSERT_INT_EQ(cr_msurvey_from_doc(doc_ok, strlen(doc_ok), "cy-GB", &s), 0);
    ASSERT_STR_EQ(s.lang, "cy");
    ASSERT_INT_EQ((int)s.nq, 2);
    ASSERT_STR_EQ(s.q[0].text, "Diogel?");
    ASSERT_STR_EQ(s.q[1].scale[1], "Anghytuno");
    ASSERT_STR_EQ(s.q[1].id, "trust");
    ASSERT_STR_EQ(s.free_text, "Beth?");
    ASSERT_INT_EQ(s.q[0].score[0], 100);
    ASSERT_INT_EQ(cr_msurvey_match(&s, 0, " 2 "), 2);
    ASSERT_INT_EQ(cr_msurvey_match(&s, 0, "disagree"), 2);
    ASSERT_INT_EQ(cr_msurvey_match(&s, 0, "CYTUNO"), 1);
    ASSERT_INT_EQ(cr_msurvey_match(&s, 0, "3"), 0);
    ASSERT_INT_EQ(cr_msurvey_match(&s, 0, "maybe"), 0);
    cr_msurvey_release(&s);
    ASSERT_INT_EQ(cr_msurvey_from_doc(doc_ok, strlen(doc_ok), NULL, &s), 0);
    ASSERT_STR_EQ(s.lang, "en");
    ASSERT_STR_EQ(s.q[0].text, "Safe?");
    cr_msurvey_release(&s);
    ASSERT_INT_EQ(cr_msurvey_from_doc("{\"survey\":{\"question\":\"q\"}}", 28, NULL, &s),
                  CR_ENOTFOUND);
}

TEST(survey_followup_asks_the_next_question)
{
    struct cr_msurvey s, f;
    struct cr_job_error err;
    char *doc;

    ASSERT_INT_EQ(cr_msurvey_from_doc(doc_ok, strlen(doc_ok), NULL, &s), 0);
    doc = cr_msurvey_followup(&s, 1, "r42", "v1", "high");
    ASSERT(doc != NULL);
    ASSERT_INT_EQ(parse(doc, &err), 0);
    ASSERT_STR_CONTAINS(doc, "\"subscribers\":[\"r42\"]");
    ASSERT_STR_CONTAINS(doc, "Trust?\\n1 Agree\\n2 Disagree");
    ASSERT_STR_CONTAINS(doc, "Ymddiried?\\n1 Cytuno");
    ASSERT_INT_EQ(cr_msurvey_from_doc(doc, strlen(doc), NULL, &f), 0);
    ASSERT_INT_EQ((int)f.ask, 1);
    ASSERT_STR_EQ(f.via, "v1");
    cr_msurvey_release(&f);
    cJSON_free(doc);
    doc = cr_msurvey_followup(&s, 2, "r42", "v1", NULL); /* the free text */
    ASSERT(doc != NULL);
    ASSERT_INT_EQ(parse(doc, &err), 0);
    ASSERT_INT_EQ(cr_msurvey_from_doc(doc, strlen(doc), NULL, &f), 0);
    ASSERT_INT_EQ((int)f.ask, 2);
    cr_msurvey_release(&f);
    cJSON_free(doc);
    cr_msurvey_release(&s);
}

TEST(survey_answered_audience)
{
    static const char ok[] =
        "{\"audience\":{\"answered\":{\"survey\":\"your-views\",\"wave\":\"2026-11\","
        "\"question\":\"safe\",\"options\":[4,5]},\"require\":[\"area:A\"]},"
        "\"channels\":[\"sms\"],\"message\":{\"sms\":\"We did\"}}";
    static const char bad[] =
        "{\"audience\":{\"answered\":{\"survey\":\"your-views\",\"wave\":\"2026-11\","
        "\"question\":\"safe\",\"options\":[\"Disagree\"]}},"
        "\"channels\":[\"sms\"],\"message\":{\"sms\":\"We did\"}}";
    struct cr_job_limits lim;
    struct cr_job_error err;
    struct cr_job job;

    cr_job_limits_default(&lim);
    ASSERT_INT_EQ(cr_job_parse(ok, strlen(ok), &lim, &job, &err), 0);
    ASSERT_INT_EQ((int)job.segments.n, 2);
    ASSERT_STR_EQ(job.segments.v[0], "survey:your-views:2026-11:safe:4");
    ASSERT_STR_EQ(job.segments.v[1], "survey:your-views:2026-11:safe:5");
    ASSERT_INT_EQ((int)job.require.n, 1);
    cr_job_release(&job);
    ASSERT_INT_EQ(parse(bad, &err), CR_EINVAL);
    ASSERT_STR_EQ(err.code, "bad_survey");
    ASSERT_STR_CONTAINS(err.message, "audience.answered.options[0]");
}
