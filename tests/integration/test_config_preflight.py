"""`crierd -t` checks everything startup checks: a config that -t accepts is
one crierd starts with, and one that startup refuses is refused by -t with the
same `crierd: config: <key path>: <problem>` line. Config text must be UTF-8."""

import json
import subprocess

import pytest

import certs
from harness import binary, check_config_file, crierd_config, deep_merge

GOOD = crierd_config(6379, 8080)

# Each case: what startup parses beyond the JSON, broken.
CASES = [
    ("sendgrid-key-garbage",
     deep_merge(GOOD, {"webhooks": {"sendgrid_public_key": "not-a-key"}}),
     "webhooks.sendgrid_public_key"),
    ("sendgrid-key-pem-garbage",
     deep_merge(GOOD, {"webhooks": {"sendgrid_public_key":
                                    "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}}),
     "webhooks.sendgrid_public_key"),
    ("listen-host-name",
     deep_merge(GOOD, {"http": {"listen": "crier.invalid:8080"}}),
     "http.listen"),
    ("worker-port-past-65535",
     deep_merge(GOOD, {"workers": 4, "http": {"listen": "127.0.0.1:65534"}}),
     "http.listen"),
]


def run_crierd(path, timeout=20):
    """crierd without -t: it must refuse the config before it connects anywhere."""
    res = subprocess.run([binary("crierd"), "-c", str(path)], stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=timeout)
    return res.returncode, (res.stdout + res.stderr).decode(errors="replace")


@pytest.mark.parametrize("name,cfg,key", CASES, ids=[c[0] for c in CASES])
def test_check_refuses_what_startup_refuses(tmp_path, name, cfg, key):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    rc, out = check_config_file(path)
    assert rc == 1, f"crierd -t accepted it (exit {rc}): {out}"
    assert f"crierd: config: {key}" in out, out
    # startup refuses it with the same line, before anything starts
    rc, out_start = run_crierd(path)
    assert rc == 1, f"exit {rc}: {out_start}"
    assert f"crierd: config: {key}" in out_start, out_start
    assert "ready" not in out_start


def test_check_refuses_a_ca_file_without_certificates(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("this is not a certificate\n")
    cfg = deep_merge(GOOD, {"providers": {"sendgrid": {"ca_file": str(ca)}}})
    path = tmp_path / "ca.json"
    path.write_text(json.dumps(cfg))
    rc, out = check_config_file(path)
    assert rc == 1, out
    assert "crierd: config: providers.sendgrid.ca_file" in out, out


def test_check_accepts_a_real_sendgrid_key_and_ca_file(tmp_path):
    """The good cases still pass: a base64 DER EC public key (as SendGrid shows
    it), an IPv6 listen address and a CA file with a certificate."""
    ca_cert, _ = certs.make_ca(tmp_path / "ca")
    priv = certs.make_ec_key(tmp_path / "sg.key")
    pub = certs.public_key(priv, tmp_path / "sg.pub").read_text()
    der_b64 = "".join(line for line in pub.splitlines() if "-----" not in line)
    cfg = deep_merge(GOOD, {"webhooks": {"sendgrid_public_key": der_b64},
                            "http": {"listen": "[::1]:0"},
                            "providers": {"sendgrid": {"ca_file": str(ca_cert)}}})
    path = tmp_path / "good.json"
    path.write_text(json.dumps(cfg))
    rc, out = check_config_file(path)
    assert rc == 0, out


# Strings that end up in Redis, logs and messages: invalid UTF-8 is refused,
# naming the key. The placeholder is replaced with raw bytes in the file.
BAD_UTF8 = [
    ("consumer", {"consumer": "@BAD@"}, "consumer"),
    ("group", {"group": "@BAD@"}, "group"),
    ("prefix", {"redis": {"prefix": "crier@BAD@:"}}, "redis.prefix"),
    ("twilio-from", {"providers": {"twilio": {"from": "+44@BAD@"}}}, "providers.twilio.from"),
    ("sendgrid-from", {"providers": {"sendgrid": {"from_email": "a@BAD@@crier.test"}}},
     "providers.sendgrid.from_email"),
]


@pytest.mark.parametrize("name,over,key", BAD_UTF8, ids=[c[0] for c in BAD_UTF8])
@pytest.mark.parametrize("bad", [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xc0\xaf"],
                         ids=["ff", "cut-2-byte", "surrogate", "overlong"])
def test_invalid_utf8_is_refused_naming_the_key(tmp_path, name, over, key, bad):
    cfg = deep_merge(GOOD, over)
    data = json.dumps(cfg, ensure_ascii=False).encode().replace(b"@BAD@", bad)
    path = tmp_path / f"{name}.json"
    path.write_bytes(data)
    rc, out = check_config_file(path)
    assert rc == 1, f"exit {rc}: {out}"
    assert f"crierd: config: {key}: is not valid UTF-8" in out, out


def test_valid_utf8_is_accepted(tmp_path):
    cfg = deep_merge(GOOD, {"consumer": "gwasanaeth-ŵŷ-警察"})
    path = tmp_path / "utf8.json"
    path.write_bytes(json.dumps(cfg, ensure_ascii=False).encode())
    rc, out = check_config_file(path)
    assert rc == 0, out
