"""crier-audit's figures (run by hand or from bench/run.sh; never in tests):

  beside  the throughput job (100,000 residents, three channels, as bench.py's)
          three times in one round: without crier-audit, then with it storing
          into SQLite, then into PostgreSQL: crierd's rate each time, and the
          sink's lag when the job completes, its catch-up time, rows per second
          and CPU per row
  year    a year of weekly newsletters to the same residents in SQLite and
          PostgreSQL: database size per message and the time of the
          per-resident query (`crierctl audit --sub ID`)
  sink    (not by default) crier-audit storing a ready backlog of receipts:
          its rate when nothing else runs

Environment: BUILD (binaries, default build), AUDIT_BENCH_RESIDENTS (the
`beside` job, 100000), AUDIT_BENCH_YEAR_RESIDENTS (100000), AUDIT_BENCH_WEEKS
(52), AUDIT_BENCH_RECEIPTS (`sink`, 200000). Prints a table and writes
BENCH_OUT/audit.json (bench/results)."""

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


def seed_population(env, n, segment):
    """n residents with email, phone and push token in segment, as bench.py's
    throughput job has them (crier-seed when built, else the harness)."""
    seeder = harness.build_dir() / "crier-seed"
    if seeder.exists():
        subprocess.run([str(seeder), "127.0.0.1", str(env.redis.port), PREFIX, "b", "0", str(n),
                        segment, "email,sms,push"], check=True, capture_output=True)
        return
    subs = {f"b{i:07d}": {"name": f"B {i}", "email": f"b{i:07d}@mail.crier.test",
                          "phone": f"+447{i:09d}", "push_token": f"tok-b{i:07d}",
                          "push_platform": "fcm"} for i in range(n)}
    harness.seed(env.r, subs, {segment: list(subs)})


def stream_entries(r):
    return sum(int(r.xinfo_stream(f"{PREFIX}{s}")["entries-added"])
               for s in ("receipts", "replies", "events") if r.exists(f"{PREFIX}{s}"))


def backlog(r):
    return sum(harness.audit_backlog(r, f"{PREFIX}{s}") or 0
               for s in ("receipts", "replies", "events"))


def beside_round(n, sinks):
    """The throughput job (n residents, three channels, as bench.py's) three
    times in one round: without crier-audit, then with it storing into each
    database in sinks. crierd's messages per second each time; for the sink,
    its lag (entries not yet acknowledged) when the job completes, the time to
    catch up, rows per second over the run and CPU per row."""
    out = {}
    for sink in (None,) + tuple(sinks):
        env = harness.Env("audit-bench")
        pg = None
        try:
            env.start_redis()
            env.start_sim("--log-body-bytes", "0", "--max-log", "3000000")
            seed_population(env, n, "bench:audit")
            d = env.crierd(log_level="warn")
            audit = None
            if sink == "postgresql":
                pg = harness.Postgres().start()
                db = {"type": "postgresql", "conninfo": pg.conninfo}
            else:
                db = {"type": "sqlite", "path": str(env.dir / "audit.db")}
            if sink:
                audit = harness.Audit(env.dir, harness.audit_config(env.redis.port, db))
                env.daemons.append(audit)
                audit.start()
            cpu0 = cpu_s(audit.proc.pid) if audit else 0
            harness.post_job(env.r, {"id": "beside", "priority": "normal",
                                     "audience": {"segments": ["bench:audit"]},
                                     "channels": ["email", "sms", "push"],
                                     "message": {"subject": "Road closure tonight",
                                                 "text": "Hello {{name}}, the A6 London Road "
                                                         "will be closed from 8pm tonight.",
                                                 "sms": "Road closure: A6 London Road closed "
                                                        "from 8pm tonight.",
                                                 "push": {"title": "Road closure",
                                                          "body": "A6 closed from 8pm."}}})
            t0 = time.monotonic()
            h = harness.wait_job(env.r, "beside", [d], timeout=1800)
            secs = time.monotonic() - t0
            key = sink or "without"
            msgs = int(h["messages"])
            out[key] = {"messages": msgs, "seconds": round(secs, 2),
                        "messages_per_s": round(msgs / secs)}
            if audit:
                out[key]["audit_lag_at_end"] = backlog(env.r)
                harness.wait_until(lambda: caught_up(env.r), 900, 0.05, what="audit caught up")
                total = time.monotonic() - t0
                rows = stream_entries(env.r)
                cpu = cpu_s(audit.proc.pid) - cpu0
                lag = out[key]["audit_lag_at_end"]
                out[key].update({"audit_catch_up_s": round(total - secs, 2), "rows": rows,
                                 "rows_per_s": round(rows / total),
                                 "catch_up_rows_per_s": round(lag / (total - secs))
                                 if total > secs else None,
                                 "cpu_us_per_row": round(cpu / rows * 1e6, 1)})
                audit.term()
        finally:
            env.close()
            if pg:
                pg.close()
        log(f"  {key}: {out[key]}")
    base = out["without"]["messages_per_s"]
    for sink in sinks:
        out[sink]["rate_vs_without"] = round(out[sink]["messages_per_s"] / base, 3) \
            if base else None
    return out


# messages' secondary indexes as audit/schema.c creates them: the year is
# loaded without them and they are built after, as a restore would
SECONDARY = ("CREATE INDEX messages_sub_time ON messages (sub, sent_ms)",
             "CREATE INDEX messages_time ON messages (sent_ms)")


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
    # bulk load, then the indexes crier-audit creates, built once (faster)
    for idx in SECONDARY:
        con.execute(f"DROP INDEX {idx.split()[2]}")
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
    for idx in SECONDARY:
        con.execute(idx)
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
        for idx in SECONDARY:
            pg.psql(f"DROP INDEX {idx.split()[2]}")
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
        for idx in SECONDARY:
            pg.psql("SET maintenance_work_mem = '256MB'; " + idx)
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


def table(res):
    """The figures as a plain table."""
    lines = []
    b = res.get("beside")
    if b:
        lines.append(f"{'throughput job':<16}{'messages':>10}{'msg/s':>9}{'vs none':>9}"
                     f"{'lag@end':>9}{'catch-up s':>12}{'rows':>9}{'rows/s':>9}{'catch-up/s':>12}"
                     f"{'CPU us/row':>12}")
        for k in ("without", "sqlite", "postgresql"):
            if k not in b:
                continue
            x = b[k]
            lines.append(f"{'sink ' + k if k != 'without' else 'no sink':<16}{x['messages']:>10,}"
                         f"{x['messages_per_s']:>9,}{x.get('rate_vs_without', 1.0):>9}"
                         f"{x.get('audit_lag_at_end', '-'):>9}{x.get('audit_catch_up_s', '-'):>12}"
                         f"{x.get('rows', '-'):>9}{x.get('rows_per_s', '-'):>9}"
                         f"{x.get('catch_up_rows_per_s', '-'):>12}"
                         f"{x.get('cpu_us_per_row', '-'):>12}")
    for x in res.get("sink", []):
        lines.append(f"backlog of {x['receipts']:,} receipts into {x['database']}: "
                     f"{x['rows_per_s']:,} rows/s, {x['cpu_us_per_row']} us CPU per row")
    for x in res.get("year", []):
        lines.append(f"year in {x['database']:<10}: {x['messages']:,} messages, "
                     f"{x['bytes_per_message']} bytes/message, per-resident query "
                     f"{x['query_ms_best']}-{x['query_ms_worst']} ms ({x['query_rows']} rows), "
                     f"crierctl audit --sub {x['crierctl_audit_sub_ms']} ms")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", default=["beside", "year"])
    ap.add_argument("--no-pg", action="store_true",
                    help="skip PostgreSQL in `beside`, `sink` and `year`")
    args = ap.parse_args()
    dbs = ("sqlite",) + (() if args.no_pg else ("postgresql",))
    started = time.monotonic()
    res = {}
    if "beside" in args.parts:
        n = int(os.environ.get("AUDIT_BENCH_RESIDENTS", "100000"))
        log(f"beside: the {n:,}-resident three-channel throughput job without crier-audit, "
            f"then with it storing into {' and '.join(dbs)}")
        res["beside"] = beside_round(n, dbs)
    if "sink" in args.parts:
        n = int(os.environ.get("AUDIT_BENCH_RECEIPTS", "200000"))
        res["sink"] = []
        for kind in dbs:
            log(f"sink: {n} receipts into {kind}")
            res["sink"].append(sink_round(kind, n))
            log(f"  {res['sink'][-1]}")
    if "year" in args.parts:
        n = int(os.environ.get("AUDIT_BENCH_YEAR_RESIDENTS", "100000"))
        w = int(os.environ.get("AUDIT_BENCH_WEEKS", "52"))
        res["year"] = []
        log(f"year: {w} weekly newsletters to {n:,} residents in SQLite")
        res["year"].append(year_sqlite(n, w))
        log(f"  {res['year'][-1]}")
        if not args.no_pg:
            log(f"year: {w} weekly newsletters to {n:,} residents in PostgreSQL")
            res["year"].append(year_postgresql(n, w))
            log(f"  {res['year'][-1]}")
    res["seconds"] = round(time.monotonic() - started, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "audit.json").write_text(json.dumps(res, indent=2) + "\n")
    print(table(res), flush=True)
    log(f"written to {OUT / 'audit.json'} ({res['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
