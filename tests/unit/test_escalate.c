/* Escalation steps and confirmations: the document's "escalate" as crierd
 * reads it, the form the job hash keeps it in, the first step's due time, and
 * the SMS confirmation keywords. */
#include <stdio.h>
#include <string.h>

#include "confirm.h"
#include "config.h"
#include "cr_error.h"
#include "escalate.h"
#include "job.h"
#include "test.h"

static const char *const base =
    "{\"audience\":{\"segments\":[\"a\"]},\"channels\":[\"push\"],%s"
    "\"message\":{\"subject\":\"S\",\"text\":\"T\",\"sms\":\"X\",\"push\":{\"body\":\"B\"}}}";

static int parse(const char *extra, struct cr_job *job, struct cr_job_error *err)
{
    struct cr_job_limits lim;
    char doc[2048];

    cr_job_limits_default(&lim);
    snprintf(doc, sizeof(doc), base, extra);
    return cr_job_parse(doc, strlen(doc), &lim, job, err);
}

TEST(escalate_steps_parsed_and_kept)
{
    struct cr_job job;
    struct cr_job_error err;
    char spec[CR_ESC_SPEC_MAX];

    ASSERT_INT_EQ(parse("\"confirm\":true,\"escalate\":[{\"after_s\":300,\"to\":[\"sms\"]},"
                        "{\"after_s\":900,\"to\":[\"email\"],\"unless\":\"confirmed\"}],",
                        &job, &err),
                  0);
    ASSERT_INT_EQ(job.confirm, 1);
    ASSERT_INT_EQ(job.esc.n, 2);
    ASSERT_INT_EQ(job.esc.steps[0].channels, CR_CH_BIT(CR_CH_SMS));
    ASSERT_INT_EQ(job.esc.steps[1].unless, CR_ESC_UNLESS_CONFIRMED);
    cr_escalate_spec(&job.esc, spec, sizeof(spec));
    ASSERT_STR_EQ(spec, "300:2:d,900:1:c");
    ASSERT_INT_EQ(cr_escalate_first_due(&job.esc, 1000, 0), 301000);
    ASSERT_INT_EQ(cr_escalate_first_due(&job.esc, 1000, 5000), 5000); /* expires first */
    cr_job_release(&job);
}

TEST(escalate_refusals_name_the_field)
{
    static const struct {
        const char *extra, *code, *msg;
    } cases[] = {
        {"\"escalate\":[{\"after_s\":300,\"to\":[\"push\"]}],", "unknown_channel",
         "escalate[0].to[0]: 'push' is already used"},
        {"\"escalate\":[{\"after_s\":0,\"to\":[\"sms\"]}],", "bad_escalate",
         "escalate[0].after_s: must be from 1 to 604800"},
        {"\"escalate\":[{\"after_s\":9,\"to\":[\"sms\"]},{\"after_s\":9,\"to\":[\"email\"]}],",
         "bad_escalate", "escalate[1].after_s: 9 is not after"},
        {"\"escalate\":[{\"after_s\":9,\"to\":[\"sms\"],\"unless\":\"confirmed\"}],",
         "bad_escalate", "needs \"confirm\": true"},
        {"\"escalate\":[{\"after_s\":9,\"to\":[\"sms\"],\"unless\":\"seen\"}],", "bad_escalate",
         "escalate[0].unless"},
        {"\"escalate\":[],", "bad_escalate", "1 to 3 steps"},
        {"\"escalate\":[{},{},{},{}],", "too_long", "4 steps, over the limit of 3"},
        {"\"escalate\":[{\"after_s\":9}],", "missing_field", "escalate[0].to"},
        {"\"escalate\":[{\"after_s\":9,\"to\":[\"sms\"],\"to\":[\"email\"]}],",
         "duplicate_field", "escalate[0].to: given more than once"},
        {"\"escalate\":[{\"after_s\":1.5,\"to\":[\"sms\"]}],", "bad_type", "whole number"},
        {"\"confirm\":1,", "bad_type", "confirm: must be true or false"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cr_job job;
        struct cr_job_error err;

        memset(&err, 0, sizeof(err));
        ASSERT_INT_EQ(parse(cases[i].extra, &job, &err), CR_EINVAL);
        ASSERT_STR_EQ(err.code, cases[i].code);
        ASSERT_STR_CONTAINS(err.message, cases[i].msg);
    }
}

TEST(confirm_keywords)
{
    ASSERT_INT_EQ(cr_confirm_keyword(NULL, " yes "), 1);
    ASSERT_INT_EQ(cr_confirm_keyword(NULL, "Ok!"), 1);
    ASSERT_INT_EQ(cr_confirm_keyword(NULL, "y"), 1);
    ASSERT_INT_EQ(cr_confirm_keyword(NULL, "yes please"), 0);
    ASSERT_INT_EQ(cr_confirm_keyword(NULL, ""), 0);
    ASSERT_INT_EQ(cr_confirm_keyword("IE, Seen it", "seen IT"), 1);
    ASSERT_INT_EQ(cr_confirm_keyword("IE, Seen it", "yes"), 0);
}
