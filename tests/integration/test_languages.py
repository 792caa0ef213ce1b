"""One language per message, and the resident's pages in it. A job with a
partial Welsh translation (subject, text and sms, a push title only, the
survey) and a Polish one (email and survey) goes to residents who read
Welsh, English and Polish; what crier-sim received must be one language in
every part of each message, and the /u/ and /s/ pages fetched from crierd
must be in the language the message was written in: Welsh fixed words for
Welsh, the Polish survey under English fixed words for Polish. An SMS answer
in the words of the Welsh options counts as that option."""

import base64
import hashlib
import hmac
import http.client
import json
import re
import urllib.parse

from harness import PREFIX, free_port, post_job, seed, wait_job

JOB_ID = "lang-partial-0001"
PUBLIC = "https://alerts.crier.test"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

RESIDENTS = {
    # id: lang (None: unset)
    "cy0": "cy", "cy1": "cy-GB", "cy2": "CY",
    "en0": "en", "en1": None,
    "pl0": "pl", "de0": "de",
}

JOB = {
    "id": JOB_ID, "priority": "urgent",
    "audience": {"subscribers": sorted(RESIDENTS)},
    "channels": ["email", "sms", "push"],
    "sender": {"name": "PC Jane Smith"},
    "message": {
        "lang": "en",
        "subject": "Flood warning for {{name}}",
        "text": "Hello {{name}}, the river is rising. Tell us: {{survey_url}} "
                "Stop these: {{unsubscribe_url}}",
        "html": "<p>Hello {{name}}, the river is rising.</p>"
                "<p><a href=\"{{survey_url}}\">Tell us</a></p>",
        "sms": "Flood warning: the river is rising.",
        "push": {"title": "Flood warning", "body": "The river is rising, {{name}}."},
        "translations": {
            "cy": {
                "subject": "Rhybudd llifogydd i {{name}}",
                "text": "Helo {{name}}, mae'r afon yn codi. Dywedwch wrthym: {{survey_url}} "
                        "Atal y rhain: {{unsubscribe_url}}",
                "sms": "Rhybudd llifogydd: mae'r afon yn codi.",
                "push": {"title": "Rhybudd llifogydd"},
                "survey": {"question": "Ydych chi'n teimlo'n ddiogel?",
                           "options": ["Ydw", "Nac ydw", "Ddim yn siŵr"]},
            },
            "pl": {
                "subject": "Ostrzeżenie powodziowe dla {{name}}",
                "text": "Dzień dobry {{name}}, rzeka wzbiera. Powiedz nam: {{survey_url}}",
                "html": "<p>Dzień dobry {{name}}, rzeka wzbiera.</p>"
                        "<p><a href=\"{{survey_url}}\">Powiedz nam</a></p>",
                "survey": {"question": "Czy czujesz się bezpiecznie?",
                           "options": ["Tak", "Nie", "Nie wiem"]},
            },
        },
    },
    "survey": {"question": "Do you feel safe?", "options": ["Yes", "No", "Not sure"]},
}

WELSH = ("Rhybudd", "Helo", "afon")
ENGLISH = ("Flood warning", "Hello", "river")
POLISH = ("Ostrzeżenie", "Dzień dobry", "rzeka")


def residents():
    subs = {}
    for i, (sid, lang) in enumerate(RESIDENTS.items()):
        f = {"name": f"Resident {sid}", "email": f"{sid}@mail.crier.test",
             "phone": f"+4477009{i:05d}", "push_token": f"tok-{sid}", "push_platform": "fcm"}
        if lang is not None:
            f["lang"] = lang
        subs[sid] = f
    return subs


def language_of(text):
    langs = {name for name, words in (("cy", WELSH), ("en", ENGLISH), ("pl", POLISH))
             if any(w in text for w in words)}
    assert len(langs) == 1, f"not one language: {langs} in {text!r}"
    return langs.pop()


def emails(sim):
    """{address: (subject, {type: value}, personalization)} as each resident
    receives it (SendGrid's substitutions applied)."""
    out = {}
    for e in sim.log_all("sendgrid"):
        if e["status"] != 202:
            continue
        doc = json.loads(e["body"])
        for p in doc["personalizations"]:
            def sub(s, p=p):
                for tag, value in (p.get("substitutions") or {}).items():
                    s = s.replace(tag, value)
                return s
            parts = {c["type"]: sub(c["value"]) for c in doc["content"]}
            out[p["to"][0]["email"]] = (sub(doc["subject"]), parts, p)
    return out


def by_recipient(entries):
    out = {}
    for e in entries:
        if e["status"] in (200, 201, 202):
            for r in e.get("recipients") or []:
                out[r] = e
    return out


def get(port, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def link_path(text, kind):
    m = re.search(re.escape(PUBLIC) + "/" + kind + r"/[A-Za-z0-9_.-]+", text)
    assert m, f"no /{kind}/ link in {text!r}"
    return urllib.parse.urlsplit(m.group(0)).path


def html_lang(page):
    m = re.search(r'<html lang="([^"]+)"', page)
    assert m, page
    return m.group(1)


def test_partial_translations_one_language_per_message_and_pages(env):
    subs = residents()
    port = free_port()
    env.start_redis()
    seed(env.r, subs)
    env.start_sim("--log-body-bytes", "1048576")
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"},
                   webhooks={"public_url": PUBLIC},
                   links={"secret": "link-secret-for-tests-0123", "ttl_days": 30})
    post_job(env.r, JOB)
    h = wait_job(env.r, JOB_ID, [d], timeout=60)
    assert int(h["messages"]) == 3 * len(subs)

    want = {sid: ("cy" if (lang or "").lower().startswith("cy") else
                  "pl" if lang == "pl" else "en") for sid, lang in RESIDENTS.items()}

    # Email: every part in one language; Welsh without html is text only.
    mails = emails(env.sim)
    for sid, f in subs.items():
        subject, parts, _p = mails[f["email"]]
        assert language_of(subject) == want[sid], (sid, subject)
        for typ, value in parts.items():
            assert language_of(value) == want[sid], (sid, typ, value)
        if want[sid] == "cy":
            assert set(parts) == {"text/plain"}, (sid, sorted(parts))
        else:
            assert set(parts) == {"text/plain", "text/html"}, (sid, sorted(parts))

    # SMS: Welsh has its own; Polish has none, so English whole.
    sms = by_recipient(env.sim.log_all("twilio"))
    for sid, f in subs.items():
        body = urllib.parse.parse_qs(sms[f["phone"]]["body"])["Body"][0]
        assert body.startswith("Rhybudd llifogydd" if want[sid] == "cy" else "Flood warning"), \
            (sid, body)

    # Push: the Welsh translation has a title but no body: English whole.
    push = by_recipient(env.sim.log_all("fcm"))
    for sid, f in subs.items():
        note = json.loads(push[f["push_token"]]["body"])["message"]["notification"]
        assert note == {"title": "Flood warning",
                        "body": f"The river is rising, Resident {sid}."}, (sid, note)

    # The pages: in the language of the message the link came in.
    def pages(sid):
        _s, parts, p = mails[subs[sid]["email"]]
        u = urllib.parse.urlsplit(p["headers"]["List-Unsubscribe"].strip("<>")).path
        return u, link_path(parts["text/plain"], "s")

    u, s = pages("cy1")
    st, page = get(port, "GET", u)
    assert st == 200 and html_lang(page) == "cy"
    assert "Dad-danysgrifio" in page and "Peidio â chael rhybuddion cymunedol drwy e-bost?" in page
    st, page = get(port, "GET", s)
    assert st == 200 and html_lang(page) == "cy"
    assert "Ydych chi&#39;n teimlo&#39;n ddiogel?" in page and "Nac ydw" in page
    assert "Anfon" in page and "Do you feel safe" not in page and "Send" not in page
    st, page = get(port, "POST", s, b"option=2", FORM)
    assert st == 200 and html_lang(page) == "cy" and "Diolch" in page
    st, page = get(port, "POST", u, b"List-Unsubscribe=One-Click", FORM)
    assert st == 200 and html_lang(page) == "cy" and "Rydych wedi dad-danysgrifio" in page

    u, s = pages("en0")
    st, page = get(port, "GET", u)
    assert st == 200 and html_lang(page) == "en" and "Unsubscribe" in page
    st, page = get(port, "GET", s)
    assert st == 200 and html_lang(page) == "en"
    assert "Do you feel safe?" in page and "Send" in page and "Anfon" not in page

    # Polish: the job's translation for the content, English fixed words.
    u, s = pages("pl0")
    st, page = get(port, "GET", s)
    assert st == 200 and html_lang(page) == "en" and '<fieldset lang="pl">' in page
    assert "Czy czujesz się bezpiecznie?" in page and "Nie wiem" in page and "Send" in page
    st, page = get(port, "GET", u)
    assert st == 200 and html_lang(page) == "en" and "Unsubscribe" in page

    # German: no translation, English everywhere.
    _u, s = pages("de0")
    st, page = get(port, "GET", s)
    assert st == 200 and html_lang(page) == "en" and "Do you feel safe?" in page

    # A Welsh answer by SMS, in the words of the Welsh options: option 3.
    phone = subs["cy0"]["phone"]
    if not env.r.hexists(f"{PREFIX}sms:last", phone):  # written by the record script
        env.r.hset(f"{PREFIX}sms:last", phone, f"{JOB_ID}/0/cy0")
    params = {"MessageSid": "SMwelsh0001", "From": phone, "Body": "ddim yn siŵr"}
    data = PUBLIC + "/hooks/twilio" + "".join(k + v for k, v in sorted(params.items()))
    sig = base64.b64encode(hmac.new(b"test-token", data.encode(), hashlib.sha1).digest()).decode()
    st, _ = get(port, "POST", "/hooks/twilio", urllib.parse.urlencode(params).encode(),
                dict(FORM, **{"X-Twilio-Signature": sig}))
    assert st == 200

    # the answers are tallied by option number, whatever the language
    assert env.r.hgetall(f"{PREFIX}job:{JOB_ID}:survey") == {"2": "1", "3": "1"}
