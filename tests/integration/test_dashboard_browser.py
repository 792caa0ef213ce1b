"""The dashboard in a real headless Chromium (Debian's chromium, chromium-driver
and python3-selenium) against a real crierd, Redis and crier-sim: without a
token the API answers 401 and the page shows a sign-in form; with a viewer
token the page shows a 20,000-resident job's progress rising until it says
completed with the counts Redis holds, and the job page's per-area table says
what `crierctl report` says; an operator cancels a running job from the page
and it ends cancelled; the fleet view shows a provider's breaker open within
2 s of the simulator failing it, and a killed crierd gone within the heartbeat
TTL. The job page's screenshot is saved (CRIER_SCREENSHOT, or the temp dir)."""

import csv
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from harness import (PREFIX, STATUSES, binary, counter, free_port, job_hash, post_job, seed,
                     wait_job, wait_until)

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not HAVE_SELENIUM or CHROMEDRIVER is None
                                or shutil.which("chromium") is None,
                                reason="needs chromium, chromium-driver and python3-selenium")

VIEWER = "viewer-token-browser-0123456789"
OPERATOR = "operator-token-browser-0123456789"
TTL_S = 5
N = 20000
AREAS = ("area:EAST", "area:WEST", "area:CENTRAL")
SURVEY = ["Yes", "No", "Not sure"]


def population(n):
    subs = {f"r{i:05d}": {"phone": f"+4478{i:08d}", "name": f"Resident {i}",
                          "channels": "sms"} for i in range(n)}
    ids = list(subs)
    areas = {a: ids[k::len(AREAS)] for k, a in enumerate(AREAS)}
    return subs, areas


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,2200", "--lang=en-GB"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def start(env, n, twilio=None, consumer="crierd-a", sim_args=("--latency-ms", "2")):
    subs, areas = population(n)
    env.start_redis()
    seed(env.r, subs, areas)
    port = free_port()
    env.start_sim("--twilio-inbound-url", f"http://127.0.0.1:{port}/hooks/twilio", *sim_args)
    tw = {"max_inflight": 16}
    tw.update(twilio or {})
    d = env.crierd(consumer, http={"listen": f"127.0.0.1:{port}"},
                   webhooks={"public_url": f"http://127.0.0.1:{port}"},
                   providers={"twilio": tw},
                   dashboard={"tokens": {"alice": {"token": VIEWER, "role": "viewer"},
                                         "olly": {"token": OPERATOR, "role": "operator"}}})
    return d, f"http://127.0.0.1:{port}", subs


def sign_in(drv, base, token):
    drv.get(base + "/dashboard/")
    wait_until(lambda: drv.find_element(By.ID, "signin").is_displayed(), 15, 0.05,
               what="the sign-in form")
    field = drv.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    drv.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
    wait_until(lambda: drv.execute_script("return document.getElementById('signin').hidden"),
               15, 0.05, what="signed in")


JOB_ROW_JS = """
const tr = document.querySelector(`#jobs tr[data-job="${arguments[0]}"]`);
if (!tr) return null;
const p = tr.querySelector('progress');
return {state: tr.querySelector('.state').textContent,
        progress: p && p.hasAttribute('value') ? Number(p.getAttribute('value')) : null,
        messages: tr.children[4].textContent};
"""


def js(drv, script, *args):
    try:
        return drv.execute_script(script, *args)
    except WebDriverException:
        return None


def num(text):
    return int(text.replace(",", ""))


def report_csv(env, job_id):
    res = subprocess.run([binary("crierctl"), "-p", str(env.redis.port), "report", job_id],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return {row["segment"]: row for row in csv.DictReader(io.StringIO(res.stdout))}


def screenshot_path():
    path = os.environ.get("CRIER_SCREENSHOT")
    return path or os.path.join(tempfile.gettempdir(), "crier-dashboard-job.png")


def test_viewer_watches_a_job_to_completion(env, browser):
    d, base, subs = start(env, N, twilio={"rate": 2500, "burst": 50})
    # no token: the API says 401 and the page asks to sign in
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/api/v1/jobs", timeout=10)
    assert e.value.code == 401
    browser.get(base + "/dashboard/")
    wait_until(lambda: browser.find_element(By.ID, "signin").is_displayed(), 15, 0.05,
               what="the sign-in form")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=token]").text == "Access token"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"

    sign_in(browser, base, VIEWER)
    job_id = "browser-appeal-1"
    post_job(env.r, {"id": job_id, "priority": "urgent",
                     "audience": {"segments": list(AREAS)}, "channels": ["sms"],
                     "message": {"sms": "Police appeal: have you seen a red van? Reply 1 Yes, "
                                        "2 No, 3 Not sure"},
                     "survey": {"question": "Have you seen a red van?", "options": SURVEY}})
    seen = []

    def watch():
        d.check_alive()
        row = js(browser, JOB_ROW_JS, job_id)
        if row and row["progress"] is not None and (not seen or seen[-1] != row["progress"]):
            seen.append(row["progress"])
        return row if row and row["state"] == "completed" else None

    row = wait_until(watch, 180, 0.1, what="the page to say completed")
    h = job_hash(env.r, job_id)
    print(f"\ndashboard: progress seen on the page: {seen}")
    assert len([p for p in seen if 0 < p < 100]) >= 2, seen
    assert seen == sorted(seen), f"progress went backwards: {seen}"
    assert num(row["messages"]) == sum(counter(h, s) for s in STATUSES) == int(h["messages"])
    assert int(h["targeted"]) == N
    # urgent stands out: a word, not colour alone
    assert "URGENT" in js(browser, "return document.querySelector(`tr[data-job='${arguments[0]}']`)"
                                   ".textContent", job_id)

    # some residents answer the survey by SMS
    answers = {f"r{i:05d}": str(1 + i % 3) for i in range(0, 60, 2)}
    for sid, opt in answers.items():
        env.sim._call("POST", "/_sim/inbound", {"from": subs[sid]["phone"], "body": opt})
    wait_until(lambda: counter(job_hash(env.r, job_id), "survey_responses") == len(answers),
               30, 0.05, what="the survey answers to be tallied")

    browser.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"] a').click()
    wait_until(lambda: js(browser, "return !!document.getElementById('areas-table')"), 120, 0.1,
               what="the per-area table")
    table = js(browser, """
        const t = document.getElementById('areas-table');
        const head = [...t.querySelectorAll('thead th')].map(th => th.textContent.replaceAll(' ', '_'));
        return {head, rows: [...t.querySelectorAll('tbody tr')].map(tr =>
            [...tr.children].map(c => c.textContent))};""")
    want = report_csv(env, job_id)
    assert set(AREAS) | {"total"} == {r[0] for r in table["rows"]}
    for cells in table["rows"]:
        exp = want[cells[0]]
        for col, cell in zip(table["head"][1:], cells[1:]):
            assert cell == exp[col], (cells[0], col, cell, exp[col])
    for col in ("residents_targeted", "residents_reached", "delivered", "replies", "reply_rate",
                "survey_responses", "option_1_yes", "option_2_no", "option_3_not_sure"):
        assert col in table["head"], table["head"]
    assert int(want["total"]["survey_responses"]) == len(answers)
    assert js(browser, "return document.getElementById('csv').getAttribute('download')") \
        == f"{job_id}-report.csv"

    # the channel table holds what Redis holds
    for st in ("sent", "delivered", "failed"):
        text = js(browser, "return document.querySelector("
                           "`tr[data-channel='sms'] td[data-status='${arguments[0]}']`).textContent", st)
        assert num(text) == counter(h, f"{st}:sms"), st
    assert "completed" in js(browser, "return document.getElementById('timeline').textContent")
    assert js(browser, "return document.querySelector('svg.chart polyline') !== null")
    # on a phone: nothing wider than the screen but the tables' own scrolling boxes
    browser.set_window_size(390, 844)
    assert js(browser, "return document.documentElement.scrollWidth <= window.innerWidth + 1")
    browser.set_window_size(1280, 2200)
    path = screenshot_path()
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(path)
    print(f"dashboard: job page screenshot saved to {path}")
    assert os.path.getsize(path) > 10000


def test_operator_cancels_a_running_job(env, browser):
    d, base, _ = start(env, 6000, twilio={"rate": 400, "burst": 20})
    job_id = "browser-cancel-1"
    post_job(env.r, {"id": job_id, "priority": "bulk", "audience": {"segments": list(AREAS)},
                     "channels": ["sms"], "message": {"sms": "Community meeting on Tuesday."}})
    wait_until(lambda: d.check_alive() or counter(job_hash(env.r, job_id), "sent") > 0, 60, 0.05,
               what="the job to be sending")

    # a viewer sees no cancel button
    sign_in(browser, base, VIEWER)
    browser.get(f"{base}/dashboard/#/job/{job_id}")
    wait_until(lambda: js(browser, "return !!document.getElementById('job-state')"), 30, 0.1,
               what="the job page")
    assert not browser.find_elements(By.ID, "cancel")
    browser.find_element(By.ID, "signout").click()

    sign_in(browser, base, OPERATOR)
    browser.get(f"{base}/dashboard/#/job/{job_id}")
    wait_until(lambda: js(browser, "return !!document.getElementById('cancel')"), 30, 0.1,
               what="the cancel button")
    assert job_hash(env.r, job_id)["state"] not in ("completed", "cancelled", "expired")
    browser.find_element(By.ID, "cancel").click()
    wait_until(lambda: browser.switch_to.alert, 10, 0.05, what="the confirmation").accept()
    h = wait_job(env.r, job_id, [d], state="cancelled", timeout=60)
    assert counter(h, "cancelled") > 0
    wait_until(lambda: (js(browser, "return document.getElementById('job-state').textContent")
                        or "") == "cancelled", 30, 0.1, what="the page to say cancelled")
    assert "cancel requested by dashboard token 'olly'" in d.log_text()


FLEET_JS = """
const out = {};
for (const s of document.querySelectorAll('section.node')) {
  const rows = {};
  for (const tr of s.querySelectorAll('tr[data-provider]'))
    rows[tr.dataset.provider] = tr.querySelector('.state').textContent;
  out[s.dataset.node] = rows;
}
return out;
"""


def test_fleet_view_breaker_and_killed_node(env, browser):
    twilio = {"rate": 300, "burst": 20, "breaker_failures": 3, "breaker_open_ms": 60000,
              "timeout_ms": 2000}
    d, base, _ = start(env, 6000, twilio=twilio)
    b = env.crierd("crierd-b", providers={"twilio": twilio})
    sign_in(browser, base, VIEWER)
    browser.get(base + "/dashboard/#/fleet")
    wait_until(lambda: set(js(browser, FLEET_JS) or {}) == {"crierd-a", "crierd-b"}, 15, 0.05,
               what="both nodes on the page")
    assert js(browser, FLEET_JS)["crierd-a"]["twilio"] == "ok"

    post_job(env.r, {"id": "browser-fleet-1", "priority": "normal",
                     "audience": {"segments": list(AREAS)}, "channels": ["sms"],
                     "message": {"sms": "Flooding on the ring road."}})
    wait_until(lambda: d.check_alive() or counter(job_hash(env.r, "browser-fleet-1"), "sent") > 50,
               60, 0.05, what="twilio sending")
    env.sim.configure("twilio", error_rate=1.0)
    failed_at = time.monotonic()
    wait_until(lambda: "breaker open" in [rows.get("twilio") for rows in
                                          (js(browser, FLEET_JS) or {}).values()],
               15, 0.02, what="the page to show twilio's breaker open")
    took = time.monotonic() - failed_at
    print(f"\ndashboard: breaker open on the page {took * 1000:.0f} ms after the sim failed")

    b.kill()
    killed_at = time.monotonic()
    wait_until(lambda: set(js(browser, FLEET_JS) or {"crierd-b": 1}) == {"crierd-a"},
               TTL_S + 3, 0.05, what="the killed node to leave the page")
    gone = time.monotonic() - killed_at
    print(f"dashboard: killed crierd gone from the page after {gone * 1000:.0f} ms")
