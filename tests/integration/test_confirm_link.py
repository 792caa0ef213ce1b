"""Confirmation links (/c/<token>) against real redis-server, crier-sim and
crierd: a POST counts the confirmation once, per channel, way and audience
segment; the script is run with EVALSHA (INFO commandstats shows no EVAL),
and a server that lost its scripts
(SCRIPT FLUSH) still takes a confirmation at the first tap."""

import re
import urllib.parse
import urllib.request

from harness import PREFIX, counter, free_port, job_hash, post_job, seed, wait_job

LINK_SECRET = "link-secret-for-tests-0123"
N = 12


def start(env):
    env.start_redis()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim()
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"},
                   webhooks={"public_url": base},
                   links={"secret": LINK_SECRET, "allow_insecure_http": True})
    subs = {f"k{i:02d}": {"phone": f"+4477006{i:05d}"} for i in range(N)}
    # k00..k05 in north, k04..k11 in south: k04 and k05 in both
    seed(env.r, subs, {"area:north": [f"k{i:02d}" for i in range(6)],
                       "area:south": [f"k{i:02d}" for i in range(4, N)]})
    return d, subs


def links_by_phone(sim):
    out = {}
    for e in sim.log_all("twilio"):
        form = dict(urllib.parse.parse_qsl(e["body"]))
        out[form["To"]] = re.search(r"http://\S+/c/\S+", form["Body"]).group(0)
    return out


def tap(url):
    req = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_link_confirmations_by_evalsha_and_after_a_script_flush(env):
    d, subs = start(env)
    post_job(env.r, {"id": "cl-1", "priority": "urgent", "channels": ["sms"], "confirm": True,
                     "audience": {"segments": ["area:north", "area:south"]},
                     "message": {"sms": "Police appeal. Seen it? Tap {{confirm_url}}"}})
    wait_job(env.r, "cl-1", [d], timeout=30)
    links = links_by_phone(env.sim)
    assert len(links) == N
    env.r.config_resetstat()
    for sid in ("k00", "k04", "k05", "k09"):
        assert tap(links[subs[sid]["phone"]]) == 200, sid
    assert tap(links[subs["k04"]["phone"]]) == 200  # again: counted once
    stats = env.r.info("commandstats")
    assert "cmdstat_eval" not in stats, stats.get("cmdstat_eval")
    assert stats["cmdstat_evalsha"]["calls"] >= 5

    # the scripts are gone (a restarted or flushed server): the tap still counts
    env.r.script_flush()
    assert tap(links[subs["k11"]["phone"]]) == 200
    key = f"{PREFIX}job:cl-1"
    h = job_hash(env.r, "cl-1")
    assert (counter(h, "confirmed"), counter(h, "confirmed:sms"),
            counter(h, "confirmed_via:link")) == (5, 5, 5), h
    assert env.r.hgetall(f"{key}:confirmed:segments") == {"area:north": "3", "area:south": "4"}
    # the next one finds the scripts loaded again
    assert tap(links[subs["k10"]["phone"]]) == 200
    assert counter(job_hash(env.r, "cl-1"), "confirmed") == 6
    assert d.alive()
