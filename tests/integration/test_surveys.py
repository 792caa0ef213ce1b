"""Multi-question surveys ("Your Views") against real redis-server, crier-sim
and crierd: two waves of a five-question survey to residents across four
areas and three demographic families, answered at random by the signed form
(partial answers, changes of mind, replayed posts) and by SMS one question at
a time (with STOP mid-survey). Every score, rate and distribution that
`crierctl survey scores` prints is checked against a brute-force computation
from the answers the test gave; small cells are suppressed; the trend shows
the change; the page is read with a real HTML parser; a follow-up job to
"answered Disagree to safe" reaches exactly those residents."""

import base64
import csv
import hashlib
import hmac
import html.parser
import http.client
import io
import json
import os
import random
import subprocess
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from harness import (PREFIX, binary, dead_entry, free_port, post_job, seed, stream_fields,
                     wait_job, wait_until)

LINK_SECRET = "link-secret-for-tests-0123"
TWILIO_TOKEN = "test-token"
VIEWER = "viewer-token-0123456789abcdef"
N = int(os.environ.get("SURVEY_TEST_N", "20000"))
AREAS = ["N1", "N2", "N3", "N4"]
MIN_CELL = 10

SCALE = ["Strongly agree", "Agree", "Neither", "Disagree", "Strongly disagree"]
SCORE = [100, 75, 50, 25, 0]
QUESTIONS = [
    ("understand", "The police understand the issues that affect this community"),
    ("safe", "I feel safe where I live"),
    ("informed", "I am kept informed about policing in my area"),
    ("good_job", "The police do a good job in my area"),
    ("trust", "I trust my local police"),
]
WELSH = [
    ("understand", "Mae'r heddlu yn deall y materion sy'n effeithio ar y gymuned hon"),
    ("safe", "Rwy'n teimlo'n ddiogel lle rwy'n byw"),
    ("informed", "Rwy'n cael gwybod am blismona yn fy ardal"),
    ("good_job", "Mae'r heddlu yn gwneud gwaith da yn fy ardal"),
    ("trust", "Rwy'n ymddiried yn fy heddlu lleol"),
]
WELSH_SCALE = ["Cytuno'n gryf", "Cytuno", "Dim un", "Anghytuno", "Anghytuno'n gryf"]


def survey_doc(wave):
    return {
        "id": "your-views", "wave": wave,
        "questions": [{"id": q, "text": t, "scale": SCALE, "score": SCORE} for q, t in QUESTIONS],
        "free_text": {"id": "concerns", "text": "What matters most to you where you live?"},
    }


def wave_job(job_id, wave):
    return {
        "id": job_id, "priority": "high",
        "audience": {"segments": [f"area:{a}" for a in AREAS]},
        "channels": ["email", "sms"],
        "message": {
            "subject": "Your Views", "text": "Tell us what you think: {{survey_url}}",
            "sms": "Your Views. " + QUESTIONS[0][1] + "? Reply 1 Strongly agree to 5 Strongly "
                   "disagree",
            "translations": {"cy": {
                "subject": "Eich Barn", "text": "Dywedwch wrthym: {{survey_url}}",
                "sms": "Eich Barn. " + WELSH[0][1],
                "survey": {"questions": [{"text": t, "scale": WELSH_SCALE} for _, t in WELSH],
                           "free_text": {"text": "Beth sydd bwysicaf i chi?"}}}}},
        "survey": survey_doc(wave),
    }


# ---- population -------------------------------------------------------------------

def population():
    """N residents: email or (every tenth) SMS only, a few with no address;
    four areas, three demographic families (one with a tiny segment)."""
    subs, segs = {}, {}
    for i in range(N):
        sid = f"r{i}"
        f = {"name": f"Resident {i}"}
        if i % 10 == 0:
            f.update(phone=f"+4477{i:08d}", channels="sms")
        elif i % 50 != 7:
            f.update(email=f"{sid}@mail.crier.test", channels="email")
        else:
            f.update(channels="email")                  # no address: not reached
        if i % 7 == 3:
            f["lang"] = "cy"
        subs[sid] = f
        age = "90+" if i % 1000 == 1 else ["18-34", "35-54", "55+"][i % 3]
        eth = ["a", "b", "c"][(i // 3) % 3]
        dis = "yes" if i % 5 == 0 else "no"
        for name in (f"area:{AREAS[i % 4]}", f"demo:age:{age}", f"demo:ethnicity:{eth}",
                     f"demo:disability:{dis}"):
            segs.setdefault(name, []).append(sid)
    return subs, segs


# ---- clients -------------------------------------------------------------------------

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def survey_path(sub, job, lang="en"):
    payload = f"2|s|{sub}|{job}|{int(time.time()) + 86400}|{lang}".encode()
    mac = hmac.new(LINK_SECRET.encode(), payload, hashlib.sha256).digest()
    return f"/s/{b64(payload)}.{b64(mac)}"


class Site:
    def __init__(self, port):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method, path, body=b"", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def post_form(self, path, fields):
        return self.request("POST", path, urllib.parse.urlencode(fields).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def sms(self, phone, body, sid):
        params = [("Body", body), ("From", phone), ("MessageSid", sid)]
        data = self.base + "/hooks/twilio" + "".join(k + v for k, v in sorted(params))
        sig = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), data.encode(),
                                        hashlib.sha1).digest()).decode()
        return self.request("POST", "/hooks/twilio", urllib.parse.urlencode(params).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded",
                             "X-Twilio-Signature": sig})[0]


def ctl(env, *args):
    argv = [binary("crierctl"), "-p", str(env.redis.port)] + [str(a) for a in args]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


# ---- the page, read by an HTML parser -------------------------------------------

class PageCheck(html.parser.HTMLParser):
    """Collects what the accessibility checks need: the html lang, forms,
    fieldsets with their legends, inputs and whether each is inside a label
    or named by one, scripts, and the order of focusable elements."""

    def __init__(self):
        super().__init__()
        self.lang = None
        self.forms = []
        self.fieldsets = 0
        self.legends = []
        self.in_legend = False
        self.label_depth = 0
        self.label_for = set()
        self.inputs = []          # (type, name, value, labelled, id, checked)
        self.scripts = 0
        self.focus_order = []
        self.tabindex = 0
        self.div_lang = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "tabindex" in a:
            self.tabindex += 1
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "div" and "lang" in a:
            self.div_lang = a["lang"]
        elif tag == "form":
            self.forms.append(a)
        elif tag == "fieldset":
            self.fieldsets += 1
        elif tag == "legend":
            self.in_legend = True
            self.legends.append("")
        elif tag == "label":
            self.label_depth += 1
            if "for" in a:
                self.label_for.add(a["for"])
        elif tag == "script":
            self.scripts += 1
        if tag in ("input", "textarea", "button", "select"):
            self.inputs.append((tag if tag != "input" else a.get("type"), a.get("name"),
                                a.get("value"), self.label_depth > 0, a.get("id"),
                                "checked" in a))
            self.focus_order.append(a.get("name") or tag)

    def handle_endtag(self, tag):
        if tag == "legend":
            self.in_legend = False
        elif tag == "label":
            self.label_depth -= 1

    def handle_data(self, data):
        if self.in_legend:
            self.legends[-1] += data


def check_page(text, lang, questions, scale, checked=None):
    p = PageCheck()
    p.feed(text)
    assert p.lang == lang or p.div_lang == lang
    assert len(p.forms) == 1 and p.forms[0].get("method") == "post"
    assert "action" not in p.forms[0] or p.forms[0]["action"] in ("", None)
    assert p.scripts == 0 and p.tabindex == 0      # no script needed, natural keyboard order
    assert p.fieldsets == len(questions)
    assert [x.strip() for x in p.legends] == [t for _, t in questions]
    radios = [x for x in p.inputs if x[0] == "radio"]
    assert len(radios) == len(questions) * len(scale)
    assert all(x[3] for x in radios), "every radio button sits in its label"
    # keyboard order follows the questions, then the free text, then the button
    order = [x for x in p.focus_order]
    assert order[:len(radios)] == [f"q.{q}" for q, _ in questions for _ in scale]
    assert order[len(radios):] == ["free", "button"]
    area = [x for x in p.inputs if x[0] == "textarea"]
    assert len(area) == 1 and area[0][4] in p.label_for
    if checked is not None:
        got = {x[1][2:]: int(x[2]) for x in radios if x[5]}
        assert got == checked
    assert any(x[0] == "button" for x in p.inputs)


# ---- brute force -------------------------------------------------------------------

def expected_scores(answers, reached, cells, waves):
    """{(wave, segment): row dict} computed from the raw answers: the same
    columns crierctl prints."""
    out = {}
    prev_conf = {}
    for w in waves:
        for seg, members in cells.items():
            resp = [s for s in members if s in answers[w] and
                    (answers[w][s]["q"] or answers[w][s].get("text"))]
            row = {"survey": "your-views", "wave": w, "segment": seg}
            nreached = sum(1 for s in members if s in reached[w])
            if len(resp) < MIN_CELL:
                row["suppressed"] = "1"
                out[(w, seg)] = row
                prev_conf[seg] = None
                continue
            row.update(suppressed="0", residents_reached=str(nreached),
                       respondents=str(len(resp)))
            row["response_rate"] = f"{len(resp) / nreached:.3f}" if nreached else ""
            means = []
            for q, _ in QUESTIONS:
                steps = [answers[w][s]["q"][q] for s in resp if q in answers[w][s]["q"]]
                if steps:
                    means.append(sum(SCORE[k - 1] for k in steps) / len(steps))
                if len(steps) >= MIN_CELL:
                    row[f"{q}:n"] = str(len(steps))
                    row[f"{q}:mean"] = f"{sum(SCORE[k - 1] for k in steps) / len(steps):.2f}"
                    for k in range(1, 6):
                        row[f"{q}:{k}"] = str(steps.count(k))
            conf = sum(means) / len(means) if means else None
            row["confidence"] = f"{conf:.2f}" if conf is not None else ""
            if conf is not None and prev_conf.get(seg) is not None:
                row["change"] = f"{conf - prev_conf[seg]:.2f}"
            prev_conf[seg] = conf
            out[(w, seg)] = row
    return out


def printed_scores(text):
    out = {}
    for row in csv.DictReader(io.StringIO(text)):
        out[(row["wave"], row["segment"])] = {k: v for k, v in row.items() if v != ""}
    return out


# ---- the test ----------------------------------------------------------------------

def test_your_views_two_waves(env, tmp_path):
    rnd = random.Random(23)
    env.start_redis()
    env.start_sim()
    port = free_port()
    d = env.crierd(http={"listen": f"127.0.0.1:{port}", "max_connections": 256},
                   webhooks={"public_url": f"http://127.0.0.1:{port}", "window_s": 300},
                   links={"secret": LINK_SECRET, "ttl_days": 30},
                   fanout={"batch_size": 1000, "max_batches": 16},
                   receipts={"maxlen": 5000000},
                   dashboard={"tokens": {"alice": {"token": VIEWER, "role": "viewer"}}})
    site = Site(port)
    subs, segs = population()
    seed(env.r, subs, segs)

    # a survey that breaks a limit is dead-lettered with its reason
    bad = wave_job("bad-survey", "2026-05")
    bad["survey"]["questions"][1]["score"] = [100, 50]
    entry = post_job(env.r, bad)
    wait_until(lambda: dead_entry(env.r, entry) is not None, what="bad survey dead-lettered")
    dead = dead_entry(env.r, entry)
    assert dead["code"] == "bad_survey" and "survey.questions[1].score" in dead["error"]

    waves = ["2026-05", "2026-11"]
    answers = {w: {} for w in waves}   # wave -> sub -> {"q": {qid: step}, "text": str}
    reached = {}
    stopped = set()
    sms_subs = [s for s, f in subs.items() if "phone" in f]
    web_subs = [s for s, f in subs.items() if "email" in f]
    phone_of = {s: subs[s]["phone"] for s in sms_subs}
    msg_id = [0]

    def sms_last(sid):
        return env.r.hget(f"{PREFIX}sms:last", phone_of[sid])

    for wi, w in enumerate(waves):
        job_id = f"views-{w}"
        post_job(env.r, wave_job(job_id, w))
        wait_job(env.r, job_id, [d], timeout=120)
        reached[w] = {s for s, f in subs.items()
                      if ("email" in f) or ("phone" in f and s not in stopped)}
        ans = answers[w]
        # the second wave leans towards disagreeing in area N2: its score falls
        bias = {a: 0 for a in AREAS}
        if wi == 1:
            bias["N2"] = 1

        # -- by the form: partial answers, changes of mind, replays ------------
        web = rnd.sample(web_subs, N // 5 if wi == 0 else N * 9 // 50)
        posts = []
        for s in web:
            area = AREAS[int(s[1:]) % 4]
            fields = {}
            for q, _ in QUESTIONS:
                if rnd.random() < 0.85:
                    fields[f"q.{q}"] = str(min(5, rnd.randint(1, 5) + bias[area]))
            if rnd.random() < 0.2:
                fields["free"] = f"Speeding on my street ({s})"
            if not fields:
                fields[f"q.{QUESTIONS[0][0]}"] = "3"
            posts.append((s, fields))
        later = []
        for s, fields in rnd.sample(posts, N * 3 // 100):
            change = {f"q.{QUESTIONS[1][0]}": str(rnd.randint(1, 5))}
            if rnd.random() < 0.3:
                change["free"] = ""                    # takes back the free text
            later.append((s, change))
        replays = rnd.sample(posts, N * 3 // 200)

        def send(item, job_id=job_id):
            s, fields = item
            lang = subs[s].get("lang", "en")
            st, _ = site.post_form(survey_path(s, job_id, lang), fields)
            return st

        with ThreadPoolExecutor(max_workers=6) as pool:
            assert set(pool.map(send, posts)) == {200}
            assert set(pool.map(send, replays)) == {200}
            assert set(pool.map(send, later)) == {200}
        for s, fields in posts + later:
            a = ans.setdefault(s, {"q": {}})
            for k, v in fields.items():
                if k == "free":
                    if v:
                        a["text"] = v
                    else:
                        a.pop("text", None)
                else:
                    a["q"][k[2:]] = int(v)

        # -- by SMS: one question at a time, some stop half-way, some say STOP --
        sms_people = [s for s in rnd.sample(sms_subs, 120) if s not in stopped]
        plan = {}
        for s in sms_people:
            plan[s] = rnd.randint(1, 5)           # how many questions they answer
        stop_now = set(rnd.sample(sms_people, 8))
        for qi in range(5):
            askers = [s for s in sms_people if plan[s] > qi]
            if not askers:
                break
            before = {s: sms_last(s) for s in askers}
            for s in askers:
                area = AREAS[int(s[1:]) % 4]
                step = min(5, rnd.randint(1, 5) + bias[area])
                if s in stop_now and qi == plan[s] - 1:
                    msg_id[0] += 1
                    assert site.sms(phone_of[s], "STOP", f"SM{msg_id[0]}") == 200
                    stopped.add(s)
                    plan[s] = qi                   # no more answers
                    continue
                body = str(step) if rnd.random() < 0.7 else SCALE[step - 1].lower()
                msg_id[0] += 1
                assert site.sms(phone_of[s], body, f"SM{msg_id[0]}") == 200
                if rnd.random() < 0.1:             # the provider retries the webhook
                    assert site.sms(phone_of[s], body, f"SM{msg_id[0]}") == 200
                ans.setdefault(s, {"q": {}})["q"][QUESTIONS[qi][0]] = step
            # the next question arrives as a new SMS job to the resident
            waiting = [s for s in askers if plan[s] > qi + 1 and qi + 1 < 5]
            wait_until(lambda: all(sms_last(s) != before[s] for s in waiting), timeout=90,
                       what=f"question {qi + 2} sent by SMS")
        # nothing is sent to those who said STOP
        for s in stop_now:
            assert env.r.sismember(f"{PREFIX}suppress:sms", phone_of[s])

    # the stored answers are the last answers given, once per resident
    for w in waves:
        for q, _ in QUESTIONS:
            got = {k: int(v) for k, v in
                   env.r.hgetall(f"{PREFIX}survey:your-views:{w}:q:{q}").items()}
            assert got == {s: a["q"][q] for s, a in answers[w].items() if q in a["q"]}

    # every answer action is in crier:replies, attributed to its job and wave
    entries = [f for _, f in stream_fields(env.r, f"{PREFIX}replies") if f["type"] == "survey"]
    by_sms = [f for f in entries if f["channel"] == "sms"]
    assert by_sms and all(f["body"] and f["from"] and f["job"].startswith("views-")
                          for f in by_sms)
    assert {f["wave"] for f in entries} == set(waves)
    assert all(f["job"] == f"views-{f['wave']}" for f in entries)

    # -- scores against brute force -------------------------------------------
    cells = {"all": list(subs)}
    for name, members in segs.items():
        cells[name] = members
    exp = expected_scores(answers, reached, cells, waves)
    out = ctl(env, "survey", "scores", "your-views", "--by", "area:*", "--by", "demo:age:*",
              "--by", "demo:ethnicity:*", "--by", "demo:disability:*")
    got = printed_scores(out)
    assert set(got) == set(exp)
    for k in exp:
        assert got[k] == exp[k], (k, got[k], exp[k])
    assert got[("2026-11", "demo:age:90+")]["suppressed"] == "1"
    assert "Speeding" not in out
    one = printed_scores(ctl(env, "survey", "scores", "your-views", "--wave", "2026-11",
                             "--by", "area:*"))
    assert set(one) == {("2026-11", "all")} | {("2026-11", f"area:{a}") for a in AREAS}
    assert all(one[k] == exp[k] for k in one)

    # -- trend ------------------------------------------------------------------
    trend = list(csv.DictReader(io.StringIO(ctl(env, "survey", "trend", "your-views",
                                                "--by", "area:*", "--csv"))))
    for row in trend:
        a, b = exp[("2026-05", row["segment"])], exp[("2026-11", row["segment"])]
        assert row["2026-05"] == a["confidence"] and row["2026-11"] == b["confidence"]
        assert float(row["change"]) == float(b["change"])
    n2 = next(r for r in trend if r["segment"] == "area:N2")
    assert float(n2["change"]) < -5
    table = ctl(env, "survey", "trend", "your-views", "--by", "area:*")
    assert "area:N2" in table and n2["change"] in table

    # -- reach by community: every segment of a family, targeted or not ----------
    rep = {r["segment"]: r for r in csv.DictReader(io.StringIO(
        ctl(env, "report", "views-2026-11", "--by", "demo:*")))}
    demo = {k: v for k, v in segs.items() if k.startswith("demo:")}
    assert set(rep) == set(demo) | {"total"}
    resp2 = {s for s, a in answers["2026-11"].items() if a["q"] or a.get("text")}
    for name, members in demo.items():
        row = rep[name]
        assert int(row["residents_targeted"]) == len(members), name
        assert int(row["residents_reached"]) == len(reached["2026-11"] & set(members)), name
        assert int(row["responded"]) == len(resp2 & set(members)), name
    assert int(rep["total"]["responded"]) == len(resp2)
    # the same table for the dashboard's job page
    auth = {"Authorization": f"Bearer {VIEWER}"}
    st, body = site.request("GET", "/api/v1/jobs/views-2026-11/report.csv?by=demo%3A*",
                            headers=auth)
    assert st == 200 and body == ctl(env, "report", "views-2026-11", "--by", "demo:*")
    assert site.request("GET", "/api/v1/jobs/views-2026-11/report.csv?by=a%20b",
                        headers=auth)[0] == 400

    # -- free text for the team, never in aggregates ------------------------------
    texts = list(csv.DictReader(io.StringIO(ctl(env, "survey", "answers", "your-views",
                                                "--wave", "2026-11", "--segment", "area:N1"))))
    want = {s: a["text"] for s, a in answers["2026-11"].items()
            if a.get("text") and int(s[1:]) % 4 == 0}
    assert {r["resident"]: r["answer"] for r in texts} == want

    # -- the page ---------------------------------------------------------------------
    s = next(s for s in web_subs if s in answers["2026-11"] and "lang" not in subs[s])
    st, page = site.request("GET", survey_path(s, "views-2026-11"))
    assert st == 200
    check_page(page, "en", QUESTIONS, SCALE, answers["2026-11"][s]["q"])
    cy = next(s for s in web_subs if subs[s].get("lang") == "cy")
    st, page = site.request("GET", survey_path(cy, "views-2026-11", "cy"))
    assert st == 200
    check_page(page, "cy", WELSH, WELSH_SCALE)
    assert site.post_form(survey_path(cy, "views-2026-11", "cy"), {"q.safe": "9"})[0] == 400
    assert site.post_form(survey_path(cy, "views-2026-11", "cy"), {})[0] == 400

    # -- a wave that has closed takes no answer -----------------------------------
    closed = wave_job("closed-1", "2025-11")
    closed["survey"]["id"] = "closed-survey"
    closed["survey"]["closes_at"] = "2026-01-01T00:00:00Z"
    closed["audience"] = {"subscribers": [web_subs[0]]}
    post_job(env.r, closed)
    wait_job(env.r, "closed-1", [d], timeout=60)
    assert site.request("GET", survey_path(web_subs[0], "closed-1"))[0] == 410
    assert site.post_form(survey_path(web_subs[0], "closed-1"), {"q.safe": "1"})[0] == 410
    assert not env.r.exists(f"{PREFIX}survey:closed-survey:2025-11:q:safe")

    # -- "you said, we did": residents who answered Disagree to safe -------------
    disagree = {s for s, a in answers["2026-11"].items() if a["q"].get("safe") == 4}
    follow = {"id": "you-said-safe", "priority": "high",
              "audience": {"answered": {"survey": "your-views", "wave": "2026-11",
                                        "question": "safe", "options": [4]}},
              "channels": ["email", "sms"],
              "message": {"subject": "You said, we did", "text": "We have added patrols.",
                          "sms": "You said, we did: we have added patrols."}}
    post_job(env.r, follow)
    h = wait_job(env.r, "you-said-safe", [d], timeout=60)
    assert int(h["targeted"]) == len(disagree)
    told = {f["sub"] for _, f in stream_fields(env.r, f"{PREFIX}receipts")
            if f.get("job") == "you-said-safe" and f.get("status") == "sent"}
    assert told == {s for s in disagree if s not in stopped}
