/* Redis key names of the v1 contract, built once from the configured prefix. */
#ifndef CR_KEYS_H
#define CR_KEYS_H

#include <stddef.h>

#include "cr_types.h"

#define CR_KEY_MAX 256

struct cr_keys {
    char prefix[64];
    char jobs[CR_KEY_MAX];       /* intake stream */
    char dead[CR_KEY_MAX];       /* rejected jobs */
    char recent[CR_KEY_MAX];     /* sorted set: job id by creation time (newest 10,000) */
    char receipts[CR_KEY_MAX];
    char retry[CR_KEY_MAX];      /* sorted set: parked messages by due time */
    char scheduled[CR_KEY_MAX];  /* sorted set: job id by send_at */
    char sms_last[CR_KEY_MAX];   /* hash: phone -> "<job>/<pos>/<sub>" of the last SMS sent */
    char events[CR_KEY_MAX];
    char fleet[CR_KEY_MAX];      /* sorted set: consumer by last heartbeat (ms); <fleet>:<consumer> holds it */
    char batches[CR_PRIO__COUNT][CR_KEY_MAX]; /* fan-out streams, one per priority */
    char suppress[CR_CH__COUNT][CR_KEY_MAX];
};

/* Fills keys from prefix ("crier:"). Returns 0 or CR_ETOOBIG for a prefix over 63 bytes. */
int cr_keys_init(struct cr_keys *keys, const char *prefix);

/* Writes "<prefix><kind>:<id>" (e.g. kind "job") into out. Returns 0 or CR_ETOOBIG. */
int cr_key_for(const struct cr_keys *keys, const char *kind, const char *id, char *out,
               size_t outlen);

#endif
