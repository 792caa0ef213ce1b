"""Provider answers classified end to end: permanent failures count `failed`
and are never retried, "unsubscribed" SMS numbers and unregistered push tokens
count `suppressed` and land in the suppression sets, pre-suppressed addresses
are never sent, and a second job to the same audience skips the new ones."""

from harness import (CHANNELS, ENDPOINT, PREFIX, counter, post_job, seed, status_total,
                     wait_job)

SMS_FAIL = "+15005550001"      # Twilio 21211: invalid number, permanent
SMS_OPTOUT = "+15005550004"    # Twilio 21610: recipient unsubscribed, suppress
PUSH_GONE = "unregistered-token-0001"   # FCM UNREGISTERED, suppress
PUSH_BAD = "invalid-token-0001"         # FCM INVALID_ARGUMENT, permanent
MAIL_BAD = "nobody@invalid.sim"         # SendGrid 400, permanent
MAIL_OPTOUT = "unsubscribed@mail.crier.test"  # already in crier:suppress:email


def population():
    subs = {f"ok{i}": {"name": f"Resident {i}", "email": f"ok{i}@mail.crier.test",
                       "phone": f"+4477008{i:05d}", "push_token": f"tok-ok-{i}"}
            for i in range(20)}
    subs.update({
        "bad-sms": {"name": "A", "phone": SMS_FAIL, "email": "bad-sms@mail.crier.test"},
        "optout-sms": {"name": "B", "phone": SMS_OPTOUT, "push_token": "tok-optout-sms"},
        "gone-push": {"name": "C", "push_token": PUSH_GONE, "phone": "+447700955501"},
        "bad-push": {"name": "D", "push_token": PUSH_BAD},
        "bad-mail": {"name": "E", "email": MAIL_BAD, "channels": "email"},
        "optout-mail": {"name": "F", "email": MAIL_OPTOUT, "phone": "+447700955502"},
    })
    return subs


def job(job_id):
    return {"id": job_id, "priority": "high", "audience": {"segments": ["area:X"]},
            "channels": ["email", "sms", "push"],
            "message": {"subject": "Burglary warning", "text": "Hello {{name}}, lock up.",
                        "sms": "Burglaries reported nearby: please lock doors and windows.",
                        "push": {"title": "Burglary warning", "body": "Please lock up."}}}


def sent_to(entries, address):
    return [e for e in entries if address in (e.get("recipients") or [])]


def test_failures_and_suppressions(env):
    subs = population()
    env.start_redis()
    seed(env.r, subs, {"area:X": list(subs)}, suppress={"email": [MAIL_OPTOUT]})
    env.start_sim()
    d = env.crierd()

    post_job(env.r, job("classify-0001"))
    h = wait_job(env.r, "classify-0001", [d], timeout=60)

    # email: 21 ok + 1 invalid.sim + 1 pre-suppressed; sms: 20 ok + 2 others ok + 1 failed
    # + 1 suppressed; push: 20 ok + tok-optout-sms ok + 1 unregistered + 1 invalid.
    want = {"failed:email": 1, "suppressed:email": 1, "failed:sms": 1, "suppressed:sms": 1,
            "failed:push": 1, "suppressed:push": 1, "failed": 3, "suppressed": 3,
            "skipped": 0, "bounced": 0}
    got = {k: counter(h, k) for k in want}
    assert got == want
    ok = {ch: counter(h, f"sent:{ch}") + counter(h, f"delivered:{ch}") for ch in CHANNELS}
    assert ok == {"email": 21, "sms": 22, "push": 21}
    assert int(h["messages"]) == status_total(h) == sum(ok.values()) + 6

    # Suppressions learned from the providers, and the earlier one kept.
    assert env.r.sismember(f"{PREFIX}suppress:sms", SMS_OPTOUT)
    assert env.r.sismember(f"{PREFIX}suppress:push", PUSH_GONE)
    assert not env.r.sismember(f"{PREFIX}suppress:sms", SMS_FAIL)
    assert not env.r.sismember(f"{PREFIX}suppress:push", PUSH_BAD)
    assert env.r.sismember(f"{PREFIX}suppress:email", MAIL_OPTOUT)

    # Permanent answers were never retried; the pre-suppressed address never sent.
    logs = {ch: env.sim.log_all(ENDPOINT[ch]) for ch in CHANNELS}
    for ch, addr in (("sms", SMS_FAIL), ("sms", SMS_OPTOUT), ("push", PUSH_GONE),
                     ("push", PUSH_BAD), ("email", MAIL_BAD)):
        assert len(sent_to(logs[ch], addr)) == 1, f"{addr} tried {len(sent_to(logs[ch], addr))} times"
    assert not sent_to(logs["email"], MAIL_OPTOUT)
    receipts = {(f["sub"], f["channel"]): f for _i, f in
                env.r.xrange(f"{PREFIX}receipts") if f.get("job") == "classify-0001"}
    assert receipts[("bad-sms", "sms")]["status"] == "failed"
    assert receipts[("bad-sms", "sms")]["code"] == "21211"
    assert receipts[("optout-sms", "sms")]["status"] == "suppressed"
    assert receipts[("gone-push", "push")]["status"] == "suppressed"

    # A second job to the same audience does not send to the suppressed ones.
    env.sim.reset()
    post_job(env.r, job("classify-0002"))
    h2 = wait_job(env.r, "classify-0002", [d], timeout=60)
    logs = {ch: env.sim.log_all(ENDPOINT[ch]) for ch in CHANNELS}
    assert not sent_to(logs["sms"], SMS_OPTOUT)
    assert not sent_to(logs["push"], PUSH_GONE)
    assert not sent_to(logs["email"], MAIL_OPTOUT)
    assert {k: counter(h2, k) for k in ("suppressed:sms", "suppressed:push",
                                         "suppressed:email")} == \
        {"suppressed:sms": 1, "suppressed:push": 1, "suppressed:email": 1}
    assert counter(h2, "failed") == 3  # permanent failures are per message, not per address
    assert status_total(h2) == int(h2["messages"]) == int(h["messages"])
    d.check_alive()
