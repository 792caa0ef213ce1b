/* Outcomes confirmed on replicas (redis.wait_replicas): a message's unrecorded
 * slot is freed only when Redis's WAIT says enough replicas have its outcome,
 * so a failover can throw away no more than max_unrecorded per provider. One
 * WAIT at a time on the commands connection covers every record write
 * answered before it was sent; the writes answered meanwhile wait for the next. */
#ifndef CR_REPLICAS_H
#define CR_REPLICAS_H

#include <stddef.h>
#include <stdint.h>

struct cr_daemon;
struct cr_replicas;

/* Frees n unrecorded slots of provider prov (cr_dispatch_release in crierd). */
typedef void (*cr_replicas_release_cb)(void *ud, size_t prov, uint32_t n);

/* Creates the tracker for nprov providers: WAIT for want replicas (1..16) for
 * at most timeout_ms. d may be NULL (unit tests: nothing is sent, see
 * cr_replicas_take). release frees slots. Returns 0 or CR_ENOMEM. */
int cr_replicas_init(struct cr_daemon *d, size_t nprov, int want, long timeout_ms,
                     cr_replicas_release_cb release, void *ud, struct cr_replicas **out);

/* Stops the probe timer and frees w (in its close callback when d is set). */
void cr_replicas_free(struct cr_replicas *w);

/* One slot of provider prov whose outcome Redis has written: freed when a
 * WAIT sent after this call answers (or at once while degraded, see
 * cr_replicas_degraded). */
void cr_replicas_hold(struct cr_replicas *w, size_t prov);

/* Sends a WAIT on the commands connection when slots are waiting and none is
 * under way. */
void cr_replicas_kick(struct cr_replicas *w);

/* The bookkeeping behind cr_replicas_kick, without I/O: when no WAIT is under
 * way and slots wait, they become covered by the WAIT about to be sent and 1
 * is returned; else 0. */
int cr_replicas_take(struct cr_replicas *w);

/* The WAIT sent after cr_replicas_take answered: acked replicas (-1: no
 * answer, the connection was lost). Frees the covered slots whatever the
 * answer (an appeal must not stop because a replica died); a shortfall is
 * counted, logged (at most one line per LOG_EVERY) and makes w degraded until
 * the replicas catch up. now_ms is the loop's clock. */
void cr_replicas_answered(struct cr_replicas *w, long acked, uint64_t now_ms);

/* The replicas are back in step (a probe saw them, or a WAIT was answered in
 * full): WAITs guard the slots again. */
void cr_replicas_recovered(struct cr_replicas *w, uint64_t now_ms);

/* Nonzero while the last WAIT fell short: slots are then freed at once and a
 * probe (INFO replication, once a second) looks for the replicas to come
 * back, so a dead replica slows nothing down. why gets a one-line reason. */
int cr_replicas_degraded(const struct cr_replicas *w, char *why, size_t cap);

/* WAITs answered by fewer replicas than asked, since start. */
uint64_t cr_replicas_short_total(const struct cr_replicas *w);

/* Slots waiting for a WAIT, and covered by the one under way (tests). */
uint64_t cr_replicas_waiting(const struct cr_replicas *w);
uint64_t cr_replicas_covered(const struct cr_replicas *w);

#endif
