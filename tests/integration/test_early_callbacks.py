"""Every Twilio status callback of a job reaches its message, even when far
more SMS are sent than crier-sim can hold callbacks for at once. The
simulator's callback queue (--callback-queue, 100,000 by default) filled up in
the 100,000-resident crash test under load: it then created a message's
"sent" callback but dropped its "delivered" one, so those messages stayed
`sent` although every callback it did make was answered 200. Now a message
whose callbacks would not fit is refused with Twilio's 429 (code 20429),
which crierd retries, and every message it accepts gets all its callbacks."""

from harness import PREFIX, counter, free_port, post_job, seed, wait_job, wait_until

QUEUE = 12  # callbacks crier-sim holds at once: a few messages' worth
N = 240     # SMS residents: twenty times what the queue holds


def job(job_id):
    return {"id": job_id, "priority": "high", "audience": {"segments": ["area:Q"]},
            "channels": ["sms"], "message": {"sms": "Water off in {{name}}'s street tonight."}}


def test_every_status_callback_applied_when_the_sim_queue_fills(env):
    # numbers ending in 99 are reported undelivered by the sim: none here
    subs = {f"q{i:04d}": {"phone": f"+4474008{i:04d}1", "name": f"Resident {i}"}
            for i in range(N)}
    env.start_redis()
    seed(env.r, subs, {"area:Q": list(subs)})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # a callback delay long enough that the queue is full while crierd sends
    env.start_sim("--callback-delay-ms", "100", "--callback-queue", str(QUEUE))
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"}, webhooks={"public_url": base},
                   providers={"twilio": {"status_callback": f"{base}/hooks/twilio"}},
                   retry={"max_attempts": 100, "base_ms": 20, "max_ms": 200})

    post_job(env.r, job("early-cb-1"))
    wait_job(env.r, "early-cb-1", [d], timeout=40)
    key = f"{PREFIX}job:early-cb-1"
    wait_until(lambda: d.check_alive() or counter(env.r.hgetall(key), "delivered:sms") == N,
               40, 0.05, what="every SMS's delivered status callback applied")
    h = env.r.hgetall(key)
    assert counter(h, "sent:sms") == 0, h
    assert counter(h, "failed:sms") == 0, h
    # the sim did refuse messages while its queue was full (else this test
    # would not cover anything), and dropped no callback
    twilio = env.sim.endpoint_stats("twilio")
    assert twilio["throttled"] > 0, twilio
    with open(env.sim.log_path, encoding="utf-8", errors="replace") as f:
        assert "dropped" not in f.read()
