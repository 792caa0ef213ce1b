/* What the SMS and WhatsApp Twilio adapters share (workers/twilio_common.c),
 * seen through both: a Twilio error code given as a string, which each reads
 * its own way, and the same account_sid rule at init. */
#include <stdlib.h>

#include "cr_error.h"
#include "cr_provider.h"
#include "test.h"
#include "workers_fixture.h"

#define TC_SID "AC0123456789abcdef0123456789ABCDEF"

static const char tc_sms_conf[] = "{\"account_sid\":\"" TC_SID "\",\"auth_token\":\"t\","
                                  "\"from\":\"+447700900123\"}";
static const char tc_wa_conf[] = "{\"account_sid\":\"" TC_SID "\",\"auth_token\":\"t\","
                                 "\"from\":\"+447700900123\"}";

/* The SMS adapter takes a string code only when it is a whole number. */
static const struct cr_test_row sms_string_codes[] = {
    {400, "", NULL, "{\"code\":\"21610\",\"message\":\"m\"}", CR_OUT_SUPPRESS, "21610", -1, "",
     "STOP"},
    {400, "", NULL, "{\"code\":\"21610x\",\"message\":\"m\"}", CR_OUT_FAILED, "400", -1, "",
     "rejected"},
    {400, "", NULL, "{\"message\":\"m\"}", CR_OUT_FAILED, "400", -1, "", "rejected"},
    {503, "", NULL, "not json", CR_OUT_RETRY, "503", -1, "", "body unreadable"},
};

/* The WhatsApp adapter reads a string code by its leading digits. */
static const struct cr_test_row wa_string_codes[] = {
    {400, "", NULL, "{\"code\":\"63016\",\"message\":\"m\"}", CR_OUT_FAILED, "63016", -1, "",
     "24-hour window"},
    {400, "", NULL, "{\"code\":\"63016x\",\"message\":\"m\"}", CR_OUT_FAILED, "63016", -1, "",
     "24-hour window"},
    {400, "", NULL, "{\"code\":\"+63016\",\"message\":\"m\"}", CR_OUT_FAILED, "400", -1, "",
     "rejected"},
    {400, "", NULL, "{\"code\":63016}", CR_OUT_FAILED, "63016", -1, "", "no message in the body"},
};

static size_t rows_differing(const char *type, const char *conf, enum cr_channel ch,
                             const struct cr_test_row *rows, size_t n)
{
    const struct cr_provider_ops *ops = cr_provider_find(type);
    struct cr_message m = cr_test_message(ch, "+447700900456");
    char err[256];
    void *state = NULL;
    size_t bad;

    m.sms = "Flood warning";
    m.wa_text = "Flood warning";
    if (cr_test_provider_init(ops, cJSON_Parse(conf), "http://127.0.0.1:9", "providers.t", &state,
                              err, sizeof(err)) != 0)
        return n;
    bad = cr_test_rows_differing(ops, state, &m, rows, n);
    ops->free_state(state);
    return bad;
}

TEST(twilio_common_sms_string_code_must_be_whole)
{
    ASSERT_INT_EQ(rows_differing("twilio", tc_sms_conf, CR_CH_SMS, sms_string_codes,
                                 sizeof(sms_string_codes) / sizeof(sms_string_codes[0])),
                  0);
}

TEST(twilio_common_whatsapp_string_code_by_leading_digits)
{
    ASSERT_INT_EQ(rows_differing("twilio_whatsapp", tc_wa_conf, CR_CH_WHATSAPP, wa_string_codes,
                                 sizeof(wa_string_codes) / sizeof(wa_string_codes[0])),
                  0);
}

TEST(twilio_common_both_refuse_a_bad_account_sid)
{
    static const char bad[] = "{\"account_sid\":\"AC12\",\"auth_token\":\"t\","
                              "\"from\":\"+447700900123\"}";

    ASSERT_CONFIG_REFUSED(cr_provider_find("twilio"), cJSON_Parse(bad), "http://127.0.0.1:9",
                          "providers.t", "providers.t.account_sid: must be \"AC\" followed by 32");
    ASSERT_CONFIG_REFUSED(cr_provider_find("twilio_whatsapp"), cJSON_Parse(bad),
                          "http://127.0.0.1:9", "providers.t",
                          "providers.t.account_sid: must be \"AC\" followed by 32");
}
