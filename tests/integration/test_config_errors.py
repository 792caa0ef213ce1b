"""`crierd -t` checks a configuration without starting: a bad one prints
`crierd: config: <key path>: <problem>` and exits 1, a good one exits 0."""

import json

import pytest

from harness import check_config_file, crierd_config, deep_merge

GOOD = crierd_config(6379, 8080)


def without(cfg, *path):
    out = deep_merge(cfg, {})
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


BAD = [
    ("batch-size-zero", deep_merge(GOOD, {"fanout": {"batch_size": 0}}), ["fanout.batch_size"]),
    ("port-out-of-range", deep_merge(GOOD, {"redis": {"port": 70000}}), ["redis.port"]),
    ("port-wrong-type", deep_merge(GOOD, {"redis": {"port": "6379x"}}), ["redis.port"]),
    ("unknown-key", deep_merge(GOOD, {"redis": {"prot": 6379}}), ["redis.prot"]),
    ("bad-url", deep_merge(GOOD, {"providers": {"twilio": {"url": "ftp://127.0.0.1:1"}}}),
     ["providers.twilio.url"]),
    ("wrong-channel", deep_merge(GOOD, {"channels": {"sms": ["sendgrid"]}}), ["channels.sms"]),
    ("unknown-provider-type", deep_merge(GOOD, {"providers": {"fcm": {"type": "pigeon"}}}),
     ["providers.fcm.type"]),
    ("missing-api-key", without(GOOD, "providers", "sendgrid", "api_key"),
     ["providers.sendgrid.api_key"]),
    ("bad-log-level", deep_merge(GOOD, {"log_level": "loud"}), ["log_level"]),
    ("retry-longer-than-reclaim",
     deep_merge(GOOD, {"retry": {"max_ms": 90000}, "fanout": {"reclaim_idle_ms": 60000}}),
     ["retry.max_ms", "fanout.reclaim_idle_ms"]),
    ("unset-secret", deep_merge(GOOD, {"providers": {"twilio": {
        "auth_token": "$env:CRIER_TEST_SURELY_UNSET_VAR"}}}),
     ["providers.twilio.auth_token"]),
]


@pytest.mark.parametrize("name,cfg,paths", BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_the_key(tmp_path, monkeypatch, name, cfg, paths):
    monkeypatch.delenv("CRIER_TEST_SURELY_UNSET_VAR", raising=False)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    rc, out = check_config_file(path)
    assert rc == 1, f"exit {rc}, output: {out}"
    assert "crierd: config: " in out, out
    assert any(p in out for p in paths), f"expected one of {paths} in: {out}"


def test_not_json_config(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"redis": {"port": 6379,,}\n')
    rc, out = check_config_file(path)
    assert rc == 1 and "crierd: config: " in out, out


def test_missing_file(tmp_path):
    rc, out = check_config_file(tmp_path / "nope.json")
    assert rc == 1 and "nope.json" in out, out


def test_good_config_with_comments(tmp_path):
    text = "// crierd test configuration\n" + json.dumps(GOOD, indent=2).replace(
        '"consumer"', '/* who we are in the consumer groups */ "consumer"', 1)
    path = tmp_path / "good.json"
    path.write_text(text)
    rc, out = check_config_file(path)
    assert rc == 0, f"exit {rc}: {out}"
