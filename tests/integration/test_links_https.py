"""One-click unsubscribe (List-Unsubscribe-Post) is HTTPS only (RFC 8058
section 3.1): `crierd -t` refuses links made from an http:// base URL, naming
the key and the reason, unless links.allow_insecure_http (for tests and demos
only) says otherwise."""

import json

from harness import check_config_file, crierd_config, deep_merge

SECRET = "link-secret-for-tests-0123456789"


def config(**over):
    cfg = crierd_config(6379, 8080)
    del cfg["links"]  # the harness turns the switch on for every other test
    return deep_merge(cfg, over)


CASES = [
    # (name, config, exit code, what the output must say)
    ("http-default-public-url", config(links={"secret": SECRET}), 1,
     ["crierd: config: public_url: must be https:// when links.secret is set",
      "RFC 8058 section 3.1", "links.allow_insecure_http"]),
    ("http-public-url", config(public_url="http://alerts.example", links={"secret": SECRET}), 1,
     ["crierd: config: public_url: must be https://", "RFC 8058"]),
    ("http-webhooks-url", config(public_url="https://alerts.example",
                                 webhooks={"public_url": "http://hooks.example"},
                                 links={"secret": SECRET}), 1,
     ["crierd: config: webhooks.public_url: must be https://", "RFC 8058"]),
    ("https", config(public_url="https://alerts.example", links={"secret": SECRET}), 0, []),
    ("http-with-test-switch", config(links={"secret": SECRET, "allow_insecure_http": True}), 0,
     []),
    ("http-without-links", config(public_url="http://alerts.example"), 0, []),
]


def test_links_over_http_need_the_test_switch(tmp_path):
    for name, cfg, want_rc, want in CASES:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(cfg))
        rc, out = check_config_file(path)
        assert rc == want_rc, f"{name}: exit {rc}, output: {out}"
        for text in want:
            assert text in out, f"{name}: {text!r} not in: {out}"
