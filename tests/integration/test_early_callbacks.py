"""Every Twilio status callback of a job reaches its message, even when far
more SMS are sent than crier-sim can hold callbacks for at once. The
simulator's callback queue (--callback-queue, 100,000 by default) filled up in
the 100,000-resident crash test under load: it then created a message's
"sent" callback but dropped its "delivered" one, so those messages stayed
`sent` although every callback it did make was answered 200. Now a message
whose callbacks would not fit is refused with Twilio's 429 (code 20429),
which crierd retries, and every message it accepts gets all its callbacks.
A receipt that comes before crierd recorded the send (crier:job:<id>:early)
counts once: a later status for that message is a duplicate."""

import base64
import datetime
import hashlib
import hmac
import urllib.parse
import urllib.request

from harness import (PREFIX, counter, free_port, post_job, seed, stream_fields, wait_job,
                     wait_until)

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


def _twilio_post(base, path, params, token="test-token"):
    """POSTs a Twilio status callback signed as Twilio signs it; the status."""
    data = base + path + "".join(k + v for k, v in sorted(params.items()))
    sig = base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest())
    req = urllib.request.Request(base + path, data=urllib.parse.urlencode(params).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "X-Twilio-Signature": sig.decode()})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def test_a_status_after_an_early_one_is_not_counted_again(env):
    """A receipt applied early (by the record) marks the message as having its
    receipt, as a late one does: a second final status for it (WhatsApp's
    "read" after "delivered", or a message the provider sent twice) is a
    duplicate, not a second outcome taken from another message's `sent`."""
    subs = {"w0": {"phone": "+447400600001", "name": "Ann"},
            "w1": {"phone": "+447400600011", "name": "Bob"}}
    env.start_redis()
    seed(env.r, subs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim()
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"}, webhooks={"public_url": base})
    key = f"{PREFIX}job:early-cb-3"
    send_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    post_job(env.r, {"id": "early-cb-3", "priority": "high",
                     "audience": {"subscribers": list(subs)}, "channels": ["sms"],
                     "send_at": send_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                     "message": {"sms": "Boil your water, {{name}}."}})
    wait_until(lambda: d.check_alive() or env.r.hget(key, "state") == "scheduled", 10, 0.02,
               what="the job scheduled")
    # Ann's delivery is reported before crierd has sent (and recorded) it
    path = "/hooks/twilio?ref=early-cb-3%2F0%2Fsms"
    assert _twilio_post(base, path, {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered",
                                     "To": subs["w0"]["phone"]}) == 200
    assert env.r.hget(f"{key}:early", "0:1") == "delivered"
    wait_job(env.r, "early-cb-3", [d], timeout=20)
    h = env.r.hgetall(key)
    assert (counter(h, "delivered:sms"), counter(h, "sent:sms")) == (1, 1), h
    # a second final status for Ann's message changes nothing
    assert _twilio_post(base, path, {"MessageSid": "SM" + "b" * 32, "MessageStatus": "undelivered",
                                     "ErrorCode": "30003", "To": subs["w0"]["phone"]}) == 200
    h = env.r.hgetall(key)
    assert (counter(h, "delivered:sms"), counter(h, "sent:sms"), counter(h, "failed:sms")) \
        == (1, 1, 0), h
    hooked = [f for _i, f in stream_fields(env.r, f"{PREFIX}receipts")
              if f.get("source") == "webhook"]
    assert hooked == [], hooked
