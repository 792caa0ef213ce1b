"""crier-audit keeps what escalation adds: the step of each message (0 = the
job's own channels) and each confirmation with the message it confirms, in a
real SQLite file fed by a real crierd, crier-sim and redis-server."""

from harness import AUDIT_GROUP, PREFIX, Audit, audit_config, group_caught_up, wait_until
from test_audit import sqlite_query
from test_escalate_steps import N, run_job


def caught_up(r):
    for s in ("receipts", "replies", "events"):
        key = f"{PREFIX}{s}"
        if r.exists(key) and not group_caught_up(r, key, r.xinfo_stream(key)["last-generated-id"],
                                                 AUDIT_GROUP):
            return False
    return True


def test_audit_keeps_steps_and_confirmations(env):
    path = str(env.dir / "audit.db")
    d, _base, acked, n_sms = run_job(env, before_job=lambda: start_audit(env, path))
    wait_until(lambda: caught_up(env.r), 60, 0.1, what="crier-audit to store every entry")
    q = sqlite_query(path)
    assert q("SELECT version FROM crier_schema ORDER BY version DESC LIMIT 1") == [["4"]]
    by_step = dict((s, int(c)) for s, c in q(
        "SELECT step, count(*) FROM messages WHERE job = 'steps-1' GROUP BY step"))
    assert by_step == {"0": N, "1": n_sms}, by_step
    assert q("SELECT DISTINCT channel FROM messages WHERE job = 'steps-1' AND step = '1'") \
        == [["sms"]]
    conf = q("SELECT r.channel, r.message_channel, m.step, m.sub FROM replies r "
             "JOIN messages m ON m.job = r.job AND m.pos = r.pos AND m.channel = r.message_channel "
             "WHERE r.type = 'confirm' AND r.job = 'steps-1'")
    # the app confirmed the first five residents' pushes (run_job)
    assert sorted(conf) == [["app", "push", "0", f"s{i:04d}"] for i in range(5)], conf


def start_audit(env, path):
    a = Audit(env.dir, audit_config(env.redis.port, {"type": "sqlite", "path": path}))
    env.daemons.append(a)
    a.start()
