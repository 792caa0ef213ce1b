"""Residents' preferences as a user sees them at the providers: channel choice,
min_priority, quiet hours in the resident's time zone (normal jobs wait in
crier:retry, urgent ones go now), language with region fallback, and
suppression lists."""

import datetime
import json
import urllib.parse
from zoneinfo import ZoneInfo

import pytest

import harness
from harness import (CHANNELS, ENDPOINT, PREFIX, Expect, counter, post_job, seed,
                     status_total, stream_fields, wait_job, wait_until)

CH_INDEX = {"email": 0, "sms": 1, "push": 2}


@pytest.fixture(scope="module")
def env():
    """One redis-server, crier-sim and crierd for every test of this module."""
    with harness.running_env("preferences") as e:
        yield e


def message(tag):
    return {"subject": f"Notice {tag} for {{{{name}}}}", "text": "Hello {{name}}.",
            "sms": f"Notice {tag} for {{{{name}}}}.",
            "push": {"title": "Notice", "body": f"Notice {tag} for {{{{name}}}}"}}


def run_job(env, job_id, priority, subscribers, channels=CHANNELS, msg=None, **extra):
    env.sim.reset()
    doc = {"id": job_id, "priority": priority, "audience": {"subscribers": subscribers},
           "channels": list(channels), "message": msg or message(job_id)}
    doc.update(extra)
    post_job(env.r, doc)
    return doc


def receipts_of(r, job_id):
    return [rc for _id, rc in stream_fields(r, f"{PREFIX}receipts") if rc["job"] == job_id]


def sms_bodies(sim):
    out = {}
    for e in sim.log_all("twilio"):
        form = urllib.parse.parse_qs(e["body"])
        out[form["To"][0]] = form["Body"][0]
    return out


def test_channel_choice(env):
    subs = {
        "ch-all": {"name": "All", "email": "all@p.test", "phone": "+447500000001",
                   "push_token": "tok-all", "push_platform": "fcm"},
        "ch-email": {"name": "Em", "email": "em@p.test", "phone": "+447500000002",
                     "push_token": "tok-em", "push_platform": "fcm", "channels": "email"},
        "ch-sms-push": {"name": "SP", "email": "sp@p.test", "phone": "+447500000003",
                        "push_token": "tok-sp", "push_platform": "fcm", "channels": "sms,push"},
        "ch-no-contact": {"name": "NC", "email": "nc@p.test", "channels": "sms"},
        "ch-phone-only": {"name": "PO", "phone": "+447500000005"},
        "ch-push-pref": {"name": "PP", "email": "pp@p.test", "channels": "push,email"},
    }
    seed(env.r, subs)
    ids = list(subs)
    # The job offers email and sms only: push preferences do not add push.
    run_job(env, "pref-channels", "normal", ids, channels=["email", "sms"])
    h = wait_job(env.r, "pref-channels", [env.daemon])
    exp = Expect(subs, ids, ["email", "sms"])
    for ch in ("email", "sms"):
        assert set(env.sim.recipients(ENDPOINT[ch])) == exp.addresses(ch), ch
    assert env.sim.recipients("fcm") == {}
    assert exp.addresses("email") == {"all@p.test", "em@p.test", "pp@p.test"}
    assert exp.addresses("sms") == {"+447500000001", "+447500000003", "+447500000005"}
    assert counter(h, "skipped") == 1  # ch-no-contact: wants sms, has no phone
    codes = {rc["sub"]: rc["code"] for rc in receipts_of(env.r, "pref-channels")
             if rc["status"] == "skipped"}
    assert codes == {"ch-no-contact": "no_channel"}
    assert int(h["messages"]) == exp.total == status_total(h)


def test_min_priority(env):
    subs = {f"mp-{p}": {"name": p, "phone": f"+4475100000{i:02d}", "min_priority": p}
            for i, p in enumerate(("urgent", "high", "normal", "bulk"))}
    subs["mp-none"] = {"name": "none", "phone": "+447510000099"}
    seed(env.r, subs)
    ids = list(subs)
    phone = {s: f["phone"] for s, f in subs.items()}

    run_job(env, "pref-minprio-normal", "normal", ids, channels=["sms"])
    h = wait_job(env.r, "pref-minprio-normal", [env.daemon])
    assert set(env.sim.recipients("twilio")) == {phone["mp-normal"], phone["mp-bulk"],
                                                 phone["mp-none"]}
    codes = {rc["sub"]: rc["code"] for rc in receipts_of(env.r, "pref-minprio-normal")
             if rc["status"] == "skipped"}
    assert codes == {"mp-urgent": "below_min_priority", "mp-high": "below_min_priority"}
    assert counter(h, "skipped") == 2 and int(h["messages"]) == 5 == status_total(h)

    run_job(env, "pref-minprio-urgent", "urgent", ids, channels=["sms"])
    h = wait_job(env.r, "pref-minprio-urgent", [env.daemon])
    assert set(env.sim.recipients("twilio")) == set(phone.values())
    assert counter(h, "skipped") == 0


def window_around_now(tz):
    """A quiet window "HH:MM-HH:MM" from two hours before to two hours after
    the current local time in tz (it may wrap past midnight), and the unix ms
    at which it ends."""
    now = datetime.datetime.now(ZoneInfo(tz))
    start, end = now - datetime.timedelta(hours=2), now + datetime.timedelta(hours=2)
    end = end.replace(second=0, microsecond=0)
    return f"{start:%H:%M}-{end:%H:%M}", end.timestamp() * 1000


def test_quiet_hours(env):
    ny_window, ny_end = window_around_now("America/New_York")
    ldn_window, ldn_end = window_around_now("Europe/London")
    tokyo_window, _ = window_around_now("Asia/Tokyo")
    subs = {
        # Inside quiet hours in their own zone.
        "q-ny": {"name": "NY", "phone": "+447520000001", "quiet": ny_window,
                 "tz": "America/New_York"},
        # No tz: Europe/London.
        "q-ldn": {"name": "Ldn", "phone": "+447520000002", "quiet": ldn_window},
        # A window that is not now: sent.
        "q-not-now": {"name": "Later", "phone": "+447520000003",
                      "quiet": ldn_window.split("-")[1] + "-" + ldn_window.split("-")[0]},
        # Tokyo's window read in London's time would not hold now.
        "q-tokyo": {"name": "Tokyo", "phone": "+447520000004", "quiet": tokyo_window,
                    "tz": "Asia/Tokyo"},
        "q-none": {"name": "None", "phone": "+447520000005"},
    }
    seed(env.r, subs)
    ids = list(subs)
    phone = {s: f["phone"] for s, f in subs.items()}
    quiet = {"q-ny", "q-ldn", "q-tokyo"}

    job_id = "pref-quiet-normal"
    run_job(env, job_id, "normal", ids, channels=["sms"])

    def parked():
        members = [m for m in env.r.zrange(f"{PREFIX}retry", 0, -1, withscores=True)
                   if m[0].startswith(job_id + "|")]
        return members if len(members) == len(quiet) else None

    members = wait_until(parked, 30, what="quiet-hours messages parked in crier:retry")
    wait_until(lambda: len(env.sim.recipients("twilio")) >= len(ids) - len(quiet), 30,
               what="the others to be sent")
    got = env.sim.recipients("twilio")
    assert set(got) == {phone[s] for s in ids if s not in quiet}
    by_sub = {}
    for member, score in members:
        job, _pos, ch, sub, _attempt, prio = member.split("|")
        assert (job, ch, prio) == (job_id, str(CH_INDEX["sms"]), "2"), member
        by_sub[sub] = score
    assert set(by_sub) == quiet
    # Parked until the window ends (minute precision).
    assert abs(by_sub["q-ny"] - ny_end) < 61000, (by_sub["q-ny"], ny_end)
    assert abs(by_sub["q-ldn"] - ldn_end) < 61000, (by_sub["q-ldn"], ldn_end)
    h = harness.job_hash(env.r, job_id)
    assert counter(h, "parked") == len(quiet)
    assert h["state"] == "sending"

    # The same residents, urgent: quiet hours do not hold it back.
    run_job(env, "pref-quiet-urgent", "urgent", ids, channels=["sms"])
    h = wait_job(env.r, "pref-quiet-urgent", [env.daemon])
    assert set(env.sim.recipients("twilio")) == set(phone.values())
    assert counter(h, "parked") == 0
    assert not [m for m in env.r.zrange(f"{PREFIX}retry", 0, -1)
                if m.startswith("pref-quiet-urgent|")]
    # The normal job's residents still wait.
    assert len(parked()) == len(quiet)
    assert not set(env.sim.recipients("twilio")) - set(phone.values())


def test_language_selection(env):
    langs = {"l-en": "en", "l-pl": "pl", "l-pl-pl": "pl-PL", "l-ptbr": "pt-BR",
             "l-ptpt": "pt-PT", "l-de": "de", "l-none": None}
    subs = {}
    for i, (s, lang) in enumerate(langs.items()):
        subs[s] = {"name": s, "phone": f"+4475300000{i:02d}", "email": f"{s}@p.test",
                   "channels": "sms,email"}
        if lang:
            subs[s]["lang"] = lang
    seed(env.r, subs)
    msg = {"lang": "en", "subject": "Road closed, {{name}}", "text": "Hello {{name}}.",
           "sms": "Road closed, {{name}}.",
           "translations": {
               "pl": {"subject": "Droga zamknieta, {{name}}", "text": "Czesc {{name}}.",
                      "sms": "Droga zamknieta, {{name}}."},
               "pt-BR": {"sms": "Estrada fechada, {{name}}."}}}
    run_job(env, "pref-lang", "normal", list(subs), channels=["sms", "email"], msg=msg)
    wait_job(env.r, "pref-lang", [env.daemon])
    want = {"l-en": "Road closed", "l-pl": "Droga zamknieta", "l-pl-pl": "Droga zamknieta",
            "l-ptbr": "Estrada fechada", "l-ptpt": "Road closed", "l-de": "Road closed",
            "l-none": "Road closed"}
    bodies = sms_bodies(env.sim)
    for s, prefix in want.items():
        assert bodies[subs[s]["phone"]] == f"{prefix}, {s}.", (s, bodies[subs[s]["phone"]])
    subjects = {}
    for e in env.sim.log_all("sendgrid"):
        doc = json.loads(e["body"])
        for p in doc["personalizations"]:  # a batched request: tags filled per resident
            subject = p.get("subject") or doc.get("subject")
            for tag, value in p.get("substitutions", {}).items():
                subject = subject.replace(tag, value)
            subjects[p["to"][0]["email"]] = subject
    assert subjects["l-pl-pl@p.test"] == "Droga zamknieta, l-pl-pl"
    # pt-BR translates the SMS only: its email falls back to the default.
    assert subjects["l-ptbr@p.test"] == "Road closed, l-ptbr"


def test_suppression(env):
    subs = {
        "s-sms": {"name": "A", "email": "s-sms@p.test", "phone": "+447540000001"},
        "s-email": {"name": "B", "email": "s-email@p.test", "phone": "+447540000002"},
        "s-push": {"name": "C", "push_token": "tok-s-push", "push_platform": "fcm",
                   "phone": "+447540000003"},
        "s-clear": {"name": "D", "email": "s-clear@p.test", "phone": "+447540000004",
                    "push_token": "tok-s-clear", "push_platform": "fcm"},
    }
    suppress = {"sms": ["+447540000001"], "email": ["s-email@p.test"], "push": ["tok-s-push"]}
    seed(env.r, subs, suppress=suppress)
    ids = list(subs)
    run_job(env, "pref-suppress", "high", ids)
    h = wait_job(env.r, "pref-suppress", [env.daemon])
    exp = Expect(subs, ids, CHANNELS, suppress=suppress)
    for ch in CHANNELS:
        got = set(env.sim.recipients(ENDPOINT[ch]))
        assert got == exp.addresses(ch), ch
        assert not got & set(suppress[ch]), ch
    assert counter(h, "suppressed") == 3 == len(exp.suppressed)
    for ch in CHANNELS:
        assert counter(h, f"suppressed:{ch}") == 1, ch
    rows = {(rc["sub"], rc["channel"]) for rc in receipts_of(env.r, "pref-suppress")
            if rc["status"] == "suppressed"}
    assert rows == {("s-sms", "sms"), ("s-email", "email"), ("s-push", "push")}
    assert int(h["messages"]) == exp.total == status_total(h)
