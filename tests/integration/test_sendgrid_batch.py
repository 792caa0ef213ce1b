"""SendGrid batching: an email job goes out as requests of up to 1,000
personalizations (after the expander's small first page). With {{name}} in the templates the subject and content carry
substitution tags and each personalization its own values (HTML-escaped for
the html tags); without fields every personalization shares one rendering; a
429 on a batched request sends every message of it again, once."""

import json

from harness import (PREFIX, counter, post_job, seed, status_total, stream_fields, wait_job,
                     wait_until)

# Whole request bodies in the simulator's log (a 1,000-personalization
# request is a few hundred KiB).
SIM_ARGS = ("--log-body-bytes", "1048576")
# One fan-out batch of 1,000 residents (the job lists them, so the batches
# are exactly 1,000, 1,000 and 500) becomes one request: the unrecorded
# slots (held by each message until its outcome is written) do not cut it
# shorter, as there are enough of them for the whole job.
OVERRIDES = {"fanout": {"batch_size": 1000, "max_batches": 4, "reclaim_idle_ms": 60000},
             "providers": {"sendgrid": {"max_inflight": 4, "max_unrecorded": 3000}}}
# The expander's first audience page of a job is small, so that its first
# messages leave at once; they make a request of their own.
FIRST_PAGE = 32
ODD_NAMES = {7: "Tom & Jerry <b>", 8: 'Zoë "Z" O\'Neil'}


def population(n, prefix):
    subs = {}
    for i in range(n):
        subs[f"{prefix}{i:05d}"] = {"email": f"{prefix}{i:05d}@mail.crier.test",
                                   "name": ODD_NAMES.get(i, f"Resident {i}")}
    return subs, {"area:S": list(subs)}


def job(job_id, subs, with_fields=True):
    if with_fields:
        msg = {"subject": "Flood warning, {{name}}",
               "text": "Hello {{name}}, the river is rising. Move valuables upstairs.",
               "html": "<p>Hello {{name}}, the river is rising.</p>"}
    else:
        msg = {"subject": "Flood warning for your area",
               "text": "The river is rising. Move valuables upstairs.",
               "html": "<p>The river is rising.</p>"}
    return {"id": job_id, "priority": "urgent", "audience": {"subscribers": sorted(subs)},
            "channels": ["email"], "message": dict(msg, lang="en")}


def mails(sim):
    """(entry, doc) of every request SendGrid was sent."""
    return [(e, json.loads(e["body"])) for e in sim.log_all("sendgrid")]


def rendered(doc, p):
    """What the resident of personalization p receives: SendGrid's
    substitutions applied to the shared subject and content."""
    def sub(s):
        for tag, value in (p.get("substitutions") or {}).items():
            s = s.replace(tag, value)
        return s
    parts = {c["type"]: sub(c["value"]) for c in doc["content"]}
    return sub(doc["subject"]), parts["text/plain"], parts["text/html"]


def by_address(docs):
    out = {}
    for _e, doc in docs:
        for p in doc["personalizations"]:
            out.setdefault(p["to"][0]["email"], []).append((doc, p))
    return out


def check_requests(sim, n):
    """The sizes of the requests that carried a job of n residents: 1,000 at
    most each, as few as the pages allow: ceil(n / 1000) requests, or one more
    when the expander's first page went out by itself (it leaves at once; when
    the second page's residents are loaded first, it goes second). The job lists
    its residents, so its later pages are exactly 1,000."""
    sizes = [len(e["recipients"] or []) for e in sim.log_all("sendgrid")]
    assert sum(sizes) == n and max(sizes) <= 1000, sizes
    full = -(-n // 1000)
    small = [s for s in sizes[:2] if s <= FIRST_PAGE]
    if small and len(sizes) > 1:
        assert len(sizes) == 1 + -(-(n - small[0]) // 1000), sizes
    else:
        assert len(sizes) == full, sizes
    assert sizes.count(1000) >= n // 1000 - 1, sizes
    return sizes


def check_counters(env, job_id, subs):
    h = job_hash_completed(env, job_id)
    n = len(subs)
    assert int(h["messages"]) == n == status_total(h)
    assert counter(h, "sent:email") + counter(h, "delivered:email") == n
    for bad in ("failed", "bounced", "suppressed", "expired", "cancelled"):
        assert counter(h, bad) == 0, f"{bad} = {h.get(bad)}"
    receipts = [rc for _id, rc in stream_fields(env.r, f"{PREFIX}receipts")
                if rc["job"] == job_id and rc["status"] in ("sent", "delivered")]
    assert sorted(rc["sub"] for rc in receipts) == sorted(subs)
    return receipts


def job_hash_completed(env, job_id):
    return wait_job(env.r, job_id, env.daemons, timeout=90)


def test_job_with_fields_goes_out_in_three_requests(env):
    subs, segs = population(2500, "b")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim(*SIM_ARGS)
    env.crierd(**OVERRIDES)
    post_job(env.r, job("batch-fields-0001", subs))
    receipts = check_counters(env, "batch-fields-0001", subs)

    stats = env.sim.endpoint_stats("sendgrid")
    sizes = check_requests(env.sim, 2500)
    assert stats["requests"] == len(sizes)
    assert stats["rejected"] == 0 and stats["duplicates"] == 0
    got = env.sim.recipients("sendgrid")
    assert set(got) == {s["email"] for s in subs.values()}
    assert all(v == 1 for v in got.values())

    docs = mails(env.sim)
    assert [len(d["personalizations"]) for _e, d in docs] == sizes
    # one X-Message-Id per request, shared by every receipt of it
    assert len({rc["provider_id"] for rc in receipts}) == len(sizes)
    for _e, doc in docs:
        assert "-crier-t-0-" in doc["subject"] and "{{" not in doc["subject"]
        html = [c["value"] for c in doc["content"] if c["type"] == "text/html"][0]
        assert "-crier-h-0-" in html and "-crier-t-" not in html
        for p in doc["personalizations"]:
            assert len(json.dumps(p["substitutions"])) <= 10000

    sent = by_address(docs)
    for i in (0, 1, 999, 1000, 2499, 7, 8):
        sid = f"b{i:05d}"
        (doc, p), = sent[subs[sid]["email"]]
        subject, text, html = rendered(doc, p)
        name = subs[sid]["name"]
        assert subject == f"Flood warning, {name}"
        assert text.startswith(f"Hello {name}, the river is rising.")
        esc = (name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
               .replace('"', "&quot;").replace("'", "&#39;"))
        assert html == f"<p>Hello {esc}, the river is rising.</p>"
        assert p["custom_args"]["crier_ref"].startswith("batch-fields-0001/")
    # raw in text, escaped in html only
    (doc, p), = sent[subs["b00007"]["email"]]
    assert p["substitutions"]["-crier-t-0-"] == "Tom & Jerry <b>"
    assert p["substitutions"]["-crier-h-0-"] == "Tom &amp; Jerry &lt;b&gt;"


def test_job_without_fields_shares_one_rendering(env):
    subs, segs = population(1500, "n")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim(*SIM_ARGS)
    env.crierd(**OVERRIDES)
    post_job(env.r, job("batch-plain-0001", subs, with_fields=False))
    check_counters(env, "batch-plain-0001", subs)

    docs = mails(env.sim)
    sizes = check_requests(env.sim, 1500)
    assert env.sim.endpoint_stats("sendgrid")["requests"] == len(sizes)
    for _e, doc in docs:
        assert doc["subject"] == "Flood warning for your area"
        assert all("substitutions" not in p for p in doc["personalizations"])
    got = env.sim.recipients("sendgrid")
    assert set(got) == {s["email"] for s in subs.values()}
    assert all(v == 1 for v in got.values())


def test_429_on_a_batch_retries_every_message_once(env):
    subs, segs = population(1200, "r")
    env.start_redis()
    seed(env.r, subs, segs)
    env.start_sim(*SIM_ARGS, "--rate-429", "1", "--retry-after", "1")
    d = env.crierd(**dict(OVERRIDES, retry={"max_attempts": 5, "base_ms": 50,
                                            "max_ms": 2000}))
    post_job(env.r, job("batch-429-0001", subs))

    def parked():
        d.check_alive()
        return env.r.zcard(f"{PREFIX}retry") >= 1000
    wait_until(parked, 30, 0.02, what="the 429'd batch to be parked for a retry")
    env.sim.configure("sendgrid", rate_429=0.0)
    receipts = check_counters(env, "batch-429-0001", subs)

    entries = env.sim.log_all("sendgrid")
    refused = [e for e in entries if e["status"] == 429]
    accepted = [e for e in entries if e["status"] == 202]
    assert refused and accepted
    assert max(len(e["recipients"] or []) for e in refused) > 1  # a batch was refused
    got = env.sim.recipients("sendgrid")  # counts accepted requests only
    assert set(got) == {s["email"] for s in subs.values()}
    assert all(v == 1 for v in got.values()), "a message was delivered twice"
    assert sum(1 for rc in receipts if int(rc["attempt"]) >= 2) >= 1000
    assert env.r.zcard(f"{PREFIX}retry") == 0
