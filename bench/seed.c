/* The benchmark's subscriber generator: writes COUNT subscriber hashes and one
 * segment set to Redis through a pipelined hiredis connection, fast enough to
 * seed a million subscribers in seconds.
 * Run: crier-seed HOST PORT KEY_PREFIX ID_PREFIX START COUNT SEGMENT CHANNELS
 *   e.g. crier-seed 127.0.0.1 6379 crier: b 0 100000 bench:all email,sms,push
 * Subscriber START+i gets id ID_PREFIX<START+i>, the contacts for CHANNELS
 * (email <id>@bench.crier.test, phone +447<9 digits>, an FCM push token; with
 * "apns" instead of "push", a 64-hex-digit APNs device token; with "whatsapp",
 * a WhatsApp number +447<9 digits> with opt-in and no open window) and joins segment
 * KEY_PREFIX seg:SEGMENT. Prints {"subscribers":N,"seconds":S}. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_COUNT 100000000L
#define WINDOW 4096    /* commands sent before their replies are read */
#define SADD_CHUNK 500 /* members per SADD */
#define ID_MAX 64

struct seeder {
    redisContext *c;
    long pending; /* commands appended and not yet answered */
};

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads every outstanding reply; returns 0, or -1 on a connection or command error. */
static int drain(struct seeder *s)
{
    while (s->pending > 0) {
        void *r = NULL;
        int bad;

        if (redisGetReply(s->c, &r) != REDIS_OK) {
            fprintf(stderr, "crier-seed: redis: %s\n", s->c->errstr);
            return -1;
        }
        bad = ((redisReply *)r)->type == REDIS_REPLY_ERROR;
        if (bad)
            fprintf(stderr, "crier-seed: redis error: %s\n", ((redisReply *)r)->str);
        freeReplyObject(r);
        s->pending--;
        if (bad)
            return -1;
    }
    return 0;
}

/* Appends one command (argv of argc strings) and drains when the window is full. */
static int send_argv(struct seeder *s, int argc, const char **argv, const size_t *lens)
{
    if (redisAppendCommandArgv(s->c, argc, argv, lens) != REDIS_OK) {
        fprintf(stderr, "crier-seed: cannot queue a command: %s\n", s->c->errstr);
        return -1;
    }
    s->pending++;
    if (s->pending >= WINDOW)
        return drain(s);
    return 0;
}

static int has_channel(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;

    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);

        if (len == n && memcmp(p, name, n) == 0)
            return 1;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const char *names[] = {"Ann", "Bob", "Cara", "Dev", "Ewa", "Finn", "Gosia", "Hal"};
    struct seeder s = {NULL, 0};
    const char *prefix, *idp, *segment, *channels;
    long port, start, count, i;
    int email, sms, push, apns, whatsapp;
    char segkey[256];
    char (*ids)[ID_MAX] = NULL;
    const char **sargv = NULL;
    size_t *slens = NULL;
    int nmembers = 0;
    double t0;
    int rc = 2;

    if (argc != 9 || parse_long(argv[2], 1, 65535, &port) < 0 ||
        parse_long(argv[5], 0, MAX_COUNT, &start) < 0 ||
        parse_long(argv[6], 1, MAX_COUNT, &count) < 0) {
        fprintf(stderr, "usage: %s HOST PORT KEY_PREFIX ID_PREFIX START COUNT SEGMENT CHANNELS\n",
                argv[0]);
        return 2;
    }
    prefix = argv[3];
    idp = argv[4];
    segment = argv[7];
    channels = argv[8];
    email = has_channel(channels, "email");
    sms = has_channel(channels, "sms");
    push = has_channel(channels, "push");
    apns = has_channel(channels, "apns");
    whatsapp = has_channel(channels, "whatsapp");
    if (strlen(idp) > 20 || strlen(prefix) > 63 ||
        (!email && !sms && !push && !apns && !whatsapp)) {
        fprintf(stderr, "crier-seed: ID_PREFIX (<= 20 bytes), KEY_PREFIX (<= 63 bytes) and "
                        "CHANNELS (some of email,sms,push,apns,whatsapp) are required\n");
        return 2;
    }
    snprintf(segkey, sizeof(segkey), "%sseg:%s", prefix, segment);

    ids = calloc(SADD_CHUNK, sizeof(*ids));
    sargv = calloc(SADD_CHUNK + 2, sizeof(*sargv));
    slens = calloc(SADD_CHUNK + 2, sizeof(*slens));
    if (ids == NULL || sargv == NULL || slens == NULL)
        goto out;
    s.c = redisConnect(argv[1], (int)port);
    if (s.c == NULL || s.c->err) {
        fprintf(stderr, "crier-seed: cannot connect to %s:%ld: %s\n", argv[1], port,
                s.c ? s.c->errstr : "out of memory");
        goto out;
    }

    t0 = now_s();
    rc = 1;
    for (i = start; i < start + count; i++) {
        char key[128], id[ID_MAX], name[32], mail[128], phone[32], token[96], wa[32];
        const char *hv[24];
        size_t hl[24];
        int n = 0;
        int k;

        snprintf(id, sizeof(id), "%s%ld", idp, i);
        snprintf(key, sizeof(key), "%ssub:%s", prefix, id);
        snprintf(name, sizeof(name), "%s", names[i % 8]);
        hv[n++] = "HSET";
        hv[n++] = key;
        hv[n++] = "name";
        hv[n++] = name;
        hv[n++] = "lang";
        hv[n++] = "en";
        if (email) {
            snprintf(mail, sizeof(mail), "%s@bench.crier.test", id);
            hv[n++] = "email";
            hv[n++] = mail;
        }
        if (sms) {
            snprintf(phone, sizeof(phone), "+447%09ld", i % 1000000000L);
            hv[n++] = "phone";
            hv[n++] = phone;
        }
        if (push) {
            snprintf(token, sizeof(token), "fcm-%s-%08lx", id, (unsigned long)(i * 2654435761UL));
            hv[n++] = "push_token";
            hv[n++] = token;
            hv[n++] = "push_platform";
            hv[n++] = "fcm";
        } else if (apns) {
            unsigned long long h = (unsigned long long)i * 0x9E3779B97F4A7C15ULL;

            snprintf(token, sizeof(token), "%016llx%016llx%016llx%016llx", h, h ^ 0xa5a5a5a5ULL,
                     h >> 3, (unsigned long long)i);
            hv[n++] = "push_token";
            hv[n++] = token;
            hv[n++] = "push_platform";
            hv[n++] = "apns";
        }
        if (whatsapp) {
            snprintf(wa, sizeof(wa), "+447%09ld", i % 1000000000L);
            hv[n++] = "whatsapp";
            hv[n++] = wa;
            hv[n++] = "whatsapp_optin";
            hv[n++] = "2026-01-01T00:00:00Z";
        }
        for (k = 0; k < n; k++)
            hl[k] = strlen(hv[k]);
        if (send_argv(&s, n, hv, hl) < 0)
            goto out;

        memcpy(ids[nmembers], id, strlen(id) + 1);
        nmembers++;
        if (nmembers == SADD_CHUNK || i + 1 == start + count) {
            sargv[0] = "SADD";
            sargv[1] = segkey;
            for (k = 0; k < nmembers; k++)
                sargv[k + 2] = ids[k];
            for (k = 0; k < nmembers + 2; k++)
                slens[k] = strlen(sargv[k]);
            if (send_argv(&s, nmembers + 2, sargv, slens) < 0)
                goto out;
            /* The SADD borrowed ids: hiredis copied them into its output buffer. */
            nmembers = 0;
        }
    }
    if (drain(&s) < 0)
        goto out;
    printf("{\"subscribers\":%ld,\"seconds\":%.3f}\n", count, now_s() - t0);
    rc = 0;
out:
    if (s.c)
        redisFree(s.c);
    free(ids);
    free(sargv);
    free(slens);
    return rc;
}
