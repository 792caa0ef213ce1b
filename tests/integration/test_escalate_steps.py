"""What an operator sees of an escalating job, against real redis-server,
crier-sim and crierd: per step (the job's own channels, then each escalation
step) the messages, outcomes and the time from the step's start to each
delivery receipt, as job-hash fields step:<n>:ttd_*, in `crierctl status`,
the report CSV, the dashboard's job API and its job page in Chromium. The
simulator decides the receipts: half the pushes are acknowledged by the app,
and every SMS is reported delivered two callback delays after it is sent."""

import csv
import io
import json
import subprocess
import urllib.request

import pytest

from harness import binary, free_port, job_hash, post_job, seed, wait_job, wait_until
from test_escalate import GENERIC_SECRET, Acks, push_receipts

VIEWER = "viewer-token-steps-0123456789"
DELAY_MS = 300
N = 300
BOUNDS = ["1", "2", "5", "10", "30", "60", "120", "300", "600", "1800", "3600", "inf"]


def run_job(env, before_job=None):
    """Sends the appeal (before_job() is called just before); returns
    (crierd, base URL, acked push count, SMS count)."""
    env.start_redis()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env.start_sim("--generic-webhook-url", f"{base}/hooks/generic",
                  "--generic-webhook-secret", GENERIC_SECRET,
                  "--callback-delay-ms", str(DELAY_MS))
    env.sim.configure("fcm", deliver_rate=0.5)
    d = env.crierd(http={"listen": f"127.0.0.1:{port}"},
                   webhooks={"public_url": base, "generic_secret": GENERIC_SECRET,
                             "window_s": 300},
                   providers={"twilio": {"status_callback": f"{base}/hooks/twilio"}},
                   dashboard={"tokens": {"vic": {"token": VIEWER, "role": "viewer"}}})
    subs = {f"s{i:04d}": {"push_token": f"stok-{i}", "push_platform": "fcm",
                          "phone": f"+4477005{i * 10 + 1:05d}"} for i in range(N)}
    seed(env.r, subs, {"area:steps": list(subs)})
    if before_job:
        before_job()
    post_job(env.r, {"id": "steps-1", "priority": "urgent", "channels": ["push"], "confirm": True,
                     "audience": {"segments": ["area:steps"]},
                     "message": {"push": {"title": "Missing person", "body": "Seen her?"},
                                 "sms": "Police appeal: missing person. Call 101."},
                     "escalate": [{"after_s": 6, "to": ["sms"], "unless": "delivered"}]})
    wait_until(lambda: int(job_hash(env.r, "steps-1").get("batches_done", 0)) > 0 and
               job_hash(env.r, "steps-1").get("esc_step") == "0" and
               int(job_hash(env.r, "steps-1").get("sent:push", 0)) +
               int(job_hash(env.r, "steps-1").get("delivered:push", 0)) == N,
               60, what="the push round")
    receipts = push_receipts(env.sim)
    acked = sum(1 for ok in receipts.values() if ok)
    # five residents confirm through the app
    refs = {}
    for e in env.sim.log_all("fcm"):
        msg = json.loads(e["body"])["message"]
        refs[msg["token"]] = msg["data"]["crier_ref"]
    Acks(port).post_all([{"ref": refs[f"stok-{i}"], "status": "confirmed"} for i in range(5)])
    wait_until(lambda: int(job_hash(env.r, "steps-1").get("confirmed", 0)) == 5, 10,
               what="the confirmations to be counted")
    assert "step:1:ms" not in job_hash(env.r, "steps-1"), "the step ran before the confirmations"
    wait_job(env.r, "steps-1", [d], timeout=90)
    # a confirmation reaches the resident too: no SMS for them either
    reached = {t for t, ok in receipts.items() if ok} | {f"stok-{i}" for i in range(5)}
    n_sms = N - len(reached)
    wait_until(lambda: int(job_hash(env.r, "steps-1").get("delivered:sms", 0)) == n_sms and
               int(job_hash(env.r, "steps-1").get("delivered:push", 0)) == acked,
               30, what="every delivery receipt to be applied")
    return d, base, acked, n_sms


def check_hash(h, acked, n_sms):
    for k, n, floor_ms in ((0, acked, DELAY_MS), (1, n_sms, 2 * DELAY_MS)):
        assert int(h[f"step:{k}:ttd_n"]) == n, (k, h)
        hist = sum(int(h.get(f"step:{k}:ttd_le:{b}", 0)) for b in BOUNDS)
        assert hist == n, (k, hist)
        # the receipt comes at least one (push: the app's ack) or two (SMS:
        # sent, then delivered) callback delays after the message was accepted
        assert int(h[f"step:{k}:ttd_ms"]) >= n * floor_ms, (k, h[f"step:{k}:ttd_ms"])


def test_time_to_delivery_per_step(env):
    d, base, acked, n_sms = run_job(env)
    assert 0 < acked < N
    h = job_hash(env.r, "steps-1")
    check_hash(h, acked, n_sms)

    res = subprocess.run([binary("crierctl"), "-p", str(env.redis.port), "status", "--once",
                          "steps-1"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    first = next(ln for ln in lines if ln.startswith("step 0"))
    step1 = next(ln for ln in lines if ln.startswith("step 1"))
    assert "to delivery mean " in first and f"({acked})" in first, first
    assert f"messages {n_sms}" in step1 and f"delivered {n_sms}" in step1, step1
    assert "to delivery mean " in step1 and f"({n_sms})" in step1, step1

    res = subprocess.run([binary("crierctl"), "-p", str(env.redis.port), "report", "steps-1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rows = {r["segment"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    tot = rows["total"]
    assert int(tot["step0_ttd_n"]) == acked and int(tot["step1_ttd_n"]) == n_sms
    mean1 = int(h["step:1:ttd_ms"]) / n_sms / 1000
    assert abs(float(tot["step1_ttd_mean_s"]) - mean1) < 0.002, (tot["step1_ttd_mean_s"], mean1)
    assert tot["step1_ttd_p95_s"] in BOUNDS
    assert rows["area:steps"]["step1_ttd_n"] == ""  # per job, not per segment

    req = urllib.request.Request(f"{base}/api/v1/jobs/steps-1",
                                 headers={"Authorization": f"Bearer {VIEWER}"})
    doc = json.loads(urllib.request.urlopen(req, timeout=10).read())
    steps = doc["job"]["steps"]
    assert [s["step"] for s in steps] == [0, 1]
    assert steps[0]["channels"] == ["push"] and steps[1]["channels"] == ["sms"]
    assert steps[1]["unless"] == "delivered" and steps[1]["after_s"] == 6
    assert steps[1]["ran_ms"] == int(h["step:1:ms"])
    assert steps[1]["messages"] == n_sms and steps[1]["delivered"] == n_sms
    assert steps[0]["delivered"] == acked and steps[0]["confirmed"] == 5
    assert steps[1]["to_delivery"]["n"] == n_sms
    assert abs(steps[1]["to_delivery"]["mean_ms"] - int(h["step:1:ttd_ms"]) / n_sms) < 1
    assert doc["job"]["confirmations"]["total"] == 5
    assert doc["job"]["confirmations"]["channels"]["push"] == 5


try:
    from test_dashboard_browser import HAVE_SELENIUM, CHROMEDRIVER, browser, js, sign_in  # noqa: F401
except ImportError:
    HAVE_SELENIUM = False


@pytest.mark.skipif(not HAVE_SELENIUM, reason="needs chromium, chromium-driver and selenium")
def test_job_page_shows_steps_and_confirmations(env, browser):  # noqa: F811
    d, base, acked, n_sms = run_job(env)
    sign_in(browser, base, VIEWER)
    browser.get(f"{base}/dashboard/#/job/steps-1")
    wait_until(lambda: js(browser, "return !!document.getElementById('steps')"), 30, 0.1,
               what="the steps table")
    cells = js(browser, """
        const out = {};
        for (const tr of document.querySelectorAll('#steps tbody tr')) {
          const row = {};
          for (const td of tr.querySelectorAll('td[data-k]')) row[td.dataset.k] = td.textContent;
          out[tr.dataset.step] = row;
        }
        return out;""")
    assert set(cells) == {"0", "1"}, cells
    num = lambda t: int(t.replace(",", ""))  # noqa: E731
    assert num(cells["1"]["messages"]) == n_sms and num(cells["1"]["delivered"]) == n_sms
    assert num(cells["0"]["delivered"]) == acked and num(cells["0"]["confirmed"]) == 5
    assert cells["1"]["to_delivery"].startswith("mean "), cells["1"]
    assert f"({n_sms})" in cells["1"]["to_delivery"]
    total = js(browser, "return document.querySelector('#confirmations [data-k=total]').textContent")
    assert total == "5"
