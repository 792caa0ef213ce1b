/* The one table of crier error codes, turned into words for log lines. */
#include "cr_error.h"

const char *cr_strerror(int err)
{
    switch (err) {
    case CR_OK:
        return "success";
#define XX(code, msg)                                                        \
    case CR_E##code:                                                         \
        return msg;
        CR_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

const char *cr_errname(int err)
{
    switch (err) {
    case CR_OK:
        return "OK";
#define XX(code, msg)                                                        \
    case CR_E##code:                                                         \
        return "E" #code;
        CR_ERRNO_MAP(XX)
#undef XX
    default:
        return "EUNKNOWN";
    }
}
