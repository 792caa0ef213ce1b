"""A delivery receipt that comes before crierd recorded the send (kept in
crier:job:<id>:early, applied by the record script) counts in the job's
time-to-delivery figures as a late one does, timed with the record's own
clock argument: the script asks Redis for no TIME (seen in INFO
commandstats), against real redis-server, crier-sim and crierd."""

import base64
import datetime
import hashlib
import hmac
import urllib.parse
import urllib.request

from harness import PREFIX, counter, free_port, post_job, seed, wait_job, wait_until


def twilio_post(base, path, params, token="test-token"):
    """POSTs a Twilio status callback signed as Twilio signs it; the status."""
    data = base + path + "".join(k + v for k, v in sorted(params.items()))
    sig = base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest())
    req = urllib.request.Request(base + path, data=urllib.parse.urlencode(params).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "X-Twilio-Signature": sig.decode()})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def test_early_delivery_counts_to_delivery_without_redis_time(env):
    subs = {"t0": {"phone": "+447400700001", "email": "t0@example.org", "name": "Ann"},
            "t1": {"phone": "+447400700011", "email": "t1@example.org", "name": "Bob"}}
    env.start_redis()
    seed(env.r, subs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim()
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"}, webhooks={"public_url": base})
    key = f"{PREFIX}job:early-ttd"
    send_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    post_job(env.r, {"id": "early-ttd", "priority": "high",
                     "audience": {"subscribers": list(subs)}, "channels": ["sms"],
                     "send_at": send_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                     "message": {"sms": "Boil your water, {{name}}.",
                                 "subject": "Boil your water", "text": "Boil your water."},
                     "escalate": [{"after_s": 1, "to": ["email"], "unless": "delivered"}]})
    wait_until(lambda: d.check_alive() or env.r.hget(key, "state") == "scheduled", 10, 0.02,
               what="the job scheduled")
    env.r.config_resetstat()
    # both deliveries are reported before crierd has sent (and recorded) them
    for pos, (sid, f) in enumerate(subs.items()):
        path = f"/hooks/twilio?ref=early-ttd%2F{pos}%2Fsms"
        assert twilio_post(base, path, {"MessageSid": f"SM{pos:032d}",
                                        "MessageStatus": "delivered", "To": f["phone"]}) == 200
    assert env.r.hlen(f"{key}:early") == 2
    h = wait_job(env.r, "early-ttd", [d], timeout=30)
    assert (counter(h, "delivered:sms"), counter(h, "sent:email")) == (2, 0), h
    assert counter(h, "step:0:ttd_n") == 2, h
    assert 0 <= counter(h, "step:0:ttd_ms") < 60_000, h
    assert sum(counter(h, k) for k in h if k.startswith("step:0:ttd_le:")) == 2, h
    calls = env.r.info("commandstats").get("cmdstat_time", {}).get("calls", 0)
    assert calls == 0, f"{calls} TIME calls"
