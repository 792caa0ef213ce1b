"""The dashboard's HTTP API (/api/v1) and page (/dashboard/) against a real
crierd, Redis and crier-sim: bearer tokens with roles (401 without one, 403
for a viewer's cancel or a cross-origin one), answers checked against Redis for
a finished job (counters per channel and status, failure reasons, timeline,
the per-area CSV equal to `crierctl report`), the event stream and its cap,
and no resident's address or name in any answer."""

import json
import subprocess
import urllib.error
import urllib.request

from harness import (PREFIX, STATUSES, binary, counter, free_port, job_hash, post_job, seed,
                     wait_job, wait_until)

VIEWER = "viewer-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
N = 1200


class Api:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def call(self, path, token=None, method="GET", headers=None, timeout=30):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=b"" if method == "POST" else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def json(self, path, token=VIEWER):
        status, _, body = self.call(path, token)
        assert status == 200, (path, status, body)
        return json.loads(body)


def dashboard_conf(**more):
    conf = {"tokens": {"alice": {"token": VIEWER, "role": "viewer"},
                       "olly": {"token": OPERATOR, "role": "operator"}}}
    conf.update(more)
    return conf


def population():
    subs = {}
    for i in range(N):
        subs[f"a{i:05d}"] = {"phone": f"+4479{i:08d}", "email": f"res{i}@example.org",
                             "name": f"Resident Zebedee{i}"}
    # a few the simulated provider refuses for good: failure reasons to count
    for i in range(0, 40, 10):
        subs[f"a{i:05d}"]["phone"] = "+15005550001"
    areas = {"area:NORTH": [s for i, s in enumerate(subs) if i % 3 == 0],
             "area:SOUTH": [s for i, s in enumerate(subs) if i % 3 != 0]}
    return subs, areas


def start(env, **dash):
    subs, areas = population()
    env.start_redis()
    seed(env.r, subs, areas)
    env.start_sim("--latency-ms", "2")
    port = free_port()
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"}, dashboard=dashboard_conf(**dash))
    return d, Api(port), subs


def job_doc(job_id, **more):
    doc = {"id": job_id, "priority": "high",
           "audience": {"segments": ["area:NORTH", "area:SOUTH"]},
           "channels": ["sms", "email"],
           "message": {"subject": "Burglaries in your area", "text": "Lock your doors, {{name}}.",
                       "sms": "Police: lock your doors tonight."}}
    doc.update(more)
    return doc


def test_tokens_roles_and_page(env):
    d, api, _ = start(env)
    status, hdrs, body = api.call("/api/v1/jobs")
    assert status == 401 and "Bearer" in hdrs.get("WWW-Authenticate", ""), (status, body)
    assert api.call("/api/v1/jobs", "not-a-token-at-all-xxxxxxxx")[0] == 401
    assert api.call("/api/v1/fleet", VIEWER[:-1])[0] == 401
    assert api.call("/api/v1/events")[0] == 401
    assert api.json("/api/v1/whoami") == {"name": "alice", "role": "viewer"}
    assert api.json("/api/v1/whoami", OPERATOR)["role"] == "operator"

    status, hdrs, body = api.call("/dashboard/")
    assert status == 200 and hdrs["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in hdrs["Content-Security-Policy"]
    assert '<html lang="en">' in body and 'id="signin-form"' in body
    status, hdrs, _ = api.call("/dashboard/app.js")
    assert status == 200 and hdrs["Content-Type"].startswith("text/javascript")
    assert api.call("/dashboard/nothing.js")[0] == 404
    assert api.call("/api/v1/nothing", VIEWER)[0] == 404
    assert api.call("/api/v1/jobs", VIEWER, method="POST")[0] == 403  # integrators only
    assert api.call("/api/v1/fleet", VIEWER, method="POST")[0] == 405

    # the cancel: operator only, and only from the page's own origin (a slow
    # provider keeps the job running meanwhile)
    env.sim.configure("*", latency_ms=300)
    post_job(env.r, job_doc("api-cancel-1", priority="bulk"))
    wait_until(lambda: d.check_alive() or job_hash(env.r, "api-cancel-1").get("state"), 20, 0.02,
               what="the job to be accepted")
    origin = {"Origin": api.base}
    assert api.call("/api/v1/jobs/api-cancel-1/cancel", VIEWER, "POST", origin)[0] == 403
    assert api.call("/api/v1/jobs/api-cancel-1/cancel", OPERATOR, "POST")[0] == 403
    assert api.call("/api/v1/jobs/api-cancel-1/cancel", OPERATOR, "POST",
                    {"Origin": "http://evil.example"})[0] == 403
    assert api.call("/api/v1/jobs/nosuchjob/cancel", OPERATOR, "POST", origin)[0] == 404
    status, _, body = api.call("/api/v1/jobs/api-cancel-1/cancel", OPERATOR, "POST", origin)
    assert status == 200 and json.loads(body) == {"result": "requested"}, body
    env.sim.configure("*", latency_ms=2)
    h = wait_job(env.r, "api-cancel-1", [d], state="cancelled", timeout=60)
    assert counter(h, "cancelled") > 0
    assert "cancel requested by dashboard token 'olly'" in d.log_text()
    status, _, body = api.call("/api/v1/jobs/api-cancel-1/cancel", OPERATOR, "POST", origin)
    assert status == 409, body


def test_finished_job_matches_redis(env):
    d, api, subs = start(env)
    env.sim.configure("twilio", error_rate=0.0)
    post_job(env.r, job_doc("api-done-1"))
    h = wait_job(env.r, "api-done-1", [d], timeout=120)

    jobs = api.json("/api/v1/jobs")["jobs"]
    row = next(j for j in jobs if j["id"] == "api-done-1")
    assert row["state"] == "completed" and row["progress"] == 1
    assert row["done"] == sum(counter(h, s) for s in STATUSES) == int(h["messages"])
    assert row["targeted"] == int(h["targeted"]) == N

    doc = api.json("/api/v1/jobs/api-done-1")
    job = doc["job"]
    for ch, per in job["channels"].items():
        for st, n in per.items():
            assert n == counter(h, f"{st}:{ch}"), (ch, st, n, h.get(f"{st}:{ch}"))
    assert set(job["channels"]) == {"sms", "email"}
    for r in doc["reasons"]:
        assert r["count"] == counter(h, f"reason:{r['status']}:{r['code']}")
    assert len(doc["reasons"]) == len([k for k in h if k.startswith("reason:")]) >= 1
    assert any(r["code"] == "21211" and r["count"] == 4 for r in doc["reasons"]), doc["reasons"]
    events = [e["event"] for e in doc["events"]]
    assert events[0] == "accepted" and "started" in events and events[-1] == "completed"
    assert doc["series"][-1][1] == int(h["messages"])

    status, hdrs, csv = api.call("/api/v1/jobs/api-done-1/report.csv", VIEWER)
    assert status == 200 and hdrs["Content-Type"].startswith("text/csv"), csv
    rep = subprocess.run([binary("crierctl"), "-p", str(env.redis.port), "report", "api-done-1"],
                         capture_output=True, text=True, timeout=60)
    assert rep.returncode == 0, rep.stderr
    assert csv == rep.stdout
    assert "area:NORTH" in csv and "area:SOUTH" in csv
    assert api.call("/api/v1/jobs/nosuchjob", VIEWER)[0] == 404
    assert api.call("/api/v1/jobs/bad%2Fid", VIEWER)[0] == 404

    # aggregates only: no resident's address or name anywhere
    bodies = [api.call(p, VIEWER)[2] for p in
              ("/api/v1/jobs", "/api/v1/jobs/api-done-1", "/api/v1/fleet",
               "/api/v1/jobs/api-done-1/report.csv")]
    for body in bodies:
        assert "Zebedee" not in body and "+4479" not in body and "@example.org" not in body
        assert "a00003" not in body


def read_events(api, token, want, timeout=20):
    """Opens the event stream and reads until every event type in want came."""
    req = urllib.request.Request(api.base + "/api/v1/events")
    req.add_header("Authorization", f"Bearer {token}")
    seen = {}
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        kind = None
        while set(want) - set(seen):
            line = resp.readline().decode()
            assert line, "the stream ended"
            if line.startswith("event: "):
                kind = line[7:].strip()
            elif line.startswith("data: ") and kind:
                seen[kind] = json.loads(line[6:])
    return seen


def test_event_stream_and_cap(env):
    d, api, _ = start(env, max_streams=1)
    post_job(env.r, job_doc("api-sse-1"))
    wait_job(env.r, "api-sse-1", [d], timeout=120)
    wait_until(lambda: env.r.exists(f"{PREFIX}fleet:crierd-a"), 10, 0.05,
               what="the first heartbeat")
    seen = read_events(api, VIEWER, ["jobs", "fleet"])
    assert any(j["id"] == "api-sse-1" and j["state"] == "completed" for j in seen["jobs"]["jobs"])
    assert [n["node"] for n in seen["fleet"]["nodes"]] == ["crierd-a"]

    # one stream open: a second is refused with 503 until the first goes
    req = urllib.request.Request(api.base + "/api/v1/events")
    req.add_header("Authorization", f"Bearer {VIEWER}")
    first = urllib.request.urlopen(req, timeout=20)
    first.readline()
    assert api.call("/api/v1/events", VIEWER)[0] == 503
    first.close()
    wait_until(lambda: _stream_opens(api), 10, 0.1, what="the stream slot to be free again")
    assert "event stream refused" in d.log_text()


def _stream_opens(api):
    req = urllib.request.Request(api.base + "/api/v1/events")
    req.add_header("Authorization", f"Bearer {VIEWER}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


def test_bad_dashboard_config_is_refused(env):
    env.start_redis()
    port = free_port()
    for bad, words in (({"tokens": {"x": {"token": "short", "role": "viewer"}}}, "16 to 256"),
                       ({"tokens": {"x": {"token": VIEWER, "role": "admin"}}}, "'admin'"),
                       ({"tokens": {"x": {"token": VIEWER}}}, "role: missing"),
                       ({"tokenz": {}}, "dashboard.tokenz: unknown key")):
        d = env.crierd("crierd-bad", start=False, http={"listen": f"127.0.0.1:{port}"},
                       dashboard=bad)
        rc, out = d.check_config()
        assert rc == 1 and "dashboard" in out and words in out, out
