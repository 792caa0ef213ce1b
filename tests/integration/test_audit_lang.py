"""messages.lang in the audit database is the language each message was
sent in, not merely the resident's: a translation is used per channel only
when it can make that channel's whole message (docs/languages.md), so a
partial translation gives one resident messages in two languages."""

import random

from harness import PREFIX, make_population, post_job, seed
from test_audit import Rig, sqlite_query

N = 400
JOB = "audit-lang-1"

DOC = {"id": JOB, "priority": "normal",
       "audience": {"segments": ["area:A", "area:B", "area:C"]},
       "channels": ["email", "sms", "push"],
       "message": {"lang": "en", "subject": "Road closed", "text": "Hello {{name}}",
                   "sms": "Road closed tonight",
                   "push": {"title": "Road closed", "body": "Tonight from 8pm"},
                   "translations": {
                       # email and SMS, no push: push goes in English
                       "pl": {"subject": "Droga zamknieta", "text": "Dzien dobry {{name}}",
                              "sms": "Droga zamknieta dzis"},
                       # SMS only
                       "de": {"sms": "Strasse heute gesperrt"},
                       # a push title without a body cannot make the push
                       "cy": {"sms": "Ffordd ar gau", "push": {"title": "Ffordd ar gau"}},
                       # the whole push; "pt-BR" residents take it
                       "pt": {"push": {"title": "Estrada fechada", "body": "Hoje"}}}}}

# the language each channel's message is in, per resident language
EXPECTED = {
    "en": {"email": "en", "sms": "en", "push": "en"},
    "pl": {"email": "pl", "sms": "pl", "push": "en"},
    "de": {"email": "en", "sms": "de", "push": "en"},
    "cy": {"email": "en", "sms": "cy", "push": "en"},
    "pt-BR": {"email": "en", "sms": "en", "push": "pt"},
    None: {"email": "en", "sms": "en", "push": "en"},
}


def test_messages_lang_is_the_language_sent(env):
    path = str(env.dir / "audit.db")
    rig = Rig(env, {"type": "sqlite", "path": path})
    rig.audit.start()
    subs, segs = make_population(N, random.Random(7),
                                 langs=("en", "pl", "de", "cy", "pt-BR", "none"))
    for f in subs.values():
        if f["lang"] == "none":
            del f["lang"]  # no language: the job's default
    seed(env.r, subs, segs)
    rig.subs = subs
    post_job(env.r, DOC)
    rig.finish(JOB, answers=0)
    rig.wait_stored()

    q = sqlite_query(path)
    rows = q(f"SELECT sub, channel, lang, status FROM messages WHERE job = '{JOB}'")
    assert len(rows) == int(env.r.hget(f"{PREFIX}job:{JOB}", "messages"))
    seen = set()
    for sub, channel, lang, status in rows:
        if channel == "":
            assert lang is None, (sub, lang)  # no message, no language
            continue
        want = EXPECTED[subs[sub].get("lang")][channel]
        assert lang == want, (sub, subs[sub].get("lang"), channel, lang, status)
        seen.add((subs[sub].get("lang"), channel, lang))
    # every mixed case happened: partial translations and the region fallback
    for case in (("pl", "email", "pl"), ("pl", "push", "en"), ("de", "sms", "de"),
                 ("de", "email", "en"), ("cy", "push", "en"), ("pt-BR", "push", "pt")):
        assert case in seen, (case, sorted(seen))
