"""The fleet in Redis: every crierd writes a heartbeat about once a second to
<prefix>fleet:<consumer> (with a TTL) and indexes it in <prefix>fleet; a
provider's breaker shows open in it within 2 s of the simulator failing the
provider, a killed crierd disappears within the TTL, `crierctl top` shows the
whole fleet from it, and /metrics carries the stream backlog and the provider
errors by class."""

import json
import subprocess
import time
import urllib.request

from harness import PREFIX, binary, free_port, post_job, seed, wait_until

TTL_S = 5  # CR_FLEET_TTL_MS
N = 3000


def heartbeat(r, consumer):
    doc = r.get(f"{PREFIX}fleet:{consumer}")
    return json.loads(doc) if doc else None


def provider(doc, name):
    return next(p for p in doc["providers"] if p["name"] == name)


def top_once(env):
    res = subprocess.run([binary("crierctl"), "-p", str(env.redis.port), "--prefix", PREFIX,
                          "top", "--once"], capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_heartbeat_breaker_kill_and_top(env):
    subs = {f"h{i:05d}": {"phone": f"+4475{i:08d}"} for i in range(N)}
    env.start_redis()
    seed(env.r, subs, {"area:FL": list(subs)})
    env.start_sim("--latency-ms", "5")
    port = free_port()
    twilio = {"max_inflight": 4, "rate": 150, "burst": 10, "breaker_failures": 3,
              "breaker_open_ms": 60000, "timeout_ms": 2000}
    a = env.crierd("crierd-a", http={"listen": f"127.0.0.1:{port}"},
                   providers={"twilio": twilio})
    b = env.crierd("crierd-b", providers={"twilio": twilio})

    wait_until(lambda: heartbeat(env.r, "crierd-a") and heartbeat(env.r, "crierd-b"), 10,
               0.05, what="both heartbeats")
    doc = heartbeat(env.r, "crierd-a")
    assert doc["node"] == "crierd-a" and doc["pid"] == a.proc.pid
    assert {p["name"] for p in doc["providers"]} == {"sendgrid", "twilio", "fcm"}
    tw = provider(doc, "twilio")
    assert tw["state"] == "ok" and tw["breaker"] == "closed"
    for k in ("inflight", "rate_10s", "p50_ms", "p99_ms", "errors_10s", "refill_ms"):
        assert k in tw, k
    ttl = env.r.pttl(f"{PREFIX}fleet:crierd-a")
    assert 0 < ttl <= TTL_S * 1000
    out = top_once(env)
    assert "FLEET" in out and "crierd-a" in out and "crierd-b" in out, out

    # A job at 150/s: both nodes send for a while; then the simulator fails twilio.
    post_job(env.r, {"id": "fleet-1", "priority": "normal",
                     "audience": {"segments": ["area:FL"]}, "channels": ["sms"],
                     "message": {"sms": "Road closed on the high street."}})
    wait_until(lambda: a.check_alive() or env.r.hget(f"{PREFIX}job:fleet-1", "state")
               == "running" and provider(heartbeat(env.r, "crierd-a"), "twilio")["rate_10s"] > 0
               or provider(heartbeat(env.r, "crierd-b"), "twilio")["rate_10s"] > 0,
               30, 0.05, what="twilio sending")
    env.sim.configure("twilio", error_rate=1.0)
    failed_at = time.monotonic()

    def open_somewhere():
        states = [provider(heartbeat(env.r, c), "twilio")["state"] for c in ("crierd-a", "crierd-b")]
        return "breaker_open" in states

    wait_until(open_somewhere, 10, 0.02, what="a twilio breaker open in the fleet")
    took = time.monotonic() - failed_at
    print(f"\nfleet: breaker open in the heartbeat {took * 1000:.0f} ms after the sim failed")

    text = metrics(port)
    for name in ("crier_batches_pending", "crier_batches_lag", "crier_intake_lag",
                 "crier_retry_set_size", "crier_fleet_nodes"):
        assert any(line.startswith(name) for line in text.splitlines()), name
    assert 'crier_fleet_nodes 2' in text
    for cls in ("transport", "throttled", "server", "client"):
        assert f'crier_provider_errors_total{{provider="twilio",class="{cls}"}}' in text, cls
    # the node whose breaker opened counts the 5xx answers by class
    opened = [heartbeat(env.r, c) for c in ("crierd-a", "crierd-b")]
    opened = [doc for doc in opened if provider(doc, "twilio")["state"] == "breaker_open"]
    assert opened and provider(opened[0], "twilio")["errors_10s"]["server"] >= 3, opened

    # A killed crierd leaves the fleet within the heartbeat TTL.
    b.kill()
    killed_at = time.monotonic()
    wait_until(lambda: heartbeat(env.r, "crierd-b") is None, TTL_S + 2, 0.05,
               what="crierd-b's heartbeat to expire")
    gone = time.monotonic() - killed_at
    print(f"fleet: killed crierd gone from the fleet after {gone * 1000:.0f} ms")
    out = top_once(env)
    assert "crierd-a" in out and "crierd-b" not in out, out

    # A clean stop leaves at once.
    assert a.term() == 0
    assert heartbeat(env.r, "crierd-a") is None
