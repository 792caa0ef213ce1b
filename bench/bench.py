"""crier's benchmark (`make bench`, through bench/run.sh): starts a private
redis-server and crier-sim, seeds subscribers with the pipelined seeder, and
measures crierd side by side with a bare libcurl multi loop replaying the
requests crier sent in the same run, wrk and a BullMQ dispatcher against the
same simulator in the same round. Writes
bench/results/latest.json and latest.png and prints a summary table.

Environment: BUILD (binaries, default build), BENCH_RUNS (repetitions, 3),
BENCH_THROUGHPUT_RUNS (rounds of crier beside its replays, BENCH_RUNS),
BENCH_PEER_ROUNDS (rounds with the BullMQ peer, 2), BENCH_TLS_ROUNDS (rounds
with the TLS scenarios, 2),
BENCH_SCALE (audience sizes multiplied by this, 1; a smaller value is a smoke
test), BENCH_PEER (0 skips the BullMQ peer), BENCH_PEER_SUBSCRIBERS (100000, SMS only),
BENCH_WA_SUBSCRIBERS (residents of each WhatsApp scenario, 20000),
BENCH_WA_ROUNDS (rounds of the WhatsApp scenarios, 2),
BENCH_OUT (results directory, bench/results). valgrind, when present, counts
the instructions per message of crierd and redis-server.
`bench.py whatsapp` runs only the WhatsApp scenarios (whatsapp.json);
`bench.py sentinel` only the Sentinel round; `bench.py cost` only the
instructions per message (cost.json), to compare two builds."""

import copy
import datetime
import hashlib
import hmac
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import harness  # noqa: E402
from harness import PREFIX  # noqa: E402

BUILD = os.environ.get("BUILD", "build")
os.environ["CRIER_BUILD"] = BUILD
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
# The throughput ratios are what the VM's drift disturbs most, so they get more
# rounds than the other scenarios (whose medians hold still with 3).
THROUGHPUT_RUNS = int(os.environ.get("BENCH_THROUGHPUT_RUNS", str(RUNS)))
# The BullMQ peer takes about a minute per round at 100,000 messages: it runs in
# this many of the rounds (the first ones), each beside crier's runs of that round.
PEER_ROUNDS = int(os.environ.get("BENCH_PEER_ROUNDS", "2"))
# ... and the TLS scenarios in this many
TLS_ROUNDS = int(os.environ.get("BENCH_TLS_ROUNDS", "2"))
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
PEER = os.environ.get("BENCH_PEER", "1") != "0"
OUT = Path(os.environ.get("BENCH_OUT", str(REPO / "bench" / "results")))
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The whole run must stay within this many seconds: the 1,000,000-subscriber bulk
# job is cut short (and reported as partial) when a busy machine makes it too slow.
BUDGET_S = float(os.environ.get("BENCH_BUDGET_S", "840"))
T_START = time.monotonic()


def scaled(n):
    return max(10, int(n * SCALE))


N_THROUGHPUT = scaled(100_000)
N_SMALL = scaled(10_000)
N_BULK = scaled(1_000_000)
N_URGENT = scaled(1_000)
N_SMS = scaled(100_000)
N_APNS = scaled(100_000)
N_PEER = scaled(int(os.environ.get("BENCH_PEER_SUBSCRIBERS", "100000")))
N_COST = scaled(3_000)
N_WA = scaled(int(os.environ.get("BENCH_WA_SUBSCRIBERS", "20000")))
WA_ROUNDS = int(os.environ.get("BENCH_WA_ROUNDS", "2"))
WRK_SECONDS = 10 if SCALE >= 1 else 3
SAMPLE_WINDOWS = 100  # latency sample: this many evenly spaced windows of the sim log ...
SAMPLE_PER_WINDOW = 100  # ... of this many entries each

MESSAGE = {
    "subject": "Road closure tonight",
    "text": "Hello {{name}}, the A6 London Road will be closed from 8pm tonight for "
            "resurfacing. Please use the signed diversion. Leicestershire Police.",
    "sms": "Road closure: A6 London Road closed from 8pm tonight. Use the signed diversion.",
    "push": {"title": "Road closure tonight", "body": "A6 London Road closed from 8pm."},
}
# WhatsApp: an approved template (the residents seeded have no open window)
WA_MESSAGE = {"whatsapp": {"template": "police_appeal", "language": "en_GB",
                           "variables": {"1": "{{name}}", "2": "A6 London Road"}}}
WA_CONTENT_SID = "HX" + "0123456789abcdef" * 2


def log(msg):
    print(f"bench: {msg}", flush=True)


# ---- figures ------------------------------------------------------------------

def figure(values, unit, note=None):
    """{runs, median, min, max, unit} of the measured values (None dropped)."""
    vals = [v for v in values if v is not None]
    out = {"unit": unit, "runs": [round(v, 3) for v in vals]}
    if vals:
        out.update(median=round(statistics.median(vals), 3), min=round(min(vals), 3),
                   max=round(max(vals), 3))
    else:
        out.update(median=None, min=None, max=None)
    if note:
        out["note"] = note
    return out


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


# ---- processes -------------------------------------------------------------------

def proc_cpu_s(pid):
    """utime + stime of pid in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(pid):
    """The processes whose parent is pid (a supervising crierd's workers)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(name))
    return out


def auto_workers():
    """What "workers": "auto" gives on this machine: one per usable core."""
    return max(1, min(64, len(os.sched_getaffinity(0))))


def proc_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def _text(v):
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def command_calls(r):
    """Total calls per command from INFO commandstats."""
    return {k[len("cmdstat_"):]: v["calls"] for k, v in r.info("commandstats").items()}


def redis_cpu_s(r):
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def callgrind_argv(prefix):
    """valgrind running a program under callgrind; its counts go to prefix.PID.N."""
    return ["valgrind", "--tool=callgrind", "--quiet", "--compress-strings=no",
            f"--callgrind-out-file={prefix}.%p"]


def callgrind_control(what, pid):
    subprocess.run(["callgrind_control", what, str(pid)], check=True, capture_output=True,
                   timeout=120)


def callgrind_summary(prefix, pid):
    """Instructions in the newest dump of process pid (since the last zeroing)."""
    dumps = [Path(f"{prefix}.{pid}.{n}") for n in range(1, 100)]
    dumps = [p for p in dumps if p.exists()]
    if not dumps:
        raise harness.HarnessError(f"no callgrind dump of pid {pid} under {prefix}")
    keep = os.environ.get("BENCH_KEEP_PROFILES")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(dumps[-1], Path(keep) / f"{Path(prefix).name}-{Path(prefix).parent.parent.name}-{Path(prefix).parent.name}.out")
    with open(dumps[-1]) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise harness.HarnessError(f"{dumps[-1]}: no summary line")


class CallgrindRedis(harness.RedisServer):
    """The private redis-server run under callgrind."""

    def _argv(self, port):
        return callgrind_argv(self.dir / "redis") + super()._argv(port)


APNS = {"team_id": "TEAM000000", "key_id": "KEY0000000", "topic": "org.crier.app"}

SSE_TOKEN = "bench-dashboard-token-0123456789"


class SseClient(threading.Thread):
    """A browser-like dashboard client: holds /api/v1/events open and reads
    every event until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/api/v1/events"
        self.events = 0
        self.bytes = 0
        self.stopping = False
        self.resp = None

    def run(self):
        req = urllib.request.Request(self.url)
        req.add_header("Authorization", f"Bearer {SSE_TOKEN}")
        try:
            self.resp = urllib.request.urlopen(req, timeout=30)
            while not self.stopping:
                line = self.resp.readline()
                if not line:
                    break
                self.bytes += len(line)
                self.events += line.startswith(b"event: ")
        except OSError as e:
            if not self.stopping:
                log(f"sse client: {e}")

    def stop(self):
        self.stopping = True
        if self.resp is not None:
            self.resp.close()
        self.join(5)


class Bench:
    def __init__(self):
        self.env = harness.Env("crier-bench")
        self.r = None
        self.sim = None
        self.daemon_no = 0
        self.capture = {}
        self.config = None
        self.concurrency = 0
        # per provider: {"base": URL of its listener when not the sim's own,
        # "http": "1.1" or "2", "headers": [constant headers the log leaves out]}
        self.replay_providers = {}

    # -- setup --
    def start(self):
        self.r = self.env.start_redis().client()
        self.r.config_set("maxmemory-policy", "noeviction")
        # Bodies are logged whole, for crier's runs and the replays alike, so
        # that the replaying reference can send exactly what crier sent.
        tls_args = self.make_tls()
        self.sim = self.env.start_sim("--log-body-bytes", "1048576", "--max-log", "3000000",
                                      *tls_args)
        self.config = harness.crierd_config(self.env.redis.port, self.sim.port, log_level="warn")
        self.concurrency = sum(int(p.get("max_inflight", 64))
                               for p in self.config["providers"].values())

    def seed(self, id_prefix, start, count, segment, channels, port=None):
        t0 = time.monotonic()
        res = subprocess.run([str(harness.build_dir() / "crier-seed"), "127.0.0.1",
                              str(port or self.env.redis.port), PREFIX, id_prefix, str(start),
                              str(count), segment, channels],
                             check=True, capture_output=True, text=True)
        secs = time.monotonic() - t0
        log(f"seeded {count:,} subscribers ({channels}) into {segment} in {secs:.1f}s")
        return json.loads(res.stdout)

    def crierd(self, config=None, r=None, wrap=(), ready_s=30):
        """A fresh crierd (its own consumer name), ready once it reads the job
        stream of r (the bench's Redis by default; each of its workers, when the
        config has "workers"). wrap: a command (valgrind) that runs it."""
        r = r or self.r
        self.daemon_no += 1
        name = f"bench-{self.daemon_no}"
        cfg = dict(config or self.config, consumer=name)
        n = cfg.get("workers", 1)
        n = auto_workers() if n == "auto" else int(n)
        names = {name} if n == 1 else {f"{name}-{i}" for i in range(n)}
        d = harness.Crierd(self.env.dir, cfg, name=name)
        self.env.daemons.append(d)
        d.write_config()
        d.proc = harness._spawn([*wrap, harness.binary("crierd"), "-c", str(d.config_path)],
                                d.log_path)

        def ready():
            d.check_alive()
            try:
                seen = {c["name"] for c in r.xinfo_consumers(f"{PREFIX}jobs", harness.GROUP)}
                return names <= seen
            except Exception:  # noqa: BLE001 - the group does not exist yet
                return False

        harness.wait_until(ready, ready_s, 0.01, what=f"crierd {name} to read {PREFIX}jobs")
        return d

    def stop(self, d):
        try:
            d.term(30)
        except harness.HarnessError as e:
            log(str(e))

    # -- sim log --
    def first_seq(self):
        page = self.log_page(0, 1)
        entries = page.get("entries", [])
        return (entries[0]["seq"], entries[0]["t_ms"]) if entries else (None, None)

    def sim_total(self):
        """Requests the simulator has seen (one per log entry)."""
        return sum(e["requests"] for e in self.sim.stats()["endpoints"].values())

    def sim_recipients(self):
        """Messages the simulator accepted: a SendGrid request carries up to 1,000."""
        return sum(e["recipients"] for e in self.sim.stats()["endpoints"].values())

    def log_page(self, since, limit):
        return self.sim._call("GET", f"/_sim/log?since={since}&limit={limit}")

    def latency_sample(self, seq0, total, t0_ms):
        """XADD-to-provider latencies (ms) of an evenly spaced sample of the sim log."""
        lat = []
        if seq0 is None or total <= 0:
            return lat
        windows = min(SAMPLE_WINDOWS, max(1, total // SAMPLE_PER_WINDOW))
        step = total / windows
        for k in range(windows):
            since = seq0 - 1 + int(k * step)
            for e in self.log_page(since, SAMPLE_PER_WINDOW)["entries"]:
                lat.append(e["t_ms"] - t0_ms)
        return sorted(lat)

    def receipt_latency_sample(self, t0_ms, t1_ms, r=None):
        """Receipts' latency_us (crier's submit-to-answer time) sampled over the run."""
        r = r or self.r
        out = []
        span = max(1, t1_ms - t0_ms)
        for k in range(SAMPLE_WINDOWS):
            start = t0_ms + int(k * span / SAMPLE_WINDOWS)
            for _, f in r.xrange(f"{PREFIX}receipts", min=f"{start}-0", max="+", count=50):
                try:
                    out.append(int(f["latency_us"]) / 1000.0)
                except (KeyError, ValueError):
                    pass
        return sorted(out)

    # -- a job --
    def post(self, job, r=None, sign=None):
        """XADDs job; sign = (key id, secret) signs the entry as an integrator
        would (key, ts, sig = v1=HMAC-SHA256(secret, ts "." job))."""
        if sign is None:
            entry = harness.post_job(r or self.r, job)
        else:
            doc = json.dumps(job)
            ts = str(int(time.time()))
            mac = hmac.new(sign[1].encode(), f"{ts}.{doc}".encode(), hashlib.sha256)
            entry = (r or self.r).xadd(f"{PREFIX}jobs", {"job": doc, "key": sign[0], "ts": ts,
                                                         "sig": "v1=" + mac.hexdigest()})
        return int(entry.split("-")[0])

    def wait_done(self, job_id, d, timeout, r=None, poll_s=0.01):
        """Waits for the job (in r, the bench's Redis by default) to complete,
        asking every poll_s; d is the crierd (or list of them) doing it."""
        r = r or self.r
        deadline = time.monotonic() + timeout
        key = f"{PREFIX}job:{job_id}"
        while True:
            if r.hget(key, "state") == "completed":
                return r.hgetall(key)
            for one in d if isinstance(d, list) else [d]:
                one.check_alive()
            if time.monotonic() > deadline:
                raise harness.HarnessError(f"job {job_id} not completed after {timeout}s: "
                                           f"{r.hgetall(key)}")
            time.sleep(poll_s)

    def job(self, job_id, priority, segment, channels, message=None):
        return {"id": job_id, "priority": priority, "audience": {"segments": [segment]},
                "channels": channels, "message": message or MESSAGE}

    def wa_config(self, kind):
        """The benchmark's config with one WhatsApp provider ("twilio" or
        "meta") on the simulator, as the only provider of channel whatsapp,
        with the same max_inflight as the SMS provider: (config, its name)."""
        cfg = copy.deepcopy(self.config)
        conc = int(cfg["providers"].get("twilio", {}).get("max_inflight", 64))
        if kind == "twilio":
            name, prov = "twilio_wa", {"type": "twilio_whatsapp", "url": self.sim.url,
                                       "account_sid": cfg["providers"]["twilio"]["account_sid"],
                                       "auth_token": cfg["providers"]["twilio"]["auth_token"],
                                       "from": "+447700900000",
                                       "content_sids": {"police_appeal": WA_CONTENT_SID}}
        else:
            name, prov = "meta_wa", {"type": "meta_whatsapp", "url": self.sim.url,
                                     "phone_number_id": "106540352242922",
                                     "access_token": "meta-test-token"}
        prov["max_inflight"] = conc
        cfg["providers"][name] = prov
        cfg["channels"] = dict(cfg["channels"], whatsapp=[name])
        return cfg, name

    def config_with(self, workers):
        """The benchmark's crierd config with the given "workers" (1: as it is)."""
        return self.config if workers == 1 else dict(self.config, workers=workers)

    def crier_run(self, job_id, segment, channels, priority="normal", timeout=900, workers=1,
                  config=None, r=None, sign=None, sse=False, message=None):
        """One job through a fresh crierd with the given "workers" (1: one
        process, one loop); returns its figures, CPU and peak RSS summed over the
        supervisor and its workers. config and r: another crierd config and the
        Redis (primary) it uses, instead of the bench's own. sign: see post().
        sse: with the dashboard on and one client holding its event stream open
        for the whole run."""
        r = r or self.r
        cfg = config or self.config_with(workers)
        client = None
        if sse:
            port = harness.free_port()
            cfg = dict(cfg, http={"listen": f"127.0.0.1:{port}"},
                       dashboard={"tokens": {"bench": {"token": SSE_TOKEN, "role": "viewer"}}})
        d = self.crierd(cfg, r=r)
        if sse:
            client = SseClient(port)
            client.start()
        pids = [d.proc.pid] + child_pids(d.proc.pid)
        self.sim.reset()
        calls0, rcpu0 = command_calls(r), redis_cpu_s(r)
        cpu0 = sum(proc_cpu_s(pid) for pid in pids)
        xadd_ms = self.post(self.job(job_id, priority, segment, channels, message), r=r,
                            sign=sign)
        h = self.wait_done(job_id, d, timeout, r=r)
        cpu1 = sum(proc_cpu_s(pid) for pid in pids)
        if client is not None:
            client.stop()
        rcpu1, calls1 = redis_cpu_s(r), command_calls(r)
        hwm = sum(proc_hwm_kb(pid) for pid in pids)
        msgs = int(h.get("messages", 0))
        done_ms = int(h["completed_ms"])
        seq0, first_t = self.first_seq()
        total = self.sim_total()
        lat = self.latency_sample(seq0, total, xadd_ms)
        rlat = self.receipt_latency_sample(xadd_ms, done_ms, r)
        self.stop(d)
        delta = {k: calls1.get(k, 0) - calls0.get(k, 0) for k in calls1}
        delta = {k: v for k, v in delta.items() if v > 0}
        secs = (done_ms - xadd_ms) / 1000.0
        res = {
            "job": job_id, "workers": workers, "crierd_processes": len(pids), "messages": msgs,
            "sent": int(h.get("sent", 0)),
            "sim_requests": total, "seconds": secs,
            "rate": msgs / secs if secs > 0 else None,
            "first_ms": (first_t - xadd_ms) if first_t is not None else None,
            "lat_p50_ms": pct(lat, 50), "lat_p99_ms": pct(lat, 99), "lat_samples": len(lat),
            "rtt_p50_ms": pct(rlat, 50), "rtt_p99_ms": pct(rlat, 99),
            "cpu_us_per_msg": (cpu1 - cpu0) * 1e6 / msgs if msgs else None,
            "redis_cpu_us_per_msg": (rcpu1 - rcpu0) * 1e6 / msgs if msgs else None,
            "redis_cmds_per_msg": sum(delta.values()) / msgs if msgs else None,
            "redis_cmds": dict(sorted(delta.items(), key=lambda kv: -kv[1])[:12]),
            "hwm_kb": hwm,
            "sse_events": client.events if client is not None else None,
        }
        log(f"crier {job_id} (workers {workers}{', SSE client' if sse else ''}): "
            f"{msgs:,} messages in {secs:.2f}s = "
            f"{res['rate']:,.0f} msg/s, "
            f"first {res['first_ms']} ms, peak RSS {hwm / 1024:.1f} MB, "
            f"{res['cpu_us_per_msg']:.1f} us CPU/msg, {res['redis_cmds_per_msg']:.2f} Redis cmds/msg")
        if total != int(h.get("sent", 0)) + int(h.get("delivered", 0)) + int(h.get("failed", 0)):
            log(f"note: simulator saw {total} requests for {h.get('sent')} sent")
        return res

    # -- instructions per message --
    def instructions_run(self, n_subs, channels=("email", "sms", "push")):
        """crierd's and redis-server's user-space instructions per message
        (callgrind) over a three-channel job of n_subs residents, each process
        counted from crierd being ready to the job's completion. Unlike CPU time,
        these hardly move with the machine's load, so two builds compare by them
        even on a busy machine. None when valgrind is missing."""
        if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
            log("valgrind not found: instructions per message left out")
            return None
        tag = "-".join(channels)
        workdir = self.env.dir / f"callgrind-{tag}"
        rs = CallgrindRedis(workdir).start(timeout=120)
        d = None
        try:
            r = rs.client()
            r.config_set("maxmemory-policy", "noeviction")
            self.seed("c", 0, n_subs, "bench:cost", ",".join(channels), port=rs.port)
            cfg = harness.crierd_config(rs.port, self.sim.port, log_level="warn")
            d = self.crierd(cfg, r=r, ready_s=120,
                            wrap=callgrind_argv(workdir / "crierd"))
            procs = {"crierd": (d.proc.pid, workdir / "crierd"),
                     "redis": (rs.proc.pid, rs.dir / "redis")}
            for pid, _ in procs.values():
                callgrind_control("--zero", pid)
            self.post(self.job("cost-1", "normal", "bench:cost", list(channels)), r=r)
            h = self.wait_done("cost-1", d, 600, r=r, poll_s=0.5)
            for pid, _ in procs.values():
                callgrind_control("--dump", pid)
            msgs = int(h.get("messages", 0))
            res = {"messages": msgs}
            for name, (pid, prefix) in procs.items():
                res[f"{name}_instructions_per_msg"] = callgrind_summary(prefix, pid) / msgs
            log(f"instructions per message over {msgs:,} messages ({tag}): "
                f"crierd {res['crierd_instructions_per_msg']:,.0f}, "
                f"redis-server {res['redis_instructions_per_msg']:,.0f}")
            return res
        finally:
            if d is not None:
                try:
                    d.term(120)
                except harness.HarnessError as e:
                    log(str(e))
            rs.stop()

    # -- TLS --
    def make_tls(self):
        """A CA and a server certificate made for this run, and the simulator
        flags that serve every HTTP provider API over HTTPS with them as well;
        no flags when openssl is missing."""
        self.tls_files = None
        if shutil.which("openssl") is None:
            log("openssl not found: the TLS scenario is left out")
            return ()
        from certs import make_ca, make_ec_key, make_server_cert, public_key
        d = self.env.dir / "tls"
        ca, ca_key = make_ca(d, name="crier bench CA")
        cert, key = make_server_cert(d, ca, ca_key)
        p8 = make_ec_key(d / "apns.p8")
        pub = public_key(p8, d / "apns.pub")
        self.tls_files = {"ca": ca, "port_file": d / "https.port", "p8": p8,
                          "apns_port_file": d / "apns.port"}
        return ("--tls-cert", str(cert), "--tls-key", str(key), "--https-port", "0",
                "--https-port-file", str(d / "https.port"),
                "--apns-port", "0", "--apns-port-file", str(d / "apns.port"),
                "--apns-key", str(pub), "--apns-team", APNS["team_id"],
                "--apns-key-id", APNS["key_id"], "--apns-topic", APNS["topic"])

    def start_tls(self):
        """The simulator's HTTPS listener and a crierd config that talks to it
        with the run's CA file: {"config", "ca", "base"}, or None."""
        if not self.tls_files:
            return None
        base = f"https://127.0.0.1:{int(self.tls_files['port_file'].read_text())}"
        apns = f"https://127.0.0.1:{int(self.tls_files['apns_port_file'].read_text())}"
        cfg = copy.deepcopy(self.config)
        for p in cfg["providers"].values():
            p["url"] = base
            p["ca_file"] = str(self.tls_files["ca"])
        # push through APNs, which crier talks HTTP/2 to (streams multiplexed
        # on its connections); the replay does the same
        cfg["providers"]["apns"] = dict(APNS, type="apns", url=apns,
                                        private_key=f"$file:{self.tls_files['p8']}",
                                        ca_file=str(self.tls_files["ca"]))
        cfg["channels"] = dict(cfg["channels"], push=["apns"])
        self.replay_providers["apns"] = {"base": apns, "http": "2"}
        return {"config": cfg, "ca": self.tls_files["ca"], "base": base}

    # -- capture what crier sends --
    def capture_requests(self):
        """Runs a one-resident job through a simulator that logs bodies and keeps
        one request per provider: the baseline tools send exactly these."""
        capdir = self.env.dir / "capture"
        capdir.mkdir(exist_ok=True)
        sim = harness.Sim(capdir, ()).start()
        try:
            cfg = harness.crierd_config(self.env.redis.port, sim.port, log_level="warn")
            self.seed("cap", 0, 1, "bench:capture", "email,sms,push")
            saved, self.config = self.config, cfg
            try:
                d = self.crierd()
                self.post(self.job("capture-1", "normal", "bench:capture",
                                   ["email", "sms", "push"]))
                self.wait_done("capture-1", d, 60)
                self.stop(d)
            finally:
                self.config = saved
            for ep in ("sendgrid", "twilio", "fcm"):
                e = sim.log(ep)["entries"][0]
                self.capture[ep] = {"path": e["path"], "auth": e["auth"],
                                    "ctype": e["content_type"], "body": e["body"]}
        finally:
            sim.stop()
        spec = self.env.dir / "http_bare.spec"
        with open(spec, "w") as f:
            for ep in ("sendgrid", "twilio", "fcm"):
                c = self.capture[ep]
                f.write("\t".join([self.sim.url + c["path"], c["body"],
                                   f"Authorization: {c['auth']}",
                                   f"Content-Type: {c['ctype']}"]) + "\n")
        return spec

    # -- the replaying reference --
    def record_replay(self, tag, base=None, names=None, config=None):
        """Writes every request the simulator (the bench's by default) logged
        since its last reset as http_bare's replay spec: per provider endpoint
        a file of URL<TAB>BODY lines in the order crier sent them, its
        max_inflight handles, its HTTP version and the headers that matter.
        names: endpoint -> provider name where it is not the endpoint's own
        (a WhatsApp provider), config: the crierd config that ran (its
        max_inflight). Returns (spec path, requests, messages carried)."""
        sim = self.sim
        base = base or sim.url
        spec = self.env.dir / f"replay-{tag}.spec"
        lines, n, msgs = [], 0, 0
        eps = {ep: st for ep, st in sim.stats()["endpoints"].items() if st.get("requests")}
        for ep, st in eps.items():
            prov = dict({"sendgrid": "sendgrid", "twilio": "twilio", "fcm": "fcm",
                         "apns": "apns"}, **(names or {})).get(ep)
            if prov is None:
                continue
            pconf = self.replay_providers.get(prov, {})
            path = self.env.dir / f"replay-{tag}-{ep}.req"
            first = None
            with open(path, "w") as f:
                since = 0
                while True:
                    page = sim.log(ep, since)
                    for e in page.get("entries", []):
                        body = e.get("body") or ""
                        if "\n" in body or "\n" in e["path"]:
                            raise harness.HarnessError(f"replay: a {ep} body holds a newline")
                        url = (pconf.get("base") or base) + e["path"]
                        f.write(f"{url}\t{body}\n")
                        first = first or e
                        n += 1
                        msgs += max(1, len(e.get("recipients") or []))
                    nxt = page.get("next", since)
                    if not page.get("entries") or nxt == since:
                        break
                    since = nxt
            if first is None:
                continue
            hdrs = [f"Content-Type: {first['content_type']}"]
            if first.get("auth"):
                hdrs.append(f"Authorization: {first['auth']}")
            hdrs += pconf.get("headers", [])
            if ep == "apns":  # the APNs headers crier sent, which the log keeps as fields
                hdrs += [f"{h}: {first['fields'][h]}" for h in
                         ("apns-topic", "apns-push-type", "apns-priority", "apns-expiration",
                          "apns-collapse-id") if (first.get("fields") or {}).get(h)]
            conc = int((config or self.config)["providers"].get(prov, {})
                       .get("max_inflight", 64))
            lines.append("\t".join([str(path), str(conc), pconf.get("http", "1.1"), *hdrs]))
        spec.write_text("\n".join(lines) + "\n")
        return spec, n, msgs

    def replay_run(self, spec, cafile=None):
        """http_bare replaying spec against the simulator: {requests, seconds,
        rps}, or None when it failed."""
        self.sim.reset()
        argv = [str(harness.build_dir() / "http_bare"), "-r", str(spec)]
        if cafile:
            argv.append(str(cafile))
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            log(f"http_bare replay failed ({res.returncode}): {res.stderr.strip()[:300]}")
            return None
        out = json.loads(res.stdout)
        out["cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        log(f"http_bare replay: {out['requests']:,} requests in {out['seconds']:.2f}s = "
            f"{out['rps']:,.0f} req/s")
        return out

    def replayed(self, tag, run, cafile=None, base=None, names=None, config=None):
        """crier's run (a crier_run result) and the reference's replay of its
        requests, side by side: adds the rates per request and per message."""
        if run is None:
            return None
        t0 = time.monotonic()
        spec, n, msgs = self.record_replay(tag, base=base, names=names, config=config)
        log(f"{tag}: {n:,} requests read back from the simulator log in "
            f"{time.monotonic() - t0:.1f}s")
        ref = self.replay_run(spec, cafile=cafile)
        secs = run["seconds"]
        out = {"crier": run, "requests": n, "messages": run["messages"],
               "crier_req_per_s": n / secs if secs > 0 else None,
               "crier_msgs_per_s": run["rate"], "reference": ref}
        if ref:
            out["reference_req_per_s"] = ref["rps"]
            out["reference_msgs_per_s"] = run["messages"] / ref["seconds"]
            out["ratio_per_request"] = ratio(out["crier_req_per_s"], ref["rps"])
            out["ratio_per_message"] = ratio(out["crier_msgs_per_s"],
                                             out["reference_msgs_per_s"])
        log(f"{tag}: crier {out['crier_req_per_s']:,.0f} req/s, reference "
            f"{out.get('reference_req_per_s') or 0:,.0f} req/s: "
            f"ratio {out.get('ratio_per_request')} per request")
        return out

    # -- baselines --
    def bare_run(self, spec, requests):
        self.sim.reset()
        res = subprocess.run([str(harness.build_dir() / "http_bare"), "-f", str(spec),
                              str(requests), str(self.concurrency)],
                             capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            log(f"http_bare failed ({res.returncode}): {res.stderr.strip()[:300]}")
            return None
        out = json.loads(res.stdout)
        log(f"http_bare: {out['requests']:,} requests in {out['seconds']:.2f}s = "
            f"{out['rps']:,.0f} req/s")
        return out["rps"]

    def wrk_run(self):
        if shutil.which("wrk") is None:
            return None
        self.sim.reset()
        c = self.capture["twilio"]
        env = dict(os.environ, BENCH_BODY=c["body"], BENCH_AUTH=c["auth"], BENCH_CTYPE=c["ctype"])
        res = subprocess.run(["wrk", "-t2", f"-c{self.concurrency}", f"-d{WRK_SECONDS}s",
                              "-s", str(REPO / "bench" / "wrk_post.lua"),
                              self.sim.url + c["path"]],
                             capture_output=True, text=True, env=env, timeout=120)
        rps = None
        for line in res.stdout.splitlines():
            if line.startswith("Requests/sec:"):
                rps = float(line.split()[1])
            if "Non-2xx" in line:
                log(f"wrk: {line.strip()}")
        log(f"wrk (Twilio request): {rps:,.0f} req/s" if rps else f"wrk failed: {res.stderr[:300]}")
        return rps

    # -- the BullMQ peer --
    def peer_run(self, run, segment, n_subs, channels=("email", "sms", "push")):
        peer_dir = REPO / "bench" / "peer"
        self.sim.reset()
        s = {
            "redis_port": self.env.redis.port, "sim_url": self.sim.url, "prefix": PREFIX,
            "segment": segment, "run": run, "expected": n_subs * len(channels),
            "job": self.job(f"peer-{run}", "normal", segment, list(channels)),
            "concurrency": {ch: int(self.config["providers"][p].get("max_inflight", 64))
                            for ch, p in (("email", "sendgrid"), ("sms", "twilio"),
                                          ("push", "fcm"))},
            "from_email": self.config["providers"]["sendgrid"]["from_email"],
            "sendgrid_key": self.config["providers"]["sendgrid"]["api_key"],
            "twilio_sid": self.config["providers"]["twilio"]["account_sid"],
            "twilio_token": self.config["providers"]["twilio"]["auth_token"],
            "twilio_from": self.config["providers"]["twilio"]["from"],
            "fcm_project": self.config["providers"]["fcm"]["project_id"],
            "fcm_token": self.config["providers"]["fcm"]["access_token"],
        }
        arg = json.dumps(s)
        worker = subprocess.Popen(["node", "dispatcher.js", "work", arg], cwd=peer_dir,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = worker.stdout.readline().strip()
            if line != "ready":
                log(f"peer worker did not start: {line} {worker.stderr.read()[:500]}")
                return None
            t0_ms = time.time() * 1000.0
            prod = subprocess.run(["node", "dispatcher.js", "produce", arg], cwd=peer_dir,
                                  capture_output=True, text=True, timeout=900)
            if prod.returncode != 0:
                log(f"peer producer failed: {prod.stderr[:500]}")
                return None
            produced = json.loads(prod.stdout.strip().splitlines()[-1])
            out, err = worker.communicate(timeout=900)
            done = json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
            log(f"peer run failed: {e}")
            return None
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        secs = (done["end_ms"] - t0_ms) / 1000.0
        seq0, first_t = self.first_seq()
        res = {"messages": done["messages"], "failed": done["failed"], "seconds": secs,
               "rate": done["messages"] / secs if secs > 0 else None,
               "produce_s": produced["produce_ms"] / 1000.0,
               "rss_mb": done.get("rss_mb"),
               "first_ms": (first_t - t0_ms) if first_t else None,
               "sim_requests": self.sim_total()}
        log(f"BullMQ peer {run}: {res['messages']:,} messages in {secs:.2f}s = "
            f"{res['rate']:,.0f} msg/s (producer took {res['produce_s']:.1f}s, "
            f"worker peak RSS {res['rss_mb'] or 0:.0f} MB)")
        return res

    # -- urgent during bulk --
    def urgent_during_bulk(self, n_bulk, n_urgent, runs, workers=1):
        """Urgent jobs on an idle crierd and during a bulk job, through one fresh
        crierd with the given "workers"; CPU and peak RSS of all its processes."""
        d = self.crierd(self.config_with(workers))
        pids = [d.proc.pid] + child_pids(d.proc.pid)
        tag = "" if workers == 1 else f"w{workers}-"
        bulk_id = f"{tag}bulk-1m"
        self.sim.reset()
        idle = []
        for i in range(runs):
            job_id = f"{tag}urgent-idle-{i + 1}"
            seq_before = self.next_seq()
            xadd_ms = self.post(self.job(job_id, "urgent", "bench:urgent", ["email"]))
            h = self.wait_done(job_id, d, 120)
            first, last = self.scan_urgent(seq_before, n_urgent, xadd_ms, h)
            idle.append({"first_ms": first, "sim_last_ms": last,
                         "complete_ms": int(h["completed_ms"]) - xadd_ms})
            log(f"urgent job on an idle crierd (workers {workers}): "
                f"first message {first} ms, "
                f"completed in {int(h['completed_ms']) - xadd_ms} ms")
        cpu0 = sum(proc_cpu_s(pid) for pid in pids)
        # The longest single Redis command while the 1,000,000 audience is streamed
        # out and sent: every command over 1 ms goes to the slow log.
        self.r.config_set("slowlog-log-slower-than", 1000)
        self.r.config_set("slowlog-max-len", 4096)
        self.r.slowlog_reset()
        bulk_xadd = self.post(self.job(bulk_id, "bulk", "bench:bulk", ["email"]))
        during = []
        for i in range(runs):
            # Post while the bulk job is well under way: after another ~15% of it.
            target = (i + 1) * n_bulk * 0.2
            harness.wait_until(lambda t=target: self.sim_recipients() >= t, 600, 0.05,
                               what="bulk job progress")
            job_id = f"{tag}urgent-{i + 1}"
            seq_before = self.next_seq()
            sent_before = self.sim_recipients()
            xadd_ms = self.post(self.job(job_id, "urgent", "bench:urgent", ["email"]))
            h = self.wait_done(job_id, d, 300)
            first, last = self.scan_urgent(seq_before, n_urgent, xadd_ms, h)
            bulk_state = self.r.hget(f"{PREFIX}job:{bulk_id}", "state")
            during.append({"first_ms": first, "sim_last_ms": last,
                           "complete_ms": int(h["completed_ms"]) - xadd_ms,
                           "bulk_sent_before": sent_before,
                           "completed_before_bulk": bulk_state != "completed"})
            log(f"urgent job during the bulk job (workers {workers}, "
                f"after {sent_before:,} bulk messages): "
                f"first message {first} ms, completed in {int(h['completed_ms']) - xadd_ms} ms, "
                f"before the bulk job: {bulk_state != 'completed'}")
        # Wait for the bulk job, noting the longest time the simulator saw no
        # request from it (a stall shows here even when the job completes).
        stall, last_n, last_change = 0.0, -1, time.monotonic()
        deadline = min(time.monotonic() + 900, T_START + BUDGET_S - 20)
        partial = False
        while self.r.hget(f"{PREFIX}job:{bulk_id}", "state") != "completed":
            d.check_alive()
            if time.monotonic() > deadline:
                partial = True
                log("time budget reached: stopping the bulk job's measurement early")
                break
            n = self.sim_recipients()
            now = time.monotonic()
            if n != last_n:
                last_n, last_change = n, now
            stall = max(stall, now - last_change)
            time.sleep(0.1)
        hb = self.r.hgetall(f"{PREFIX}job:{bulk_id}")
        # The bench's own SLOWLOG RESET (freeing the last run's entries) is not crier's.
        slow = [e for e in self.r.slowlog_get(4096)
                if not _text(e["command"]).upper().startswith("SLOWLOG")]
        longest = max(slow, key=lambda e: e["duration"]) if slow else None
        cpu1 = sum(proc_cpu_s(pid) for pid in pids)
        hwm = sum(proc_hwm_kb(pid) for pid in pids)
        end_ms = int(hb["completed_ms"]) if not partial else int(time.time() * 1000)
        self.stop(d)
        msgs = int(hb.get("messages") or 0) or self.sim_recipients()
        secs = (end_ms - bulk_xadd) / 1000.0
        bulk = {"messages": msgs, "seconds": secs, "rate": msgs / secs, "partial": partial,
                "hwm_kb": hwm, "cpu_us_per_msg": (cpu1 - cpu0) * 1e6 / msgs,
                "longest_stall_s": stall,
                "longest_redis_call_us": longest["duration"] if longest else 0,
                "longest_redis_call": (_text(longest["command"])[:80]
                                       if longest else "none over 1 ms"),
                "redis_calls_over_1ms": len(slow)}
        log(f"bulk job (workers {workers}): {msgs:,} messages in {secs:.1f}s = "
            f"{bulk['rate']:,.0f} msg/s, "
            f"peak RSS {hwm / 1024:.1f} MB, longest stretch without a request {stall:.1f}s, "
            f"longest Redis call {bulk['longest_redis_call_us']} us "
            f"({bulk['longest_redis_call']}), {len(slow)} calls over 1 ms")
        return idle, during, bulk

    def next_seq(self):
        """A cursor before the next sim log entry."""
        seq0, _ = self.first_seq()
        if seq0 is None:
            page = self.log_page(0, 1)
            return page.get("next", 0)
        return seq0 - 1 + self.sim_total()

    def scan_urgent(self, since, n_urgent, xadd_ms, h):
        """First and last sim-log times (ms after the XADD) of the urgent job's
        recipients (addresses starting with 'u'), reading the log from since."""
        first = last = None
        seen = 0
        cursor = since
        deadline = time.monotonic() + 60
        while seen < n_urgent and time.monotonic() < deadline:
            page = self.log_page(cursor, 10000)
            entries = page.get("entries", [])
            for e in entries:
                rc = [r for r in (e.get("recipients") or []) if r.startswith("u")]
                if rc:  # one request may carry many recipients (SendGrid batches)
                    t = e["t_ms"] - xadd_ms
                    first = t if first is None else min(first, t)
                    last = t if last is None else max(last, t)
                    seen += len(rc)
            if not entries:
                time.sleep(0.05)
            cursor = page.get("next", cursor)
        if seen < n_urgent:
            log(f"note: found {seen} of {n_urgent} urgent messages in the simulator log")
        return first, last

    def sentinel_round(self, runs):
        """The throughput job against a primary with one replica and three
        Sentinels (crierd with redis.sentinel, and redis.wait_replicas 1 when
        this crierd knows the key), each run beside a plain run on the bench's
        own Redis; the ratio of the two per run, and the primary's CPU per
        message (its capacity: 1 / CPU seconds per message)."""
        topo = harness.Topology(self.env.dir / "ha")
        t0 = time.monotonic()
        topo.start()
        log(f"sentinel: primary, replica and 3 Sentinels up in {time.monotonic() - t0:.1f}s")
        try:
            port = topo.primary_port()
            rp = topo.node(port).client()
            rp.config_set("maxmemory-policy", "noeviction")
            self.seed("t", 0, N_THROUGHPUT, "bench:t", "email,sms,push", port=port)
            rp.execute_command("WAIT", 1, 60000)
            cfg = dict(self.config)
            cfg["redis"] = {"prefix": PREFIX,
                            "sentinel": {"master": topo.master, "nodes": topo.sentinel_nodes}}
            probe = harness.Crierd(self.env.dir, dict(cfg, redis=dict(cfg["redis"],
                                                                        wait_replicas=1)),
                                   name="sentinel-probe")
            code, out = probe.check_config()
            wait = code == 0
            if wait:
                cfg = probe.config
            else:
                log(f"sentinel: this crierd has no redis.wait_replicas ({out.strip()[:120]}); "
                    f"running without it")
            plain, ha = [], []
            for i in range(runs):
                log(f"sentinel round {i + 1}/{runs}")
                plain.append(self.crier_run(f"ha-plain-{i + 1}", "bench:t",
                                            ["email", "sms", "push"]))
                ha.append(self.crier_run(f"ha-sentinel-{i + 1}", "bench:t",
                                         ["email", "sms", "push"], config=cfg, r=rp))
            return {"wait_replicas": 1 if wait else None, "plain": plain, "sentinel": ha}
        finally:
            topo.stop()

    def close(self):
        self.env.close()


# ---- machine and versions -------------------------------------------------------

def sh(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine():
    model = None
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    return {"nproc": os.cpu_count(), "memory_mb": mem, "kernel": platform.release(),
            "cpu_model": model, "loadavg_at_start": list(os.getloadavg())}


def versions(r):
    bullmq = None
    pj = REPO / "bench" / "peer" / "node_modules" / "bullmq" / "package.json"
    if pj.exists():
        bullmq = json.loads(pj.read_text()).get("version")
    return {"redis": r.info("server")["redis_version"],
            "libcurl": sh(["pkg-config", "--modversion", "libcurl"]),
            "libuv": sh(["pkg-config", "--modversion", "libuv"]),
            "hiredis": sh(["pkg-config", "--modversion", "hiredis"]),
            "node": sh(["node", "--version"]) if shutil.which("node") else None,
            "bullmq": bullmq, "wrk": (sh(["wrk", "-v"]) or "").split(" [")[0] or None,
            "crier": sh(["git", "-C", str(REPO), "describe", "--always", "--dirty"])}


# ---- output ------------------------------------------------------------------------

def ratio(a, b):
    return round(a / b, 3) if a and b else None


def median_or_none(vals):
    vals = [v for v in vals if v is not None]
    return round(statistics.median(vals), 3) if vals else None


SCENARIOS = {
    "sms-1": f"SMS only, {N_SMS:,} residents (one request per message), workers 1",
    "sms-auto": f"SMS only, {N_SMS:,} residents, workers auto",
    "mix-1": f"email + SMS + push, {N_THROUGHPUT:,} residents, workers 1",
    "mix-auto": f"email + SMS + push, {N_THROUGHPUT:,} residents, workers auto",
    "tls-sms-1": f"SMS only, {N_SMS:,} residents, over HTTPS (keep-alive), workers 1",
    "tls-apns-1": f"push through APNs, {N_APNS:,} residents, HTTP/2 over TLS, workers 1",
    "wa-twilio-1": f"WhatsApp template through Twilio's Messages API, {N_WA:,} residents "
                   f"(one request per message), workers 1",
    "wa-meta-1": f"WhatsApp template through Meta's Cloud API, {N_WA:,} residents "
                 f"(one request per message), workers 1",
}
WA_KEYS = ("wa-twilio-1", "wa-meta-1")


def wa_rounds(b, rounds):
    """The WhatsApp scenarios: per provider one template job to the bench:wa
    residents, then the reference replaying its requests; {key: [pairs]}."""
    out = {k: [] for k in WA_KEYS}
    for i in range(rounds):
        for kind, ep in (("twilio", "twilio"), ("meta", "meta")):
            key = f"wa-{kind}-1"
            tag = f"{key}-{i + 1}"
            cfg, name = b.wa_config(kind)
            run = b.crier_run(tag, "bench:wa", ["whatsapp"], config=cfg, message=WA_MESSAGE)
            out[key].append(b.replayed(tag, run, names={ep: name}, config=cfg))
    return out


def pair_figures(rows, key):
    """A scenario's crier runs beside the reference's replays of them."""
    ok = [r for r in rows if r]

    def col(k):
        return [r.get(k) for r in ok]

    return {
        "scenario": SCENARIOS.get(key, key),
        "requests": figure(col("requests"), "requests", "what the simulator recorded from crier"),
        "messages": figure(col("messages"), "messages"),
        "crier_req_per_s": figure(col("crier_req_per_s"), "requests/s",
                                  "crier's requests over XADD to completed_ms"),
        "reference_req_per_s": figure(col("reference_req_per_s"), "requests/s",
                                      "http_bare replaying the same requests, each provider's "
                                      "max_inflight handles, keep-alive: first request to last "
                                      "answer"),
        "ratio_per_request": figure(col("ratio_per_request"), "ratio",
                                    "per round: crier req/s over the replay's req/s"),
        "crier_msgs_per_s": figure(col("crier_msgs_per_s"), "messages/s"),
        "reference_msgs_per_s": figure(col("reference_msgs_per_s"), "messages/s",
                                       "the messages crier's requests carried over the replay's "
                                       "time"),
        "ratio_per_message": figure(col("ratio_per_message"), "ratio",
                                    "the same work on both sides, so equal to the per-request "
                                    "ratio"),
        "crierd_cpu_us_per_req": figure(
            [r["crier"]["cpu_us_per_msg"] * r["messages"] / r["requests"]
             for r in ok if r["requests"] and r["crier"].get("cpu_us_per_msg")], "us",
            "crierd utime+stime per request (all its processes)"),
        "reference_cpu_us_per_req": figure(
            [r["reference"]["cpu_s"] * 1e6 / r["requests"] for r in ok
             if r.get("reference") and r["reference"].get("cpu_s") is not None], "us",
            "http_bare utime+stime per request"),
    }


def tls_figures(rp, pairs):
    """What TLS costs per request: the HTTPS SMS scenario over the plain one
    (workers 1), same rounds."""
    t, p = rp.get("tls-sms-1", {}), rp.get("sms-1", {})
    if not any(pairs.get("tls-sms-1", [])):
        return {"skipped": "the simulator has no HTTPS listener or openssl is missing"}

    def us(fig_rate):
        m = (fig_rate or {}).get("median")
        return 1e6 / m if m else None

    def diff(a, b):
        return round(a - b, 2) if a is not None and b is not None else None

    out = {
        "crier_wall_us_per_req": {"tls": us(t["crier_req_per_s"]), "plain": us(p["crier_req_per_s"])},
        "reference_wall_us_per_req": {"tls": us(t["reference_req_per_s"]),
                                      "plain": us(p["reference_req_per_s"])},
        "crierd_cpu_us_per_req": {"tls": t["crierd_cpu_us_per_req"].get("median"),
                                  "plain": p["crierd_cpu_us_per_req"].get("median")},
        "reference_cpu_us_per_req": {"tls": t["reference_cpu_us_per_req"].get("median"),
                                     "plain": p["reference_cpu_us_per_req"].get("median")},
        "note": "TLS cost per request = the HTTPS scenario's figure minus the plain one's; "
                "wall time per request is 1 / requests per second",
    }
    for k in list(out):
        if isinstance(out[k], dict) and "tls" in out[k]:
            out[k]["cost"] = diff(out[k]["tls"], out[k]["plain"])
    return out


def chart(res, out_png):
    """Draws the PNG with gnuplot; returns a reason when it could not."""
    if shutil.which("gnuplot") is None:
        return "gnuplot not installed"
    f = res["figures"]
    dat = out_png.with_suffix(".dat")
    rp = f["replay"]
    rows = [("SMS crier w1", rp["sms-1"]["crier_req_per_s"]),
            ("SMS crier auto", rp["sms-auto"]["crier_req_per_s"]),
            ("SMS replay", rp["sms-1"]["reference_req_per_s"])]
    if rp["tls-sms-1"]["crier_req_per_s"].get("median"):
        rows += [("TLS SMS crier w1", rp["tls-sms-1"]["crier_req_per_s"]),
                 ("TLS SMS replay", rp["tls-sms-1"]["reference_req_per_s"])]
    rows += [("mix crier w1", rp["mix-1"]["crier_req_per_s"]),
             ("mix crier auto", rp["mix-auto"]["crier_req_per_s"]),
             ("mix replay", rp["mix-1"]["reference_req_per_s"])]
    if f.get("peer", {}).get("bullmq_msgs_per_s", {}).get("median"):
        rows.append(("SMS BullMQ", f["peer"]["bullmq_msgs_per_s"]))
    mem = f["memory"]["crierd_peak_rss_mb"]
    with open(dat, "w") as fh:
        fh.write("# throughput: label median min max\n")
        for label, fig in rows:
            fh.write(f"\"{label}\" {fig['median'] or 0} {fig['min'] or 0} {fig['max'] or 0}\n")
        fh.write("\n\n# memory: label median min max\n")
        for size in ("10000", "100000", "1000000"):
            fig = mem.get(size) or {}
            if fig.get("median") is not None:
                fh.write(f"\"{int(size):,}\" {fig['median']} {fig['min']} {fig['max']}\n")
    when = res["date"][:16].replace("T", " ")
    script = f"""
set terminal pngcairo size 1200,500 font ",10" noenhanced
set output "{out_png}"
set multiplot layout 1,2 title "crier benchmark, {when} UTC, {res['machine']['nproc']} cores"
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.6 border -1
set boxwidth 0.8
set grid ytics
set yrange [0:*]
set title "Requests per second, crier beside the replay of its own requests (median, min-max)"
set ylabel "requests/s (BullMQ: messages/s = requests/s for SMS)"
plot "{dat}" index 0 using 2:3:4:xtic(1) notitle lc rgb "#3b7dd8"
set title "crierd peak RSS by audience size (target < 64 MB)"
set ylabel "MB"
set yrange [0:80]
plot "{dat}" index 1 using 2:3:4:xtic(1) notitle lc rgb "#d8843b", 64 title "64 MB target" lc rgb "red" lw 2
unset multiplot
"""
    gp = out_png.with_suffix(".gp")
    gp.write_text(script)
    try:
        res_gp = subprocess.run(["gnuplot", str(gp)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if res_gp.returncode != 0:
        return res_gp.stderr.strip()[:300]
    return None


def fmt(fig, spec=",.0f"):
    if not fig or fig.get("median") is None:
        return "n/a"
    if len(fig["runs"]) == 1:
        return format(fig["median"], spec)
    return f"{format(fig['median'], spec)} ({format(fig['min'], spec)}-{format(fig['max'], spec)})"


def capacity(us_per_msg_fig):
    """Messages per second at which one redis-server core is saturated: 1 /
    its CPU seconds per message (median)."""
    us = (us_per_msg_fig or {}).get("median")
    return round(1e6 / us) if us else None


def sentinel_figures(ha):
    """The Sentinel round's figures (see Bench.sentinel_round)."""
    plain, sen = ha["plain"], ha["sentinel"]

    def col(rows, key):
        return [r.get(key) if r else None for r in rows]

    out = {
        "wait_replicas": ha["wait_replicas"],
        "plain_msgs_per_s": figure(col(plain, "rate"), "messages/s",
                                   "the throughput job on the bench's single Redis, run just "
                                   "before each Sentinel run"),
        "sentinel_msgs_per_s": figure(col(sen, "rate"), "messages/s",
                                      "the same job against a primary with one replica and "
                                      "three Sentinels on this machine, crierd with "
                                      "redis.sentinel" + (" and redis.wait_replicas 1"
                                                          if ha["wait_replicas"] else "")),
        "sentinel_vs_plain_per_round": [ratio(a.get("rate"), b.get("rate"))
                                        for a, b in zip(sen, plain)],
        "plain_redis_cpu_us_per_msg": figure(col(plain, "redis_cpu_us_per_msg"), "us"),
        "primary_cpu_us_per_msg": figure(col(sen, "redis_cpu_us_per_msg"), "us",
                                         "the primary's used_cpu_user+sys over the job "
                                         "(replication to the replica included)"),
        "primary_cmds_per_msg": figure(col(sen, "redis_cmds_per_msg"), "commands"),
    }
    out["sentinel_vs_plain"] = ratio(out["sentinel_msgs_per_s"].get("median"),
                                     out["plain_msgs_per_s"].get("median"))
    out["capacity_msgs_per_s"] = {
        "plain": capacity(out["plain_redis_cpu_us_per_msg"]),
        "sentinel_primary": capacity(out["primary_cpu_us_per_msg"]),
        "note": "1 / (redis-server CPU seconds per message): the message rate at which one "
                "Redis primary's core would be saturated by crier's commands and scripts",
    }
    return out


def sentinel_rows(hs):
    if not hs or "sentinel_msgs_per_s" not in hs:
        return [("crier with Sentinel + replica", (hs or {}).get("skipped", "not run"))]
    wait = "wait_replicas 1" if hs["wait_replicas"] else "no wait_replicas"
    return [
        (f"crier with Sentinel + 1 replica ({wait})", fmt(hs["sentinel_msgs_per_s"]) + " msg/s"),
        ("  same rounds, plain single Redis", fmt(hs["plain_msgs_per_s"]) + " msg/s"),
        ("  Sentinel / plain (per round)",
         f"{hs['sentinel_vs_plain']} ({', '.join(str(x) for x in hs['sentinel_vs_plain_per_round'])})"),
        ("  primary CPU per message (plain Redis)",
         f"{fmt(hs['primary_cpu_us_per_msg'], ',.1f')} us "
         f"({fmt(hs['plain_redis_cpu_us_per_msg'], ',.1f')} us)"),
        ("one Redis primary saturates at (1 / CPU per message)",
         f"{hs['capacity_msgs_per_s']['sentinel_primary'] or 0:,} msg/s with a replica, "
         f"{hs['capacity_msgs_per_s']['plain'] or 0:,} msg/s alone"),
    ]


def summary(res):
    f = res["figures"]
    t = f["throughput"]
    rows = [
        ("crier throughput, 100k x 3 channels, workers 1",
         fmt(t["crier_msgs_per_s"]) + " msg/s"),
        (f"crier, workers auto ({f['throughput_workers']['workers']} loops, same connections)",
         fmt(f["throughput_workers"]["crier_msgs_per_s"]) + " msg/s"),
        ("wrk (one Twilio request repeated, 2 threads: the simulator's ceiling)",
         fmt(f["limit"]["wrk_req_per_s"]) + " req/s"),
        ("  with a dashboard event-stream client / without (round 1)",
         f"{f['ratios'].get('sse_vs_without')}"),
    ]
    rows += [
        ("time to first message (XADD -> sim)", fmt(t["first_message_ms"], ",.1f") + " ms"),
        ("XADD -> provider p50 / p99",
         f"{fmt(t['xadd_to_provider_p50_ms'])} / {fmt(t['xadd_to_provider_p99_ms'])} ms"),
        ("request round trip p50 / p99 (receipts)",
         f"{fmt(t['request_rtt_p50_ms'], ',.1f')} / {fmt(t['request_rtt_p99_ms'], ',.1f')} ms"),
    ]
    u = f["urgent"]
    rows += [
        ("urgent 1k job, idle: first message", fmt(u["idle_first_message_ms"], ",.1f") + " ms"),
        ("urgent 1k job during 1M bulk: first message",
         fmt(u["during_bulk_first_message_ms"], ",.1f") + " ms (target <= 20)"),
        ("urgent 1k job during 1M bulk: completed in",
         fmt(u["during_bulk_complete_ms"], ",.0f") + " ms"),
        ("urgent completed before the bulk job", str(u["completed_before_bulk"])),
    ]
    si = f.get("intake_signed")
    if si:
        rows += [("small job unsigned / signed (same config, same round)",
                  f"{fmt(si['unsigned_msgs_per_s'])} / {fmt(si['signed_msgs_per_s'])} msg/s, "
                  f"{fmt(si['unsigned_cpu_us_per_msg'], ',.1f')} / "
                  f"{fmt(si['signed_cpu_us_per_msg'], ',.1f')} us CPU/msg")]
    uw = f.get("urgent_workers", {})
    if uw.get("bulk"):
        rows += [
            ("urgent 1k job during 1M bulk, workers auto: first message",
             fmt(uw["during_bulk_first_message_ms"], ",.1f") + " ms (target <= 20)"),
            ("urgent during bulk, workers auto: completed in / before the bulk job",
             fmt(uw["during_bulk_complete_ms"], ",.0f") + f" ms / {uw['completed_before_bulk']}"),
            ("1M email bulk job, workers 1 / workers auto",
             f"{u['bulk']['rate']:,.0f} / {uw['bulk']['rate']:,.0f} msg/s"),
        ]
    for size, fig in f["memory"]["crierd_peak_rss_mb"].items():
        rows.append((f"crierd peak RSS, {int(size):,} subscribers",
                     fmt(fig, ",.1f") + " MB (target < 64)"))
    tw = f["throughput_workers"]
    for size, fig in f["memory"].get("workers_auto_peak_rss_mb", {}).items():
        rows.append((f"crierd peak RSS, workers auto, {int(size):,} subscribers",
                     fmt(fig, ",.1f") + f" MB (supervisor + {tw['workers']} workers; target < 64)"))
    bk = u["bulk"]
    rows.append((f"longest Redis call during the {N_BULK:,} bulk job",
                 f"{bk['longest_redis_call_us']:,} us ({bk['longest_redis_call'][:40]}), "
                 f"{bk['redis_calls_over_1ms']} calls over 1 ms"))
    c = f["cost"]
    rows += [
        ("crierd CPU per message", fmt(c["crierd_cpu_us_per_msg"], ",.1f") + " us"),
        ("crierd CPU per message, workers auto",
         fmt(tw["crierd_cpu_us_per_msg"], ",.1f") + " us (all processes)"),
        ("redis-server CPU per message", fmt(c["redis_cpu_us_per_msg"], ",.1f") + " us"),
        ("crierd instructions per message (callgrind)",
         fmt(c["crierd_instructions_per_msg"], ",.0f")),
        ("redis-server instructions per message (callgrind)",
         fmt(c["redis_instructions_per_msg"], ",.0f")),
        ("Redis commands per message", fmt(c["redis_cmds_per_msg"], ",.2f")),
        ("one Redis primary saturates at (1 / redis-server CPU per message)",
         f"{c.get('redis_capacity_msgs_per_s') or 0:,} msg/s"),
    ]
    for key in ("crierd_instructions_per_sms", "redis_instructions_per_sms"):
        if c.get(key):
            rows.append((key.replace("_", " ").replace("per sms", "per SMS message") +
                         " (callgrind)", fmt(c[key], ",.0f")))
    rows += sentinel_rows(f.get("sentinel"))
    width = max(len(a) for a, _ in rows)
    print()
    print(f"crier benchmark {res['date']}  ({res['machine']['nproc']} x "
          f"{res['machine']['cpu_model']}, {res['machine']['memory_mb']:,} MB)")
    print("-" * (width + 40))
    for a, b in rows:
        print(f"{a:<{width}}  {b}")
    print("-" * (width + 40))
    print()
    for line in compact_table(res):
        print(line)


def wa_labels():
    kw = f"{N_WA // 1000}k"
    return (("wa-twilio-1", f"WhatsApp Twilio {kw}, workers 1"),
            ("wa-meta-1", f"WhatsApp Meta {kw}, workers 1"))


def compact_table(res):
    """The closing table: per scenario crier's rate, the replaying reference's,
    the ratio and its unit, the BullMQ peer and the ratio to it; the TLS cost
    and the instructions per message."""
    f = res["figures"]
    rp = f["replay"]
    p = f.get("peer", {})
    peer = p.get("bullmq_msgs_per_s", {}).get("median")

    def m(fig):
        v = (fig or {}).get("median")
        return f"{v:,.0f}" if v is not None else "n/a"

    def r(fig):
        v = (fig or {}).get("median")
        return f"{v:.2f}" if v is not None else "n/a"

    head = ("scenario", "unit", "crier", "reference", "ratio", "BullMQ", "crier/BullMQ")
    rows = []
    ks, kt = f"{N_SMS // 1000}k", f"{N_THROUGHPUT // 1000}k"
    for key, label in (("sms-1", f"SMS {ks}, workers 1"), ("sms-auto", f"SMS {ks}, workers auto"),
                       ("tls-sms-1", f"SMS {ks} over TLS, workers 1"),
                       ("tls-apns-1", f"APNs {N_APNS // 1000}k, HTTP/2+TLS, w 1"),
                       ("mix-1", f"3 channels {kt}, workers 1"),
                       ("mix-auto", f"3 channels {kt}, workers auto"),
                       *wa_labels()):
        x = rp.get(key, {})
        if not x.get("crier_req_per_s", {}).get("median"):
            continue
        pr = ("", "")
        if key in ("sms-1", "sms-auto") and peer:
            rr = f["ratios"]["crier_vs_bullmq" if key == "sms-1" else "workers_vs_bullmq"]
            pr = (f"{peer:,.0f}", f"{rr:.1f}x" if rr else "n/a")
        rows.append((label, "req/s", m(x["crier_req_per_s"]), m(x["reference_req_per_s"]),
                     r(x["ratio_per_request"]), "", ""))
        rows.append((label, "msg/s", m(x["crier_msgs_per_s"]), m(x["reference_msgs_per_s"]),
                     r(x["ratio_per_message"]), *pr))
    widths = [max(len(str(row[i])) for row in [head] + rows) for i in range(len(head))]
    out = [f"crier benchmark, compact ({res['date']}, {res['machine']['nproc']} cores; "
           f"reference = http_bare replaying the requests crier sent in the same run)"]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    out += [line, "-" * len(line)]
    for row in rows:
        out.append("  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w)
                             for i, (v, w) in enumerate(zip(row, widths))))
    cpu = rp.get("sms-1", {})
    if cpu.get("crierd_cpu_us_per_req", {}).get("median") is not None:
        out.append(f"CPU per request (SMS, workers 1): crierd "
                   f"{cpu['crierd_cpu_us_per_req']['median']:.1f} us (all its work), reference "
                   f"{(cpu.get('reference_cpu_us_per_req') or {}).get('median') or 0:.1f} us "
                   f"(HTTP only)")
    tl = f.get("tls", {})
    if "crierd_cpu_us_per_req" in tl:
        def us(d):
            return f"{d['cost']:+.1f}" if d.get("cost") is not None else "n/a"
        out.append(f"TLS cost per request (HTTPS minus plain, SMS, workers 1): crierd CPU "
                   f"{us(tl['crierd_cpu_us_per_req'])} us, reference CPU "
                   f"{us(tl['reference_cpu_us_per_req'])} us; wall "
                   f"{us(tl['crier_wall_us_per_req'])} / {us(tl['reference_wall_us_per_req'])} us")
    else:
        out.append(f"TLS: {tl.get('skipped', 'not run')}")
    c = f["cost"]

    def i(key):
        v = (c.get(key) or {}).get("median")
        return f"{v:,.0f}" if v is not None else "n/a"
    out.append(f"instructions per message (callgrind): SMS only crierd {i('crierd_instructions_per_sms')}"
               f" (target <= 70,000), redis-server {i('redis_instructions_per_sms')} (<= 60,000); "
               f"3-channel mix crierd {i('crierd_instructions_per_msg')}, redis-server "
               f"{i('redis_instructions_per_msg')}")
    return out


BENCH_KEY = ("bench", "bench-integrator-secret-0123456789")


def intake_signed_rounds(b, runs, segment="bench:small"):
    """Signed beside unsigned: in each round the same job through the same
    config (an integrator key whose scopes allow it), once unsigned and once
    signed, so the cost of checking the signature and the scopes shows as the
    difference per message. Returns (unsigned runs, signed runs)."""
    config = dict(b.config, integrators={BENCH_KEY[0]: {
        "secret": BENCH_KEY[1], "segments": ["*"], "max_priority": "urgent",
        "max_audience": 0}})
    unsigned, signed = [], []
    for i in range(runs):
        unsigned.append(b.crier_run(f"intake-unsigned-{i + 1}", segment,
                                    ["email", "sms", "push"], config=config))
        signed.append(b.crier_run(f"intake-signed-{i + 1}", segment,
                                  ["email", "sms", "push"], config=config, sign=BENCH_KEY))
    return unsigned, signed


def intake_signed_figures(unsigned, signed):
    def col(rows, key):
        return [r.get(key) if r else None for r in rows]

    return {
        "unsigned_msgs_per_s": figure(col(unsigned, "rate"), "messages/s",
                                      "the small job, unsigned, config with an integrator key"),
        "signed_msgs_per_s": figure(col(signed, "rate"), "messages/s",
                                    "the same job signed (signature and scopes checked)"),
        "unsigned_cpu_us_per_msg": figure(col(unsigned, "cpu_us_per_msg"), "us"),
        "signed_cpu_us_per_msg": figure(col(signed, "cpu_us_per_msg"), "us"),
        "signed_vs_unsigned_per_round": [ratio(s.get("rate"), u.get("rate"))
                                         for u, s in zip(unsigned, signed)],
    }


def main():
    t_start = T_START
    OUT.mkdir(parents=True, exist_ok=True)
    b = Bench()
    b.start()
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "versions": versions(b.r),
              "parameters": {"runs": RUNS, "throughput_runs": THROUGHPUT_RUNS, "scale": SCALE,
                             "throughput_subscribers": N_THROUGHPUT,
                             "small_subscribers": N_SMALL, "bulk_subscribers": N_BULK,
                             "urgent_subscribers": N_URGENT, "peer_subscribers": N_PEER,
                             "whatsapp_subscribers": N_WA, "whatsapp_rounds": WA_ROUNDS,
                             "concurrency": b.concurrency, "wrk_seconds": WRK_SECONDS,
                             "crierd_config": {k: v for k, v in b.config.items()
                                               if k != "providers"},
                             "sim": "crier-sim, no added latency, request bodies logged whole (for the replay), HTTPS and APNs listeners",
                             "redis": "redis-server, appendonly yes, appendfsync everysec"}}
    tls = b.start_tls()
    try:
        seeds = {"throughput": b.seed("t", 0, N_THROUGHPUT, "bench:t", "email,sms,push")}
        b.seed("t", 0, N_SMALL, "bench:small", "email,sms,push")
        b.seed("s", 0, N_SMS, "bench:sms", "sms")
        if tls:
            b.seed("a", 0, N_APNS, "bench:apns", "apns")
        if PEER and N_PEER != N_SMS:
            b.seed("s", 0, N_PEER, "bench:peer", "sms")
        b.seed("u", 0, N_URGENT, "bench:urgent", "email")
        b.seed("w", 0, N_WA, "bench:wa", "whatsapp")
        b.capture_requests()
        result["captured_requests"] = b.capture

        # Every crier run is followed by the reference replaying exactly the
        # requests the simulator recorded from it (same count, bodies, batch
        # sizes and per-provider concurrency): the pairs compare the same work.
        pairs = {k: [] for k in ("sms-1", "sms-auto", "mix-1", "mix-auto", "tls-sms-1",
                                 "tls-apns-1")}
        crier, crier_w, wrk, peer = [], [], [], []
        sse_run = None
        for i in range(THROUGHPUT_RUNS):
            log(f"round {i + 1}/{THROUGHPUT_RUNS}")
            for w in (1, "auto"):
                tag = f"sms-{w}"
                pairs[tag].append(b.replayed(f"{tag}-{i + 1}", b.crier_run(
                    f"{tag}-{i + 1}", "bench:sms", ["sms"], workers=w)))
            if PEER and i < PEER_ROUNDS:
                # the strong BullMQ peer on the same SMS audience, in the same round
                peer.append(b.peer_run(f"r{i + 1}", "bench:peer" if N_PEER != N_SMS
                                       else "bench:sms", N_PEER, ["sms"]))
            if tls and i < TLS_ROUNDS:
                tag = f"tls-sms-1-{i + 1}"
                pairs["tls-sms-1"].append(b.replayed(tag, b.crier_run(
                    tag, "bench:sms", ["sms"], config=tls["config"]),
                    cafile=tls["ca"], base=tls["base"]))
                tag = f"tls-apns-1-{i + 1}"
                pairs["tls-apns-1"].append(b.replayed(tag, b.crier_run(
                    tag, "bench:apns", ["push"], config=tls["config"]),
                    cafile=tls["ca"], base=tls["base"]))
            crier.append(b.crier_run(f"throughput-{i + 1}", "bench:t",
                                     ["email", "sms", "push"]))
            pairs["mix-1"].append(b.replayed(f"mix-1-{i + 1}", crier[-1]))
            if i == 0:
                # the dashboard's cost: the same job with one event-stream client
                # connected beside it, compared within this round
                sse_run = b.crier_run("throughput-sse-1", "bench:t", ["email", "sms", "push"],
                                      sse=True)
            crier_w.append(b.crier_run(f"throughput-w-{i + 1}", "bench:t",
                                       ["email", "sms", "push"], workers="auto"))
            pairs["mix-auto"].append(b.replayed(f"mix-auto-{i + 1}", crier_w[-1]))
            if i == 0:
                wrk.append(b.wrk_run())
        pairs.update(wa_rounds(b, WA_ROUNDS))
        try:
            ha = b.sentinel_round(min(RUNS, 2))
        except (harness.HarnessError, OSError, subprocess.SubprocessError) as e:
            log(f"sentinel round failed: {e}")
            ha = {"skipped": f"failed: {str(e)[:200]}"}
        small = [b.crier_run(f"small-{i + 1}", "bench:small", ["email", "sms", "push"])
                 for i in range(RUNS)]
        instr = b.instructions_run(N_COST)
        instr_sms = b.instructions_run(N_COST, ["sms"])
        intake_unsigned, intake_signed = intake_signed_rounds(b, RUNS)

        t_seed = time.monotonic()
        seeds["bulk"] = b.seed("b", 0, N_BULK, "bench:bulk", "email")
        seeds["bulk"]["wall_seconds"] = time.monotonic() - t_seed
        idle, during, bulk = b.urgent_during_bulk(N_BULK, N_URGENT, RUNS)
        # The same with the example config's "workers": "auto", when the time
        # budget leaves room for a second bulk job.
        during_w, bulk_w = [], None
        if time.monotonic() - T_START + 2.5 * bulk["seconds"] + 30 < BUDGET_S:
            _idle_w, during_w, bulk_w = b.urgent_during_bulk(N_BULK, N_URGENT, RUNS,
                                                             workers="auto")
        else:
            log("time budget: the bulk job with workers auto is left out")

        def col(rows, key):
            return [r.get(key) if r else None for r in rows]

        f = {}
        f["seeding"] = {"subscribers_per_s_1m": round(N_BULK / seeds["bulk"]["seconds"]),
                        "seconds_1m": seeds["bulk"]["seconds"]}
        f["throughput"] = {
            "crier_msgs_per_s": figure(col(crier, "rate"), "messages/s",
                                       "XADD of the job to state completed (completed_ms)"),
            "seconds": figure(col(crier, "seconds"), "s"),
            "first_message_ms": figure(col(crier, "first_ms"), "ms",
                                       "XADD (stream entry time) to the simulator's first logged request"),
            "xadd_to_provider_p50_ms": figure(col(crier, "lat_p50_ms"), "ms",
                                              "simulator log time of each message in an evenly spaced "
                                              "sample minus the job's XADD time: when residents are reached"),
            "xadd_to_provider_p99_ms": figure(col(crier, "lat_p99_ms"), "ms"),
            "request_rtt_p50_ms": figure(col(crier, "rtt_p50_ms"), "ms",
                                         "receipts latency_us: crier's submit-to-answer time of one request"),
            "request_rtt_p99_ms": figure(col(crier, "rtt_p99_ms"), "ms"),
        }
        f["throughput_workers"] = {
            "workers": auto_workers(),
            "crier_msgs_per_s": figure(col(crier_w, "rate"), "messages/s",
                                       "one crierd with \"workers\": \"auto\" (one event loop "
                                       "per core, each with its share of every provider's "
                                       "max_inflight: together the same connections)"),
            "crierd_cpu_us_per_msg": figure(col(crier_w, "cpu_us_per_msg"), "us",
                                            "supervisor and workers together"),
            "peak_rss_mb": figure([r["hwm_kb"] / 1024 for r in crier_w], "MB",
                                  "supervisor and workers added up"),
        }
        f["limit"] = {
            "wrk_req_per_s": figure(wrk, "requests/s",
                                    f"wrk -t2 -c{b.concurrency} -d{WRK_SECONDS}s, one Twilio "
                                    f"request crier sent, repeated: the simulator's own ceiling "
                                    f"for one request kind (two client threads), not the same work"),
        }
        f["replay"] = {k: pair_figures(v, k) for k, v in pairs.items()}
        f["tls"] = tls_figures(f["replay"], pairs)
        cm = f["throughput"]["crier_msgs_per_s"]["median"]
        f["ratios"] = {
            "crier_vs_wrk": ratio(cm, f["limit"]["wrk_req_per_s"]["median"]),
            "workers_vs_wrk": ratio(f["throughput_workers"]["crier_msgs_per_s"]["median"],
                                    f["limit"]["wrk_req_per_s"]["median"]),
        }
        f["dashboard"] = {
            "crier_msgs_per_s_with_sse": sse_run.get("rate") if sse_run else None,
            "crier_msgs_per_s_without": crier[0].get("rate") if crier and crier[0] else None,
            "sse_events": sse_run.get("sse_events") if sse_run else None,
            "note": "round 1: the throughput job again with the dashboard on and one client "
                    "holding /api/v1/events open, over the same job without",
        }
        f["ratios"]["sse_vs_without"] = ratio(f["dashboard"]["crier_msgs_per_s_with_sse"],
                                              f["dashboard"]["crier_msgs_per_s_without"])
        if PEER and any(peer):
            f["peer"] = {"subscribers": N_PEER, "messages": N_PEER, "channels": ["sms"],
                         "bullmq_msgs_per_s": figure(col(peer, "rate"), "messages/s",
                                                     "producer start to the last job done"),
                         "producer_seconds": figure(col(peer, "produce_s"), "s"),
                         "first_message_ms": figure(col(peer, "first_ms"), "ms"),
                         "peak_rss_mb": figure(col(peer, "rss_mb"), "MB",
                                               "the worker process's peak RSS")}
            sms1 = [p["crier_msgs_per_s"] if p else None for p in pairs["sms-1"]]
            smsw = [p["crier_msgs_per_s"] if p else None for p in pairs["sms-auto"]]
            f["ratios"]["crier_vs_bullmq_per_round"] = [
                ratio(c, q.get("rate") if q else None) for c, q in zip(sms1, peer)]
            f["ratios"]["workers_vs_bullmq_per_round"] = [
                ratio(c, q.get("rate") if q else None) for c, q in zip(smsw, peer)]
            f["peer"]["crier_msgs_per_s_same_rounds"] = figure(sms1[:len(peer)], "messages/s",
                                                               "crier's SMS job, workers 1, in "
                                                               "the peer's rounds")
            f["ratios"]["crier_vs_bullmq"] = median_or_none(f["ratios"]["crier_vs_bullmq_per_round"])
            f["ratios"]["workers_vs_bullmq"] = median_or_none(
                f["ratios"]["workers_vs_bullmq_per_round"])
        else:
            f["peer"] = {"skipped": "BullMQ peer not run (npm install failed or BENCH_PEER=0)"}
            f["ratios"]["crier_vs_bullmq"] = f["ratios"]["workers_vs_bullmq"] = None
        f["urgent"] = {
            "idle_first_message_ms": figure(col(idle, "first_ms"), "ms"),
            "idle_complete_ms": figure(col(idle, "complete_ms"), "ms"),
            "during_bulk_first_message_ms": figure(col(during, "first_ms"), "ms",
                                                   f"{RUNS} urgent jobs posted during one "
                                                   f"{N_BULK:,}-subscriber bulk job"),
            "during_bulk_sim_last_ms": figure(col(during, "sim_last_ms"), "ms"),
            "during_bulk_complete_ms": figure(col(during, "complete_ms"), "ms"),
            "completed_before_bulk": all(r["completed_before_bulk"] for r in during),
            "bulk_sent_before_each": [r["bulk_sent_before"] for r in during],
            "bulk": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in bulk.items()},
        }
        f["urgent_workers"] = {
            "workers": auto_workers(),
            "during_bulk_first_message_ms": figure(col(during_w, "first_ms"), "ms",
                                                   "as during_bulk_first_message_ms, crierd with "
                                                   "\"workers\": \"auto\""),
            "during_bulk_complete_ms": figure(col(during_w, "complete_ms"), "ms"),
            "completed_before_bulk": (all(r["completed_before_bulk"] for r in during_w)
                                      if during_w else None),
            "bulk": ({k: (round(v, 3) if isinstance(v, float) else v) for k, v in bulk_w.items()}
                     if bulk_w else None),
        }
        f["memory"] = {"crierd_peak_rss_mb": {
            str(N_SMALL): figure([r["hwm_kb"] / 1024 for r in small], "MB", "3 channels"),
            str(N_THROUGHPUT): figure([r["hwm_kb"] / 1024 for r in crier], "MB", "3 channels"),
            str(N_BULK): figure([bulk["hwm_kb"] / 1024], "MB",
                                "email only; the same crierd also sent the urgent jobs"
                                + ("; PARTIAL: the time budget ended the run after "
                                   f"{bulk['messages']:,} messages" if bulk["partial"] else "")),
        }, "workers_auto_peak_rss_mb": {
            str(N_THROUGHPUT): figure([r["hwm_kb"] / 1024 for r in crier_w], "MB",
                                      "3 channels; supervisor and workers added up"),
            str(N_BULK): figure([bulk_w["hwm_kb"] / 1024] if bulk_w else [], "MB",
                                "email only; supervisor and workers added up"),
        }}
        f["cost"] = {
            "crierd_cpu_us_per_msg": figure(col(crier, "cpu_us_per_msg"), "us",
                                            "utime+stime of crierd over the throughput job"),
            "crierd_cpu_us_per_msg_bulk_email": figure([bulk["cpu_us_per_msg"]], "us"),
            "redis_cpu_us_per_msg": figure(col(crier, "redis_cpu_us_per_msg"), "us",
                                           "redis-server used_cpu_user+sys over the throughput job"),
            "redis_cmds_per_msg": figure(col(crier, "redis_cmds_per_msg"), "commands",
                                         "INFO commandstats calls over the throughput job, commands "
                                         "run inside Lua scripts included; the bench's own polling "
                                         "(~100 HGET/s) too"),
            "redis_cmds_top": crier[-1]["redis_cmds"] if crier else {},
        }
        f["cost"]["redis_capacity_msgs_per_s"] = capacity(f["cost"]["redis_cpu_us_per_msg"])
        f["sentinel"] = sentinel_figures(ha) if "plain" in ha else ha
        for name in ("crierd", "redis"):
            key = f"{name}_instructions_per_msg"
            f["cost"][key] = figure([instr[key]] if instr else [], "instructions",
                                    f"user-space instructions counted by callgrind over a "
                                    f"{N_COST:,}-subscriber three-channel job (workers 1): "
                                    f"compare builds by this, as it hardly moves with the "
                                    f"machine's load" if name == "crierd" else None)
            f["cost"][f"{name}_instructions_per_sms"] = figure(
                [instr_sms[key]] if instr_sms else [], "instructions",
                f"the same over a {N_COST:,}-resident SMS-only job (one message = one request)")
        f["intake_signed"] = intake_signed_figures(intake_unsigned, intake_signed)
        result["figures"] = f
        result["runs"] = {"crier": crier, "crier_workers_auto": crier_w, "small": small,
                          "replay_pairs": pairs, "wrk": wrk,
                          "peer": peer, "instructions": instr,
                          "instructions_sms": instr_sms, "urgent_idle": idle,
                          "urgent_during_bulk": during, "bulk": bulk,
                          "urgent_during_bulk_workers_auto": during_w, "bulk_workers_auto": bulk_w,
                          "sentinel": ha,
                          "intake_unsigned": intake_unsigned, "intake_signed": intake_signed}
    finally:
        b.close()
    result["wall_seconds"] = round(time.monotonic() - t_start, 1)
    out_json = OUT / "latest.json"
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    why = chart(result, OUT / "latest.png")
    summary(result)
    print(f"results: {out_json}" + ("" if why else f", chart: {OUT / 'latest.png'}"))
    if why:
        print(f"bench: no chart: {why}")
    print(f"bench: finished in {result['wall_seconds']:.0f}s")


def pairs_report(mode, pairs):
    """A partial run's crier/replay pairs: written to <mode>.json in the
    results directory, their rows of the compact table printed."""
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(),
           "figures": {"replay": {k: pair_figures(v, k) for k, v in pairs.items()},
                       "tls": {"skipped": f"not run (bench.py {mode})"}, "cost": {}}}
    (OUT / f"{mode}.json").write_text(json.dumps(dict(res, runs=pairs), indent=2) + "\n")
    print()
    for line in compact_table(res)[:-2]:  # without the TLS and instruction lines (and CPU)
        print(line)
    print(f"results: {OUT / f'{mode}.json'}")


def main_whatsapp():
    """Only the WhatsApp scenarios (`bench.py whatsapp`): prints their rows of
    the compact table and writes them to whatsapp.json in the results
    directory."""
    OUT.mkdir(parents=True, exist_ok=True)
    b = Bench()
    b.start()
    try:
        b.seed("w", 0, N_WA, "bench:wa", "whatsapp")
        pairs = wa_rounds(b, WA_ROUNDS)
    finally:
        b.close()
    pairs_report("whatsapp", pairs)


def main_sms():
    """Only the SMS-only scenarios (`bench.py sms`): per round the 100,000 SMS
    job with workers 1 and auto, each followed by the replay of its requests;
    prints their rows of the compact table and writes sms.json."""
    OUT.mkdir(parents=True, exist_ok=True)
    b = Bench()
    b.start()
    pairs = {"sms-1": [], "sms-auto": []}
    try:
        b.seed("s", 0, N_SMS, "bench:sms", "sms")
        for i in range(THROUGHPUT_RUNS):
            log(f"round {i + 1}/{THROUGHPUT_RUNS}")
            for w in (1, "auto"):
                tag = f"sms-{w}"
                pairs[tag].append(b.replayed(f"{tag}-{i + 1}", b.crier_run(
                    f"{tag}-{i + 1}", "bench:sms", ["sms"], workers=w)))
    finally:
        b.close()
    pairs_report("sms", pairs)


def main_sentinel():
    """Only the Sentinel round (`bench.py sentinel`): prints its figures and
    writes them to sentinel.json in the results directory."""
    OUT.mkdir(parents=True, exist_ok=True)
    b = Bench()
    b.start()
    try:
        b.seed("t", 0, N_THROUGHPUT, "bench:t", "email,sms,push")
        ha = b.sentinel_round(RUNS)
    finally:
        b.close()
    hs = sentinel_figures(ha)
    (OUT / "sentinel.json").write_text(json.dumps({"figures": hs, "runs": ha}, indent=2) + "\n")
    rows = sentinel_rows(hs)
    width = max(len(a) for a, _ in rows)
    print()
    for a, v in rows:
        print(f"{a:<{width}}  {v}")
    print(f"results: {OUT / 'sentinel.json'}")


def main_cost():
    """Only the instructions per message (`bench.py cost`): callgrind counts of
    crierd and redis-server over the three-channel and the SMS-only job, for
    comparing two builds (BUILD=...) without the rest of the benchmark; they
    hardly move with the machine's load. Prints them and writes cost.json."""
    OUT.mkdir(parents=True, exist_ok=True)
    b = Bench()
    b.start()
    try:
        res = {"mix": b.instructions_run(N_COST), "sms": b.instructions_run(N_COST, ("sms",))}
    finally:
        b.close()
    (OUT / "cost.json").write_text(json.dumps(res, indent=2) + "\n")
    for k, v in res.items():
        if v:
            print(f"{k}: crierd {v['crierd_instructions_per_msg']:,.0f}, "
                  f"redis-server {v['redis_instructions_per_msg']:,.0f} instructions per message")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    if sys.argv[1:] == ["sentinel"]:
        main_sentinel()
    elif sys.argv[1:] == ["cost"]:
        main_cost()
    elif sys.argv[1:] == ["whatsapp"]:
        main_whatsapp()
    elif sys.argv[1:] == ["sms"]:
        main_sms()
    else:
        main()
