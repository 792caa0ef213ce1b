"""`crierctl report` for a job Redis no longer holds: the same CSV (rows and
figures) built from the audit database crier-audit wrote (SQLite, and a real
PostgreSQL server) as from Redis while the job was there. A three-channel job
with Twilio status callbacks (webhook receipts), SMS replies and survey
answers; then its keys are deleted, as their expiry would, and the receipts
stream is emptied, as trimming would; at last Redis is emptied altogether
(FLUSHALL: no segment set, no resident left) and the report is still the same."""

import csv
import io
import subprocess

import pytest

from harness import PREFIX, Postgres, binary
from test_audit import Rig

N = 600
JOB = "audit-report-1"


def ctl(env, *args):
    argv = [binary("crierctl"), "-p", str(env.redis.port)] + [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def rows_of(text):
    return {r["segment"]: r for r in csv.DictReader(io.StringIO(text))}


def forget_job(r, job_id):
    """What Redis has of the job once retention_s has passed: nothing."""
    keys = [k for k in r.scan_iter(match=f"{PREFIX}job:{job_id}*", count=1000)
            if k == f"{PREFIX}job:{job_id}" or k.startswith(f"{PREFIX}job:{job_id}:")]
    assert keys
    r.delete(*keys)
    r.xtrim(f"{PREFIX}receipts", maxlen=0)


def check_report_from_audit(env, rig, db_args):
    # the report from Redis is taken before crier-audit runs: once it has
    # stored receipts, crierd may trim them from the stream (docs/audit.md)
    rig.send_and_answer(JOB, answers=45)
    live = ctl(env, "report", JOB)
    assert live.returncode == 0, live.stderr
    assert "warning" not in live.stderr, live.stderr
    rig.audit.start()
    rig.wait_stored()
    rows = rows_of(live.stdout)
    assert set(rows) == {"area:A", "area:B", "area:C", "total"}
    total = rows["total"]
    # the figures are worth comparing: webhook outcomes, replies and answers
    assert int(total["delivered_sms"]) > 0 and int(total["sent_email"]) > 0
    assert int(total["replies"]) > 0 and int(total["survey_responses"]) > 0
    assert int(total["option_1_yes"]) > 0 and int(total["option_2_no"]) > 0
    assert any(int(rows[s]["survey_responses"]) > 0 for s in ("area:A", "area:B", "area:C"))

    # asked for, the audit database gives the same while Redis still has the job
    same = ctl(env, "report", *db_args, "--from-audit", JOB)
    assert same.returncode == 0, same.stderr
    assert "warning" not in same.stderr, same.stderr
    assert same.stdout == live.stdout

    forget_job(env.r, JOB)
    gone = ctl(env, "report", JOB)
    assert gone.returncode == 4 and "--sqlite" in gone.stderr, gone.stderr

    old = ctl(env, "report", *db_args, JOB)
    assert old.returncode == 0, old.stderr
    assert "warning" not in old.stderr, old.stderr
    assert rows_of(old.stdout) == rows
    assert old.stdout == live.stdout

    # nothing of the job, its residents or its segments left in Redis: the
    # segment membership comes from the audit database too
    env.r.flushall()
    bare = ctl(env, "report", *db_args, JOB)
    assert bare.returncode == 0, bare.stderr
    assert "warning" not in bare.stderr, bare.stderr
    assert bare.stdout == live.stdout

    missing = ctl(env, "report", *db_args, "no-such-job")
    assert missing.returncode == 4 and "no job 'no-such-job'" in missing.stderr
    usage = ctl(env, "report", "--from-audit", JOB)
    assert usage.returncode == 2


def test_report_from_sqlite_after_redis_forgot_the_job(env):
    path = str(env.dir / "audit.db")
    rig = Rig(env, {"type": "sqlite", "path": path})
    rig.populate(N)
    check_report_from_audit(env, rig, ["--sqlite", path])
    via_config = ctl(env, "report", "--config", rig.audit.config_path, JOB)
    assert via_config.returncode == 0, via_config.stderr
    assert rows_of(via_config.stdout)["total"]["messages"] != "0"


@pytest.fixture
def pg():
    p = Postgres().start()
    try:
        yield p
    finally:
        p.close()


def test_report_from_postgresql_after_redis_forgot_the_job(env, pg):
    rig = Rig(env, {"type": "postgresql", "conninfo": pg.conninfo})
    rig.populate(N)
    check_report_from_audit(env, rig, ["--postgresql", pg.conninfo])
