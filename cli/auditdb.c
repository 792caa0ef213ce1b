/* The audit database as crierctl's commands name it (--config, --sqlite,
 * --postgresql): one place that parses those options, opens the database
 * crier-audit writes and checks that it holds an audit schema. */
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "conf.h"
#include "ctl.h"

int cr_ctl_db_opt(struct ctl_db *db, int code, const char *arg)
{
    switch (code) {
    case CTL_OPT_DB_CONFIG:
        db->config = arg;
        return 1;
    case CTL_OPT_DB_SQLITE:
    case CTL_OPT_DB_PG:
        db->target = arg;
        db->kind = code == CTL_OPT_DB_SQLITE ? CR_STORE_SQLITE : CR_STORE_POSTGRESQL;
        return 1;
    default:
        return 0;
    }
}

int cr_ctl_db_given(const struct ctl_db *db)
{
    return db->config != NULL || db->target != NULL;
}

int cr_ctl_db_open(struct ctl *ctl, const struct ctl_db *db, struct cr_store **out)
{
    struct cr_audit_config cfg;
    struct cr_store *s = NULL;
    enum cr_store_kind kind = db->kind;
    const char *target = db->target;
    char err[600];
    int version = 0;
    int code = CTL_EXIT_USAGE;

    *out = NULL;
    memset(&cfg, 0, sizeof(cfg));
    if ((db->config == NULL) == (db->target == NULL)) {
        fprintf(stderr, "crierctl %s: name the audit database once: --config FILE, "
                        "--sqlite PATH or --postgresql CONNINFO\n",
                ctl->cmd);
        goto out;
    }
    if (db->config) {
        if (cr_audit_config_load(db->config, &cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "crierctl %s: config: %s\n", ctl->cmd, err);
            goto out;
        }
        kind = cfg.db_kind;
        target = cfg.db_target;
    }
    code = CTL_EXIT_FAIL;
    if (cr_store_open(kind, target, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "crierctl %s: cannot open the audit database: %s\n", ctl->cmd, err);
        goto out;
    }
    if (cr_audit_schema_version(s, &version) != 0 || version == 0) {
        fprintf(stderr, "crierctl %s: no audit schema in that database (%s)\n", ctl->cmd,
                version == 0 ? "crier-audit has not run on it" : cr_store_errmsg(s));
        goto out;
    }
    *out = s;
    s = NULL;
    code = CTL_EXIT_OK;
out:
    cr_store_close(s);
    cr_audit_config_release(&cfg);
    return code;
}

long cr_ctl_db_min_cell(const struct ctl_db *db)
{
    struct cr_audit_config cfg;
    char err[600];
    long v = 10;

    memset(&cfg, 0, sizeof(cfg));
    if (db->config && cr_audit_config_load(db->config, &cfg, err, sizeof(err)) == 0)
        v = cfg.survey_min_cell;
    cr_audit_config_release(&cfg);
    return v;
}
