"""The `make run` demo: starts a private redis-server and crier-sim on free
loopback ports, seeds ~5,000 residents across four areas, posts an urgent
missing-person appeal exactly as an integrating system would, shows crierd
sending it live, and compares crier's counts with what the simulator received.

`demo.py up --dir DIR` (make demo-up) starts the same redis-server, crier-sim
and crierd and leaves them running, with their config, logs and pids in DIR,
and prints what to try next; `demo.py down --dir DIR` (make demo-down) stops
them: SIGTERM, then a wait for each to exit."""

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import harness  # noqa: E402
from harness import CHANNELS, CONTACT, ENDPOINT, PREFIX, counter, status_total  # noqa: E402

AREAS = ("area:LE1", "area:LE2", "area:LE3", "area:LE4")
FIRST = ("Amelia", "Oliver", "Priya", "Mohammed", "Zofia", "Jakub", "Grace", "Harry",
         "Aisha", "Tomasz", "Ella", "Kwame", "Agnieszka", "Leo", "Sofia", "Piotr")
LAST = ("Patel", "Smith", "Kowalski", "Nowak", "Jones", "Khan", "Brown", "Wiśniewska",
        "Taylor", "Mistry", "Wójcik", "Evans")


def residents(n, rng):
    """Subscribers with mixed contacts, channel choices and languages (some
    Polish), a few with addresses the providers refuse, and their areas."""
    subs, segs = {}, {a: [] for a in AREAS}
    for i in range(n):
        sid = f"{100000 + i}"
        pl = rng.random() < 0.15
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        f = {"name": name.split()[0], "full_name": name, "lang": "pl" if pl else "en"}
        if rng.random() < 0.8:
            f["email"] = f"resident{i}@example.org"
        if rng.random() < 0.7:
            f["phone"] = f"+4477009{i + 10000:05d}"
        if rng.random() < 0.5:
            f["push_token"] = f"fcm-{rng.getrandbits(64):016x}{i:05d}"
            f["push_platform"] = "fcm"
        roll = rng.random()
        if roll < 0.35:
            f["channels"] = "sms"
        elif roll < 0.5:
            f["channels"] = "email"
        elif roll < 0.6:
            f["channels"] = "push,sms"
        if "channels" in f and not any(f.get(c) for c in
                                       (CONTACT[ch] for ch in f["channels"].split(","))):
            del f["channels"]  # a choice they cannot be reached on: all they have instead
        subs[sid] = f
        home = rng.randrange(len(AREAS))
        segs[AREAS[home]].append(sid)
        if rng.random() < 0.05:
            segs[AREAS[(home + 1) % len(AREAS)]].append(sid)
    # Some addresses the providers turn away, as in real life.
    ids = list(subs)
    for k, sid in enumerate(rng.sample(ids, 9)):
        f = subs[sid]
        f.pop("channels", None)
        if k < 3:
            f["phone"] = "+15005550004"          # replied STOP: suppress
        elif k < 6:
            f["push_token"] = f"unregistered-{sid}"  # app uninstalled: suppress
        else:
            f["email"] = f"{sid}@invalid.sim"    # no such mailbox: failed
    unsubscribed = [subs[s]["email"] for s in rng.sample(ids, 40) if "email" in subs[s]]
    return subs, segs, unsubscribed


def appeal(job_id):
    return {
        "id": job_id,
        "priority": "urgent",
        "audience": {"segments": list(AREAS)},
        "channels": ["email", "sms", "push"],
        "sender": {"name": "PC Jane Smith", "team": "Leicester City Centre NPT"},
        "message": {
            "lang": "en",
            "subject": "Missing person: can you help?",
            "text": ("Hello {{name}}, we are appealing for help to find Sam, 14, last seen "
                     "near the Clock Tower at 4pm wearing a red coat. If you see Sam, call 999. "
                     "Information: call 101 quoting incident 123. {{sender.name}}"),
            "html": ("<p>Hello {{name}},</p><p>We are appealing for help to find <b>Sam, 14</b>, "
                     "last seen near the Clock Tower at 4pm wearing a red coat.</p>"
                     "<p>If you see Sam, call 999. Information: call 101 quoting 123.</p>"),
            "sms": ("Police appeal: Sam, 14, missing since 4pm near the Clock Tower, red coat. "
                    "Seen Sam? Call 999. Info: 101 quoting 123."),
            "push": {"title": "Police appeal: missing person",
                     "body": "Sam, 14, last seen near the Clock Tower. Seen Sam? Call 999."},
            "translations": {
                "pl": {
                    "subject": "Zaginiona osoba: czy możesz pomóc?",
                    "text": ("Dzień dobry {{name}}, prosimy o pomoc w odnalezieniu Sama (14 lat), "
                             "widzianego ostatnio przy Clock Tower o 16:00 w czerwonym płaszczu. "
                             "Jeśli go zobaczysz, zadzwoń pod 999."),
                    "sms": ("Apel policji: zaginął Sam, 14 lat, Clock Tower, czerwony płaszcz. "
                            "Widziałeś go? Dzwoń 999."),
                    "push": {"title": "Apel policji", "body": "Zaginął Sam, 14 lat. Dzwoń 999."},
                },
            },
        },
        "tags": {"campaign": "missing-person", "npa": "city"},
    }


def progress_line(h, elapsed):
    parts = []
    for ch in CHANNELS:
        ok = counter(h, f"sent:{ch}") + counter(h, f"delivered:{ch}")
        parts.append(f"{ch} {ok} sent/{counter(h, f'failed:{ch}')} failed/"
                     f"{counter(h, f'suppressed:{ch}')} supp")
    done = status_total(h)
    total = counter(h, "messages")
    rate = done / elapsed if elapsed > 0 else 0.0
    return (f"[{elapsed:5.1f}s] {h.get('state', 'waiting'):<9} {done}/{total or '?'}  "
            + " | ".join(parts) + f"  {rate:,.0f} msg/s")


def watch(r, job_id, daemon, timeout):
    """Shows progress until the job completes; returns its hash, or None on timeout."""
    tty = sys.stdout.isatty()
    start = time.monotonic()
    last_print = -1.0
    while True:
        daemon.check_alive()
        h = harness.job_hash(r, job_id)
        elapsed = time.monotonic() - start
        done = h.get("state") == "completed"
        if tty:
            sys.stdout.write("\r" + progress_line(h, elapsed) + "\x1b[K")
            sys.stdout.flush()
        elif done or elapsed - last_print >= 1.0:
            print(progress_line(h, elapsed), flush=True)
            last_print = elapsed
        if done:
            if tty:
                sys.stdout.write("\n")
            return h
        if elapsed > timeout:
            if tty:
                sys.stdout.write("\n")
            return None
        time.sleep(0.1)


def summary(h, sim_stats, observed_s):
    print()
    head = (f"{'channel':<8} {'provider':<9} {'sent':>7} {'failed':>7} {'suppr.':>7}"
            f" | {'sim accepted':>12} {'rejected':>8} {'unique':>7} {'dupes':>6}")
    print(head)
    print("-" * len(head))
    for ch in CHANNELS:
        ep = ENDPOINT[ch]
        s = sim_stats[ep]
        ok = counter(h, f"sent:{ch}") + counter(h, f"delivered:{ch}")
        print(f"{ch:<8} {ep:<9} {ok:>7} {counter(h, f'failed:{ch}'):>7}"
              f" {counter(h, f'suppressed:{ch}'):>7} | {s['recipients']:>12}"
              f" {s['rejected']:>8} {s['unique_recipients']:>7} {s['duplicates']:>6}")
    print("-" * len(head))
    created, completed = counter(h, "created_ms"), counter(h, "completed_ms")
    secs = (completed - created) / 1000.0 if completed > created else observed_s
    total = counter(h, "messages")
    print(f"{counter(h, 'targeted')} residents targeted, {total} messages "
          f"({counter(h, 'skipped')} residents with no usable channel skipped)")
    print(f"completed in {secs:.2f} s: {total / secs if secs > 0 else 0:,.0f} messages/second")


def audit_summary(r, db, job_id):
    """Waits for crier-audit to store the job's receipts and shows them in SQL."""
    import sqlite3

    def stored():
        last = r.xinfo_stream(f"{PREFIX}receipts")["last-generated-id"]
        return harness.group_caught_up(r, f"{PREFIX}receipts", last, harness.AUDIT_GROUP)

    harness.wait_until(stored, 60, 0.1, what="crier-audit to store every receipt")
    con = sqlite3.connect(str(db))
    try:
        rows = con.execute("SELECT channel, status, count(*) FROM messages WHERE job = ? "
                           "AND channel <> '' GROUP BY channel, status ORDER BY 1, 2",
                           (job_id,)).fetchall()
    finally:
        con.close()
    print(f"\ncrier-audit stored the job in SQL ({db}):")
    print("  " + ", ".join(f"{ch} {st} {n}" for ch, st, n in rows))
    print(f"  (`crierctl audit --sqlite FILE --job {job_id} --csv` lists them; this demo's "
          "file goes with its temporary directory)")


# ---- the demo left running (up / down) ---------------------------------------

REPO = Path(__file__).resolve().parents[1]
STATE = "state.json"          # ports, pids and paths of what `up` started
# crierd first (it writes to Redis), crier-audit before Redis (it acknowledges)
STOP_ORDER = ("crierd", "crier-audit", "crier-sim", "redis-server")
STOP_WAIT_S = 30.0


def spawn(argv, log_path):
    """Starts a process that outlives this script: its own session, output
    appended to log_path."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def gone(pid, name):
    """Whether process pid has exited (or is a zombie, or is now another
    program: the pid was reused)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except (OSError, IndexError):
        return True
    return state == "Z" or comm != name[:15]


def read_state(d):
    try:
        return json.loads((d / STATE).read_text())
    except (OSError, ValueError):
        return None


def running(state):
    return state is not None and any(not gone(p["pid"], p["name"])
                                     for p in state["processes"].values())


def wait_for(pred, timeout, what, procs):
    """harness.wait_until, failing early (with the log) when one of procs
    (name -> (Popen, log path)) has exited."""
    def check():
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                raise harness.HarnessError(f"{name} exited with {proc.returncode}:\n"
                                           + harness.tail(log, 30))
        return pred()
    return harness.wait_until(check, timeout, 0.05, what=what)


def start_redis(d, procs):
    rdir = d / "redis"
    rdir.mkdir(exist_ok=True)
    log = d / "redis.log"
    for _ in range(8):
        port = harness.free_port()
        argv = harness.RedisServer(d)._argv(port)
        proc = spawn(argv, log)
        procs["redis-server"] = (proc, log)
        try:
            r = harness.redis.Redis(host="127.0.0.1", port=port, decode_responses=True,
                                    socket_timeout=30, socket_connect_timeout=2)
            wait_for(lambda: harness.RedisServer(d)._ping(port), 30,
                     f"redis-server on port {port}", procs)
            return port, proc, r
        except harness.HarnessError:
            if proc.poll() is None or "Address already in use" not in harness.tail(log, 20):
                raise
            del procs["redis-server"]
    raise harness.HarnessError("redis-server found no free port")


def start_sim(d, procs, latency_ms):
    port_file = d / "sim.port"
    port_file.unlink(missing_ok=True)
    log = d / "crier-sim.log"
    argv = [harness.binary("crier-sim"), "--host", "127.0.0.1", "--port", "0",
            "--port-file", str(port_file), "--quiet", "--latency-ms", str(latency_ms),
            "--jitter-ms", "2"]
    proc = spawn(argv, log)
    procs["crier-sim"] = (proc, log)

    def port():
        try:
            return int(port_file.read_text().strip())
        except (OSError, ValueError):
            return 0
    return wait_for(port, 30, "crier-sim's port file", procs), proc


def start_crierd(d, procs, redis_port, sim_port):
    cfg = harness.crierd_config(redis_port, sim_port, consumer="crierd-demo",
                                http={"listen": f"127.0.0.1:{harness.free_port()}"},
                                retry={"max_attempts": 5, "base_ms": 500, "max_ms": 30000})
    path = d / "crierd.json"
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    log = d / "crierd.log"
    proc = spawn([harness.binary("crierd"), "-c", str(path)], log)
    procs["crierd"] = (proc, log)
    wait_for(lambda: "crierd ready" in harness.tail(log, 50), 30, "crierd ready", procs)
    return path, cfg["http"]["listen"], proc


def start_audit(d, procs, redis_port):
    """crier-audit storing the demo's receipts, replies and events in
    d/audit.db (SQLite), as `make install` sets it up."""
    (d / "audit.db").unlink(missing_ok=True)
    cfg = harness.audit_config(redis_port, {"type": "sqlite", "path": str(d / "audit.db")})
    path = d / "crier-audit.json"
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    log = d / "crier-audit.log"
    proc = spawn([harness.binary("crier-audit"), "-c", str(path)], log)
    procs["crier-audit"] = (proc, log)
    wait_for(lambda: "audit: reading" in harness.tail(log, 50), 30, "crier-audit reading", procs)
    return path


def nice(path):
    """path relative to the working directory when it is under it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def show_next(state):
    ctl = nice(Path(state["build"]) / "crierctl")
    port = state["redis_port"]
    d = nice(state["dir"])
    down = "make demo-down" if Path(state["dir"]) == REPO / ".demo" else \
        f"make demo-down DEMO_DIR={d}"
    print(f"""
The demo is running, and stays up until `make demo-down`:
  redis-server  127.0.0.1:{port}    (log {d}/redis.log)
  crier-sim     {state["sim_url"]}  (SendGrid, Twilio, FCM; log {d}/crier-sim.log)
  crierd        config {state["config"]}
                log {d}/crierd.log, metrics http://{state["http"]}/metrics
  crier-audit   config {state.get("audit_config", "-")}
                (SQLite {d}/audit.db; log {d}/crier-audit.log)
  {state["subscribers"]} residents in area:LE1 .. area:LE4 (crier:sub:100000 ...)

Try next (docs/crierctl.md, docs/job.md):
  export CRIER_REDIS_URL=redis://127.0.0.1:{port}
  {ctl} send --wait docs/examples/appeal.json        # or: -p {port} send ...
  {ctl} status appeal-demo-0001
  {ctl} send docs/examples/road-closure.json
  {ctl} top                                          # live; Ctrl-C to leave
  {ctl} jobs
  {ctl} report appeal-demo-0001 > reach.csv
  {ctl} audit --config {state.get("audit_config", "-")} --job appeal-demo-0001 --csv
  redis-cli -p {port} HGETALL crier:job:appeal-demo-0001
  tail -f {d}/crierd.log

Stop everything:  {down}""")


def demo_up(args):
    d = Path(args.dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    state = read_state(d)
    if running(state):
        print(f"demo-up: already running (state in {d / STATE})")
        show_next(state)
        return 0
    shutil.rmtree(d / "redis", ignore_errors=True)  # each demo-up starts afresh
    procs = {}
    try:
        redis_port, redis_proc, r = start_redis(d, procs)
        rng = random.Random(2026)
        subs, segs, unsubscribed = residents(args.subscribers, rng)
        harness.seed(r, subs, segs, suppress={"email": unsubscribed})
        sim_port, sim_proc = start_sim(d, procs, args.latency_ms)
        config, http, crierd_proc = start_crierd(d, procs, redis_port, sim_port)
        audit_config = start_audit(d, procs, redis_port)
    except (harness.HarnessError, OSError) as e:
        print(f"demo-up: {e}", file=sys.stderr)
        for name in STOP_ORDER:
            if name in procs and procs[name][0].poll() is None:
                procs[name][0].kill()
                procs[name][0].wait()
        return 1
    state = {
        "dir": str(d), "build": str(harness.build_dir()), "config": str(config),
        "audit_config": str(audit_config),
        "redis_port": redis_port, "sim_url": f"http://127.0.0.1:{sim_port}", "http": http,
        "subscribers": len(subs),
        "processes": {name: {"name": Path(procs[name][0].args[0]).name, "pid": procs[name][0].pid,
                             "log": str(procs[name][1])} for name in procs},
    }
    (d / STATE).write_text(json.dumps(state, indent=2) + "\n")
    show_next(state)
    return 0


def demo_down(args):
    d = Path(args.dir).resolve()
    state = read_state(d)
    if state is None:
        print(f"demo-down: nothing to stop (no {d / STATE})")
        return 0
    failed = 0
    for name in STOP_ORDER:
        p = state["processes"].get(name)
        if p is None or gone(p["pid"], p["name"]):
            continue
        os.kill(p["pid"], signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while not gone(p["pid"], p["name"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if gone(p["pid"], p["name"]):
            print(f"stopped {name} (pid {p['pid']})")
        else:
            os.kill(p["pid"], signal.SIGKILL)
            print(f"demo-down: {name} (pid {p['pid']}) did not stop within {STOP_WAIT_S:.0f} s "
                  f"of SIGTERM; killed", file=sys.stderr)
            failed = 1
    (d / STATE).unlink(missing_ok=True)
    print(f"its config and logs stay in {nice(d)} (the next demo-up starts with fresh data)")
    return failed


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", choices=("run", "up", "down"), default="run",
                    help="run: the demo broadcast, then stop (make run); up: leave it "
                         "running; down: stop what up started")
    ap.add_argument("--dir", default=".demo", help="state directory of up/down")
    ap.add_argument("--subscribers", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--latency-ms", type=int, default=3, help="simulated provider latency")
    args = ap.parse_args()
    if args.mode == "up":
        return demo_up(args)
    if args.mode == "down":
        return demo_down(args)

    env = harness.Env("crier-demo")
    daemon = None
    try:
        env.start_redis()
        print(f"redis-server   127.0.0.1:{env.redis.port}  (data in {env.redis.dir})")
        rng = random.Random(2026)
        subs, segs, unsubscribed = residents(args.subscribers, rng)
        harness.seed(env.r, subs, segs, suppress={"email": unsubscribed})
        print(f"seeded         {len(subs)} residents in {', '.join(AREAS)}, "
              f"{len(unsubscribed)} email unsubscribes")
        env.start_sim("--latency-ms", str(args.latency_ms), "--jitter-ms", "2")
        print(f"crier-sim      {env.sim.url}  (SendGrid, Twilio and FCM APIs, "
              f"{args.latency_ms} ms latency)")
        daemon = env.crierd(consumer="crierd-demo", start=False)
        daemon.start()
        print(f"crierd         ready  (config {daemon.config_path}, log {daemon.log_path})")
        audit_db = env.dir / "audit.db"
        audit = harness.Audit(env.dir, harness.audit_config(
            env.redis.port, {"type": "sqlite", "path": str(audit_db)}))
        env.daemons.append(audit)
        audit.start()
        print(f"crier-audit    storing receipts, replies and events in {audit_db}")

        job_id = time.strftime("appeal-%Y%m%d-%H%M%S")
        doc = json.dumps(appeal(job_id), ensure_ascii=False, separators=(",", ":"))
        print("\nposting the appeal as an integrating system would:\n")
        print(f"  redis-cli -p {env.redis.port} XADD {PREFIX}jobs '*' job {shlex.quote(doc)}\n")
        harness.post_job(env.r, doc)
        t0 = time.monotonic()
        h = watch(env.r, job_id, daemon, args.timeout)
        observed = time.monotonic() - t0
        if h is None:
            print(f"demo: job {job_id} did not complete within {args.timeout:.0f} s; "
                  f"the end of crierd's log:\n" + harness.tail(daemon.log_path, 30),
                  file=sys.stderr)
            return 1
        summary(h, env.sim.stats()["endpoints"], observed)
        audit_summary(env.r, audit_db, job_id)
        rc = daemon.term(timeout=15)
        if rc != 0:
            print(f"demo: crierd exited with {rc} on SIGTERM", file=sys.stderr)
            return 1
        audit.term(timeout=30)
        print("stopped crierd, crier-audit, crier-sim and redis-server")
        print("to keep them running and try crierctl and your own jobs: make demo-up")
        return 0
    except harness.HarnessError as e:
        print(f"\ndemo: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 130
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
