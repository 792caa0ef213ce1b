"""Redis failover under a running broadcast: a primary, a replica and three
Sentinels on loopback, crierd configured with redis.sentinel, and a
50,000-resident three-channel job. Mid-job the primary changes hands three
ways: Sentinel's own failover (SENTINEL FAILOVER), a SIGKILL of the primary
(Sentinel promotes the replica), and Redis's FAILOVER command sent to the
primary (Sentinel follows later). In each, the same crierd process follows
Sentinel to the new primary within seconds of the switch, the job completes
there, every resident is reached, the counters add up, the ledger is
complete, and the messages sent twice are bounded by max_unrecorded per
provider."""

import os
import random
import re
import time

import pytest
import redis

from harness import (CHANNELS, LEDGER_BITS, ENDPOINT, PREFIX, Crierd, Expect, Topology, accepted_total,
                     assert_job_counts, assert_reached, make_population, post_job, seed,
                     sentinel_crierd_config, status_total, wait_job, wait_until)

N = 50000
INFLIGHT = {"sendgrid": 8, "twilio": 16, "fcm": 16}
UNRECORDED = {"sendgrid": 48, "twilio": 32, "fcm": 32}
SIM_ARGS = ("--latency-ms", "3", "--log-body-bytes", "64")
OVERRIDES = {
    "redis": {"reconnect_max_ms": 1000, "command_timeout_ms": 3000},
    "intake": {"block_ms": 500},
    "fanout": {"batch_size": 200, "max_batches": 8, "reclaim_idle_ms": 5000},
    "retry": {"max_attempts": 5, "base_ms": 50, "max_ms": 1000},
    "providers": {name: {"max_inflight": n, "max_unrecorded": UNRECORDED[name]}
                  for name, n in INFLIGHT.items()},
}
# Progress before the primary changes hands: the job is well under way.
TRIGGER_FRACTION = 0.2
# Sentinel names the new primary; crierd must log it within this many seconds.
FOLLOW_S = 10


def job_doc(job_id):
    return {
        "id": job_id, "priority": "high", "audience": {"segments": ["area:ALL"]},
        "channels": list(CHANNELS),
        "message": {"subject": "Flood warning for your street",
                    "text": "Hello {{name}}, river levels are rising tonight.",
                    "sms": "Flood warning: river levels rising tonight, {{name}}.",
                    "push": {"title": "Flood warning", "body": "River levels rising tonight"}},
    }


def client(port):
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=10,
                       socket_connect_timeout=2)


def ledger_complete(port, job_id, targeted):
    """The ledger's set bits (one byte per audience position: email, sms,
    push, whatsapp, skipped) and the positions that have none."""
    data = redis.Redis(host="127.0.0.1", port=port).get(f"{PREFIX}job:{job_id}:ledger") or b""
    bits = sum(bin(b).count("1") for b in data)
    missing = []
    for pos in range(targeted):
        at = pos * LEDGER_BITS // 8
        if at >= len(data) or data[at] == 0:
            missing.append(pos)
    return bits, missing


def cpu_s(pid):
    """User + system CPU seconds of process pid so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trigger_sentinel_failover(topo, old):
    topo.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", topo.master)


def trigger_sigkill(topo, old):
    topo.node(old).kill()


def trigger_redis_failover(topo, old):
    client(old).execute_command("FAILOVER")


CASES = {
    "sentinel_failover": trigger_sentinel_failover,
    "sigkill_primary": trigger_sigkill,
    "redis_failover_command": trigger_redis_failover,
}


@pytest.mark.parametrize("case", list(CASES))
def test_failover_mid_broadcast(env, case):
    job_id = f"sentinel-{case}"
    rng = random.Random(1515)
    subs, segs = make_population(N, rng, id_prefix="f", areas=("area:ALL",), overlap=0)
    exp = Expect(subs, segs["area:ALL"], CHANNELS)

    with Topology(env.dir).start() as topo:
        old = topo.primary_port()
        r_old = client(old)
        seed(r_old, subs, segs)
        assert r_old.execute_command("WAIT", 1, 10000) == 1  # the audience is on the replica
        env.start_sim(*SIM_ARGS)
        cfg = sentinel_crierd_config(topo, env.sim.port, **OVERRIDES)
        d = Crierd(env.dir, cfg, name="crierd-a")
        env.daemons.append(d)
        d.start()
        pid = d.proc.pid
        assert f"primary is 127.0.0.1:{old}" in d.log_text()

        post_job(r_old, job_doc(job_id))
        total = len(exp.messages)
        wait_until(lambda: d.check_alive() or accepted_total(env.sim) >= total * TRIGGER_FRACTION,
                   120, 0.01, what=f"{TRIGGER_FRACTION:.0%} of the job before the failover")
        sent_before = accepted_total(env.sim)
        assert r_old.hget(f"{PREFIX}job:{job_id}", "state") != "completed", \
            "the job completed before the failover; make it longer"

        lines0, cpu0 = len(d.log_text().splitlines()), cpu_s(pid)
        CASES[case](topo, old)
        t0 = time.monotonic()
        new = topo.wait_switch(old, timeout=90)
        t_switch = time.monotonic()
        # Until Sentinel names the new primary, crierd finds only a replica or
        # nothing (up to ~30 s after Redis's FAILOVER): it waits with backoff,
        # and says so in a bounded number of lines, whatever the wait.
        stalled = len(d.log_text().splitlines()) - lines0
        stall_cpu = cpu_s(pid) - cpu0  # reported, not asserted: it includes the sending
        assert stalled < 150, f"{stalled} log lines in {t_switch - t0:.1f}s before the switch"
        line = f"primary is now 127.0.0.1:{new} (was 127.0.0.1:{old}"
        wait_until(lambda: d.check_alive() or line in d.log_text(), FOLLOW_S, 0.01,
                   what=f"crierd to log '{line}'")
        t_follow = time.monotonic()
        # The connections are on the new primary and the job moves there.
        wait_until(lambda: d.check_alive() or re.search(
            rf"redis 'commands' 127\.0\.0\.1:{new}: connected", d.log_text()),
            FOLLOW_S, 0.01, what="the commands connection on the new primary")
        r_new = client(new)
        h0 = r_new.hgetall(f"{PREFIX}job:{job_id}")
        wait_until(lambda: d.check_alive() or status_total(r_new.hgetall(
            f"{PREFIX}job:{job_id}")) > status_total(h0) or r_new.hget(
            f"{PREFIX}job:{job_id}", "state") == "completed",
            60, 0.05, what="the job to progress on the new primary")

        h = wait_job(r_new, job_id, [d], timeout=120)
        assert d.alive() and d.proc.pid == pid, "crierd was restarted"

        dups = assert_reached(env.sim, exp)
        assert_job_counts(h, exp)
        assert int(h["targeted"]) == N
        bits, missing = ledger_complete(new, job_id, N)
        assert not missing, f"{len(missing)} positions without an outcome, e.g. {missing[:5]}"
        assert bits == exp.total == int(h["messages"])

        stats = env.sim.stats()["endpoints"]
        per = {p: stats[p]["duplicates"] for p in UNRECORDED}
        print(f"\nsentinel {case}: switch {t_switch - t0:.1f}s after the trigger ({stalled} log "
              f"lines, {stall_cpu:.2f}s of crierd CPU meanwhile), crierd followed {t_follow - t_switch:.2f}s after; "
              f"{sent_before} of {total} sent "
              f"before; duplicates {per} (total {dups}, bound per provider {UNRECORDED})")
        for ch in CHANNELS:
            p = ENDPOINT[ch]
            assert per[p] <= UNRECORDED[p], (
                f"{p}: {per[p]} sent twice; at most max_unrecorded {UNRECORDED[p]} could have "
                f"been unrecorded when the primary changed")
        d.check_alive()


def test_crierctl_finds_the_primary_through_sentinel(env):
    """crierctl --sentinel asks the Sentinels in turn (a dead one is skipped),
    writes to the primary they name, and after a failover to the new one."""
    import subprocess

    from harness import binary, free_port

    with Topology(env.dir).start() as topo:
        dead = f"127.0.0.1:{free_port()}"
        nodes = ",".join([dead] + topo.sentinel_nodes)

        def cancel(job_id):
            return subprocess.run([binary("crierctl"), "--sentinel", nodes, "--master",
                                   topo.master, "--timeout", "2000", "cancel", job_id],
                                  capture_output=True, text=True, timeout=60)

        old = topo.primary_port()
        for job_id in ("ctl-before", "ctl-after"):
            client(old).hset(f"{PREFIX}job:{job_id}", mapping={"state": "running"})
        assert client(old).execute_command("WAIT", 1, 10000) == 1

        res = cancel("ctl-before")
        assert res.returncode == 0, res.stderr
        assert f"Sentinel {dead}: " in res.stderr and "asking the next one" in res.stderr
        assert client(old).hget(f"{PREFIX}job:ctl-before", "state") == "cancelling"

        trigger_sentinel_failover(topo, old)
        new = topo.wait_switch(old, timeout=60)
        res = cancel("ctl-after")  # a write: refused (READONLY) anywhere but the primary
        assert res.returncode == 0, res.stderr
        assert client(new).hget(f"{PREFIX}job:ctl-after", "state") == "cancelling"

        res = subprocess.run([binary("crierctl"), "--sentinel", nodes, "--master", "nosuch",
                              "--timeout", "2000", "jobs"], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 3
        assert "does not monitor a master called 'nosuch'" in res.stderr
        assert "no Sentinel named the primary 'nosuch' (4 asked)" in res.stderr


def test_every_worker_follows_the_primary(env):
    """With "workers": 2 each worker process runs its own Sentinel client:
    both log the switch, and a job posted after it completes on the new
    primary."""
    with Topology(env.dir).start() as topo:
        old = topo.primary_port()
        subs = {f"w{i:04d}": {"phone": f"+4478000{i:05d}", "name": f"W {i}"} for i in range(400)}
        seed(client(old), subs, {"area:W": list(subs)})
        assert client(old).execute_command("WAIT", 1, 10000) == 1
        env.start_sim()
        cfg = sentinel_crierd_config(topo, env.sim.port, consumer="crierd-w", workers=2,
                                     **OVERRIDES)
        d = Crierd(env.dir, cfg, name="crierd-w")
        env.daemons.append(d)
        d.start()
        names = ("crierd-w-0", "crierd-w-1")
        wait_until(lambda: d.check_alive() or all(
            f"consumer '{n}'" in d.log_text() for n in names), 30, what="both workers ready")

        trigger_sentinel_failover(topo, old)
        new = topo.wait_switch(old, timeout=60)
        line = re.compile(rf"\[?w(\d)\]?.*primary is now 127\.0\.0\.1:{new} "
                          rf"\(was 127\.0\.0\.1:{old}")
        wait_until(lambda: d.check_alive() or {m.group(1) for m in map(
            line.search, d.log_text().splitlines()) if m} == {"0", "1"},
            FOLLOW_S, 0.02, what="both workers to log the new primary")

        r_new = client(new)
        post_job(r_new, {"id": "after-switch", "priority": "urgent",
                         "audience": {"segments": ["area:W"]}, "channels": ["sms"],
                         "message": {"sms": "Test {{name}}"}})
        h = wait_job(r_new, "after-switch", [d], timeout=60)
        assert int(h["messages"]) == len(subs) == status_total(h)
        assert set(env.sim.recipients("twilio")) == {f["phone"] for f in subs.values()}


def test_no_sentinel_answers(env):
    """Sentinels that cannot be reached: /readyz says why, the metric shows
    no primary known, and the rounds back off instead of spinning."""
    from harness import free_port, http_get, start_unready

    http = free_port()
    nodes = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    cfg = sentinel_crierd_config(Topology(env.dir), 9, http={"listen": f"127.0.0.1:{http}"},
                                 **OVERRIDES)
    cfg["redis"]["sentinel"]["nodes"] = nodes
    d = Crierd(env.dir, cfg, name="crierd-lost")
    env.daemons.append(d)
    start_unready(d)

    def get(path):
        return http_get(http, path)

    want = "redis sentinel 'crier': no primary known: no Sentinel named the primary (2 asked)"
    wait_until(lambda: d.check_alive() or (get("/readyz")[0] == 503
                                           and want in get("/readyz")[1]),
               10, 0.05, what="/readyz to name the lost Sentinels")
    assert "crier_redis_sentinel_primary_known 0" in get("/metrics")[1]
    rounds = re.compile(r"no Sentinel named the primary \(2 asked\); asking again in (\d+) ms")
    before = len(rounds.findall(d.log_text()))
    time.sleep(3)  # an observation window, not a synchronisation
    waits = [int(w) for w in rounds.findall(d.log_text())]
    assert before >= 1 and len(waits) - before <= 6, d.log_text()[-3000:]
    assert waits == sorted(waits) and waits[-1] == OVERRIDES["redis"]["reconnect_max_ms"]
    d.check_alive()


def test_sentinel_over_tls(env):
    """Nodes and Sentinels that speak only TLS: crierd asks the Sentinels and
    reaches the primary over TLS with redis.tls, broadcasts, follows a
    failover and broadcasts on the new primary."""
    from certs import make_ca, make_server_cert

    ca, ca_key = make_ca(env.dir / "ca")
    cert, key = make_server_cert(env.dir / "ca", ca, ca_key, name="redis")
    with Topology(env.dir, tls={"cert": cert, "key": key, "ca": ca}).start() as topo:
        old = topo.primary_port()
        subs = {f"t{i:04d}": {"phone": f"+4478100{i:05d}", "name": f"T {i}"} for i in range(300)}
        seed(topo.client(old), subs, {"area:T": list(subs)})
        env.start_sim()
        cfg = sentinel_crierd_config(topo, env.sim.port, **OVERRIDES)
        cfg["redis"]["tls"] = {"ca_file": str(ca)}
        d = Crierd(env.dir, cfg, name="crierd-tls")
        env.daemons.append(d)
        d.start()
        assert "through 3 Sentinels (TLS)" in d.log_text()
        assert f"redis 'commands' 127.0.0.1:{old}: connected over TLS" in d.log_text()

        def broadcast(port, job_id):
            env.sim.reset()
            post_job(topo.client(port), {"id": job_id, "priority": "urgent",
                                         "audience": {"segments": ["area:T"]},
                                         "channels": ["sms"], "message": {"sms": "Hi {{name}}"}})
            h = wait_job(topo.client(port), job_id, [d], timeout=60)
            assert int(h["messages"]) == len(subs) == status_total(h)
            assert set(env.sim.recipients("twilio")) == {f["phone"] for f in subs.values()}

        broadcast(old, "tls-before")
        assert topo.client(old).execute_command("WAIT", 1, 10000) == 1
        topo.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", topo.master)
        new = topo.wait_switch(old, timeout=60)
        line = f"primary is now 127.0.0.1:{new} (was 127.0.0.1:{old}, +switch-master from"
        wait_until(lambda: d.check_alive() or line in d.log_text(), FOLLOW_S, 0.02,
                   what=f"crierd to log '{line}'")
        wait_until(lambda: d.check_alive() or
                   f"redis 'commands' 127.0.0.1:{new}: connected over TLS" in d.log_text(),
                   FOLLOW_S, 0.02, what="the commands connection on the new primary over TLS")
        broadcast(new, "tls-after")
