"""Escalation's cost (run by hand or from bench/run.sh; never in tests).

In one round, against one redis-server, crier-sim and crierd:
  first   a push job to N residents alone, and the same job with an SMS
          escalation step: the first step's send rate with and without the
          step (the step must add no cost per message to the first step)
  step    the step's own SMS send rate, against a normal SMS job to as many
          residents on the same channel
crier-sim plays the app and acknowledges half the pushes (its delivery
knobs), so the step texts the other half. Rates are taken from the message
records' own stream IDs (crier:receipts, first to last record of the job and
channel), not from polling. Jobs alternate (push, push+step, SMS) ROUNDS times
and the median of each figure, and of each ratio taken within a round, is
reported.

Environment: BUILD (binaries, default build), ESC_BENCH_RESIDENTS (20000),
ESC_BENCH_ROUNDS (3). Writes BENCH_OUT/escalate.json (default bench/results)."""

import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402
from harness import PREFIX  # noqa: E402

os.environ.setdefault("CRIER_BUILD", os.environ.get("BUILD", "build"))
OUT = Path(os.environ.get("BENCH_OUT", str(REPO / "bench" / "results")))
SECRET = "escalate-bench-generic-secret"


def log(msg):
    print(f"[escalate-bench] {msg}", flush=True)


def population(n):
    """n residents with a push token and a phone; and a segment of n/2 of them
    for the normal SMS job (about as many as the step texts)."""
    subs = {f"e{i:06d}": {"push_token": f"btok-{i:06d}", "push_platform": "fcm",
                          "phone": f"+4477006{i:05d}" if n <= 100000 else f"+447{i:09d}"}
            for i in range(n)}
    ids = list(subs)
    return subs, {"area:all": ids, "area:half": ids[::2]}


def job(job_id, step_after_s=0):
    doc = {"id": job_id, "priority": "high", "channels": ["push"],
           "audience": {"segments": ["area:all"]},
           "message": {"push": {"title": "Missing person", "body": "Have you seen ...?"},
                       "sms": "Police appeal: missing person. Call 101."}}
    if step_after_s:
        doc["escalate"] = [{"after_s": step_after_s, "to": ["sms"], "unless": "delivered"}]
    return doc


def sms_job(job_id):
    return {"id": job_id, "priority": "high", "channels": ["sms"],
            "audience": {"segments": ["area:half"]},
            "message": {"sms": "Police appeal: missing person. Call 101."}}


def id_ms(entry_id):
    return int(entry_id.split("-")[0])


def rates(r, job_id, start):
    """Per channel: (messages recorded, their rate per second from the first
    to the last record) from crier:receipts entries after start."""
    seen = {}
    cursor = start
    while True:
        page = r.xrange(f"{PREFIX}receipts", min=f"({cursor}", count=5000)
        if not page:
            break
        for eid, f in page:
            if f.get("job") != job_id or f.get("source") == "webhook":
                continue
            ch = f.get("channel")
            first, last, n = seen.get(ch, (id_ms(eid), id_ms(eid), 0))
            seen[ch] = (first, id_ms(eid), n + 1)
        cursor = page[-1][0]
    out = {}
    for ch, (first, last, n) in seen.items():
        secs = max(last - first, 1) / 1000
        out[ch] = {"messages": n, "seconds": round(secs, 3), "per_s": round(n / secs)}
    return out


def last_id(r):
    info = r.xinfo_stream(f"{PREFIX}receipts") if r.exists(f"{PREFIX}receipts") else None
    return info["last-generated-id"] if info else "0-0"


class AckCursor:
    """How many pushes the simulator has acknowledged (its own log), so that
    a job is over only once crierd has applied all of its acknowledgements:
    the next job must not share the CPU with the last one's receipts."""

    def __init__(self, sim):
        self.sim, self.since = sim, 0

    def acked_since_last(self):
        n = 0
        while True:
            page = self.sim.log("fcm", self.since)
            for e in page.get("entries", []):
                n += (e.get("fields") or {}).get("receipt") == "delivered"
            if not page.get("entries") or page.get("next", self.since) == self.since:
                return n
            self.since = page["next"]


def run(r, d, acks, doc):
    start = last_id(r)
    harness.post_job(r, doc)
    t0 = time.monotonic()
    harness.wait_job(r, doc["id"], [d], timeout=300)
    wall = time.monotonic() - t0
    want = acks.acked_since_last()
    harness.wait_until(lambda: int(harness.job_hash(r, doc["id"]).get("delivered:push", 0))
                       >= want, 120, 0.05, what="the job's push acknowledgements")
    return rates(r, doc["id"], start), wall


def main():
    n = int(os.environ.get("ESC_BENCH_RESIDENTS", "20000"))
    rounds = int(os.environ.get("ESC_BENCH_ROUNDS", "3"))
    env = harness.Env("escalate-bench")
    res = {"residents": n, "rounds": rounds, "runs": []}
    try:
        env.start_redis()
        port = harness.free_port()
        env.start_sim("--quiet", "--generic-webhook-url", f"http://127.0.0.1:{port}/hooks/generic",
                      "--generic-webhook-secret", SECRET)
        env.sim.configure("fcm", deliver_rate=0.5)
        subs, segs = population(n)
        harness.seed(env.r, subs, segs)
        d = env.crierd(http={"listen": f"127.0.0.1:{port}"},
                       webhooks={"public_url": f"http://127.0.0.1:{port}",
                                 "generic_secret": SECRET, "window_s": 300},
                       fanout={"batch_size": 500, "max_batches": 16, "reclaim_idle_ms": 60000})
        acks = AckCursor(env.sim)
        # warm-up: connections, scripts loaded
        run(env.r, d, acks, {"id": "warm", "priority": "high", "channels": ["push"],
                       "audience": {"segments": ["area:half"]},
                       "message": {"push": {"title": "t", "body": "b"}}})
        for k in range(rounds):
            alone, wall_alone = run(env.r, d, acks, job(f"push-{k}"))
            # the step comes once the push round and its acknowledgements are in
            after_s = int(wall_alone * 2) + 2
            esc, wall = run(env.r, d, acks, job(f"esc-{k}", after_s))
            sms, _ = run(env.r, d, acks, sms_job(f"sms-{k}"))
            one = {"first_alone_per_s": alone["push"]["per_s"],
                   "first_with_step_per_s": esc["push"]["per_s"],
                   "step_messages": esc.get("sms", {}).get("messages", 0),
                   "step_per_s": esc.get("sms", {}).get("per_s"),
                   "normal_sms_messages": sms["sms"]["messages"],
                   "normal_sms_per_s": sms["sms"]["per_s"],
                   "first_with_vs_alone": round(esc["push"]["per_s"] / alone["push"]["per_s"], 3),
                   "step_vs_normal_sms": (round(esc["sms"]["per_s"] / sms["sms"]["per_s"], 3)
                                          if "sms" in esc else None),
                   "step_after_s": after_s, "escalating_job_wall_s": round(wall, 2)}
            res["runs"].append(one)
            log(f"round {k + 1}: {one}")
    finally:
        env.close()
    med = {key: statistics.median(run[key] for run in res["runs"] if run[key] is not None)
           for key in ("first_alone_per_s", "first_with_step_per_s", "step_per_s",
                       "normal_sms_per_s", "step_messages", "normal_sms_messages")}
    # the ratios are taken within each round (same machine load), then the median
    for key in ("first_with_vs_alone", "step_vs_normal_sms"):
        med[key] = statistics.median(run[key] for run in res["runs"] if run[key] is not None)
    res["median"] = med
    print()
    print(f"escalation, {n} residents (push; SMS step unless delivered, half acknowledged), "
          f"median of {rounds} rounds")
    print(f"  {'what':<38} {'messages':>9} {'msg/s':>8}")
    print(f"  {'first step (push), job alone':<38} {n:>9} {med['first_alone_per_s']:>8.0f}")
    print(f"  {'first step (push), job with a step':<38} {n:>9} "
          f"{med['first_with_step_per_s']:>8.0f}   x{med['first_with_vs_alone']}")
    print(f"  {'the SMS step':<38} {med['step_messages']:>9.0f} {med['step_per_s']:>8.0f}")
    print(f"  {'a normal SMS job':<38} {med['normal_sms_messages']:>9.0f} "
          f"{med['normal_sms_per_s']:>8.0f}   step x{med['step_vs_normal_sms']}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "escalate.json").write_text(json.dumps(res, indent=2) + "\n")
    log(f"wrote {OUT / 'escalate.json'}")


if __name__ == "__main__":
    main()
