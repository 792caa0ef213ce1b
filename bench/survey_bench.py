"""Survey answers applied per second (run by hand or from bench/run.sh; never in tests).

A five-question "Your Views" wave, answered N times through the signed form
(`POST /s/<token>`, all five questions in one post) and N times by SMS (a signed
Twilio inbound webhook, one question per reply), against a real redis-server,
crier-sim and crierd. The figure is answers stored per second as crierd applies
them: a form post stores five answers, an SMS one. The clients are 8 Python
threads on the same 2 cores, so the rate is a floor for crierd.

Environment: BUILD (binaries, default build), SURVEY_BENCH_N (50000 per way, so
100,000 answer requests in all). Writes BENCH_OUT/survey.json (bench/results)."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
os.environ.setdefault("CRIER_BUILD", os.environ.get("BUILD", "build"))

from harness import PREFIX, Env, free_port, post_job, seed, wait_job  # noqa: E402

OUT = Path(os.environ.get("BENCH_OUT", str(REPO / "bench" / "results")))
N = int(os.environ.get("SURVEY_BENCH_N", "50000"))
SECRET, TOKEN, THREADS = "bench-link-secret-0123456789", "test-token", 8
SCALE = ["Strongly agree", "Agree", "Neither", "Disagree", "Strongly disagree"]
QS = ["understand", "safe", "informed", "good_job", "trust"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def survey_path(sub):
    """The signed survey link of one resident, as crierd renders {{survey_url}}."""
    p = f"2|s|{sub}|bench-views|{int(time.time()) + 86400}|en".encode()
    return f"/s/{b64(p)}.{b64(hmac.new(SECRET.encode(), p, hashlib.sha256).digest())}"


def run(port, reqs):
    """Sends every request over THREADS keep-alive connections; seconds taken."""
    def worker(chunk):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for p, body, hdrs in chunk:
            c.request("POST", p, body, hdrs)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"POST {p}: HTTP {r.status}")
        c.close()
    t0 = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, [reqs[i::THREADS] for i in range(THREADS)]))
    return time.monotonic() - t0


def form_requests(n):
    return [(survey_path(f"f{i}"),
             urllib.parse.urlencode({f"q.{q}": str(1 + (i + k) % 5)
                                     for k, q in enumerate(QS)}).encode(), FORM)
            for i in range(n)]


def sms_requests(port, n):
    reqs = []
    for i in range(n):
        params = [("Body", str(1 + i % 5)), ("From", f"+4478{i:08d}"), ("MessageSid", f"SMb{i}")]
        data = f"http://127.0.0.1:{port}/hooks/twilio" + "".join(k + v for k, v in sorted(params))
        sig = base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest())
        reqs.append(("/hooks/twilio", urllib.parse.urlencode(params).encode(),
                     {**FORM, "X-Twilio-Signature": sig.decode()}))
    return reqs


def main():
    with Env("bench-survey") as env:
        env.start_redis()
        env.start_sim()
        port = free_port()
        d = env.crierd(http={"listen": f"127.0.0.1:{port}", "max_connections": 64},
                       webhooks={"public_url": f"http://127.0.0.1:{port}", "window_s": 300},
                       links={"secret": SECRET})
        seed(env.r, {"b0": {"email": "b0@bench.test", "channels": "email"}})
        post_job(env.r, {"id": "bench-views", "audience": {"subscribers": ["b0"]},
                         "channels": ["email"], "message": {"subject": "Your Views", "text": "x"},
                         "survey": {"id": "bench", "wave": "w1", "ask": "trust", "questions": [
                             {"id": q, "text": q, "scale": SCALE, "score": [100, 75, 50, 25, 0]}
                             for q in QS]}})
        wait_job(env.r, "bench-views", [d])
        form_s = run(port, form_requests(N))
        # each SMS answer is to the survey SMS the number was sent last
        pipe = env.r.pipeline(transaction=False)
        for i in range(N):
            pipe.hset(f"{PREFIX}sms:last", f"+4478{i:08d}", f"bench-views/0/m{i}")
        pipe.execute()
        sms_s = run(port, sms_requests(port, N))
        stored = env.r.hlen(f"{PREFIX}survey:bench:w1:q:trust")
        if stored != 2 * N:
            raise RuntimeError(f"{stored} answers to 'trust' stored, not {2 * N}")
    res = {"form_posts": N, "form_s": round(form_s, 2), "form_posts_per_s": round(N / form_s),
           "form_answers_per_s": round(5 * N / form_s),
           "sms_answers": N, "sms_s": round(sms_s, 2), "sms_answers_per_s": round(N / sms_s)}
    print(f"survey: {N:,} form posts (5 answers each) in {form_s:.1f} s: "
          f"{res['form_posts_per_s']:,} posts/s, {res['form_answers_per_s']:,} answers/s")
    print(f"survey: {N:,} SMS answers in {sms_s:.1f} s: {res['sms_answers_per_s']:,} answers/s")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "survey.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
