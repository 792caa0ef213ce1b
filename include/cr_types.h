/* Vocabulary shared by the daemon, the adapters and the tools: channels,
 * priorities and final statuses, with their names on the wire. */
#ifndef CR_TYPES_H
#define CR_TYPES_H

#include <stddef.h>

enum cr_channel { CR_CH_EMAIL, CR_CH_SMS, CR_CH_PUSH, CR_CH_WHATSAPP, CR_CH__COUNT };

/* A job's ledger (crier:job:<id>:ledger) holds one byte per audience
 * position, in Redis bit order (most significant bit first): bit i of the byte
 * is channel i (email 0, sms 1, push 2, whatsapp 3), then "skipped", then
 * three spare bits. Ledger bit of (pos, slot) = pos * CR_LEDGER_BITS + slot.
 * The numbers are macros so the Lua scripts can be built from them. */
#define CR_LEDGER_BITS 8
#define CR_LEDGER_SKIPPED 4
#define CR_STRINGIFY_(x) #x
#define CR_STRINGIFY(x) CR_STRINGIFY_(x) /* a macro's value as a string literal */

/* The slot of ch in a position's ledger byte; CR_CH__COUNT (a resident
 * skipped) gives CR_LEDGER_SKIPPED. */
static inline unsigned cr_ledger_slot(int ch)
{
    return (unsigned)ch < (unsigned)CR_CH__COUNT ? (unsigned)ch : CR_LEDGER_SKIPPED;
}
_Static_assert(CR_CH__COUNT <= CR_LEDGER_SKIPPED, "every channel needs a ledger slot");

/* Bit for a channel in a channel set (unsigned). */
#define CR_CH_BIT(ch) (1u << (unsigned)(ch))

/* Lower value = served first. */
enum cr_priority { CR_PRIO_URGENT, CR_PRIO_HIGH, CR_PRIO_NORMAL, CR_PRIO_BULK, CR_PRIO__COUNT };

/* Every message ends in exactly one of these (DESIGN.md "Delivery guarantees");
 * CR_ST_SKIPPED is a subscriber with no channel this job can reach them on. */
#define CR_STATUS_MAP(XX)                                                    \
    XX(DELIVERED, "delivered")                                               \
    XX(SENT, "sent")                                                         \
    XX(FAILED, "failed")                                                     \
    XX(BOUNCED, "bounced")                                                   \
    XX(SUPPRESSED, "suppressed")                                             \
    XX(EXPIRED, "expired")                                                   \
    XX(CANCELLED, "cancelled")                                               \
    XX(SKIPPED, "skipped")

enum cr_status {
#define XX(code, name) CR_ST_##code,
    CR_STATUS_MAP(XX)
#undef XX
        CR_ST__COUNT
};

/* "email", "sms", "push", "whatsapp"; NULL for an out-of-range value. */
const char *cr_channel_name(enum cr_channel ch);
/* Returns 0 and sets *out, or CR_EINVAL for an unknown name. */
int cr_channel_parse(const char *name, enum cr_channel *out);

/* "urgent", "high", "normal", "bulk"; NULL for an out-of-range value. */
const char *cr_priority_name(enum cr_priority p);
int cr_priority_parse(const char *name, enum cr_priority *out);

/* "delivered", "sent", ...; NULL for an out-of-range value. */
const char *cr_status_name(enum cr_status st);
int cr_status_parse(const char *name, enum cr_status *out);

#endif
