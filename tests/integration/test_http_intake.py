"""The HTTP intake, POST /api/v1/jobs and GET /api/v1/jobs/<id>, against a
real crierd: every answer it gives (202, 400, 401, 403, 404, 405, 409, 413,
429, 408 for a slow client), the same validation errors as the dead-letter
stream, one path through intake (the job is in crier:jobs, signed, and taken
from there), and a burst of 10,000 jobs from 8 concurrent clients with none
lost or doubled."""

import hashlib
import hmac
import http.client
import json
import socket
import threading
import time

from harness import PREFIX, dead_entry, free_port, seed, stream_fields, wait_job, wait_until

WEB_SECRET = "web-secret-0123456789abcdef"
INTEGRATORS = {
    "web": {"secret": WEB_SECRET, "segments": ["area:LE1*"], "channels": ["email"],
            "rate": 0},
    "slow": {"secret": "slow-secret-0123456789", "segments": ["*"], "rate": 1, "burst": 2},
    "bulk": {"secret": "bulk-secret-0123456789", "segments": ["*"], "rate": 0},
}


def job(jid=None, segments=("area:LE1",), **extra):
    d = {"audience": {"segments": list(segments)}, "channels": ["email"],
         "message": {"subject": "Road closure", "text": "Hello {{name}}, the A6 is closed."}}
    if jid:
        d["id"] = jid
    d.update(extra)
    return json.dumps(d)


class Api:
    def __init__(self, port):
        self.port = port

    def call(self, method, path, body=None, headers=None, bearer="web." + WEB_SECRET):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if bearer:
            h["Authorization"] = "Bearer " + bearer
        if body is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=h)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        out = json.loads(data) if res.getheader("Content-Type", "").startswith(
            "application/json") else data
        return res.status, out, res

    def post(self, body, **kw):
        return self.call("POST", "/api/v1/jobs", body, **kw)


def start(env, **over):
    port = free_port()
    env.start_redis()
    subs = {f"a{i}": {"name": f"A {i}", "email": f"a{i}@mail.crier.test"} for i in range(5)}
    seed(env.r, subs, {"area:LE1": list(subs)})
    env.start_sim()
    cfg = {"http": {"listen": f"127.0.0.1:{port}", "max_body_bytes": 8192,
                    "read_timeout_ms": 500},
           "integrators": INTEGRATORS}
    cfg.update(over)
    d = env.crierd(**cfg)
    return d, Api(port)


def sign(secret, ts, body):
    return "v1=" + hmac.new(secret.encode(), f"{ts}.".encode() + body.encode(),
                            hashlib.sha256).hexdigest()


def test_http_intake_answers(env):
    d, api = start(env)

    # 202: the job is written to crier:jobs signed, and the intake takes it from there
    st, body, res = api.post(job("http-1"))
    assert st == 202, body
    assert body["id"] == "http-1" and body["status_url"] == "/api/v1/jobs/http-1"
    assert res.getheader("Location") == "/api/v1/jobs/http-1"
    entries = dict(stream_fields(env.r, f"{PREFIX}jobs"))
    f = entries[body["entry"]]
    assert f["job"] == job("http-1") and f["key"] == "web" and f["sig"].startswith("v1=")
    h = wait_job(env.r, "http-1", [d], timeout=30)
    assert h["key"] == "web"
    st, body, _ = api.call("GET", "/api/v1/jobs/http-1")
    assert st == 200 and body["state"] == "completed" and body["key"] == "web"
    assert body["id"] == "http-1" and "doc" not in body

    # the same post again is the same job (202, nothing new written); other content: 409
    n = env.r.xlen(f"{PREFIX}jobs")
    st, body, _ = api.post(job("http-1"))
    assert st == 202 and body["id"] == "http-1"
    assert env.r.xlen(f"{PREFIX}jobs") == n
    st, body, _ = api.post(job("http-1", priority="high"))
    assert st == 409 and body["code"] == "conflict" and "http-1" in body["error"]

    # 400 with the field path, the very error the dead-letter stream gives
    bad = job("bad-1", channels=["email", "fax"])
    st, body, _ = api.post(bad)
    assert st == 400 and body["code"] == "unknown_channel"
    assert body["error"].startswith("channels[1]")
    ts = str(int(time.time()))
    e = env.r.xadd(f"{PREFIX}jobs", {"job": bad, "key": "web", "ts": ts,
                                      "sig": sign(WEB_SECRET, ts, bad)})
    dead = wait_until(lambda: dead_entry(env.r, e), 20, what="dead-lettered")
    assert (dead["code"], dead["error"]) == (body["code"], body["error"])
    st, body, _ = api.post("{not json")
    assert st == 400 and body["code"] == "not_json"

    # 401: none, wrong secret, unknown key, bad or stale signature headers
    st, body, res = api.post(job("x1"), bearer=None)
    assert st == 401 and res.getheader("WWW-Authenticate", "").startswith("Bearer")
    st, body, _ = api.post(job("x2"), bearer="web.wrong-secret-0123456789")
    assert st == 401 and "wrong secret for key 'web'" in body["error"]
    st, body, _ = api.post(job("x3"), bearer="nobody." + WEB_SECRET)
    assert st == 401 and "unknown key 'nobody'" in body["error"]
    b = job("x4")
    st, body, _ = api.post(b, bearer=None, headers={
        "X-Crier-Key": "web", "X-Crier-Timestamp": ts, "X-Crier-Signature": sign("x" * 20, ts, b)})
    assert st == 401 and "bad signature" in body["error"]
    old = str(int(time.time()) - 3600)
    st, body, _ = api.post(b, bearer=None, headers={
        "X-Crier-Key": "web", "X-Crier-Timestamp": old,
        "X-Crier-Signature": sign(WEB_SECRET, old, b)})
    assert st == 401 and "stale timestamp" in body["error"]
    # signature headers done right: 202, and without an id it is named by its signature
    b = job()
    sig = sign(WEB_SECRET, ts, b)
    st, body, _ = api.post(b, bearer=None, headers={
        "X-Crier-Key": "web", "X-Crier-Timestamp": ts, "X-Crier-Signature": sig})
    assert st == 202 and body["id"] == "s-" + sig[3:35]
    wait_job(env.r, body["id"], [d], timeout=30)

    # 403: beyond the key's scopes, naming the scope
    st, body, _ = api.post(job("x5", segments=["area:LE2"]))
    assert st == 403 and body["code"] == "forbidden" and "scope segments" in body["error"]
    st, body, _ = api.post(job("x6", priority="urgent"))
    assert st == 403 and "max_priority" in body["error"]

    # 404: another key's job is not there for this key; no such route; 405
    st, body, _ = api.call("GET", "/api/v1/jobs/http-1", bearer="bulk.bulk-secret-0123456789")
    assert st == 404
    st, body, _ = api.call("GET", "/api/v1/nothing")
    assert st == 404
    st, body, res = api.call("DELETE", "/api/v1/jobs")
    assert st == 405 and "POST" in res.getheader("Allow")

    # 413: a body over http.max_body_bytes is refused before it is read whole
    st, body, _ = api.post(job("big", message={"subject": "s", "text": "x" * 9000}))
    assert st == 413

    # 429: key 'slow' may post 2 at once, then 1 a second
    codes = [api.post(job("r%d" % i, segments=["area:LE1"]),
                      bearer="slow.slow-secret-0123456789")[0] for i in range(4)]
    assert codes[:2] == [202, 202] and 429 in codes[2:]
    st, body, res = api.post(job("r9"), bearer="slow.slow-secret-0123456789")
    if st == 429:
        assert int(res.getheader("Retry-After")) >= 1 and body["code"] == "rate_limited"

    # nothing refused was written: only the accepted ids are in crier:jobs
    ids = {json.loads(x["job"]).get("id") for _i, x in stream_fields(env.r, f"{PREFIX}jobs")
           if "job" in x}
    assert not ids & {"x1", "x2", "x3", "x4", "x5", "x6", "big"}
    d.check_alive()


def test_slow_client_is_cut_off_and_others_served(env):
    d, api = start(env)
    s = socket.create_connection(("127.0.0.1", api.port), timeout=30)
    s.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"id\":")
    # while it dawdles, another client is served
    st, body, _ = api.post(job("fast-1"))
    assert st == 202
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)  # the listener answers within read_timeout_ms
        if not chunk:
            break
        got += chunk
    s.close()
    assert got.startswith(b"HTTP/1.1 408"), got
    assert not env.r.exists(f"{PREFIX}job:x")
    d.check_alive()


def test_burst_of_10000_jobs_from_8_clients(env):
    d, api = start(env, intake={"max_jobs": 200})
    env.r.sadd(f"{PREFIX}seg:empty", "nobody")  # a one-member segment with no contacts
    n_clients, per_client = 8, 1250
    results = [[] for _ in range(n_clients)]

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
        hdr = {"Authorization": "Bearer bulk.bulk-secret-0123456789",
               "Content-Type": "application/json"}
        for i in range(per_client):
            jid = f"burst-{k}-{i}"
            body = json.dumps({"id": jid, "audience": {"segments": ["empty"]},
                               "channels": ["email"],
                               "message": {"subject": "s", "text": "t"}})
            conn.request("POST", "/api/v1/jobs", body=body, headers=hdr)
            res = conn.getresponse()
            res.read()
            results[k].append((jid, res.status))
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = [x for r in results for x in r]
    assert len(answers) == 10000
    assert {st for _j, st in answers} == {202}
    want = {j for j, _st in answers}
    posted = [json.loads(x["job"])["id"] for _i, x in stream_fields(env.r, f"{PREFIX}jobs")
              if "job" in x]
    assert len(posted) == 10000 and set(posted) == want  # none lost, none doubled

    def accepted():
        d.check_alive()
        return [f["job"] for _i, f in stream_fields(env.r, f"{PREFIX}events")
                if f.get("event") == "accepted" and f["job"].startswith("burst-")]
    wait_until(lambda: len(accepted()) >= 10000, 120, 0.5,
               what="the intake to take all 10,000 jobs")
    got = accepted()
    assert len(got) == 10000 and set(got) == want
    assert env.r.xpending(f"{PREFIX}jobs", "crierd")["pending"] == 0 or \
        wait_until(lambda: env.r.xpending(f"{PREFIX}jobs", "crierd")["pending"] == 0, 60,
                   what="every intake entry acknowledged")
