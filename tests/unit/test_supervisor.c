/* The supervisor's -W argument: worker index and supervisor pid, nothing else. */
#include "cr_error.h"
#include "test.h"
#include "workers.h"

TEST(supervisor_worker_arg)
{
    int index = -1;
    long pid = -1;

    ASSERT_INT_EQ(cr_workers_parse_arg("1:4242", 2, &index, &pid), 0);
    ASSERT_INT_EQ(index, 1);
    ASSERT_INT_EQ(pid, 4242);
    ASSERT_INT_EQ(cr_workers_parse_arg("0:1", 1, &index, &pid), 0);
    ASSERT_INT_EQ(index, 0);
    ASSERT_INT_EQ(cr_workers_parse_arg("2:4242", 2, &index, &pid), CR_EINVAL);
    ASSERT_INT_EQ(cr_workers_parse_arg("-1:4242", 2, &index, &pid), CR_EINVAL);
    ASSERT_INT_EQ(cr_workers_parse_arg("1", 2, &index, &pid), CR_EINVAL);
    ASSERT_INT_EQ(cr_workers_parse_arg("1:", 2, &index, &pid), CR_EINVAL);
    ASSERT_INT_EQ(cr_workers_parse_arg("1:0", 2, &index, &pid), CR_EINVAL);
    ASSERT_INT_EQ(cr_workers_parse_arg("1:42x", 2, &index, &pid), CR_EINVAL);
    ASSERT_INT_EQ(cr_workers_parse_arg("x:42", 2, &index, &pid), CR_EINVAL);
    ASSERT_INT_EQ(cr_workers_parse_arg("", 2, &index, &pid), CR_EINVAL);
}
