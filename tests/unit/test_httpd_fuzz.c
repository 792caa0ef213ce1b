/* Replays the checked-in fuzz corpus (fuzz/corpus/<target>/) through each
 * fuzz target on every run, so an input that once crashed stays fixed; under
 * SANITIZE=address,undefined this is a small fuzz regression suite. Runs from
 * the repository root (as tests/run.sh and make unit do). */
#include <dirent.h>
#include <stdio.h>

#include "../../fuzz/targets.h"
#include "test.h"

#define INPUT_MAX (256 * 1024)

/* Runs every file of dir through fn; returns the count, or -1 when dir is missing. */
static int replay(const char *dir, int (*fn)(const uint8_t *, size_t))
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint8_t *buf;
    int n = 0;

    if (d == NULL)
        return -1;
    buf = malloc(INPUT_MAX);
    while (buf != NULL && (e = readdir(d)) != NULL) {
        char path[1024];
        FILE *f;
        size_t len;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        f = fopen(path, "rb");
        if (f == NULL)
            continue;
        len = fread(buf, 1, INPUT_MAX, f);
        fclose(f);
        fn(buf, len);
        n++;
    }
    free(buf);
    closedir(d);
    return n;
}

TEST(fuzz_corpus_replays)
{
    ASSERT(replay("fuzz/corpus/http_request", cr_fuzz_http_request) >= 5);
    ASSERT(replay("fuzz/corpus/hook_twilio", cr_fuzz_hook_twilio) >= 3);
    ASSERT(replay("fuzz/corpus/hook_sendgrid", cr_fuzz_hook_sendgrid) >= 3);
    ASSERT(replay("fuzz/corpus/hook_generic", cr_fuzz_hook_generic) >= 3);
    ASSERT(replay("fuzz/corpus/hook_meta", cr_fuzz_hook_meta) >= 4);
    ASSERT(replay("fuzz/corpus/link_token", cr_fuzz_link_token) >= 3);
    ASSERT(replay("fuzz/corpus/sig_header", cr_fuzz_sig_header) >= 10);
}

TEST(fuzz_targets_take_edge_inputs)
{
    static const uint8_t zeros[64];
    uint8_t all[256];
    int i;

    for (i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    ASSERT(cr_fuzz_http_request(all, 1) == 0);
    cr_fuzz_http_request(NULL, 0);
    cr_fuzz_http_request(zeros, sizeof(zeros));
    cr_fuzz_http_request(all, sizeof(all));
    cr_fuzz_hook_twilio(all, sizeof(all));
    cr_fuzz_hook_sendgrid(all, sizeof(all));
    cr_fuzz_hook_generic(all, sizeof(all));
    cr_fuzz_hook_meta(all, sizeof(all));
    cr_fuzz_hook_meta(zeros, sizeof(zeros));
    cr_fuzz_link_token(all, sizeof(all));
    cr_fuzz_link_token(zeros, sizeof(zeros));
}
