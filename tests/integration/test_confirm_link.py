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


def test_link_confirmations_take_the_segments_from_the_job_hash(env):
    """The job hash keeps the audience segments of a job that asks for
    confirmations (confirm_segments): a tap reads them there, not from the
    document (here replaced by one without an audience, which a tap that
    parsed it would count in no segment). A job accepted before the field was
    kept still has its segments read from the document."""
    d, subs = start(env)
    post_job(env.r, {"id": "cl-2", "priority": "urgent", "channels": ["sms"], "confirm": True,
                     "audience": {"segments": ["area:north", "area:south"]},
                     "message": {"sms": "Police appeal. Seen it? Tap {{confirm_url}}"}})
    wait_job(env.r, "cl-2", [d], timeout=30)
    key = f"{PREFIX}job:cl-2"
    assert env.r.hget(key, "confirm_segments") == "area:north area:south"
    links = links_by_phone(env.sim)
    doc = env.r.hget(key, "doc")
    env.r.hset(key, "doc", '{"id": "cl-2"}')
    for sid in ("k00", "k04"):
        assert tap(links[subs[sid]["phone"]]) == 200, sid
    assert env.r.hgetall(f"{key}:confirmed:segments") == {"area:north": "2", "area:south": "1"}

    # as a job accepted by an older crierd: no confirm_segments, the document says
    env.r.hset(key, "doc", doc)
    env.r.hdel(key, "confirm_segments")
    assert tap(links[subs["k09"]["phone"]]) == 200
    assert env.r.hgetall(f"{key}:confirmed:segments") == {"area:north": "2", "area:south": "2"}
    assert counter(job_hash(env.r, "cl-2"), "confirmed") == 3

    # a job without confirm keeps no segments, and a tap on its link counts nothing
    post_job(env.r, {"id": "cl-3", "priority": "urgent", "channels": ["sms"],
                     "audience": {"segments": ["area:north"]},
                     "message": {"sms": "Police appeal: {{confirm_url}}"}})
    wait_job(env.r, "cl-3", [d], timeout=30)
    assert "confirm_segments" not in job_hash(env.r, "cl-3")
