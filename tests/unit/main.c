/* Runs every registered unit test (optionally only those whose file or name
 * contains argv[1]) and ends with the line "unit: N passed, N failed". */
#include "test.h"

#include <stdlib.h>

#define MAX_TESTS 2048

struct entry {
    const char *file;
    const char *name;
    cr_test_fn fn;
};

static struct entry tests[MAX_TESTS];
static size_t ntests;

void cr_test_register(const char *file, const char *name, cr_test_fn fn)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests; raise MAX_TESTS\n");
        exit(2);
    }
    tests[ntests].file = file;
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0;
    int failed = 0;
    size_t i;

    for (i = 0; i < ntests; i++) {
        int f = 0;

        if (filter && strstr(tests[i].file, filter) == NULL && strstr(tests[i].name, filter) == NULL)
            continue;
        tests[i].fn(&f);
        if (f) {
            failed++;
            printf("FAIL %s: %s\n", tests[i].file, tests[i].name);
        } else {
            passed++;
            printf("ok   %s: %s\n", tests[i].file, tests[i].name);
        }
    }
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
