/* cr_secret_resolve: "$env:", "$file:" and "$$" config values, one rule for
 * crierd's and crier-audit's config files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cr_error.h"
#include "cr_secret.h"
#include "test.h"

TEST(secret_plain_and_dollar_dollar)
{
    char why[200] = "";
    char *out = (char *)1;

    ASSERT_INT_EQ(cr_secret_resolve("plain", &out, why, sizeof why), 0);
    ASSERT(out == NULL); /* no reference: the value stands as it is */
    ASSERT_INT_EQ(cr_secret_resolve("$$5 off", &out, why, sizeof why), 0);
    ASSERT_STR_EQ(out, "$5 off");
    free(out);
    ASSERT_INT_EQ(cr_secret_resolve("$nope", &out, why, sizeof why), CR_ECONFIG);
    ASSERT_STR_CONTAINS(why, "starts with '$' but is not $env:NAME or $file:/path");
}

TEST(secret_env)
{
    char why[200] = "";
    char *out = NULL;

    setenv("CRIER_TEST_SECRET", "from-env", 1);
    ASSERT_INT_EQ(cr_secret_resolve("$env:CRIER_TEST_SECRET", &out, why, sizeof why), 0);
    ASSERT_STR_EQ(out, "from-env");
    free(out);
    unsetenv("CRIER_TEST_SECRET");
    ASSERT_INT_EQ(cr_secret_resolve("$env:CRIER_TEST_SECRET", &out, why, sizeof why),
                  CR_ECONFIG);
    ASSERT_STR_EQ(why, "environment variable CRIER_TEST_SECRET is not set");
    ASSERT_INT_EQ(cr_secret_resolve("$env:1A", &out, why, sizeof why), CR_ECONFIG);
    ASSERT_STR_EQ(why, "'$env:' needs a variable name of letters, digits and '_'");
}

TEST(secret_file_drops_one_final_line_end)
{
    char path[] = "/tmp/crier-secret-XXXXXX";
    char ref[64];
    char why[200] = "";
    char *out = NULL;
    int fd = mkstemp(path);

    ASSERT(fd >= 0);
    ASSERT_INT_EQ(write(fd, "s3cret\n\r\n", 9), 9);
    close(fd);
    snprintf(ref, sizeof ref, "$file:%s", path);
    ASSERT_INT_EQ(cr_secret_resolve(ref, &out, why, sizeof why), 0);
    ASSERT_STR_EQ(out, "s3cret\n"); /* one "\r\n" dropped, the rest is the secret */
    free(out);
    unlink(path);
    ASSERT_INT_EQ(cr_secret_resolve(ref, &out, why, sizeof why), CR_ECONFIG);
    ASSERT_STR_CONTAINS(why, "cannot read /tmp/crier-secret-");
    ASSERT_INT_EQ(cr_secret_resolve("$file:", &out, why, sizeof why), CR_ECONFIG);
    ASSERT_STR_CONTAINS(why, "'$file:' needs a file name");
}
