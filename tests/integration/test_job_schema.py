"""docs/job.schema.json against crierd's own validation (cr_job_parse, run by
`crierctl send` before it connects): every document of the job corpus
(tests/data/jobs), every example (docs/examples) and a set of documents made
here, one rule each, get the same verdict from the schema (Debian's
python3-jsonschema) as from crierd, except for the rules a JSON Schema cannot
express, which are enumerated below and listed in docs/job.md: for those the
schema accepts a document crierd refuses."""

import copy
import json
import re
import subprocess

import jsonschema
import pytest

from harness import REPO, binary, free_port

SCHEMA = json.loads((REPO / "docs" / "job.schema.json").read_text())
CORPUS = sorted((REPO / "tests" / "data" / "jobs").glob("*.json"))
EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.json"))
BASE = json.loads((REPO / "tests" / "data" / "jobs" / "good-full.json").read_text())

# The rules only crierd checks: name -> (crierd's code, a pattern of its
# message). docs/job.md lists each name in "Rules the schema cannot express".
CRIERD_ONLY = {
    "duplicate_key": ("duplicate_field", r"given more than once"),
    "nul": ("bad_encoding", r"no string may contain NUL|NUL byte"),
    "sms_segments": ("too_long", r"SMS segments"),
    "byte_length": ("too_long", r"bytes, over the limit"),
    "document_size": ("too_large", r"document is \d+ bytes"),
    "real_date": ("bad_time", r"is not a valid RFC 3339 time"),
    "after_1970": ("bad_time", r"is not after 1970"),
    "expires_after_send": ("bad_time", r"expires_at: must be after send_at"),
    "survey_translation_options": ("bad_survey", r"given, survey\.options has"),
    "template_fields": ("bad_template", r"too many fields"),
    "whatsapp_variables_numbered": ("bad_whatsapp", r"they are numbered 1 to n"),
    "multi_survey_translation": ("bad_survey", r"must translate all|the survey's question|"
                                               r"is not a question of the survey"),
    "answered_segments": ("too_long", r"segments with answered"),

    "escalate_channel_used": ("unknown_channel", r"already used by the job or an earlier step"),
    "escalate_order": ("bad_escalate", r"is not after the previous step"),
    "escalate_confirm": ("bad_escalate", r"needs \"confirm\": true"),
    "escalate_content": ("no_content", r"^escalate\[\d+\]\.to"),
}
MSG = re.compile(r"^-(?::\d+:\d+)?: ([a-z_]+): (.*)$")


def crierd_verdict(raw):
    """(code, message) of crierd's refusal, or None when it accepts raw
    (bytes): crierctl validates, then fails to reach a closed port (exit 3)."""
    res = subprocess.run([binary("crierctl"), "-p", str(free_port()), "--timeout", "300",
                          "send", "-"], input=raw, capture_output=True, timeout=60)
    err = res.stderr.decode(errors="replace")
    if res.returncode == 3:
        return None
    assert res.returncode == 1, f"crierctl exit {res.returncode}: {err}"
    m = MSG.match(err.splitlines()[0])
    assert m, err
    return m.group(1), m.group(2)


def schema_errors(raw):
    """The schema's complaints about raw (bytes); a text that is not JSON (or
    not UTF-8) cannot be valid."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return [f"not a JSON text: {e}"]
    v = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:120]}" for e in v.iter_errors(doc)]


def crierd_only_rule(verdict):
    for name, (code, pattern) in CRIERD_ONLY.items():
        if verdict[0] == code and re.search(pattern, verdict[1]):
            return name
    return None


def check(label, raw):
    """Asserts the schema and crierd agree on raw, or that crierd refuses it
    for a rule only it checks where the schema accepts it. Returns "ok" (both
    accept), crierd's code (both refuse) or the CRIERD_ONLY rule."""
    verdict = crierd_verdict(raw)
    errors = schema_errors(raw)
    if verdict is None:
        assert not errors, f"{label}: crierd accepts, the schema does not: {errors}"
        return "ok"
    if errors:
        return verdict[0]
    rule = crierd_only_rule(verdict)
    assert rule is not None, \
        f"{label}: crierd refuses ({verdict[0]}: {verdict[1]}), the schema accepts"
    return rule


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", CORPUS + EXAMPLES, ids=lambda p: p.name)
def test_corpus_and_examples_agree_with_crierd(path):
    rule = check(path.name, path.read_bytes())
    if path.parent.name == "examples" or path.name.startswith("good"):
        assert rule == "ok", f"{path.name} must be a good job, crierd says {rule}"
    else:
        assert rule != "ok", f"{path.name} is in the bad corpus but accepted"


def mutate(fn):
    doc = copy.deepcopy(BASE)
    fn(doc)
    return doc


def setp(path, value):
    """A mutation setting the dotted path (created as needed) to value."""
    def fn(doc):
        *head, last = path.split(".")
        d = doc
        for k in head:
            d = d.setdefault(k, {})
        d[last] = value
    return fn


def delp(path):
    def fn(doc):
        *head, last = path.split(".")
        d = doc
        for k in head:
            d = d[k]
        del d[last]
    return fn


def seq(*fns):
    def fn(doc):
        for f in fns:
            f(doc)
    return fn


def multi(n=1, score=None, wave="2026-11", tr=None, extra=None):
    """A mutation giving the job a multi-question survey of n questions (and
    the Polish translation's survey tr, or none)."""
    def fn(doc):
        doc["survey"] = {"id": "your-views", "wave": wave, "questions": [
            {"id": f"q{i}", "text": "I feel safe", "scale": ["Agree", "Disagree"],
             "score": score if score is not None else [100, 0]} for i in range(n)]}
        doc["survey"].update(extra or {})
        for t in doc["message"].get("translations", {}).values():
            t.pop("survey", None)
        if tr is not None:
            doc["message"]["translations"]["pl"]["survey"] = tr
    return fn


TR_SURVEY = {"question": "Czy czujesz się bezpiecznie?", "options": ["Tak", "Nie", "Nie wiem"]}

# label -> (mutation of good-full.json, expected rule: "ok", a crierd code, or
# a CRIERD_ONLY name)
CASES = {
    "email without subject": (delp("message.subject"), "no_content"),
    "email with an empty subject": (setp("message.subject", ""), "no_content"),
    "email without any body": (seq(delp("message.text"), delp("message.html")), "no_content"),
    "email with html only": (delp("message.text"), "ok"),
    "push with empty title and body": (setp("message.push", {"title": "", "body": ""}),
                                       "no_content"),
    "push body only": (setp("message.push", {"body": "Call 101."}), "ok"),
    "sms only, no email parts": (seq(setp("channels", ["sms"]), delp("message.subject"),
                                     delp("message.text"), delp("message.html")), "ok"),
    "no channels": (setp("channels", []), "unknown_channel"),
    "subscribers only": (setp("audience", {"subscribers": ["1", "a.b:c-d_e"]}), "ok"),
    "subscriber id starting with a dot": (setp("audience", {"subscribers": [".x"]}), "ok"),
    "empty segments and subscribers": (setp("audience", {"segments": [], "subscribers": []}),
                                       "empty_audience"),
    "segment with a space": (setp("audience.segments", ["area LE1"]), "bad_name"),
    "65 segments": (setp("audience.segments", [f"s{i}" for i in range(65)]), "too_long"),
    "segment of 129 characters": (setp("audience.segments", ["s" * 129]), "bad_name"),
    "id of 65 characters": (setp("id", "a" * 65), "bad_id"),
    "id starting with a dash": (setp("id", "-appeal"), "bad_id"),
    "no id": (delp("id"), "ok"),
    "priority null": (setp("priority", None), "bad_type"),
    "message.lang en-GB": (setp("message.lang", "en-GB"), "ok"),
    "message.lang of one letter": (setp("message.lang", "e"), "bad_lang"),
    "17 translations": (setp("message.translations",
                             {f"l{chr(97 + i // 26)}{chr(97 + i % 26)}": {"sms": "x"}
                              for i in range(17)}), "too_long"),
    "translation not an object": (setp("message.translations.de", "Hallo"), "bad_type"),
    "translated survey": (setp("message.translations.pl.survey", TR_SURVEY), "ok"),
    "translated survey without the job's survey": (
        seq(delp("survey"), setp("message.translations.pl.survey", TR_SURVEY)), "bad_survey"),
    "translated survey with another option count": (
        setp("message.translations.pl.survey", {"question": "Q?", "options": ["Tak", "Nie"]}),
        "survey_translation_options"),
    "survey of 11 options": (setp("survey.options", [str(i) for i in range(11)]), "bad_survey"),
    "survey with an empty option": (setp("survey.options", ["Yes", ""]), "bad_survey"),
    "survey without a question": (setp("survey", {"options": ["Yes", "No"]}), "missing_field"),
    "33 tags": (setp("tags", {f"t{i}": "x" for i in range(33)}), "too_long"),
    "tag of a number": (setp("tags.count", 3), "bad_type"),
    "sender name with a line break": (setp("sender.name", "PC Smith\nBcc: x"), "bad_header"),
    "sender name of 257 characters": (setp("sender.name", "a" * 257), "too_long"),
    "sender name of 200 two-byte characters": (setp("sender.name", "é" * 200), "byte_length"),
    "subject of 201 characters": (setp("message.subject", "a" * 201), "too_long"),
    "subject of 150 two-byte characters": (setp("message.subject", "ż" * 150), "byte_length"),
    "template with spaces in the braces": (setp("message.text", "Hello {{ name }}"), "ok"),
    "template with single braces": (setp("message.text", "a {b} }} {x"), "ok"),
    "template with an empty field": (setp("message.text", "Hello {{ }}"), "bad_template"),
    "template with a space in a name": (setp("message.text", "Hello {{na me}}"), "bad_template"),
    "template of triple braces": (setp("message.sms", "Hi {{{name}}}"), "bad_template"),
    "push title template unclosed": (setp("message.push.title", "Hi {{name"), "bad_template"),
    "1025 template fields": (setp("message.html", "{{a}}" * 1025), "template_fields"),
    "send_at with an offset": (setp("send_at", "2026-11-22T10:00:00+01:00"), "ok"),
    "send_at with a space and nanoseconds": (setp("send_at", "2026-11-22 09:00:00.123456789z"),
                                             "ok"),
    "send_at without seconds": (setp("send_at", "2026-11-22T09:00Z"), "bad_time"),
    "send_at without a zone": (setp("send_at", "2026-11-22T09:00:00"), "bad_time"),
    "send_at on 31 April": (setp("send_at", "2026-04-31T09:00:00Z"), "real_date"),
    "send_at before 1970": (setp("send_at", "1969-07-20T20:17:00Z"), "after_1970"),
    "expires_at equal to send_at": (setp("expires_at", "2026-11-22T09:00:00Z"),
                                    "expires_after_send"),
    "sms of 7 segments": (setp("message.sms", "x" * 1000), "sms_segments"),
    "document over 256 KiB": (seq(setp("audience.subscribers",
                                       [f"r{i:019d}" for i in range(10000)]),
                                  setp("message.html", "<p>x</p>" * 5000)), "document_size"),
    "multi-question survey": (multi(), "ok"),
    "multi-question survey, Polish": (multi(tr={"questions": [
        {"text": "Czuję się bezpiecznie", "scale": ["Tak", "Nie"]}]}), "ok"),
    "multi-question survey, score missing a step": (multi(score=[100]), "bad_survey"),
    "multi-question survey, score over 100": (multi(score=[100, 101]), "bad_survey"),
    "multi-question survey, wave with a colon": (multi(wave="2026:11"), "bad_survey"),
    "multi-question survey, 21 questions": (multi(n=21), "bad_survey"),
    "multi-question survey, unknown field": (multi(extra={"weights": [1]}), "unknown_field"),
    "multi-question survey, bad closes_at": (multi(extra={"closes_at": "soon"}), "bad_time"),
    "multi-question survey, Polish leaves a question out": (multi(n=2, tr={"questions": [
        {"text": "Czuję się bezpiecznie", "scale": ["Tak", "Nie"]}]}),
        "multi_survey_translation"),
    "answered audience": (setp("audience.answered", {"survey": "your-views", "wave": "2026-11",
                                                     "question": "safe", "options": [4, 5]}),
                          "ok"),
    "answered audience, option 0": (setp("audience.answered", {
        "survey": "your-views", "wave": "2026-11", "question": "safe", "options": [0]}),
        "bad_survey"),
    "unknown top-level field": (setp("channel", ["sms"]), "unknown_field"),
    "escalate push then sms then email": (
        seq(setp("channels", ["push"]),
            setp("escalate", [{"after_s": 300, "to": ["sms"]},
                              {"after_s": 900, "to": ["email"], "unless": "confirmed"}]),
            setp("confirm", True)), "ok"),
    "escalate to a channel the job uses": (
        setp("escalate", [{"after_s": 300, "to": ["sms"]}]), "escalate_channel_used"),
    "escalate of 4 steps": (
        seq(setp("channels", ["push"]),
            setp("escalate", [{"after_s": 10 * i + 1, "to": ["sms"]} for i in range(4)])),
        "too_long"),
    "escalate after 0 s": (seq(setp("channels", ["push"]),
                               setp("escalate", [{"after_s": 0, "to": ["sms"]}])), "bad_escalate"),
    "escalate steps out of order": (
        seq(setp("channels", ["push"]),
            setp("escalate", [{"after_s": 900, "to": ["sms"]}, {"after_s": 300, "to": ["email"]}])),
        "escalate_order"),
    "escalate unless confirmed without confirm": (
        seq(setp("channels", ["push"]),
            setp("escalate", [{"after_s": 300, "to": ["sms"], "unless": "confirmed"}])),
        "escalate_confirm"),
    "escalate unless read": (
        seq(setp("channels", ["push"]),
            setp("escalate", [{"after_s": 300, "to": ["sms"], "unless": "read"}])), "bad_escalate"),
    "escalate to sms without sms content": (
        seq(setp("channels", ["push"]), delp("message.sms"),
            setp("escalate", [{"after_s": 300, "to": ["sms"]}])), "escalate_content"),
    "escalate step with an unknown field": (
        seq(setp("channels", ["push"]),
            setp("escalate", [{"after_s": 300, "to": ["sms"], "when": "now"}])), "unknown_field"),
    "confirm of a string": (setp("confirm", "yes"), "bad_type"),
    "unknown push field": (setp("message.push.sound", "default"), "unknown_field"),
}


@pytest.mark.parametrize("label", list(CASES))
def test_one_rule_documents_agree_with_crierd(label):
    fn, expected = CASES[label]
    raw = json.dumps(mutate(fn), ensure_ascii=False).encode()
    assert check(label, raw) == expected


def test_raw_documents_agree_with_crierd():
    """Rules about the JSON text itself: a duplicate key and a NUL only crierd
    sees; broken JSON neither accepts."""
    good = json.dumps(BASE, ensure_ascii=False)
    dup = good.replace('"priority": "urgent"', '"priority": "urgent", "priority": "bulk"')
    assert dup != good
    assert check("duplicate key", dup.encode()) == "duplicate_key"
    nul = good.replace("Call 101", "Call \\u0000101", 1)
    assert check("NUL", nul.encode()) == "nul"
    assert check("cut short", good[:-10].encode()) == "not_json"


def test_docs_list_every_rule_only_crierd_checks():
    text = (REPO / "docs" / "job.md").read_text()
    section = text.split("## Rules the schema cannot express", 1)
    assert len(section) == 2, "docs/job.md lacks its 'Rules the schema cannot express' section"
    body = section[1].split("\n## ", 1)[0]
    missing = [name for name in CRIERD_ONLY if f"`{name}`" not in body]
    assert not missing, f"docs/job.md does not list {missing}"
