/* cr_buf: the cap is never passed and appends compose. */
#include <curl/curl.h>

#include "cr_buf.h"
#include "cr_error.h"
#include "test.h"

TEST(buf_appends_and_caps)
{
    struct cr_buf b;

    cr_buf_init(&b, 8);
    ASSERT_STR_EQ(cr_buf_cstr(&b), "");
    ASSERT_INT_EQ(cr_buf_appends(&b, "abc"), 0);
    ASSERT_INT_EQ(cr_buf_appendf(&b, "%d", 1234), 0);
    ASSERT_STR_EQ(cr_buf_cstr(&b), "abc1234");
    ASSERT_INT_EQ(cr_buf_appends(&b, "xy"), CR_ETOOBIG);
    ASSERT_STR_EQ(cr_buf_cstr(&b), "abc1234");
    ASSERT_INT_EQ(cr_buf_appendf(&b, "%s", "xy"), CR_ETOOBIG);
    ASSERT_INT_EQ(cr_buf_appends(&b, "z"), 0);
    ASSERT_INT_EQ(b.len, 8);
    cr_buf_release(&b);
}

TEST(strerror_names_every_code)
{
    ASSERT_STR_EQ(cr_strerror(CR_ENOMEM), "out of memory");
    ASSERT_STR_EQ(cr_errname(CR_ETIMEOUT), "ETIMEOUT");
    ASSERT_STR_EQ(cr_strerror(-999), "unknown error");
}

TEST(buf_pct_encodes_all_but_unreserved_as_curl_does)
{
    struct cr_buf b;
    char *curl;

    cr_buf_init(&b, 1024);
    ASSERT_INT_EQ(cr_buf_append_pct(&b, "Az09-._~ +&=%/?\xc3\xa9\n"), 0);
    ASSERT_STR_EQ(cr_buf_cstr(&b), "Az09-._~%20%2B%26%3D%25%2F%3F%C3%A9%0A");
    curl = curl_easy_escape(NULL, "Az09-._~ +&=%/?\xc3\xa9\n", 0);
    ASSERT_STR_EQ(cr_buf_cstr(&b), curl);
    curl_free(curl);
    cr_buf_release(&b);
    cr_buf_init(&b, 4);
    ASSERT_INT_EQ(cr_buf_append_pct(&b, "ab c"), CR_ETOOBIG);
    cr_buf_release(&b);
}
