"""crierd's SMTP provider against a real SMTP server it did not write
(aiosmtpd, STARTTLS and AUTH required): the messages that arrive are read with
Python's email package and held to RFC 5322 (CRLF lines, folded header lines
of at most 78 characters), RFC 2045/2046 (line breaks in text as CRLF, hard
line breaks in quoted-printable, never "=0A") and RFC 2047 (encoded-words of
at most 75 characters, whole characters each), and what they decode to must
be what the job said."""

import email
import email.header
import email.policy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from certs import make_ca, make_server_cert
from harness import _kill, _spawn, counter, post_job, seed, wait_job, wait_until

HERE = Path(__file__).resolve().parent
USER = "crier"
PASSWORD = "smtp-secret"
FROM = "alerts@crier.test"

# About 190 bytes of Welsh and Polish with a dash and an emoji: before the
# fix these went out as several encoded-words on one line this long.
SUBJECT = ("Rhybudd brys: ffordd ar gau ger Pont-y-p\u0175l \u2013 Pilne ostrze\u017cenie: "
           "zamkni\u0119ta droga w \u0141odzi \u2013 \U0001f6a8 osgoi'r ardal / "
           "prosimy omija\u0107 okolic\u0119")
SENDER = "Heddlu Dyfed-Powys \u2013 T\u00eem Plismona Cymdogaeth Aberystwyth \u0141\u00f3d\u017a"
TEXT = ("Hello {{name}},\n\nThe A487 is closed at Pont-y-p\u0175l after a collision.\n"
        "Please avoid the area: a long line that the quoted-printable encoder has to "
        "break with soft line breaks because it is well over seventy-six characters.\n"
        "Call 101.\n")
HTML = "<p>Hello {{name}},</p>\n<p>The A487 is closed.</p>\n"
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=")


def aiosmtpd_python():
    """An interpreter that can import aiosmtpd (Debian's python3-aiosmtpd
    installs it for the system python3), or None."""
    for exe in dict.fromkeys([sys.executable, shutil.which("python3"), "/usr/bin/python3"]):
        if not exe:
            continue
        try:
            ok = subprocess.run([exe, "-c", "import aiosmtpd"], capture_output=True,
                                timeout=30).returncode == 0
        except OSError:
            ok = False
        if ok:
            return exe
    return None


@pytest.fixture
def aiosmtpd(env):
    """aiosmtpd started for env: (directory of messages, port, CA that signed
    its certificate); stopped after the test."""
    proc = None
    try:
        d, port, ca, proc = start_aiosmtpd(env)
        yield d, port, ca
    finally:
        _kill(proc)


def start_aiosmtpd(env):
    exe = aiosmtpd_python()
    if exe is None:
        pytest.skip("aiosmtpd is not installed (scripts/install-deps.sh installs "
                    "python3-aiosmtpd)")
    d = env.dir / "aiosmtpd"
    d.mkdir()
    ca, ca_key = make_ca(env.dir / "ca")
    cert, key = make_server_cert(env.dir / "ca", ca, ca_key)
    proc = _spawn([exe, str(HERE / "aiosmtpd_server.py"), str(d), str(cert), str(key), USER,
                   PASSWORD], env.dir / "aiosmtpd.log")

    def ready():
        if proc.poll() is not None:
            _kill(proc)
            raise AssertionError("aiosmtpd exited:\n" + (env.dir / "aiosmtpd.log").read_text())
        return (d / "port").exists() and int((d / "port").read_text())

    try:
        port = wait_until(ready, 30, what="aiosmtpd to listen")
    except Exception:
        _kill(proc)
        raise
    return d, port, ca, proc


def received(d):
    """[(raw bytes, envelope dict)] of the messages saved so far."""
    out = []
    for eml in sorted(d.glob("msg-*.eml")):
        out.append((eml.read_bytes(), json.loads(eml.with_suffix(".json").read_text())))
    return out


def header_block(raw):
    return raw.split(b"\r\n\r\n", 1)[0]


def header_lines(raw, name):
    """The physical lines (first and continuations) of header name."""
    lines = header_block(raw).split(b"\r\n")
    out = []
    for i, line in enumerate(lines):
        if line.lower().startswith(name.lower().encode() + b":"):
            out.append(line)
            for cont in lines[i + 1:]:
                if not cont[:1] in (b" ", b"\t"):
                    break
                out.append(cont)
            return out
    raise AssertionError(f"no {name} header in:\n{header_block(raw).decode(errors='replace')}")


def test_smtp_messages_keep_to_the_rfcs(env, aiosmtpd):
    d, port, ca = aiosmtpd
    env.start_redis()
    daemon = env.crierd(
        channels={"email": ["smtp"]},
        providers={"smtp": {"type": "smtp", "url": f"smtp://127.0.0.1:{port}",
                            "from_email": FROM, "from_name": "Crier Alerts",
                            "username": USER, "password": PASSWORD, "starttls": True,
                            "ca_file": str(ca), "helo": "crier.test"}},
        retry={"max_attempts": 3, "base_ms": 50, "max_ms": 200})
    subs = {f"m{i}": {"name": f"Resident {i}", "email": f"m{i}@mail.crier.test"}
            for i in range(3)}
    seed(env.r, subs, {"area:M": list(subs)})
    post_job(env.r, {"id": "rfc-0001", "priority": "high", "audience": {"segments": ["area:M"]},
                     "channels": ["email"], "sender": {"name": SENDER},
                     "message": {"subject": SUBJECT, "text": TEXT, "html": HTML}})
    h = wait_job(env.r, "rfc-0001", [daemon], timeout=60)
    assert counter(h, "sent") == 3, h

    msgs = wait_until(lambda: len(received(d)) == 3 and received(d), 10,
                      what="three messages at aiosmtpd")
    assert sorted(m["rcpt_tos"][0] for _, m in msgs) == sorted(s["email"] for s in subs.values())
    for raw, meta in msgs:
        assert meta["tls"] is True and meta["auth_user"] == USER, meta
        assert meta["mail_from"] == FROM
        # RFC 5322 2.3: CR and LF only together, as CRLF
        assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF in the message"
        assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR in the message"
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))

        for name in ("Subject", "From", "To", "Date", "Message-ID", "MIME-Version"):
            lines = header_lines(raw, name)
            assert all(len(line) <= 78 for line in lines), (name, lines)
            for line in lines:
                if ENCODED_WORD.search(line):
                    assert len(line) <= 76, (name, line)  # RFC 2047 section 2
                for word in ENCODED_WORD.findall(line):
                    assert len(word) <= 75, (name, word)
                    # each word decodes on its own: no character split across two
                    text, charset = email.header.decode_header(word.decode())[0]
                    text.decode(charset)
        assert len(header_lines(raw, "Subject")) > 1  # folded, not one long line

        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert str(msg["subject"]) == SUBJECT
        assert msg["from"].addresses[0].display_name == SENDER
        assert msg["from"].addresses[0].addr_spec == FROM
        rcpt = meta["rcpt_tos"][0]
        assert msg["to"].addresses[0].addr_spec == rcpt
        name = subs[rcpt.split("@")[0]]["name"]

        parts = {p.get_content_type(): p for p in msg.walk() if not p.is_multipart()}
        assert set(parts) == {"text/plain", "text/html"}, list(parts)
        for ctype, want in (("text/plain", TEXT), ("text/html", HTML)):
            p = parts[ctype]
            assert p["Content-Transfer-Encoding"] == "quoted-printable"
            body = p.get_payload(decode=False)
            # RFC 2045 6.7: line breaks are hard line breaks, never "=0A"
            assert "=0A" not in body.upper() and "=0D" not in body.upper(), body
            assert all(len(line) <= 76 for line in body.split("\r\n")), body
            decoded = p.get_payload(decode=True).decode(p.get_content_charset())
            expect = want.replace("{{name}}", name)
            assert "\n" not in decoded.replace("\r\n", ""), repr(decoded)
            assert decoded == expect.replace("\n", "\r\n"), repr(decoded)


def test_crier_sim_smtp_reads_folded_headers(env):
    """The same job through crier-sim's SMTP (STARTTLS, AUTH): the simulator
    unfolds the headers and joins the encoded-words into the job's subject."""
    d = env.dir
    ca, ca_key = make_ca(d / "ca")
    cert, key = make_server_cert(d / "ca", ca, ca_key)
    env.start_redis()
    env.start_sim("--tls-cert", str(cert), "--tls-key", str(key),
                  "--smtp-port", "0", "--smtp-port-file", str(d / "smtp.port"),
                  "--smtp-user", USER, "--smtp-pass", PASSWORD, "--smtp-require-tls")
    port = int((d / "smtp.port").read_text())
    daemon = env.crierd(
        channels={"email": ["smtp"]},
        providers={"smtp": {"type": "smtp", "url": f"smtp://127.0.0.1:{port}",
                            "from_email": FROM, "username": USER, "password": PASSWORD,
                            "ca_file": str(ca)}})
    seed(env.r, {"s0": {"name": "Sam", "email": "s0@mail.crier.test"}}, {"area:S": ["s0"]})
    post_job(env.r, {"id": "rfc-0002", "priority": "urgent", "audience": {"segments": ["area:S"]},
                     "channels": ["email"], "sender": {"name": SENDER},
                     "message": {"subject": SUBJECT, "text": TEXT, "html": HTML}})
    h = wait_job(env.r, "rfc-0002", [daemon], timeout=60)
    assert counter(h, "sent") == 1, h
    (e,) = [e for e in env.sim.log_all("smtp") if e["method"] == "DATA"]
    f = e["fields"]
    assert e["status"] == 250 and f["tls"] is True
    assert f["subject"] == SUBJECT, f
    assert f["multipart_alternative"] is True, f
    raw = e["body"].encode()
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF in the message"
    for name in ("Subject", "From"):
        lines = header_lines(raw, name)
        assert len(lines) > 1 and all(len(line) <= 76 for line in lines), (name, lines)
    assert "=0A" not in e["body"]
    assert "Hello Sam,\r\n\r\nThe A487 is closed" in e["body"]
