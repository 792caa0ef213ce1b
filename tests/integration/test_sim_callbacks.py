"""crier-sim's provider callbacks, checked the way crier's webhook receiver
must check them: Twilio status callbacks and inbound SMS signed with
X-Twilio-Signature (HMAC-SHA1 in Python), SendGrid's event webhook signed with
ECDSA P-256 (verified with the openssl command), retries with backoff, and the
/_sim/callbacks record. A small HTTP server in the test plays crierd."""

import base64
import hashlib
import hmac
import json
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import http_request, wait_until

SID = "AC00000000000000000000000000000000"
TOKEN = "test-token"


class Receiver:
    """A loopback HTTP server that records every request and answers with the
    next status queued for its path (default 200)."""

    def __init__(self):
        self.requests = []
        self.statuses = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                path = urllib.parse.urlsplit(self.path).path
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                           "body": body, "t": time.monotonic()})
                    queue = outer.statuses.get(path) or []
                    status = queue.pop(0) if queue else 200
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path, *statuses):
        with self.lock:
            self.statuses[path] = list(statuses)

    def got(self, prefix=""):
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def wait(self, n, prefix="", timeout=15):
        return wait_until(lambda: len(self.got(prefix)) >= n and self.got(prefix), timeout,
                          what=f"{n} callbacks to {prefix or '/'}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def post(url, data=None, body=None, headers=None, method="POST"):
    """Returns (status, headers, body) without raising on 4xx/5xx."""
    if data is not None:
        body = urllib.parse.urlencode(data).encode()
        headers = dict(headers or {}, **{"Content-Type": "application/x-www-form-urlencoded"})
    return http_request(url, body, headers, method)


def send_sms(sim, to, callback=None):
    auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    data = {"To": to, "From": "+447700900000", "Body": "Police appeal: call 101"}
    if callback:
        data["StatusCallback"] = callback
    status, _h, body = post(f"{sim.url}/2010-04-01/Accounts/{SID}/Messages.json", data=data,
                            headers={"Authorization": "Basic " + auth})
    assert status == 201, body
    return json.loads(body)


def twilio_signature(url, params, token=TOKEN):
    """What a receiver computes: HMAC-SHA1 over the URL and the POST params
    sorted by name, each name immediately followed by its value."""
    data = url + "".join(k + v for k, v in sorted(params.items()))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def form(req):
    return {k: v[0] for k, v in urllib.parse.parse_qs(req["body"].decode(),
                                                      keep_blank_values=True).items()}


def callbacks(sim, since=0):
    return sim._call("GET", f"/_sim/callbacks?since={since}")


def test_twilio_status_callbacks_are_signed_and_ordered(env, receiver):
    env.start_sim("--callback-delay-ms", "20")
    ok = send_sms(env.sim, "+447700900001", receiver.url("/hooks/twilio?ref=job-1/0/sms"))
    bad = send_sms(env.sim, "+447700900099", receiver.url("/hooks/twilio?ref=job-1/1/sms"))
    send_sms(env.sim, "+447700900002")  # no StatusCallback: no callback
    got = receiver.wait(4, "/hooks/twilio")
    time.sleep(0.2)
    assert len(receiver.got("/hooks/twilio")) == 4

    seen = {}
    for req in got:
        params = form(req)
        url = receiver.url(req["path"])
        sig = req["headers"]["X-Twilio-Signature"]
        assert hmac.compare_digest(sig, twilio_signature(url, params)), (url, params)
        # a receiver must refuse a changed parameter or the wrong token
        assert sig != twilio_signature(url, dict(params, MessageStatus="failed"))
        assert sig != twilio_signature(url, params, token="other-token")
        assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
        assert params["AccountSid"] == SID and params["ApiVersion"] == "2010-04-01"
        assert params["From"] == "+447700900000"
        assert params["SmsSid"] == params["MessageSid"]
        seen.setdefault(params["MessageSid"], []).append((req["path"], params))

    assert set(seen) == {ok["sid"], bad["sid"]}
    (p1, s1), (p2, s2) = seen[ok["sid"]]
    assert p1 == p2 == "/hooks/twilio?ref=job-1/0/sms"
    assert (s1["MessageStatus"], s2["MessageStatus"]) == ("sent", "delivered")
    assert s2["To"] == "+447700900001" and "ErrorCode" not in s2
    (_p, u1), (_p2, u2) = seen[bad["sid"]]
    assert (u1["MessageStatus"], u2["MessageStatus"]) == ("sent", "undelivered")
    assert u2["ErrorCode"] == "30003" and "ErrorCode" not in u1

    recs = wait_until(lambda: [r for r in callbacks(env.sim) if r["state"] != "pending"]
                      if all(r["state"] != "pending" for r in callbacks(env.sim)) else None,
                      10, what="callbacks recorded as done")
    assert len(recs) == 4
    for r in recs:
        assert r["kind"] == "twilio_status" and r["state"] == "delivered"
        assert r["status"] == 200 and r["attempts"] == 1 and r["error"] is None
        assert r["headers"]["X-Twilio-Signature"]
    assert [r["seq"] for r in callbacks(env.sim, since=recs[1]["seq"])] == \
        [r["seq"] for r in recs[2:]]


def test_failed_callbacks_are_retried_with_backoff(env, receiver):
    env.start_sim("--callback-delay-ms", "10")
    receiver.answer("/retry", 503, 500, 200, 200)
    receiver.answer("/gone", 404, 404)
    msg = send_sms(env.sim, "+447700900001", receiver.url("/retry"))
    send_sms(env.sim, "+447700900003", receiver.url("/gone"))
    dead = send_sms(env.sim, "+447700900004", "http://127.0.0.1:9/nothing-listens")

    got = receiver.wait(4, "/retry")
    first = [r for r in got if form(r)["MessageStatus"] == "sent"]
    assert len(first) == 3, "503 and 500 are retried until a 2xx"
    gaps = [b["t"] - a["t"] for a, b in zip(first, first[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps  # 250 ms, then 500 ms
    assert form(got[3])["MessageStatus"] == "delivered"
    assert all(form(r)["MessageSid"] == msg["sid"] for r in got)

    def settled():
        recs = callbacks(env.sim)
        return recs if len(recs) == 6 and all(r["state"] != "pending" for r in recs) else None

    recs = wait_until(settled, 15, what="every callback settled")
    by_url = {}
    for r in recs:
        by_url.setdefault(r["url"], []).append(r)
    retried, after = by_url[receiver.url("/retry")]
    assert (retried["state"], retried["attempts"], retried["status"]) == ("delivered", 3, 200)
    assert (after["state"], after["attempts"]) == ("delivered", 1)
    for r in by_url[receiver.url("/gone")]:  # a 4xx is final: not retried
        assert (r["state"], r["attempts"], r["status"]) == ("failed", 1, 404)
    assert len(receiver.got("/gone")) == 2  # the final status is still sent after a failure
    for r in by_url["http://127.0.0.1:9/nothing-listens"]:
        assert (r["state"], r["attempts"], r["status"]) == ("failed", 4, 0)
        assert r["error"]
    assert dead["sid"]


def openssl(*args, **kw):
    return subprocess.run(["openssl", *args], capture_output=True, timeout=30, **kw)


def test_sendgrid_event_webhook_is_signed_with_ecdsa(env, receiver):
    key, pub = env.dir / "sg.key", env.dir / "sg.pub"
    assert openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout",
                   "-out", str(key)).returncode == 0
    assert openssl("ec", "-in", str(key), "-pubout", "-out", str(pub)).returncode == 0
    env.start_sim("--callback-delay-ms", "30",
                  "--sendgrid-webhook-url", receiver.url("/hooks/sendgrid"),
                  "--sendgrid-webhook-key", str(key))
    mail = {
        "personalizations": [
            {"to": [{"email": "ann@mail.crier.test"}],
             "custom_args": {"crier_ref": "job-9/0/email", "crier_job": "job-9"}},
            {"to": [{"email": "nobody@bounce.sim"}],
             "custom_args": {"crier_ref": "job-9/1/email", "crier_job": "job-9"}},
        ],
        "from": {"email": "alerts@crier.test"}, "subject": "Appeal",
        "content": [{"type": "text/plain", "value": "Call 101"}],
    }
    status, headers, _b = post(f"{env.sim.url}/v3/mail/send", body=json.dumps(mail).encode(),
                               headers={"Authorization": "Bearer SG.test-key",
                                        "Content-Type": "application/json"})
    assert status == 202
    msgid = headers["X-Message-Id"]

    def all_events():
        evs = [e for r in receiver.got("/hooks/sendgrid") for e in json.loads(r["body"])]
        return evs if len(evs) >= 4 else None

    events = wait_until(all_events, 15, what="four SendGrid events")
    batches = receiver.got("/hooks/sendgrid")
    assert len(events) == 4
    for i, req in enumerate(batches):
        ts = req["headers"]["X-Twilio-Email-Event-Webhook-Timestamp"]
        sig = base64.b64decode(req["headers"]["X-Twilio-Email-Event-Webhook-Signature"])
        assert req["headers"]["Content-Type"] == "application/json"
        assert abs(int(ts) - time.time()) < 60
        payload, sigfile = env.dir / f"payload{i}", env.dir / f"sig{i}.der"
        payload.write_bytes(ts.encode() + req["body"])
        sigfile.write_bytes(sig)
        res = openssl("dgst", "-sha256", "-verify", str(pub), "-signature", str(sigfile),
                      str(payload))
        assert res.returncode == 0 and b"Verified OK" in res.stdout, res.stdout + res.stderr
        # the same signature must not verify another body or timestamp
        payload.write_bytes(str(int(ts) + 1).encode() + req["body"])
        assert openssl("dgst", "-sha256", "-verify", str(pub), "-signature", str(sigfile),
                       str(payload)).returncode != 0

    # "processed" for both in an earlier batch than the final events
    order = [(e["email"], e["event"]) for e in events]
    assert set(order[:2]) == {("ann@mail.crier.test", "processed"),
                              ("nobody@bounce.sim", "processed")}
    assert set(order[2:]) == {("ann@mail.crier.test", "delivered"),
                              ("nobody@bounce.sim", "bounce")}
    assert len({e["sg_event_id"] for e in events}) == 4
    for e in events:
        assert e["sg_message_id"].startswith(msgid + ".")
        assert isinstance(e["timestamp"], int)
        assert e["crier_job"] == "job-9"
        want = "job-9/0/email" if e["email"].startswith("ann") else "job-9/1/email"
        assert e["crier_ref"] == want
    bounce = next(e for e in events if e["event"] == "bounce")
    assert bounce["type"] == "bounce" and bounce["status"].startswith("5.")

    recs = [r for r in callbacks(env.sim) if r["kind"] == "sendgrid_events"]
    assert len(recs) == len(batches)
    assert all(r["headers"]["X-Twilio-Email-Event-Webhook-Signature"] for r in recs)


def test_inbound_sms_is_forwarded_signed_and_answered(env, receiver):
    inbound = receiver.url("/hooks/twilio")
    env.start_sim("--twilio-inbound-url", inbound)
    status, _h, body = post(f"{env.sim.url}/_sim/inbound",
                            body=json.dumps({"from": "+447700900123", "body": "STOP",
                                             "to": "+447700900000"}).encode())
    assert status == 200, body
    answer = json.loads(body)
    (req,) = receiver.got("/hooks/twilio")
    params = form(req)
    assert params["MessageSid"] == answer["message_sid"] and params["MessageSid"].startswith("SM")
    assert (params["From"], params["To"], params["Body"]) == ("+447700900123", "+447700900000",
                                                             "STOP")
    assert params["NumMedia"] == "0" and params["AccountSid"] == SID
    assert "MessageStatus" not in params  # that is how a receiver tells it from a status
    assert hmac.compare_digest(req["headers"]["X-Twilio-Signature"],
                               twilio_signature(inbound, params))

    # the sim answers with the status the receiver (crierd) gave
    receiver.answer("/hooks/twilio", 403)
    status, _h, body = post(f"{env.sim.url}/_sim/inbound",
                            body=json.dumps({"from": "+447700900123", "body": "hello"}).encode())
    assert status == 403 and json.loads(body)["attempts"] == 1
    assert form(receiver.got("/hooks/twilio")[1])["To"] == "+447700900000"  # the default

    status, _h, _b = post(f"{env.sim.url}/_sim/inbound", body=b"{\"from\": 1}")
    assert status == 400
    assert len(receiver.got("/hooks/twilio")) == 2


def test_inbound_needs_the_flag(env):
    env.start_sim()
    status, _h, body = post(f"{env.sim.url}/_sim/inbound",
                            body=json.dumps({"from": "+447700900123", "body": "STOP"}).encode())
    assert status == 400 and b"twilio-inbound-url" in body
