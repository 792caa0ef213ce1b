/* Keeping crier:receipts, crier:replies and crier:events for the audit sink:
 * while a consumer group reads one of these streams (crier-audit's), crierd
 * learns once a second the oldest entry the groups have not acknowledged and
 * publishes it as the stream's trim floor (<stream>:audit-floor). Every writer
 * of the three streams trims with CR_AUDIT_TRIM_LUA: below the floor only,
 * the stream's maxlen staying the hard ceiling, what the ceiling cuts past the
 * floor counted in <stream>:audit-missed. This module also reports the
 * groups' backlog and those missed entries in /metrics. */
#ifndef CR_AUDIT_TRIM_H
#define CR_AUDIT_TRIM_H

#include "cr_buf.h"
#include "daemon.h"

/* The length crier:events is trimmed to (no setting of its own). */
#define CR_EVENTS_MAXLEN "100000"

/* The one trim policy, as Lua for every script that writes one of the three
 * streams (crierd's and crierctl's): trim_stream(key, maxlen) trims key below
 * its audit floor (XTRIM MINID), or to MAXLEN ~ maxlen when no floor is
 * published; past maxlen it trims past the floor and adds what that cut to
 * <key>:audit-missed. xadd_kept(key, maxlen, field, value, ...) appends an
 * entry and trims; a script adding many entries XADDs them and calls
 * trim_stream once at the end. */
#define CR_AUDIT_TRIM_LUA                                                                          \
    "local function trim_stream(key, maxlen)\n"                                                    \
    "  local floor = redis.call('GET', key .. ':audit-floor')\n"                                   \
    "  if not floor then redis.call('XTRIM', key, 'MAXLEN', '~', maxlen); return end\n"            \
    "  redis.call('XTRIM', key, 'MINID', '~', floor)\n"                                            \
    "  if redis.call('XLEN', key) > tonumber(maxlen) then\n"                                       \
    "    redis.call('XTRIM', key, 'MINID', floor)\n"                                               \
    "    local cut = redis.call('XTRIM', key, 'MAXLEN', '~', maxlen)\n"                            \
    "    if cut > 0 then redis.call('INCRBY', key .. ':audit-missed', cut) end\n"                  \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local function xadd_kept(key, maxlen, ...)\n"                                                 \
    "  local id = redis.call('XADD', key, '*', ...)\n"                                             \
    "  trim_stream(key, maxlen)\n"                                                                 \
    "  return id\n"                                                                                \
    "end\n"

/* A script for one entry written outside a script (in a MULTI, say):
 * EVAL CR_AUDIT_XADD_LUA 1 <stream> <maxlen> field value ... */
#define CR_AUDIT_XADD_LUA CR_AUDIT_TRIM_LUA "return xadd_kept(KEYS[1], ARGV[1], unpack(ARGV, 2))\n"

struct cr_audit_trim;

/* Starts the once-a-second look at the three streams on d->rc. Returns 0 and
 * *out, or CR_ENOMEM. */
int cr_audit_trim_init(struct cr_daemon *d, struct cr_audit_trim **out);

/* Stops the timer; replies still in flight are ignored. */
void cr_audit_trim_stop(struct cr_audit_trim *t);

/* Frees t once its timer is closed (NULL is fine). */
void cr_audit_trim_free(struct cr_audit_trim *t);

/* Appends the crier_audit_* metrics (Prometheus text) to out. Returns 0 or a
 * cr_buf error. */
int cr_audit_trim_render(const struct cr_audit_trim *t, struct cr_buf *out);

/* Compares two stream ids ("ms-seq"): <0, 0 or >0 as in strcmp. Pure. */
int cr_stream_id_cmp(const char *a, const char *b);

#endif
