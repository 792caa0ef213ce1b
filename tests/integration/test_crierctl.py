"""crierctl against a real redis-server, crier-sim and crierd: import of a CSV
with bad lines, send of a bad and a good job, status, jobs, tail, cancel, top
and the per-segment report, each checked against what Redis holds."""

import csv
import io
import json
import random
import re
import subprocess

from harness import (CHANNELS, PREFIX, Expect, binary, counter, make_population,
                     stream_fields, wait_job, wait_until)

JOB_ID = "ctl-appeal-0001"

GOOD_JOB = {
    "id": JOB_ID,
    "priority": "urgent",
    "audience": {"segments": ["area:A", "area:B"]},
    "channels": ["email", "sms", "push"],
    "sender": {"name": "PC Jane Smith"},
    "message": {
        "subject": "Police appeal: can you help, {{name}}?",
        "text": "Hello {{name}}, we are looking for a missing person. Call 101.",
        "sms": "Police appeal for {{name}}: missing person, call 101 quoting 123.",
        "push": {"title": "Police appeal", "body": "Can you help us find a missing person?"},
    },
}


def ctl(env, *args, stdin=None, timeout=120):
    """Runs crierctl against the test's Redis; returns the CompletedProcess."""
    argv = [binary("crierctl"), "-p", str(env.redis.port)] + [str(a) for a in args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)


def population_csv(subs, segs):
    """The population as crierctl import CSV: one column per field, segments
    joined with ';'."""
    member = {}
    for name, ids in segs.items():
        for sid in ids:
            member.setdefault(sid, []).append(name)
    cols = ["id", "name", "lang", "email", "phone", "push_token", "push_platform",
            "channels", "segments"]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(cols)
    for sid, f in subs.items():
        row = dict(f, id=sid, segments=";".join(member.get(sid, [])))
        w.writerow([row.get(c, "") for c in cols])
    return out.getvalue()


def pairs(line):
    """'status  delivered 3  sent 4' -> {'delivered': 3, 'sent': 4}."""
    return {k: int(v) for k, v in re.findall(r"([a-z_]+) (-?\d+)", line)}


# ---- import --------------------------------------------------------------------

BAD_CSV = (
    "\ufeffid,name,email,phone,channels,min_priority,quiet,push_platform,segments,ward\r\n"
    'good-1,"Smith, Ann",ann@example.org,+447700900001,"email,sms",high,22:00-07:00,,'
    "area:A;area:B,North\r\n"
    "bad-email,Bob,bob@@example.org,+447700900002,email,,,,area:A,South\r\n"
    '"good-2","Multi\nline name",cara@example.org,,email,bulk,,,area:B,\r\n'
    "bad-phone,Dev,dev@example.org,0770O900004,sms,,,,area:A,East\r\n"
    "\r\n"
    "good-3,Zoë Żak,zoe@example.org,+48123456789,,,,,area:C,West\r\n"
    "bad id!,Eve,eve@example.org,,,,,,area:A,\r\n"
    "bad-fields,Finn,finn@example.org\r\n"
    "bad-many,Gosia,g@example.org,,sms;email,sometimes,25:00-07:00,blackberry,area:A,\r\n"
    "good-4,Hal,,07700 900009,sms,urgent,07:30-08:00,,area:A; area:C,\r\n"
)
# line numbers of the bad lines above (line 4-5 is one record; line 7 is blank):
# rejected whole, and imported without the bad field
BAD_LINES = {"bad id!": 9, "bad-fields": 10, "bad-many": 11}
PARTIAL_LINES = {"bad-email": 3, "bad-phone": 6}


def test_import_reports_bad_lines_and_writes_good_ones(env, tmp_path):
    env.start_redis()
    path = tmp_path / "residents.csv"
    path.write_bytes(BAD_CSV.encode("utf-8"))

    dry = ctl(env, "import", "--dry-run", path)
    assert dry.returncode == 1, dry.stderr
    assert ("6 subscribers into 3 segments, 3 lines rejected, 2 imported without some fields"
            in dry.stdout), dry.stdout
    assert env.r.keys(f"{PREFIX}*") == []  # a dry run writes nothing

    res = ctl(env, "import", path)
    assert res.returncode == 1, res.stderr
    assert ("imported 6 subscribers into 3 segments, 3 lines rejected, 2 imported without "
            "some fields" in res.stdout), res.stdout
    errs = res.stderr.splitlines()
    for what, line in {**BAD_LINES, **PARTIAL_LINES}.items():
        assert any(e.startswith(f"{path}:{line}: ") for e in errs), (what, res.stderr)
    assert len(errs) == len(BAD_LINES) + len(PARTIAL_LINES), res.stderr
    by_line = {int(e.split(":")[1]): e for e in errs}
    assert "bad-email imported without email: email (column 3) 'bob@@example.org'" in by_line[3]
    assert "bad-phone imported without phone: phone (column 4) '0770O900004'" in by_line[6]
    assert "line rejected: id (column 1) 'bad id!'" in by_line[9]
    assert "has 3 fields, the header has 10" in by_line[10]
    for col in ("channels", "min_priority", "quiet", "push_platform"):
        assert col in by_line[11]

    assert env.r.hgetall(f"{PREFIX}sub:good-1") == {
        "name": "Smith, Ann", "email": "ann@example.org", "phone": "+447700900001",
        "channels": "email,sms", "min_priority": "high", "quiet": "22:00-07:00",
        "ward": "North"}
    assert env.r.hget(f"{PREFIX}sub:good-2", "name") == "Multi\nline name"
    assert env.r.hget(f"{PREFIX}sub:good-3", "name") == "Zoë Żak"
    assert env.r.hget(f"{PREFIX}sub:good-4", "email") is None
    assert env.r.hget(f"{PREFIX}sub:good-4", "phone") == "+447700900009"  # UK national
    # imported with their good fields only
    assert env.r.hgetall(f"{PREFIX}sub:bad-email") == {
        "name": "Bob", "phone": "+447700900002", "channels": "email", "ward": "South"}
    assert env.r.hgetall(f"{PREFIX}sub:bad-phone") == {
        "name": "Dev", "email": "dev@example.org", "channels": "sms", "ward": "East"}
    for bad in BAD_LINES:
        assert not env.r.exists(f"{PREFIX}sub:{bad}")
    assert env.r.smembers(f"{PREFIX}seg:area:A") == {"good-1", "good-4", "bad-email",
                                                      "bad-phone"}
    assert env.r.smembers(f"{PREFIX}seg:area:B") == {"good-1", "good-2"}
    assert env.r.smembers(f"{PREFIX}seg:area:C") == {"good-3", "good-4"}

    # A clean file exits 0; an empty cell removes the field it names.
    clean = tmp_path / "clean.csv"
    clean.write_text("id,email,ward\ngood-1,ann@example.org,\n")
    res = ctl(env, "import", clean)
    assert res.returncode == 0, res.stderr
    assert "imported 1 subscribers into 0 segments, 0 lines rejected, 0 imported" in res.stdout
    assert env.r.hget(f"{PREFIX}sub:good-1", "ward") is None

    # A header without an id column stops before writing anything.
    nohdr = tmp_path / "noid.csv"
    nohdr.write_text("email,name\nx@example.org,X\n")
    res = ctl(env, "import", nohdr)
    assert res.returncode == 1
    assert f"{nohdr}:1: the header has no 'id' column" in res.stderr


# ---- send --------------------------------------------------------------------

def test_send_bad_file_posts_nothing(env, tmp_path):
    env.start_redis()
    bad = dict(GOOD_JOB, priority="whenever")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    res = ctl(env, "send", path)
    assert res.returncode == 1
    assert "unknown_priority" in res.stderr and "priority" in res.stderr
    notjson = ctl(env, "send", "-", stdin="{not json")
    assert notjson.returncode == 1 and "not_json" in notjson.stderr
    assert env.r.xlen(f"{PREFIX}jobs") == 0

    usage = ctl(env, "send")
    assert usage.returncode == 2
    unknown = ctl(env, "frobnicate")
    assert unknown.returncode == 2
    assert ctl(env, "send", "--help").returncode == 0


def test_unreachable_redis_exits_3(tmp_path):
    from harness import free_port
    argv = [binary("crierctl"), "-p", str(free_port()), "--timeout", "500", "jobs"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert res.returncode == 3
    assert "cannot reach Redis" in res.stderr


def test_cancel_marks_running_job_and_logs_event(env):
    env.start_redis()
    env.r.hset(f"{PREFIX}job:running-1", mapping={"state": "sending", "targeted": 10})
    res = ctl(env, "cancel", "running-1")
    assert res.returncode == 0, res.stderr
    assert "cancel requested" in res.stdout
    assert env.r.hget(f"{PREFIX}job:running-1", "state") == "cancelling"
    events = [f for _i, f in stream_fields(env.r, f"{PREFIX}events")]
    assert events[-1]["job"] == "running-1" and events[-1]["event"] == "cancel_requested"
    assert int(events[-1]["t_ms"]) > 0
    again = ctl(env, "cancel", "running-1")
    assert again.returncode == 0 and "already requested" in again.stdout
    assert env.r.xlen(f"{PREFIX}events") == 1


def test_crierctl_end_to_end(env, tmp_path):
    rng = random.Random(4242)
    subs, segs = make_population(300, rng, areas=("area:A", "area:B", "area:C"), overlap=0.2)
    env.start_redis()
    env.start_sim()
    d = env.crierd()

    # Seed the population through crierctl import.
    pop = tmp_path / "population.csv"
    pop.write_text(population_csv(subs, segs), encoding="utf-8")
    res = ctl(env, "import", pop)
    assert res.returncode == 0, res.stderr
    assert f"imported {len(subs)} subscribers into 3 segments, 0 lines rejected" in res.stdout

    job_path = tmp_path / "appeal.json"
    job_path.write_text(json.dumps(GOOD_JOB))
    res = ctl(env, "send", job_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == JOB_ID
    h = wait_job(env.r, JOB_ID, [d], timeout=90)

    audience = segs["area:A"] + segs["area:B"]
    exp = Expect(subs, audience, CHANNELS)
    assert int(h["messages"]) == exp.total

    # status --once (stdout is not a terminal: one plain block).
    res = ctl(env, "status", "--once", JOB_ID)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert f"job {JOB_ID}  state completed  priority urgent" in lines[0]
    assert "100%" in lines[1] and f"{h['messages']} messages" in lines[1]
    stats = pairs(lines[2])
    assert stats["targeted"] == int(h["targeted"]) == len(set(audience))
    assert stats["messages"] == int(h["messages"])
    status_line = next(ln for ln in lines if ln.startswith("status "))
    got = pairs(status_line)
    for st in ("delivered", "sent", "failed", "suppressed", "skipped"):
        assert got[st] == counter(h, st), st
    for ch in CHANNELS:
        ch_line = next(ln for ln in lines if ln.split()[0] == ch)
        got = pairs(ch_line)
        assert got["sent"] + got["delivered"] == exp.count(ch), ch
    # Not a terminal and no --once: the same single block.
    assert ctl(env, "status", JOB_ID).stdout == res.stdout

    missing = ctl(env, "status", "--once", "no-such-job")
    assert missing.returncode == 4 and "no job" in missing.stderr

    # jobs lists it.
    res = ctl(env, "jobs")
    assert res.returncode == 0, res.stderr
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith(JOB_ID))
    assert row.split()[1:3] == ["completed", "urgent"]

    # tail -n shows its newest receipts, oldest first.
    res = ctl(env, "tail", "-n", "7", "--job", JOB_ID)
    assert res.returncode == 0, res.stderr
    tail_lines = res.stdout.splitlines()
    assert len(tail_lines) == 7
    newest = env.r.xrevrange(f"{PREFIX}receipts", count=7)[::-1]
    for line, (_eid, f) in zip(tail_lines, newest):
        parts = line.split()
        assert parts[1:6] == [f["job"], f["sub"], f["channel"] or "-", f["provider"] or "-",
                              f["status"]], line
    assert ctl(env, "tail", "-n", "3").stdout.count("\n") == 3

    # cancel: finished -> 1, unknown -> 4; nothing changes.
    res = ctl(env, "cancel", JOB_ID)
    assert res.returncode == 1 and "already completed" in res.stderr
    assert env.r.hget(f"{PREFIX}job:{JOB_ID}", "state") == "completed"
    assert ctl(env, "cancel", "no-such-job").returncode == 4

    # top --once: channel, provider and queue lines.
    res = ctl(env, "top", "--once")
    assert res.returncode == 0, res.stderr
    first = {ln.split()[0]: ln.split() for ln in res.stdout.splitlines() if ln.strip()}
    for ch in CHANNELS:
        assert ch in first, res.stdout
        assert all(re.match(r"^[\d.]+$", v) for v in first[ch][1:7]), first[ch]
    for prio in ("urgent", "high", "normal", "bulk"):
        assert prio in first
    assert "ACTIVE" in first

    # report: per-segment figures from the seeded data, total = job counters.
    res = ctl(env, "report", JOB_ID)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["segment"] for r in rows] == ["area:A", "area:B", "total"]
    assert list(rows[0].keys())[:9] == [
        "segment", "residents_targeted", "residents_reached", "messages", "delivered",
        "sent", "failed", "suppressed", "skipped"]
    total = rows[-1]
    assert int(total["residents_targeted"]) == int(h["targeted"])
    assert int(total["messages"]) == int(h["messages"])
    for st in ("delivered", "sent", "failed", "suppressed", "skipped"):
        assert int(total[st]) == counter(h, st), st
    for ch in CHANNELS:
        assert int(total[f"sent_{ch}"]) + int(total[f"delivered_{ch}"]) == exp.count(ch)
    for row in rows[:-1]:
        seg_exp = Expect(subs, segs[row["segment"]], CHANNELS)
        assert int(row["residents_targeted"]) == len(seg_exp.audience)
        assert int(row["messages"]) == seg_exp.total
        assert int(row["skipped"]) == len(seg_exp.skipped)
        assert int(row["residents_reached"]) == len({s for s, _c, _a in seg_exp.messages})
        for ch in CHANNELS:
            assert int(row[f"sent_{ch}"]) + int(row[f"delivered_{ch}"]) == seg_exp.count(ch)
    assert ctl(env, "report", "no-such-job").returncode == 4

    # send --wait of a job without an id: named job-<entry>, followed to the end.
    small = dict(GOOD_JOB, audience={"segments": ["area:C"]}, priority="high")
    del small["id"]
    res = ctl(env, "send", "--wait", "-", stdin=json.dumps(small))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert re.match(r"^job-\d+-\d+$", out[0]), out
    assert any("state completed" in ln for ln in out), res.stdout
    assert env.r.hget(f"{PREFIX}job:{out[0]}", "state") == "completed"

    # status of a job crierd rejected: found in the dead letters, exit 1.
    env.r.xadd(f"{PREFIX}jobs", {"job": json.dumps(dict(GOOD_JOB, id="ctl-bad-1",
                                                        channels=["fax"]))})
    wait_until(lambda: env.r.xlen(f"{PREFIX}jobs:dead") > 0, 30, what="the rejection")
    res = ctl(env, "status", "--once", "ctl-bad-1")
    assert res.returncode == 1 and "rejected (unknown_channel)" in res.stdout

    d.check_alive()


# ---- report: replies and survey answers -------------------------------------------

SURVEY_OPTIONS = ["Yes", "No", "Not sure, ask me later"]
BASE_COLUMNS = [
    "segment", "residents_targeted", "residents_reached", "messages", "delivered", "sent",
    "failed", "suppressed", "skipped", "sent_email", "sent_sms", "sent_push", "sent_whatsapp",
    "delivered_email", "delivered_sms", "delivered_push", "delivered_whatsapp", "failed_email",
    "failed_sms", "failed_push", "failed_whatsapp", "bounced", "expired", "cancelled"]
# (subscriber, SMS body, how the daemon takes it: option number or None for a
# plain reply). A second answer from s9 is a reply but not a second vote.
SMS_SENT = [("s0", "1", 1), ("s5", " NOT SURE, ask me later ", 3), ("s6", "no", 2),
            ("s9", "2", 2), ("s9", "1", None), ("s10", "thanks, all fine here!", None)]
# a survey answer by signed link: counted as an answer, not as a reply
LINK_ANSWERS = [("s2", 3)]


def test_report_replies_and_survey_per_segment(env):
    from test_hooks_http import Hooks, signed_path

    subs = {f"s{i}": {"name": f"Resident {i}", "email": f"s{i}@mail.crier.test",
                      "phone": f"+4477008{i:05d}", "channels": "email,sms"} for i in range(12)}
    subs["s3"].pop("phone")                      # in area:A, email only
    subs["s12"] = {"name": "Resident 12"}        # no address at all: skipped, never reached
    segs = {"area:A": [f"s{i}" for i in range(0, 8)],
            "area:B": [f"s{i}" for i in range(5, 12)],
            "area:C": ["s12"]}
    env.start_redis()
    env.start_sim()
    h = Hooks(env, env.dir)
    res = ctl(env, "import", "-", stdin=population_csv(subs, segs))
    assert res.returncode == 0, res.stderr

    job_id = "ctl-survey-1"
    job = {"id": job_id, "priority": "urgent",
           "audience": {"segments": ["area:A", "area:B", "area:C"]},
           "channels": ["email", "sms"],
           "message": {"subject": "Quick question", "text": "Answer here: {{survey_url}}",
                       "sms": "Do you feel safe at night? Reply 1 Yes, 2 No, 3 Not sure"},
           "survey": {"question": "Do you feel safe at night?", "options": SURVEY_OPTIONS}}
    job_path = env.dir / "survey.json"
    job_path.write_text(json.dumps(job))
    res = ctl(env, "send", "--wait", job_path)
    assert res.returncode == 0, res.stdout + res.stderr
    for sid, f in subs.items():
        if f.get("phone"):
            last = env.r.hget(f"{PREFIX}sms:last", f["phone"])
            assert last and last.startswith(f"{job_id}/") and last.endswith(f"/{sid}"), last

    for n, (sid, body, _opt) in enumerate(SMS_SENT):
        st = h.twilio("/hooks/twilio", {"MessageSid": f"SMrep{n}", "From": subs[sid]["phone"],
                                        "To": "+447700900000", "Body": body})[0]
        assert st == 200, (sid, body)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for sid, opt in LINK_ANSWERS:
        st, _ = h.request("POST", signed_path(h, "s", sid, job_id), f"option={opt}".encode(), form)
        assert st == 200, sid

    # What the report should say, from the seeded data and the answers sent.
    repliers = {sid for sid, _b, _o in SMS_SENT}
    answer = {}                                  # first answer per resident counts
    for sid, opt in [(s, o) for s, _b, o in SMS_SENT if o] + LINK_ANSWERS:
        answer.setdefault(sid, opt)

    def expected(members):
        members = set(members)
        reached = len({s for s, _c, _a in Expect(subs, sorted(members), ["email", "sms"]).messages})
        replies = len(repliers & members)
        answered = {s: o for s, o in answer.items() if s in members}
        out = {"residents_reached": str(reached), "replies": str(replies),
               "reply_rate": f"{replies / reached:.3f}" if reached else "",
               "survey_responses": str(len(answered)),
               "response_rate": f"{len(answered) / reached:.3f}" if reached else ""}
        for i, col in enumerate(("option_1_yes", "option_2_no",
                                 "option_3_not_sure_ask_me_later"), start=1):
            out[col] = str(sum(1 for o in answered.values() if o == i))
        return out

    res = ctl(env, "report", job_id)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split(",") == BASE_COLUMNS + [
        "replies", "reply_rate", "survey_responses", "response_rate", "option_1_yes",
        "option_2_no", "option_3_not_sure_ask_me_later"]
    rows = {r["segment"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert list(rows) == ["area:A", "area:B", "area:C", "total"]
    for seg in ("area:A", "area:B", "area:C"):
        want = expected(segs[seg])
        assert {k: rows[seg][k] for k in want} == want, seg
    want = expected(subs)
    assert {k: rows["total"][k] for k in want} == want
    # the figures the daemon keeps for the whole job agree with the test's
    jh = env.r.hgetall(f"{PREFIX}job:{job_id}")
    assert int(jh["repliers"]) == len(repliers)
    assert int(jh["survey_responses"]) == len(answer)
    assert rows["area:C"]["reply_rate"] == "" and rows["area:C"]["response_rate"] == ""
    assert rows["area:A"]["replies"] == "3" and rows["area:B"]["replies"] == "4"
    assert rows["area:A"]["option_3_not_sure_ask_me_later"] == "2"   # s5 by SMS, s2 by link

    # a job without a survey: reply columns only
    plain = dict(job, id="ctl-plain-1", audience={"segments": ["area:B"]})
    del plain["survey"]
    res = ctl(env, "send", "--wait", "-", stdin=json.dumps(plain))
    assert res.returncode == 0, res.stdout + res.stderr
    assert h.twilio("/hooks/twilio", {"MessageSid": "SMplain", "From": subs["s11"]["phone"],
                                      "To": "+447700900000", "Body": "1"})[0] == 200
    res = ctl(env, "report", "ctl-plain-1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split(",") == BASE_COLUMNS + ["replies", "reply_rate"]
    rows = {r["segment"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    reached = int(rows["area:B"]["residents_reached"])
    assert reached == len(segs["area:B"])
    for seg in ("area:B", "total"):
        assert rows[seg]["replies"] == "1"
        assert rows[seg]["reply_rate"] == f"{1 / reached:.3f}"
    h.d.check_alive()
