"""The whole receipt loop with the simulator playing Twilio: crierd sends SMS with
a StatusCallback, crier-sim calls crierd's /hooks/twilio back with signed status
callbacks (delivered, or undelivered for numbers ending in 99), and an inbound
STOP sent through the simulator suppresses that number so the next job skips it."""

from harness import (PREFIX, counter, free_port, post_job, seed, stream_fields, wait_job,
                     wait_until)

TWILIO_TOKEN = "test-token"


def job(job_id):
    return {"id": job_id, "priority": "high", "audience": {"segments": ["area:SIM"]},
            "channels": ["sms"], "message": {"sms": "Flood warning for {{name}}: move to higher ground."}}


def test_status_callbacks_and_stop_through_the_simulator(env, tmp_path):
    n = 40
    subs = {f"h{i:03d}": {"phone": f"+4474009{i:05d}" if i % 10 else f"+44740090{i:03d}99",
                          "name": f"Resident {i}"} for i in range(n)}
    undelivered = {s for s, v in subs.items() if v["phone"].endswith("99")}
    assert undelivered, "the population must include numbers the sim reports undelivered"
    env.start_redis()
    seed(env.r, subs, {"area:SIM": list(subs)})

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim("--twilio-inbound-url", f"{base}/hooks/twilio", "--callback-delay-ms", "20")
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"},
                   webhooks={"public_url": base},
                   providers={"twilio": {"status_callback": f"{base}/hooks/twilio"}})

    post_job(env.r, job("sim-hooks-1"))
    wait_job(env.r, "sim-hooks-1", [d], timeout=60)
    key = f"{PREFIX}job:sim-hooks-1"
    # Receipts arrive after the send: delivered for most, failed (undelivered) for the 99s.
    wait_until(lambda: d.check_alive() or counter(env.r.hgetall(key), "delivered:sms")
               + counter(env.r.hgetall(key), "failed:sms") == n, 30, 0.05,
               what="every status callback to be applied")
    h = env.r.hgetall(key)
    assert counter(h, "delivered:sms") == n - len(undelivered)
    assert counter(h, "failed:sms") == len(undelivered)
    assert counter(h, "sent:sms") == 0
    receipts = [rc for _id, rc in stream_fields(env.r, f"{PREFIX}receipts")]
    sub_at = {rc["pos"]: rc["sub"] for rc in receipts if rc.get("source") != "webhook"}
    hooked = [rc for rc in receipts if rc.get("source") == "webhook"]
    assert {sub_at[rc["pos"]] for rc in hooked if rc["status"] == "delivered"} \
        == set(subs) - undelivered
    # Every callback the simulator made was accepted by crierd (none refused as forged).
    status_calls = [c for c in env.sim._call("GET", "/_sim/callbacks")
                    if c["kind"] == "twilio_status"]
    assert len(status_calls) >= n
    assert all(c["state"] == "delivered" and c["status"] == 200 for c in status_calls), \
        [c for c in status_calls if c["status"] != 200][:3]

    # A resident texts STOP: the simulator posts Twilio's signed inbound message.
    stopper = sorted(set(subs) - undelivered)[0]
    phone = subs[stopper]["phone"]
    answer = env.sim._call("POST", "/_sim/inbound",
                           {"from": phone, "body": "STOP", "to": "+447700900000"})
    assert answer["status"] == 200, answer
    assert env.r.sismember(f"{PREFIX}suppress:sms", phone)
    replies = [rc for _id, rc in stream_fields(env.r, f"{PREFIX}replies")]
    assert any(rc.get("from") == phone for rc in replies), replies

    before = env.sim.recipients("twilio").get(phone, 0)
    post_job(env.r, job("sim-hooks-2"))
    h2 = wait_job(env.r, "sim-hooks-2", [d], timeout=60)
    assert counter(h2, "suppressed:sms") == 1
    assert env.sim.recipients("twilio").get(phone, 0) == before, "STOP must stop the next job"
