"""The `make run` demo: starts a private redis-server and crier-sim on free
loopback ports, seeds ~5,000 residents across four areas, posts an urgent
missing-person appeal exactly as an integrating system would, shows crierd
sending it live, and compares crier's counts with what the simulator received."""

import argparse
import json
import random
import shlex
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


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subscribers", type=int, default=5000)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--latency-ms", type=int, default=3, help="simulated provider latency")
    args = ap.parse_args()

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
