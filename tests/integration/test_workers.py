"""`"workers": N`: crierd supervises N copies of itself, one event loop each.
The workers share a broadcast as consumers `<consumer>-<i>` of one group, each
with its own /metrics port; a worker killed mid-broadcast is started again
under the same name and the job still reaches everyone; SIGTERM stops every
worker cleanly, and a SIGKILLed supervisor takes its workers down with it.
`crierd -t` counts the workers and rejects a count it cannot run."""

import http.client
import json
import os
import random
import re
import signal
import socket
from pathlib import Path

import pytest

from harness import (CHANNELS, ENDPOINT, GROUP, PREFIX, Expect, HarnessError, accepted_total,
                     assert_job_counts, assert_reached, check_config_file, crierd_config,
                     free_port, make_population, post_job, seed, status_total, stream_fields,
                     wait_job, wait_until)
from test_hooks_http import metric_values

CONSUMER = "crierd-a"
READY = re.compile(r"crierd ready: consumer '([^']+)'")


# ---- helpers ------------------------------------------------------------------

def free_port_pair():
    """A loopback port P such that P and P + 1 were both free a moment ago:
    worker i listens on P + i."""
    for _ in range(50):
        p = free_port()
        if p >= 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b:
            try:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise HarnessError("no two adjacent free loopback ports")


def processes():
    """{pid: (ppid, argv)} of every live process (zombies left out: they have
    exited and only wait to be reaped)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        state, ppid = text[text.rindex(")") + 2:].split()[:2]
        if state in ("Z", "X"):
            continue
        out[int(stat.parent.name)] = (int(ppid), [a.decode(errors="replace") for a in argv if a])
    return out


def worker_arg(argv):
    """The value of -W in argv, or None."""
    return argv[argv.index("-W") + 1] if "-W" in argv[:-1] else None


def workers_of(d):
    """[(index, pid)] of the supervisor's live child processes started as
    `-W I:<supervisor pid>`."""
    sup = d.proc.pid
    out = []
    for pid, (ppid, argv) in processes().items():
        arg = worker_arg(argv)
        if ppid == sup and arg is not None:
            index, _, owner = arg.partition(":")
            assert owner == str(sup), f"worker {pid} has -W {arg} under supervisor {sup}"
            out.append((int(index), pid))
    return sorted(out)


def worker_processes(d):
    """{pid: argv} of every live worker of d's config, whoever its parent is
    now."""
    path = str(d.config_path)
    return {pid: argv for pid, (_ppid, argv) in processes().items()
            if path in argv and worker_arg(argv) is not None}


def ready_lines(d):
    """The consumer name of each 'crierd ready' line in d's log, in order."""
    return READY.findall(d.log_text())


def start_workers(env, n, **over):
    """crierd with "workers": n, returned once every worker has logged that
    it is ready and runs as a child of the supervisor."""
    d = env.crierd(CONSUMER, workers=n, **over)  # returns at the first 'ready'
    names = {f"{CONSUMER}-{i}" for i in range(n)}
    wait_until(lambda: d.check_alive() or names <= set(ready_lines(d)), 30,
               what=f"every one of {sorted(names)} to log 'ready'")
    wait_until(lambda: d.check_alive() or [i for i, _ in workers_of(d)] == list(range(n)), 10,
               what=f"{n} worker processes under supervisor {d.proc.pid}")
    assert f"supervising {n} workers" in d.log_text()
    return d


@pytest.fixture(autouse=True)
def no_stray_workers(request):
    """After the test (and after env has killed its supervisors), SIGKILLs any
    worker still running, so that a supervisor that failed to take its
    workers down cannot leave them behind for the next test."""
    yield
    env = request.node.funcargs.get("env") if request.node.funcargs else None
    for d in getattr(env, "daemons", ()):
        for pid in worker_processes(d):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def messages_counted(port):
    """The sum of crier_messages_total over every label set, from the /metrics
    of the worker listening on port."""
    status, text = get(port, "/metrics")
    assert status == 200, f"/metrics on port {port}: {status}"
    return sum(metric_values(text, "crier_messages_total").values())


def job_doc(job_id, segment, channels=CHANNELS):
    return {
        "id": job_id, "priority": "normal", "audience": {"segments": [segment]},
        "channels": list(channels),
        "message": {"subject": "Water supply interrupted",
                    "text": "Hello {{name}}, the water supply is off until 18:00 today.",
                    "sms": "Water off until 18:00 today, {{name}}. Bottled water at the library.",
                    "push": {"title": "Water supply", "body": "Off until 18:00 today"}},
    }


# ---- sharing one broadcast ---------------------------------------------------------

def test_two_workers_share_a_broadcast(env):
    n = 3000
    job_id = "workers-water-0001"
    rng = random.Random(2202)
    subs, segs = make_population(n, rng, id_prefix="w", areas=("area:ALL",), overlap=0)
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--latency-ms", "2")
    port = free_port_pair()
    d = start_workers(env, 2, http={"listen": f"127.0.0.1:{port}"},
                      fanout={"batch_size": 100, "max_batches": 4})
    exp = Expect(subs, segs["area:ALL"], CHANNELS)
    for p in (port, port + 1):
        assert get(p, "/healthz") == (200, "ok\n")
        wait_until(lambda p=p: get(p, "/readyz")[0] == 200, 10, what=f"/readyz on port {p}")

    post_job(env.r, job_doc(job_id, "area:ALL"))
    h = wait_job(env.r, job_id, [d], timeout=60)

    # Every expected (subscriber, channel) reached the simulator exactly once.
    assert assert_reached(env.sim, exp) == 0
    for ch in CHANNELS:
        got = env.sim.recipients(ENDPOINT[ch])
        twice = sorted(k for k, v in got.items() if v != 1)
        assert not twice, f"{ENDPOINT[ch]}: {len(twice)} sent more than once, e.g. {twice[:5]}"
    assert_job_counts(h, exp)
    seen = {}
    for _id, rc in stream_fields(env.r, f"{PREFIX}receipts"):
        if rc.get("status") in ("sent", "delivered"):
            key = (rc["sub"], rc["channel"])
            seen[key] = seen.get(key, 0) + 1
    assert seen == {(s, c): 1 for s, c, _a in exp.messages}

    # Both workers are consumers of the group under their own names; the
    # supervisor is not one.
    for stream in (f"{PREFIX}jobs", f"{PREFIX}batches:normal"):
        names = {c["name"] for c in env.r.xinfo_consumers(stream, GROUP)}
        assert {f"{CONSUMER}-0", f"{CONSUMER}-1"} <= names, f"{stream}: {sorted(names)}"
        assert CONSUMER not in names, f"{stream}: {sorted(names)}"

    # Each worker counts the messages it handled, on its own port; together
    # they are the job's messages, each counted once.
    total = int(h["messages"])
    wait_until(lambda: messages_counted(port) + messages_counted(port + 1) >= total, 10,
               what=f"the workers' /metrics to count {total} messages")
    per_worker = [messages_counted(port), messages_counted(port + 1)]
    print(f"\nworkers: {per_worker} messages of {total}")
    assert all(v > 0 for v in per_worker), f"messages per worker: {per_worker}"
    assert sum(per_worker) == total, f"messages per worker: {per_worker}, job: {total}"
    d.check_alive()
    assert sorted(set(ready_lines(d))) == [f"{CONSUMER}-0", f"{CONSUMER}-1"]


# ---- a worker killed mid-broadcast ------------------------------------------------

def test_killed_worker_is_restarted(env):
    n = 20000
    job_id = "workers-crash-0001"
    inflight = {"sendgrid": 16, "twilio": 16, "fcm": 16}
    unrecorded = {"sendgrid": 48, "twilio": 32, "fcm": 32}
    rng = random.Random(2203)
    subs, segs = make_population(n, rng, id_prefix="x", areas=("area:ALL",), overlap=0)
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim("--latency-ms", "2", "--log-body-bytes", "64")
    # reclaim_idle_ms is far beyond the test's patience: what worker 1 held
    # when it died must come back through its successor of the same name, not
    # through worker 0 taking over idle entries.
    d = start_workers(env, 2, fanout={"batch_size": 200, "max_batches": 8,
                                      "reclaim_idle_ms": 60000},
                      providers={name: {"max_inflight": k, "max_unrecorded": unrecorded[name]}
                                 for name, k in inflight.items()})
    exp = Expect(subs, segs["area:ALL"], CHANNELS)
    before = dict(workers_of(d))

    post_job(env.r, job_doc(job_id, "area:ALL"))
    wait_until(lambda: d.check_alive() or accepted_total(env.sim) >= 1500, 60, 0.005,
               what="1500 requests accepted before the kill")
    assert env.r.hget(f"{PREFIX}job:{job_id}", "state") != "completed", \
        "the job completed before the kill; make it longer"
    os.kill(before[1], signal.SIGKILL)

    restarted = re.compile(rf"worker 1 \(pid {before[1]}\) (.*?);? restarting in \d+ ms")
    m = wait_until(lambda: d.check_alive() or restarted.search(d.log_text()), 10,
                   what=f"the supervisor to log that it restarts worker 1 (pid {before[1]})")
    assert "killed by signal 9" in m.group(1), m.group(0)

    def replaced():
        d.check_alive()
        w = dict(workers_of(d))
        return w if w.get(1, before[1]) != before[1] else None

    now = wait_until(replaced, 15, what="a new process for worker 1")
    assert now[0] == before[0], "worker 0 was restarted too"

    h = wait_job(env.r, job_id, [d], timeout=45)
    assert dict(workers_of(d)) == now
    assert ready_lines(d).count(f"{CONSUMER}-1") == 2
    assert ready_lines(d).count(f"{CONSUMER}-0") == 1

    dups = assert_reached(env.sim, exp)
    assert_job_counts(h, exp)
    # A message holds one of its provider's max_unrecorded slots from its
    # request until its outcome is in the ledger; worker 1 had its share
    # (at most half, rounded up) of each provider's slots when it died.
    bound = sum(max(-(-u // 2), -(-inflight[name] // 2)) for name, u in unrecorded.items())
    print(f"\nworkers crash: {dups} messages sent more than once (bound {bound}), "
          f"{exp.total} messages")
    assert dups <= bound, f"{dups} duplicates; at most {bound} could have been unrecorded"


# ---- stopping -------------------------------------------------------------------

def test_sigterm_stops_every_worker(env):
    n = 2000
    job_id = "workers-term-0001"
    subs = {f"t{i:05d}": {"phone": f"+4478{i:08d}", "name": f"Resident {i}"} for i in range(n)}
    env.start_redis()
    seed(env.r, subs, {"area:TERM": list(subs)})
    env.start_sim("--latency-ms", "4", "--jitter-ms", "2")
    over = {"fanout": {"batch_size": 100, "max_batches": 4, "reclaim_idle_ms": 5000},
            "providers": {"twilio": {"max_inflight": 8}}}
    d = start_workers(env, 2, **over)
    pids = [pid for _i, pid in workers_of(d)]
    assert len(pids) == 2 and set(worker_processes(d)) == set(pids)

    post_job(env.r, job_doc(job_id, "area:TERM", ["sms"]))
    wait_until(lambda: d.check_alive() or env.sim.endpoint_stats("twilio")["accepted"] >= n // 10,
               30, 0.005, what="a tenth of the job to be sent")
    rc = d.term(timeout=20)
    assert rc == 0, f"the supervisor exited with {rc} after SIGTERM"
    assert not worker_processes(d), f"workers left running: {worker_processes(d)}"
    assert not set(pids) & set(processes())
    sent_before = env.sim.endpoint_stats("twilio")["accepted"]
    assert sent_before < n, "the job finished before SIGTERM could interrupt it"
    assert env.r.hget(f"{PREFIX}job:{job_id}", "state") != "completed"

    # What was in flight was finished or handed back: started again, the
    # workers complete the job without missing anyone.
    d = start_workers(env, 2, **over)
    h = wait_job(env.r, job_id, [d], timeout=30)
    got = env.sim.recipients("twilio")
    assert set(got) == {f["phone"] for f in subs.values()}
    dups = env.sim.endpoint_stats("twilio")["duplicates"]
    assert dups <= 8, f"{dups} messages sent twice; at most 8 were in flight"
    assert int(h["messages"]) == n == status_total(h)
    assert d.term(timeout=20) == 0
    assert not worker_processes(d)


def test_supervisor_sigkill_takes_workers_down(env):
    env.start_redis()
    env.start_sim()
    d = start_workers(env, 2)
    pids = [pid for _i, pid in workers_of(d)]
    assert len(pids) == 2 and set(worker_processes(d)) == set(pids)

    d.kill()
    wait_until(lambda: not worker_processes(d), 5, 0.05,
               what=f"the workers {pids} to die with their supervisor")
    assert not set(pids) & set(processes())


# ---- crierd -t ---------------------------------------------------------------------

def write_config(tmp_path, name, workers):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(crierd_config(6379, 8080, workers=workers)))
    return path


def test_check_config_counts_workers(tmp_path):
    path = write_config(tmp_path, "two", 2)
    rc, out = check_config_file(path)
    assert rc == 0, f"exit {rc}: {out}"
    assert f"crierd: config {path} is valid (3 providers, 2 workers)" in out, out

    rc, out = check_config_file(write_config(tmp_path, "auto", "auto"))
    assert rc == 0, f"exit {rc}: {out}"
    m = re.search(r"\(3 providers, (\d+) workers?\)", out)
    assert m and 1 <= int(m.group(1)) <= min(64, os.cpu_count()), out


BAD_WORKERS = [0, 65, 2.5, -1, "many", "2"]


@pytest.mark.parametrize("workers", BAD_WORKERS, ids=[repr(w) for w in BAD_WORKERS])
def test_check_config_rejects_bad_workers(tmp_path, workers):
    rc, out = check_config_file(write_config(tmp_path, "bad", workers))
    assert rc == 1, f"exit {rc}, output: {out}"
    assert "crierd: config: " in out and "workers" in out, out
