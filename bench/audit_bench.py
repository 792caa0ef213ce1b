"""crier-audit's figures (run by hand or from bench/run.sh; never in tests):

  sink    crier-audit storing a backlog of receipts (like the throughput job's:
          3 channels, one receipt per message plus webhook receipts) into SQLite
          and into PostgreSQL: rows per second, CPU per row, lag left at the end
  beside  crierd's rate for one job with crier-audit (SQLite) running beside it,
          against the rate without it, in the same round
  year    a year of weekly newsletters to the same residents in SQLite and
          PostgreSQL: database size per message and the time of the
          per-resident query (`crierctl audit --sub ID`)

Environment: BUILD (binaries, default build), AUDIT_BENCH_RECEIPTS (200000),
AUDIT_BENCH_RESIDENTS (the `beside` job, 20000), AUDIT_BENCH_YEAR_RESIDENTS
(100000) and AUDIT_BENCH_WEEKS (52). Writes BENCH_OUT/audit.json (bench/results)."""

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402
from harness import AUDIT_GROUP, PREFIX  # noqa: E402

os.environ.setdefault("CRIER_BUILD", os.environ.get("BUILD", "build"))
OUT = Path(os.environ.get("BENCH_OUT", str(REPO / "bench" / "results")))
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[audit-bench] {msg}", flush=True)


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def caught_up(r):
    for s in ("receipts", "replies", "events"):
        key = f"{PREFIX}{s}"
        if not r.exists(key):
            continue
        last = r.xinfo_stream(key)["last-generated-id"]
        if not harness.group_caught_up(r, key, last, AUDIT_GROUP):
            return False
    return True


def fill_receipts(r, n, job_id="bench-audit"):
    """n receipts as crierd writes them (3 channels per resident), a webhook
    delivery receipt for every third SMS, and the job's hash."""
    chans = (("email", "sendgrid", "202"), ("sms", "twilio", "201"), ("push", "fcm", "200"))
    pipe = r.pipeline(transaction=False)
    r.hset(f"{PREFIX}job:{job_id}", mapping={
        "state": "completed", "priority": "bulk", "created_ms": int(time.time() * 1000),
        "doc": json.dumps({"id": job_id, "audience": {"segments": ["area:A"]},
                           "channels": ["email", "sms", "push"],
                           "message": {"subject": "s", "text": "t", "sms": "m"}}),
        "targeted": n // 3, "messages": n})
    written = 0
    pos = 0
    while written < n:
        for ch, prov, code in chans:
            pipe.xadd(f"{PREFIX}receipts", {
                "job": job_id, "sub": f"r{pos:07d}", "pos": pos, "channel": ch, "provider": prov,
                "status": "sent", "attempt": 1, "code": code, "latency_us": 2100,
                "provider_id": f"{prov}-{pos:07d}"})
            written += 1
            if ch == "sms" and pos % 3 == 0:
                pipe.xadd(f"{PREFIX}receipts", {
                    "job": job_id, "pos": pos, "channel": "sms", "provider": prov,
                    "status": "delivered", "code": "", "provider_id": "", "source": "webhook",
                    "t_ms": int(time.time() * 1000)})
                written += 1
        pos += 1
        if pos % 2000 == 0:
            pipe.execute()
    pipe.execute()
    pipe.xadd(f"{PREFIX}events", {"job": job_id, "event": "completed", "t_ms": 0})
    pipe.execute()
    return written


def sink_round(kind, n):
    """Stores a backlog of n receipts; returns the figures."""
    env = harness.Env("audit-bench")
    pg = None
    try:
        env.start_redis()
        if kind == "postgresql":
            pg = harness.Postgres().start()
            db = {"type": "postgresql", "conninfo": pg.conninfo}
        else:
            db = {"type": "sqlite", "path": str(env.dir / "audit.db")}
        written = fill_receipts(env.r, n)
        audit = harness.Audit(env.dir, harness.audit_config(env.redis.port, db))
        env.daemons.append(audit)
        t0 = time.monotonic()
        audit.start()
        harness.wait_until(lambda: caught_up(env.r), 1800, 0.05, what="the backlog stored")
        secs = time.monotonic() - t0
        cpu = cpu_s(audit.proc.pid)
        audit.term()
        return {"database": kind, "receipts": written, "seconds": round(secs, 2),
                "rows_per_s": round(written / secs), "cpu_us_per_row": round(cpu / written * 1e6, 1)}
    finally:
        env.close()
        if pg:
            pg.close()


def beside_round(n):
    """One job to n residents, first without crier-audit, then with it running
    (SQLite); crierd's messages per second each time, and the audit's lag when
    the job completes."""
    rng = random.Random(7)
    out = {}
    for with_sink in (False, True):
        env = harness.Env("audit-bench")
        try:
            env.start_redis()
            env.start_sim("--quiet")
            subs, segs = harness.make_population(n, rng, areas=("area:A",))
            harness.seed(env.r, subs, segs)
            d = env.crierd(fanout={"batch_size": 500, "max_batches": 16, "reclaim_idle_ms": 60000})
            audit = None
            if with_sink:
                audit = harness.Audit(env.dir, harness.audit_config(
                    env.redis.port, {"type": "sqlite", "path": str(env.dir / "audit.db")}))
                env.daemons.append(audit)
                audit.start()
            harness.post_job(env.r, {"id": "beside", "audience": {"segments": ["area:A"]},
                                     "channels": ["email", "sms", "push"],
                                     "message": {"subject": "s", "text": "t", "sms": "m",
                                                 "push": {"title": "p", "body": "b"}}})
            t0 = time.monotonic()
            h = harness.wait_job(env.r, "beside", [d], timeout=1800)
            secs = time.monotonic() - t0
            key = "with_audit" if with_sink else "without_audit"
            out[key] = {"messages": int(h["messages"]), "seconds": round(secs, 2),
                        "messages_per_s": round(int(h["messages"]) / secs)}
            if audit:
                out[key]["audit_lag_at_end"] = harness.audit_backlog(env.r, f"{PREFIX}receipts")
                t1 = time.monotonic()
                harness.wait_until(lambda: caught_up(env.r), 600, 0.05, what="audit caught up")
                out[key]["audit_catch_up_s"] = round(time.monotonic() - t1, 2)
        finally:
            env.close()
    a, b = out["with_audit"]["messages_per_s"], out["without_audit"]["messages_per_s"]
    out["rate_with_vs_without"] = round(a / b, 3) if b else None
    return out


def year_sqlite(residents, weeks):
    """weeks newsletters to the same residents, one message each, through the
    schema crier-audit creates; then the per-resident query."""
    d = Path(tempfile.mkdtemp(prefix="audit-year-"))
    db = d / "audit.db"
    cfg = d / "audit.json"
    cfg.write_text(json.dumps({"database": {"type": "sqlite", "path": str(db)}}))
    subprocess.run([harness.binary("crier-audit"), "--check", "-c", str(cfg)], check=True,
                   capture_output=True)
    con = sqlite3.connect(str(db))
    con.execute("PRAGMA synchronous=OFF")
    t0 = time.monotonic()
    start_ms = 1767225600000  # 2026-01-01
    week_ms = 7 * 86400000
    for w in range(weeks):
        job = f"newsletter-2026-w{w + 1:02d}"
        t = start_ms + w * week_ms
        con.execute("INSERT INTO jobs (id, doc, priority, state, created_ms, targeted, messages) "
                    "VALUES (?, ?, 'bulk', 'completed', ?, ?, ?)",
                    (job, json.dumps({"id": job, "message": {"subject": f"Newsletter {w + 1}",
                                                             "text": "..."}}),
                     t, residents, residents))
        con.executemany(
            "INSERT INTO messages (job, pos, channel, sub, provider, status, attempts, code, "
            "provider_id, latency_us, sent_ms, updated_ms, lang, entry) "
            "VALUES (?, ?, 'email', ?, 'sendgrid', 'sent', 1, '202', ?, 2000, ?, ?, 'en', ?)",
            ((job, i, f"r{i:07d}", f"sg-{w}-{i}", t + i // 50, t + i // 50, f"{t}-{i}")
             for i in range(residents)))
        con.commit()
    gen_s = time.monotonic() - t0
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = db.stat().st_size
    n = residents * weeks
    who = f"r{residents // 2:07d}"
    con = sqlite3.connect(str(db))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        rows = con.execute("SELECT m.sent_ms, m.job, m.channel, m.status, m.lang FROM messages m "
                           "WHERE m.sub = ? AND m.sent_ms >= ? AND m.sent_ms < ? "
                           "ORDER BY m.sent_ms", (who, start_ms, start_ms + 366 * 86400000)
                           ).fetchall()
        times.append(time.perf_counter() - t)
    con.close()
    t = time.perf_counter()
    res = subprocess.run([harness.binary("crierctl"), "audit", "--sqlite", str(db), "--sub", who],
                         capture_output=True, check=True)
    ctl_s = time.perf_counter() - t
    out = {"database": "sqlite", "residents": residents, "weeks": weeks, "messages": n,
           "generate_s": round(gen_s, 1), "bytes": size, "bytes_per_message": round(size / n, 1),
           "query_rows": len(rows), "query_ms_best": round(min(times) * 1000, 3),
           "query_ms_worst": round(max(times) * 1000, 3),
           "crierctl_audit_sub_ms": round(ctl_s * 1000, 1),
           "crierctl_lines": res.stdout.decode().count("\n")}
    subprocess.run(["rm", "-rf", str(d)], check=False)
    return out


def year_postgresql(residents, weeks):
    """The same year in PostgreSQL, generated inside the server
    (generate_series), then the per-resident query and the size per message
    (table and its indexes)."""
    pg = harness.Postgres().start()
    d = Path(tempfile.mkdtemp(prefix="audit-year-"))
    try:
        cfg = d / "audit.json"
        cfg.write_text(json.dumps({"database": {"type": "postgresql", "conninfo": pg.conninfo}}))
        subprocess.run([harness.binary("crier-audit"), "--check", "-c", str(cfg)], check=True,
                       capture_output=True)
        start_ms = 1767225600000
        week_ms = 7 * 86400000
        t0 = time.monotonic()
        pg.psql(f"INSERT INTO jobs (id, doc, priority, state, created_ms, targeted, messages) "
                f"SELECT 'newsletter-2026-w' || lpad((w + 1)::text, 2, '0'), "
                f"'{{\"message\": {{\"subject\": \"Newsletter\"}}}}', 'bulk', 'completed', "
                f"{start_ms} + w::bigint * {week_ms}, {residents}, {residents} "
                f"FROM generate_series(0, {weeks - 1}) w")
        pg.psql(f"INSERT INTO messages (job, pos, channel, sub, provider, status, attempts, "
                f"code, provider_id, latency_us, sent_ms, updated_ms, lang, entry) "
                f"SELECT 'newsletter-2026-w' || lpad((w + 1)::text, 2, '0'), i, 'email', "
                f"'r' || lpad(i::text, 7, '0'), 'sendgrid', 'sent', 1, '202', "
                f"'sg-' || w || '-' || i, 2000, {start_ms} + w::bigint * {week_ms} + i / 50, "
                f"{start_ms} + w::bigint * {week_ms} + i / 50, 'en', (w * {residents} + i)::text "
                f"FROM generate_series(0, {weeks - 1}) w, generate_series(0, {residents - 1}) i")
        pg.psql("VACUUM ANALYZE messages")
        gen_s = time.monotonic() - t0
        size = int(pg.psql("SELECT pg_total_relation_size('messages')")[0][0])
        n = residents * weeks
        who = f"r{residents // 2:07d}"
        sql = (f"SELECT m.sent_ms, m.job, m.channel, m.status, m.lang FROM messages m "
               f"WHERE m.sub = '{who}' AND m.sent_ms >= {start_ms} "
               f"AND m.sent_ms < {start_ms + 366 * 86400000} ORDER BY m.sent_ms")
        times = []
        for _ in range(5):
            plan = pg.psql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            text = "\n".join("\t".join(row) for row in plan)
            times.append(json.loads(text)[0]["Execution Time"])
        rows = len(pg.psql(sql))
        t = time.perf_counter()
        subprocess.run([harness.binary("crierctl"), "audit", "--postgresql", pg.conninfo,
                        "--sub", who], capture_output=True, check=True)
        ctl_s = time.perf_counter() - t
        return {"database": "postgresql", "residents": residents, "weeks": weeks,
                "messages": n, "generate_s": round(gen_s, 1), "bytes": size,
                "bytes_per_message": round(size / n, 1), "query_rows": rows,
                "query_ms_best": round(min(times), 3), "query_ms_worst": round(max(times), 3),
                "crierctl_audit_sub_ms": round(ctl_s * 1000, 1)}
    finally:
        pg.close()
        subprocess.run(["rm", "-rf", str(d)], check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", default=["sink", "beside", "year"])
    ap.add_argument("--no-pg", action="store_true", help="skip PostgreSQL in `sink` and `year`")
    args = ap.parse_args()
    res = {}
    if "sink" in args.parts:
        n = int(os.environ.get("AUDIT_BENCH_RECEIPTS", "200000"))
        res["sink"] = []
        for kind in ("sqlite",) + (() if args.no_pg else ("postgresql",)):
            log(f"sink: {n} receipts into {kind}")
            res["sink"].append(sink_round(kind, n))
            log(f"  {res['sink'][-1]}")
    if "beside" in args.parts:
        n = int(os.environ.get("AUDIT_BENCH_RESIDENTS", "20000"))
        log(f"beside: a {n}-resident three-channel job without and with crier-audit")
        res["beside"] = beside_round(n)
        log(f"  {res['beside']}")
    if "year" in args.parts or "year-pg" in args.parts:
        n = int(os.environ.get("AUDIT_BENCH_YEAR_RESIDENTS", "100000"))
        w = int(os.environ.get("AUDIT_BENCH_WEEKS", "52"))
        res["year"] = []
        if "year" in args.parts:
            log(f"year: {w} weekly newsletters to {n} residents in SQLite")
            res["year"].append(year_sqlite(n, w))
            log(f"  {res['year'][-1]}")
        if not args.no_pg:
            log(f"year: {w} weekly newsletters to {n} residents in PostgreSQL")
            res["year"].append(year_postgresql(n, w))
            log(f"  {res['year'][-1]}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "audit.json").write_text(json.dumps(res, indent=2) + "\n")
    log(f"written to {OUT / 'audit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
