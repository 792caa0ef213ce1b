/* The unit test runner's few macros: a test is a function registered by TEST();
 * asserts print both sides and are never compiled out. */
#ifndef CR_TEST_H
#define CR_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef void (*cr_test_fn)(int *failed);

/* Registers a test; called by TEST() before main. */
void cr_test_register(const char *file, const char *name, cr_test_fn fn);

#define TEST(name)                                                           \
    static void test_##name(int *cr_test_failed);                            \
    __attribute__((constructor)) static void register_##name(void)           \
    {                                                                        \
        cr_test_register(__FILE__, #name, test_##name);                      \
    }                                                                        \
    static void test_##name(int *cr_test_failed)

#define CR_FAIL_(...)                                                        \
    do {                                                                     \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                    \
        fprintf(stderr, __VA_ARGS__);                                        \
        fputc('\n', stderr);                                                 \
        *cr_test_failed = 1;                                                 \
        return;                                                              \
    } while (0)

#define ASSERT(cond)                                                         \
    do {                                                                     \
        if (!(cond))                                                         \
            CR_FAIL_("assertion failed: %s", #cond);                         \
    } while (0)

#define ASSERT_INT_EQ(a, b)                                                  \
    do {                                                                     \
        long long cr_a_ = (long long)(a), cr_b_ = (long long)(b);            \
        if (cr_a_ != cr_b_)                                                  \
            CR_FAIL_("%s == %s: %lld != %lld", #a, #b, cr_a_, cr_b_);        \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                  \
    do {                                                                     \
        const char *cr_a_ = (a), *cr_b_ = (b);                               \
        if (cr_a_ == NULL || cr_b_ == NULL || strcmp(cr_a_, cr_b_) != 0)     \
            CR_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b,                   \
                     cr_a_ ? cr_a_ : "(null)", cr_b_ ? cr_b_ : "(null)");    \
    } while (0)

#define ASSERT_STR_CONTAINS(hay, needle)                                     \
    do {                                                                     \
        const char *cr_h_ = (hay), *cr_n_ = (needle);                        \
        if (cr_h_ == NULL || strstr(cr_h_, cr_n_) == NULL)                   \
            CR_FAIL_("%s contains %s: \"%s\" lacks \"%s\"", #hay, #needle,   \
                     cr_h_ ? cr_h_ : "(null)", cr_n_);                       \
    } while (0)

#endif
