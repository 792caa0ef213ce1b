"""Audience algebra from data: (explicit subscribers ∪ every segment) ∩ every
require set − every exclude set. Each case is posted as a job to one running
crierd and checked against a brute-force answer computed from the same Redis
sets: the recipients the simulator received, `targeted` and the skipped ids
that have no subscriber hash."""

import random

import pytest

import harness
from harness import PREFIX, counter, post_job, seed, status_total, wait_job

N = 1500
GHOSTS = ["ghost-1", "ghost-2", "ghost-3"]  # in sets, but no subscriber hash


def sid(i):
    return f"a{i:05d}"


def dataset():
    rng = random.Random(77)
    subs = {sid(i): {"phone": f"+4475{i:08d}", "name": f"Resident {i}"} for i in range(N)}
    everyone = list(subs)
    segs = {
        "area:north": [sid(i) for i in range(0, 700)],
        "area:south": [sid(i) for i in range(500, 1200)],
        "area:east": [sid(i) for i in range(1000, 1500)] + GHOSTS[:2],
        "consent:police": rng.sample(everyone, 900) + ["ghost-1"],
        "consent:sms": rng.sample(everyone, 1000),
        "optout:appeals": rng.sample(everyone, 150) + ["ghost-2"],
        "optout:late": [sid(i) for i in range(600, 651)],
        "area:far": [sid(i) for i in range(1300, 1400)],
    }
    return subs, segs


# (name, audience): every combination the algebra has to get right.
CASES = [
    ("union-overlapping", {"segments": ["area:north", "area:south"]}),
    ("union-with-ghosts", {"segments": ["area:east", "area:south"]}),
    ("require-one", {"segments": ["area:north", "area:south"], "require": ["consent:police"]}),
    ("require-two", {"segments": ["area:north", "area:south", "area:east"],
                     "require": ["consent:police", "consent:sms"]}),
    ("exclude-two", {"segments": ["area:north", "area:east"],
                     "exclude": ["optout:appeals", "optout:late"]}),
    ("explicit-only", {"subscribers": [sid(3), sid(4), sid(1499), sid(3), "nobody-1",
                                       "ghost-3"]}),
    ("explicit-and-segments", {"subscribers": [sid(10), sid(650), sid(1450), sid(1451),
                                               "nobody-2"],
                               "segments": ["area:north"],
                               "require": ["consent:sms"], "exclude": ["optout:late"]}),
    ("everything", {"segments": ["area:north", "area:south", "area:east", "area:far"],
                    "subscribers": [sid(1), sid(1201)],
                    "require": ["consent:police"],
                    "exclude": ["optout:appeals", "optout:late"]}),
    ("empty-by-require", {"segments": ["area:north"], "require": ["area:far"]}),
    ("empty-by-exclude", {"segments": ["area:far"], "exclude": ["area:south", "area:east"]}),
    ("missing-segment", {"segments": ["area:nowhere"]}),
    ("missing-segment-and-real", {"segments": ["area:nowhere", "area:far"],
                                  "exclude": ["optout:nowhere"]}),
    ("missing-require", {"segments": ["area:far"], "require": ["consent:nowhere"]}),
]


@pytest.fixture(scope="module")
def env():
    """One redis-server, crier-sim and crierd for every case of this module."""
    e = harness.Env(label="audience")
    try:
        subs, segs = dataset()
        e.start_redis()
        seed(e.r, subs, segs)
        e.start_sim()
        e.daemon = e.crierd()
        yield e
    finally:
        e.close()


def brute_force(r, aud):
    """The audience computed from Redis with plain set operations."""
    def members(name):
        return set(r.smembers(f"{PREFIX}seg:{name}"))

    out = set(aud.get("subscribers", []))
    for name in aud.get("segments", []):
        out |= members(name)
    for name in aud.get("require", []):
        out &= members(name)
    for name in aud.get("exclude", []):
        out -= members(name)
    return out


@pytest.mark.parametrize("name,aud", CASES, ids=[c[0] for c in CASES])
def test_audience_case(env, name, aud):
    r = env.r
    job_id = f"aud-{name}"
    want = brute_force(r, aud)
    with_hash = {s for s in want if r.exists(f"{PREFIX}sub:{s}")}
    phones = {r.hget(f"{PREFIX}sub:{s}", "phone") for s in with_hash}

    env.sim.reset()
    post_job(r, {"id": job_id, "priority": "normal", "audience": aud, "channels": ["sms"],
                 "message": {"sms": "Notice for {{name}}: test of audience " + name}})
    h = wait_job(r, job_id, [env.daemon], timeout=60)

    got = env.sim.recipients("twilio")
    assert set(got) == phones, (
        f"{name}: missing {sorted(phones - set(got))[:5]}, "
        f"unexpected {sorted(set(got) - phones)[:5]}")
    assert all(v == 1 for v in got.values())
    assert int(h["targeted"]) == len(want), f"{name}: targeted {h['targeted']}, want {len(want)}"
    assert counter(h, "sent:sms") + counter(h, "delivered:sms") == len(with_hash)
    assert counter(h, "skipped") == len(want - with_hash)
    assert int(h["messages"]) == len(want) == status_total(h)
    skipped = {rc["sub"]: rc["code"]
               for _id, rc in harness.stream_fields(r, f"{PREFIX}receipts")
               if rc["job"] == job_id and rc["status"] == "skipped"}
    assert skipped == {s: "no_subscriber" for s in want - with_hash}
