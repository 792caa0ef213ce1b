/* Fuzz target: cr_fuzz_hook_meta (see targets.h). Built with clang -fsanitize=fuzzer
 * for libFuzzer, or with any compiler and replay.c to run a corpus. */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return cr_fuzz_hook_meta(data, size);
}
