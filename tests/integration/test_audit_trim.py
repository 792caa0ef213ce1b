"""Nothing trimmed before it is stored, for every writer of crier:receipts,
crier:replies and crier:events: crierd's receipts, a provider's webhook
receipts and residents' SMS replies all trim below what the audit group has
acknowledged, the stream's maxlen staying the hard ceiling, and every entry the
ceiling cuts before the group read it is counted (<stream>:audit-missed,
crier_audit_missed in /metrics) and logged."""

import urllib.request

from harness import (AUDIT_GROUP, PREFIX, Audit, audit_config, counter, free_port, group_caught_up,
                     post_job, seed, wait_job, wait_until)

MAXLEN = 300
STREAMS = ("receipts", "replies", "events")


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("crier_audit_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def added(r, stream):
    return int(r.xinfo_stream(stream)["entries-added"])


def test_webhook_receipts_and_replies_kept_for_the_audit_up_to_maxlen(env):
    env.start_redis()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim("--twilio-inbound-url", f"{base}/hooks/twilio", "--callback-delay-ms", "5")
    d = env.crierd(receipts={"maxlen": MAXLEN}, http={"listen": f"127.0.0.1:{port}"},
                   webhooks={"public_url": base},
                   providers={"twilio": {"status_callback": f"{base}/hooks/twilio"}})
    r = env.r
    subs = {f"w{i:04d}": {"phone": f"+4477009{i:05d}", "name": f"W {i}"} for i in range(420)}
    ids = sorted(subs)
    seed(r, subs, {"area:W1": ids[:100], "area:W2": ids[100:400]})
    keys = {s: f"{PREFIX}{s}" for s in STREAMS}
    # the audit sink's group exists on every stream and has read nothing:
    # crier-audit is stopped
    for k in keys.values():
        r.xgroup_create(k, AUDIT_GROUP, id="0", mkstream=True)
    wait_until(lambda: all(r.get(f"{k}:audit-floor") for k in keys.values()), 10, 0.05,
               what="crierd to publish the audit floor of every stream")

    def run(job_id, seg):
        post_job(r, {"id": job_id, "audience": {"segments": [seg]}, "channels": ["sms"],
                     "message": {"text": "Reply to us", "sms": "Reply to us"}})
        h = wait_job(r, job_id, [d], timeout=120)
        wait_until(lambda: counter(r.hgetall(f"{PREFIX}job:{job_id}"), "sent:sms") == 0, 60,
                   0.05, what=f"every SMS status callback of {job_id} applied")
        return int(h["messages"])

    def reply(sids, body="thank you"):
        for sid in sids:
            got = env.sim._call("POST", "/_sim/inbound", {"from": subs[sid]["phone"], "body": body,
                                                          "to": "+447700900000"})
            assert got["status"] == 200, got

    def webhook_receipts():
        return sum(1 for _i, f in r.xrange(keys["receipts"]) if f.get("source") == "webhook")

    # below the ceiling: crierd's receipts, the webhook receipts and the
    # replies all stay, none read by the group is gone
    n1 = run("keep-1", "area:W1")
    reply(ids[:100])
    assert webhook_receipts() == n1
    for s in ("receipts", "replies"):
        assert r.xlen(keys[s]) == added(r, keys[s]), s
    assert r.xlen(keys["replies"]) == 100
    m = metrics(port)
    assert m['crier_audit_missed{stream="receipts"}'] == 0
    assert m['crier_audit_missed{stream="replies"}'] == 0
    wait_until(lambda: metrics(port).get('crier_audit_backlog{stream="replies",group="audit"}', 0)
               >= 100, 10, 0.05, what="the replies backlog in /metrics")

    # past the ceiling: trimmed past the group, and every entry so cut is
    # counted, whichever writer cut it (the webhook receipts come last)
    run("keep-2", "area:W2")
    reply(ids[100:400])
    for s in ("receipts", "replies"):
        k = keys[s]
        assert r.xlen(k) <= MAXLEN + 100, (s, r.xlen(k))
        lost = added(r, k) - r.xlen(k)
        assert lost > 0, s
        # the group read nothing: every entry trimmed is one the audit misses
        assert int(r.get(f"{k}:audit-missed") or 0) == lost, (s, lost)
        wait_until(lambda: metrics(port)[f'crier_audit_missed{{stream="{s}"}}'] == lost, 10, 0.05,
                   what=f"the missed {s} in /metrics")
    assert metrics(port)["crier_audit_receipts_missed"] == \
        metrics(port)['crier_audit_missed{stream="receipts"}']
    wait_until(lambda: "replies: " + keys["replies"] + " reached its maxlen" in d.log_text(), 10,
               0.05, what="the log line about replies trimmed before they were stored")
    assert "before the audit stored them" in d.log_text()

    # the sink catches up: stored entries go at once, not kept up to maxlen
    path = str(env.dir / "audit.db")
    audit = Audit(env.dir, audit_config(env.redis.port, {"type": "sqlite", "path": path}))
    env.daemons.append(audit)
    audit.start()

    def caught_up():
        return all(group_caught_up(r, k, r.xinfo_stream(k)["last-generated-id"], AUDIT_GROUP)
                   for k in keys.values())

    wait_until(caught_up, 60, 0.05, what="crier-audit to store every entry")
    last = r.xinfo_stream(keys["replies"])["last-generated-id"]
    wait_until(lambda: (r.get(f"{keys['replies']}:audit-floor") or "0") > last.split("-")[0],
               10, 0.05, what="the replies floor to move past what was stored")
    before = r.xlen(keys["replies"])
    reply(ids[400:420])
    assert r.xlen(keys["replies"]) < min(before, MAXLEN // 2), "stored replies are trimmed, not kept up to maxlen"
    wait_until(caught_up, 60, 0.05, what="crier-audit to store the last replies")
