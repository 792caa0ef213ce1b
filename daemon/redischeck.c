/* The Redis settings check and run_id watch (see redischeck.h). */
#include "redischeck.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cr_error.h"
#include "cr_log.h"
#include "daemon.h"

#define NQUERIES 5 /* four CONFIG GETs and INFO replication */

struct cr_redischeck {
    struct cr_daemon *d;
    char run_id[48];
    int checked;   /* the settings check ran (or is under way) */
    int answers;   /* of NQUERIES */
    int lost;      /* the connection went before every answer came: check again */
    struct cr_redis_settings s;
};

/* Appends one formatted line to out (cap bytes); keeps it terminated. */
static void add_line(char *out, size_t cap, const char *fmt, ...)
{
    size_t used = strnlen(out, cap);
    va_list ap;

    if (used + 1 >= cap)
        return;
    va_start(ap, fmt);
    vsnprintf(out + used, cap - used, fmt, ap);
    va_end(ap);
    used = strnlen(out, cap);
    if (used + 1 < cap) {
        out[used] = '\n';
        out[used + 1] = '\0';
    }
}

int cr_redis_settings_judge(const struct cr_redis_settings *s, int wait_replicas, char *out,
                            size_t cap)
{
    int n = 0;
    int single = s->connected_replicas == 0 && strcmp(s->role, "master") == 0;

    if (cap > 0)
        out[0] = '\0';
    if (s->config_refused) {
        add_line(out, cap,
                 "CONFIG GET refused (%s): appendonly, appendfsync and min-replicas-to-write "
                 "could not be checked; see docs/redis.md for what they must be",
                 s->refusal[0] ? s->refusal : "?");
        n++;
    } else if (single && (strcmp(s->appendonly, "yes") != 0 ||
                          strcmp(s->appendfsync, "always") != 0)) {
        add_line(out, cap,
                 "a single Redis without replicas, with appendonly %s and appendfsync %s: a "
                 "crash of its machine can lose outcomes it acknowledged (found at the "
                 "batch's acknowledgement and written again, but batches already "
                 "acknowledged are sent again); set appendonly yes and appendfsync always",
                 s->appendonly[0] ? s->appendonly : "?", s->appendfsync[0] ? s->appendfsync : "?");
        n++;
    }
    if (wait_replicas > 0 && !s->config_refused && s->min_replicas_to_write == 0) {
        add_line(out, cap,
                 "redis.wait_replicas is %d but min-replicas-to-write is 0: a primary cut off "
                 "from its replicas goes on accepting writes that a failover discards; set "
                 "min-replicas-to-write 1 and min-replicas-max-lag 10",
                 wait_replicas);
        n++;
    }
    if (wait_replicas > 0 && s->connected_replicas >= 0 &&
        s->connected_replicas < wait_replicas) {
        add_line(out, cap,
                 "redis.wait_replicas is %d but the primary has %ld replica%s connected: every "
                 "WAIT will fall short",
                 wait_replicas, s->connected_replicas, s->connected_replicas == 1 ? "" : "s");
        n++;
    }
    return n;
}

static void judge_and_log(struct cr_redischeck *c)
{
    char lines[1536];
    char *p;
    char *nl;
    int n = cr_redis_settings_judge(&c->s, c->d->cfg->redis_wait_replicas, lines, sizeof(lines));

    if (n == 0) {
        cr_info("redis settings: appendonly %s, appendfsync %s, min-replicas-to-write %ld, "
                "%ld replica%s connected: as crier needs them",
                c->s.appendonly, c->s.appendfsync, c->s.min_replicas_to_write,
                c->s.connected_replicas, c->s.connected_replicas == 1 ? "" : "s");
        return;
    }
    for (p = lines; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        cr_warn("redis settings: %s (docs/redis.md)", p);
    }
}

static void answered(struct cr_redischeck *c)
{
    if (++c->answers < NQUERIES)
        return;
    if (c->lost)
        c->checked = 0; /* on the next connection */
    else
        judge_and_log(c);
}

/* CONFIG GET name -> [name, value] */
static void on_config(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_redischeck *c = ud;
    const char *value = NULL;

    (void)r;
    if (reply == NULL) {
        c->lost = 1;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        c->s.config_refused = 1;
        snprintf(c->s.refusal, sizeof(c->s.refusal), "%s", reply->str ? reply->str : "?");
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
               reply->element[0]->type == REDIS_REPLY_STRING &&
               reply->element[1]->type == REDIS_REPLY_STRING) {
        const char *name = reply->element[0]->str;

        value = reply->element[1]->str;
        if (strcmp(name, "appendonly") == 0)
            snprintf(c->s.appendonly, sizeof(c->s.appendonly), "%s", value);
        else if (strcmp(name, "appendfsync") == 0)
            snprintf(c->s.appendfsync, sizeof(c->s.appendfsync), "%s", value);
        else if (strcmp(name, "min-replicas-to-write") == 0)
            c->s.min_replicas_to_write = strtol(value, NULL, 10);
        else if (strcmp(name, "min-replicas-max-lag") == 0)
            c->s.min_replicas_max_lag = strtol(value, NULL, 10);
    }
    answered(c);
}

/* The value of "name:value" in an INFO text, copied into out. */
static void info_field(const char *text, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    const char *p = text;

    if (cap > 0)
        out[0] = '\0';
    while (p != NULL && *p) {
        if (strncmp(p, name, n) == 0 && p[n] == ':') {
            size_t len = strcspn(p + n + 1, "\r\n");

            if (len >= cap)
                len = cap - 1;
            memcpy(out, p + n + 1, len);
            out[len] = '\0';
            return;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
}

static void on_replication(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_redischeck *c = ud;
    char v[32];

    (void)r;
    if (reply == NULL)
        c->lost = 1;
    if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
        info_field(reply->str, "role", c->s.role, sizeof(c->s.role));
        info_field(reply->str, "connected_slaves", v, sizeof(v));
        if (v[0])
            c->s.connected_replicas = strtol(v, NULL, 10);
    }
    answered(c);
}

static void on_server(struct cr_redis *r, redisReply *reply, void *ud)
{
    struct cr_redischeck *c = ud;
    char id[48];

    (void)r;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING)
        return;
    info_field(reply->str, "run_id", id, sizeof(id));
    if (id[0] == '\0')
        return;
    if (c->run_id[0] && strcmp(c->run_id, id) != 0)
        cr_warn("redis: run_id changed from %s to %s (a restart or another primary): outcomes "
                "held here are written again before their batches are acknowledged",
                c->run_id, id);
    else if (c->run_id[0])
        cr_info("redis: reconnected to the same server (run_id %s)", id);
    snprintf(c->run_id, sizeof(c->run_id), "%s", id);
}

int cr_redischeck_init(struct cr_daemon *d, struct cr_redischeck **out)
{
    struct cr_redischeck *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return CR_ENOMEM;
    c->d = d;
    *out = c;
    return 0;
}

void cr_redischeck_free(struct cr_redischeck *c)
{
    free(c);
}

void cr_redischeck_connected(struct cr_redischeck *c)
{
    static const char *const names[] = {"appendonly", "appendfsync", "min-replicas-to-write",
                                        "min-replicas-max-lag"};
    struct cr_redis *rc = c->d->rc;
    size_t i;

    cr_redis_probe(rc, on_server, c, "INFO server");
    if (c->checked)
        return;
    c->checked = 1;
    memset(&c->s, 0, sizeof(c->s));
    c->s.min_replicas_to_write = -1;
    c->s.min_replicas_max_lag = -1;
    c->s.connected_replicas = -1;
    c->answers = 0;
    c->lost = 0;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (cr_redis_probe(rc, on_config, c, "CONFIG GET %s", names[i]) < 0) {
            c->lost = 1;
            answered(c);
        }
    }
    if (cr_redis_probe(rc, on_replication, c, "INFO replication") < 0) {
        c->lost = 1;
        answered(c);
    }
}
