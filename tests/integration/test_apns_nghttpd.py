"""crierd's APNs provider (HTTP/2 over TLS through libcurl) against nghttpd,
the nghttp2 project's HTTP/2 server, not crier-sim: the pushes arrive as
HTTP/2 POSTs to /3/device/<token> with APNs's headers, several streams share
a connection, and the server's answers are classified (200 sent, 404 failed).
nghttpd serves a file for each token it should accept; its -v log is the
server's own record of every frame."""

import re
import shutil
import socket
import subprocess

import pytest

from certs import make_ca, make_ec_key, make_server_cert
from harness import counter, free_port, post_job, seed, wait_job, wait_until

TOPIC = "org.crier.test"
KEY_ID = "ABC123DEFG"
TEAM_ID = "DEF123GHIJ"
ACCEPTED = 24
UNKNOWN = 6

pytestmark = pytest.mark.skipif(shutil.which("nghttpd") is None,
                                reason="nghttpd (Debian package nghttp2-server) not installed")


def token(i):
    return f"{i:04x}" * 16


def start_nghttpd(d, htdocs, cert, key):
    port = free_port()
    log = open(d / "nghttpd.log", "w")
    proc = subprocess.Popen(["nghttpd", "-v", "-a", "127.0.0.1", f"--htdocs={htdocs}",
                             str(port), str(key), str(cert)],
                            stdout=log, stderr=subprocess.STDOUT)

    def listening():
        assert proc.poll() is None, (d / "nghttpd.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False

    wait_until(listening, 10, 0.05, what="nghttpd listening")
    return proc, port, log


def test_apns_pushes_over_http2_to_nghttpd(env):
    d = env.dir
    ca, ca_key = make_ca(d / "ca")
    cert, key = make_server_cert(d / "ca", ca, ca_key)
    p8 = make_ec_key(d / "apns.p8")
    htdocs = d / "htdocs"
    (htdocs / "3" / "device").mkdir(parents=True)
    subs = {f"n{i}": {"name": f"Resident {i}", "push_token": token(i), "push_platform": "apns"}
            for i in range(ACCEPTED + UNKNOWN)}
    for i in range(ACCEPTED):  # nghttpd answers 200 for these, 404 for the rest
        (htdocs / "3" / "device" / token(i)).write_text("")
    proc, port, log = start_nghttpd(d, htdocs, cert, key)
    try:
        env.start_redis()
        env.start_sim()
        providers = {"apns": {"type": "apns", "url": f"https://127.0.0.1:{port}",
                              "key_id": KEY_ID, "team_id": TEAM_ID,
                              "private_key": f"$file:{p8}", "topic": TOPIC,
                              "ca_file": str(ca), "max_inflight": 8}}
        dmn = env.crierd(channels={"push": ["apns"]}, providers=providers,
                         retry={"max_attempts": 2, "base_ms": 50, "max_ms": 100})
        seed(env.r, subs, {"area:N": list(subs)})
        post_job(env.r, {"id": "h2-0001", "priority": "urgent",
                         "audience": {"segments": ["area:N"]}, "channels": ["push"],
                         "message": {"push": {"title": "Police appeal",
                                              "body": "Witnesses sought"}}})
        h = wait_job(env.r, "h2-0001", [dmn], timeout=60)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()

    assert counter(h, "sent") == ACCEPTED, h
    assert counter(h, "failed") == UNKNOWN, h
    receipts = [f for _, f in env.r.xrange("crier:receipts") if f.get("job") == "h2-0001"]
    failed = [f for f in receipts if f["status"] == "failed"]
    assert len(failed) == UNKNOWN and all(f["code"] == "404" for f in failed), failed

    text = (d / "nghttpd.log").read_text()
    # every push is a POST to its token's path with APNs's headers, once
    posts = re.findall(r"\[id=(\d+)\] \[[ \d.]+\] recv \(stream_id=(\d+)\) :path: (\S+)", text)
    paths = sorted(p for _, _, p in posts)
    assert paths == sorted(f"/3/device/{token(i)}" for i in range(ACCEPTED + UNKNOWN)), paths
    assert len(re.findall(r"recv \(stream_id=\d+\) :method: POST", text)) == len(posts)
    assert len(re.findall(rf"recv \(stream_id=\d+\) apns-topic: {TOPIC}", text)) == len(posts)
    # (nghttpd marks the token's header "sensitive": HPACK never indexes it)
    assert len(re.findall(r"recv \(stream_id=\d+(?:, sensitive)?\) authorization: bearer \S+",
                          text)) == len(posts)
    # HTTP/2 multiplexing: more requests than connections, streams beyond the first
    conns = {c for c, _, _ in posts}
    assert len(conns) < len(posts), (len(conns), len(posts))
    assert max(int(s) for _, s, _ in posts) > 1, posts
