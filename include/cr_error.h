/* Error codes shared by every crier module: functions return 0 or one of these
 * negative values, and cr_strerror() turns any of them into words. */
#ifndef CR_ERROR_H
#define CR_ERROR_H

#define CR_ERRNO_MAP(XX)                                                     \
    XX(NOMEM, "out of memory")                                               \
    XX(INVAL, "invalid argument")                                            \
    XX(TOOBIG, "over its size limit")                                        \
    XX(PARSE, "malformed input")                                             \
    XX(IO, "input/output error")                                             \
    XX(NOTFOUND, "not found")                                                \
    XX(EXISTS, "already exists")                                             \
    XX(REDIS, "redis error")                                                 \
    XX(HTTP, "http error")                                                   \
    XX(TIMEOUT, "timed out")                                                 \
    XX(CLOSED, "connection closed")                                          \
    XX(CONFIG, "bad configuration")                                          \
    XX(BUSY, "queue full")                                                   \
    XX(AGAIN, "try again later")                                             \
    XX(CANCELED, "cancelled")                                                \
    XX(UNSUPPORTED, "not supported")

enum cr_errno_index {
    CR__I_NONE = 0,
#define XX(code, msg) CR__I_##code,
    CR_ERRNO_MAP(XX)
#undef XX
        CR__I_COUNT
};

enum cr_errno {
    CR_OK = 0,
#define XX(code, msg) CR_E##code = -(int)CR__I_##code,
    CR_ERRNO_MAP(XX)
#undef XX
};

/* Returns a static description of err (0 or a CR_E* value); never NULL. */
const char *cr_strerror(int err);

/* Returns the short name of err ("ENOMEM"), for log lines; never NULL. */
const char *cr_errname(int err);

#endif
