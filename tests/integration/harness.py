"""Process harness for crier's integration tests and demo: real redis-server,
crier-sim and crierd processes on free loopback ports in a temporary directory,
readiness by polling a condition against a deadline, and cleanup of everything
started, even when a test fails or the interpreter exits early."""

import atexit
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[2]
PREFIX = "crier:"
GROUP = "crierd"

# The simulator endpoint that serves each channel in the test configuration.
ENDPOINT = {"email": "sendgrid", "sms": "twilio", "push": "fcm"}
# The subscriber hash field holding each channel's address.
CONTACT = {"email": "email", "sms": "phone", "push": "push_token"}
CHANNELS = ("email", "sms", "push")
STATUSES = ("delivered", "sent", "failed", "bounced", "suppressed", "expired",
            "cancelled", "skipped")

_live = []  # every process started and not yet reaped, for the exit handler


def _reap_all():
    for proc in list(_live):
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
    _live.clear()


atexit.register(_reap_all)


def _on_signal(signum, _frame):
    _reap_all()
    raise SystemExit(128 + signum)


# A SIGTERM to the test runner must still take its children down with it.
if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _on_signal)


class HarnessError(Exception):
    """A process did not start, stop or become ready as it should."""


def build_dir():
    """The directory holding the binaries: $CRIER_BUILD (relative to the
    repository root unless absolute), default build."""
    path = Path(os.environ.get("CRIER_BUILD", "build"))
    return path if path.is_absolute() else REPO / path


def binary(name):
    path = build_dir() / name
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is not built (run make, or set CRIER_BUILD)")
    return str(path)


def free_port():
    """A loopback port that was free a moment ago (bind to 0, then close).
    Callers starting a server retry with another port on collision."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred, timeout=30.0, interval=0.02, what="condition"):
    """Polls pred() until it returns something truthy and returns that value;
    raises HarnessError naming what after timeout seconds. pred may raise
    HarnessError to give up early (e.g. a process died)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def tail(path, lines=150):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(no file {path})\n"


def _spawn(argv, log_path, **kw):
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, **kw)
    finally:
        log.close()
    _live.append(proc)
    return proc


def _wait_exit(proc, timeout):
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    if proc in _live:
        _live.remove(proc)
    return rc


def _kill(proc):
    if proc is None:
        return None
    if proc.poll() is None:
        proc.kill()
    return _wait_exit(proc, 10)


def _stop(proc, timeout):
    """SIGTERM, and SIGKILL if proc has not exited within timeout seconds."""
    if proc and proc.poll() is None:
        proc.terminate()
        if _wait_exit(proc, timeout) is None:
            _kill(proc)


def _start_on_a_port(spawn, answers, what, log_path, port=None, timeout=30):
    """Starts a server with spawn(port) on port, or on a free one (another one
    when it was taken meanwhile, up to 8 tries), and returns (port, proc) once
    answers(port) is true. Raises HarnessError with the log's tail when it
    exits first."""
    fixed = port is not None
    for _ in range(1 if fixed else 8):
        p = port if fixed else free_port()
        proc = spawn(p)

        def ready(p=p, proc=proc):
            if proc.poll() is not None:
                return "exited"
            return answers(p) and "up"

        if wait_until(ready, timeout, what=f"{what} on port {p}") == "up":
            return p, proc
        _wait_exit(proc, 1)
        if "Address already in use" not in tail(log_path, 20) or fixed:
            break
    raise HarnessError(f"{what} did not start:\n" + tail(log_path, 30))


class RedisServer:
    """A private redis-server with AOF on, data in workdir/name. Survives kill()
    and restart() on the same port with the same data. extra: more
    redis-server arguments; client_kw: redis-py options the harness reaches
    it with (TLS, an ACL user, a unix socket instead of the port)."""

    def __init__(self, workdir, extra=(), client_kw=None, name="redis"):
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.extra = list(extra)
        self.client_kw = dict(client_kw or {})
        self.port = None
        self.proc = None

    def _argv(self, port):
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--appendonly", "yes",
                "--appendfsync", "everysec", "--daemonize", "no",
                "--protected-mode", "no", "--logfile", ""] + self.extra

    def _client(self, port, **kw):
        """A redis-py client of the server on port, reached as client_kw says."""
        opts = dict(self.client_kw)
        if "unix_socket_path" not in opts:
            opts.update(host="127.0.0.1", port=port)
        opts.update(kw)
        return redis.Redis(**opts)

    def _ping(self, port):
        try:
            return self._client(port, socket_timeout=1, socket_connect_timeout=1).ping()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False

    def start(self, port=None, timeout=30):
        """Starts the server on port (or a free one, retrying on collision) and
        returns once it answers PING (AOF loaded)."""
        self.port, self.proc = _start_on_a_port(
            lambda p: _spawn(self._argv(p), self.log_path), self._ping, "redis-server",
            self.log_path, port, timeout)
        return self

    def kill(self):
        """SIGKILL: what is not yet fsynced to the AOF is lost, as in a crash."""
        _kill(self.proc)
        self.proc = None
        wait_until(lambda: not port_open(self.port), 10, what="redis port to close")

    def stop(self):
        _stop(self.proc, 15)
        self.proc = None

    def restart(self, timeout=30):
        return self.start(port=self.port, timeout=timeout)

    def client(self):
        return self._client(self.port, decode_responses=True, socket_timeout=30,
                            socket_connect_timeout=5)

    def persist(self, timeout=30):
        """Makes everything written so far durable (an AOF rewrite writes and
        fsyncs a new base file), so a later SIGKILL loses only newer writes."""
        r = self.client()
        r.bgrewriteaof()

        def done():
            info = r.info("persistence")
            return (not info.get("aof_rewrite_in_progress")
                    and not info.get("aof_rewrite_scheduled")
                    and info.get("aof_last_bgrewrite_status") == "ok")

        wait_until(done, timeout, 0.05, what="AOF rewrite")


class Sim:
    """crier-sim on a free port; the control API over plain urllib."""

    def __init__(self, workdir, args=()):
        self.dir = Path(workdir)
        self.args = list(args)
        self.log_path = self.dir / "sim.log"
        self.port_file = self.dir / "sim.port"
        self.port = None
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=30):
        if self.port_file.exists():
            self.port_file.unlink()
        argv = [binary("crier-sim"), "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(self.port_file), "--quiet"] + self.args
        self.proc = _spawn(argv, self.log_path)

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"crier-sim exited with {self.proc.returncode}:\n"
                                   + tail(self.log_path, 30))
            try:
                text = self.port_file.read_text().strip()
                self.port = int(text)
            except (OSError, ValueError):
                return False
            try:
                return self._call("GET", "/_sim/health", timeout=2) is not None
            except (OSError, ValueError):
                return False

        wait_until(ready, timeout, what="crier-sim health")
        return self

    def stop(self):
        _stop(self.proc, 10)
        self.proc = None

    def _call(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else {}

    def stats(self):
        return self._call("GET", "/_sim/stats")

    def endpoint_stats(self, endpoint):
        return self.stats()["endpoints"][endpoint]

    def recipients(self, endpoint):
        q = urllib.parse.urlencode({"endpoint": endpoint})
        return self._call("GET", "/_sim/recipients?" + q)

    def log(self, endpoint, since=0, limit=10000):
        q = urllib.parse.urlencode({"endpoint": endpoint, "since": since, "limit": limit})
        return self._call("GET", "/_sim/log?" + q)

    def log_all(self, endpoint):
        """Every logged request to endpoint, oldest first."""
        entries, since = [], 0
        while True:
            page = self.log(endpoint, since)
            entries.extend(page.get("entries", []))
            nxt = page.get("next", since)
            if not page.get("entries") or nxt == since:
                return entries
            since = nxt

    def reset(self):
        return self._call("POST", "/_sim/reset", {})

    def configure(self, endpoint="*", **settings):
        """Changes latency_ms, jitter_ms, error_rate, rate_429, retry_after."""
        return self._call("POST", "/_sim/config", dict(settings, endpoint=endpoint))


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def crierd_config(redis_port, sim_port, consumer="crierd-a", **overrides):
    """The configuration the tests run crierd with: every provider pointed at
    the simulator, with its default credentials. overrides are merged in."""
    sim = f"http://127.0.0.1:{sim_port}"
    cfg = {
        "redis": {"host": "127.0.0.1", "port": redis_port, "prefix": PREFIX},
        "consumer": consumer,
        "log_level": "info",
        "fanout": {"batch_size": 200, "max_batches": 8, "reclaim_idle_ms": 60000},
        "retry": {"max_attempts": 5, "base_ms": 50, "max_ms": 2000},
        "channels": {"email": ["sendgrid"], "sms": ["twilio"], "push": ["fcm"]},
        # The listener is plain http:// on loopback: one-click unsubscribe
        # links need https:// (RFC 8058) unless this switch for tests says so.
        "links": {"allow_insecure_http": True},
        "providers": {
            "sendgrid": {"type": "sendgrid", "url": sim, "api_key": "SG.test-key",
                         "from_email": "alerts@crier.test"},
            "twilio": {"type": "twilio", "url": sim,
                       "account_sid": "AC00000000000000000000000000000000",
                       "auth_token": "test-token", "from": "+447700900000"},
            "fcm": {"type": "fcm", "url": sim, "project_id": "crier-demo",
                    "access_token": "fcm-test-token"},
        },
    }
    return deep_merge(cfg, overrides)


class ConfiguredProcess:
    """A crier program run with -c <its JSON config file> in workdir and its
    stderr in <name>.log there; start() returns once the log says it is
    ready (ready_line), log_text() is what it wrote since then."""

    program = None     # the binary, in build_dir()
    ready_line = None  # a line of the log containing this means ready

    def __init__(self, workdir, config, name):
        self.dir = Path(workdir)
        self.name = name
        self.config = config
        self.config_path = self.dir / f"{self.name}.json"
        self.log_path = self.dir / f"{self.name}.log"
        self.proc = None
        self._log_start = 0

    def write_config(self):
        self.config_path.write_text(json.dumps(self.config, indent=2))

    def start(self, timeout=30):
        """Starts the program and returns once its log has a line containing
        ready_line; raises HarnessError (with the log) if it exits first."""
        self.write_config()
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = _spawn([binary(self.program), "-c", str(self.config_path)], self.log_path)

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.program} {self.name} exited with "
                                   f"{self.proc.returncode} before ready:\n"
                                   + self.log_text()[-4000:])
            return any(self.ready_line in line for line in self.log_text().splitlines())

        wait_until(ready, timeout, 0.02, what=f"{self.program} {self.name} to log "
                                              f"'{self.ready_line}'")
        return self

    def log_text(self):
        """The log written since the last start()."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def term(self, timeout=15):
        """SIGTERM, then waits up to timeout seconds for the exit; returns the
        exit code (the caller asserts it is 0). Raises HarnessError (after a
        SIGKILL) if it does not exit in time."""
        self.proc.send_signal(signal.SIGTERM)
        rc = _wait_exit(self.proc, timeout)
        if rc is None:
            _kill(self.proc)
            raise HarnessError(f"{self.program} {self.name} did not exit within {timeout}s "
                               "of SIGTERM")
        return rc

    def kill(self):
        """SIGKILL: a crash at an arbitrary moment."""
        return _kill(self.proc)


class Crierd(ConfiguredProcess):
    """One crierd process with its own config file and log (stderr) file."""

    program = "crierd"
    ready_line = "ready"

    def __init__(self, workdir, config, name=None):
        super().__init__(workdir, config, name or config.get("consumer", "crierd"))

    def check_alive(self):
        """Raises HarnessError with the log tail if crierd has exited."""
        if not self.alive():
            rc = self.proc.returncode if self.proc else None
            raise HarnessError(f"crierd {self.name} is not running (exit {rc}):\n"
                               + tail(self.log_path, 40))

    def signal(self, signum):
        self.proc.send_signal(signum)

    def check_config(self, timeout=15):
        """Runs `crierd -t -c FILE`; returns (exit code, stdout + stderr)."""
        self.write_config()
        return check_config_file(self.config_path, timeout)


def check_config_file(path, timeout=15):
    res = subprocess.run([binary("crierd"), "-t", "-c", str(path)], stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=timeout)
    return res.returncode, (res.stdout + res.stderr).decode(errors="replace")


class Env:
    """Everything one test runs: a temp dir, redis-server, crier-sim and any
    number of crierd processes. close() stops them all and removes the dir."""

    def __init__(self, label="crier"):
        self.dir = Path(tempfile.mkdtemp(prefix=f"{label}-"))
        self.redis = None
        self.sim = None
        self.daemons = []
        self.r = None

    def start_redis(self):
        self.redis = RedisServer(self.dir).start()
        self.r = self.redis.client()
        return self.redis

    def start_sim(self, *args):
        self.sim = Sim(self.dir, args).start()
        return self.sim

    def crierd(self, consumer="crierd-a", start=True, **overrides):
        cfg = crierd_config(self.redis.port, self.sim.port if self.sim else 9,
                            consumer=consumer, **overrides)
        d = Crierd(self.dir, cfg, name=consumer)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def start(self, sim_args=(), **crierd_overrides):
        """redis-server, crier-sim and one crierd ('crierd-a'), all ready."""
        self.start_redis()
        self.start_sim(*sim_args)
        return self.crierd(**crierd_overrides)

    def logs(self):
        """(title, text) pairs of every log, for a failure report."""
        out = []
        for d in self.daemons:
            out.append((f"{d.name} log", tail(d.log_path, 200)))
        if self.sim:
            out.append(("crier-sim log", tail(self.sim.log_path, 40)))
        if self.redis:
            out.append(("redis-server log", tail(self.redis.log_path, 40)))
        return out

    def close(self):
        for d in self.daemons:
            _kill(d.proc)
        if self.sim:
            self.sim.stop()
        for rep in getattr(self, "replicas", []):
            rep.stop()
        if self.redis:
            self.redis.stop()
        if not os.environ.get("CRIER_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def running_env(label):
    """An Env with redis-server, crier-sim and one crierd (as .daemon) all
    ready, closed on leaving: the body of a fixture shared by a module's
    tests (`with running_env("x") as e: yield e`)."""
    e = Env(label=label)
    try:
        e.daemon = e.start()
        yield e
    finally:
        e.close()


# ---- Redis contract helpers -------------------------------------------------

def seed(r, subscribers, segments=None, suppress=None, chunk=1000):
    """Writes subscriber hashes {id: {field: value}}, segment sets
    {name: [ids]} and suppression sets {channel: [addresses]}, pipelined."""
    pipe = r.pipeline(transaction=False)
    n = 0
    for sid, fields in subscribers.items():
        pipe.hset(f"{PREFIX}sub:{sid}", mapping=fields)
        n += 1
        if n % chunk == 0:
            pipe.execute()
    for name, ids in (segments or {}).items():
        ids = list(ids)
        for i in range(0, len(ids), chunk):
            pipe.sadd(f"{PREFIX}seg:{name}", *ids[i:i + chunk])
            pipe.execute()
    for channel, addrs in (suppress or {}).items():
        if addrs:
            pipe.sadd(f"{PREFIX}suppress:{channel}", *addrs)
    pipe.execute()


def post_job(r, job):
    """XADDs a job (a dict, or raw text/bytes) exactly as an integrator would;
    returns the stream entry id."""
    doc = job if isinstance(job, (str, bytes)) else json.dumps(job)
    return r.xadd(f"{PREFIX}jobs", {"job": doc})


def job_hash(r, job_id):
    return r.hgetall(f"{PREFIX}job:{job_id}")


def counter(h, name):
    try:
        return int(h.get(name, 0))
    except ValueError:
        return 0


def status_total(h):
    return sum(counter(h, s) for s in STATUSES)


def wait_job(r, job_id, daemons=(), state="completed", timeout=60, what=None):
    """Polls crier:job:<id> until its state is state; fails early when a
    crierd in daemons has died. Redis being down counts as not yet. Returns
    the job hash."""
    def check():
        for d in daemons:
            d.check_alive()
        try:
            h = job_hash(r, job_id)
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        return h if h.get("state") == state else None

    try:
        return wait_until(check, timeout, 0.05, what=what or f"job {job_id} to be {state}")
    except HarnessError as e:
        try:
            h = job_hash(r, job_id)
        except redis.RedisError:
            h = "(redis unavailable)"
        raise HarnessError(f"{e}; job hash now: {h}") from None


def stream_fields(r, key, count=None):
    """All entries of a stream as [(id, {field: value})]."""
    out, start = [], "-"
    while True:
        page = r.xrange(key, min=start, max="+", count=5000)
        if start != "-" and page and page[0][0] == start:
            page = page[1:]
        if not page:
            return out
        out.extend(page)
        start = page[-1][0]
        if count and len(out) >= count:
            return out


def dead_entry(r, entry):
    """The fields of the jobs:dead entry for the jobs stream entry, or None."""
    for _i, f in stream_fields(r, f"{PREFIX}jobs:dead"):
        if f.get("entry") == entry:
            return f
    return None


def group_caught_up(r, stream, entry_id, group=GROUP):
    """True once group has read past entry_id and has nothing pending."""
    def key(i):
        a, b = i.split("-")
        return int(a), int(b)
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:
        return False
    for g in groups:
        if g["name"] == group:
            last = g["last-delivered-id"]
            return key(last) >= key(entry_id) and g["pending"] == 0
    return False


def accepted_total(sim, channels=CHANNELS):
    """Requests the simulator accepted on the endpoints of channels."""
    eps = sim.stats()["endpoints"]
    return sum(eps[ENDPOINT[c]]["accepted"] for c in channels)


def assert_reached(sim, exp, channels=CHANNELS):
    """Asserts that every address exp expects on each of channels reached the
    simulator at least once and that no other address did; returns the
    duplicate requests the simulator counted on those endpoints."""
    stats = sim.stats()["endpoints"]
    dups = 0
    for ch in channels:
        ep = ENDPOINT[ch]
        got = sim.recipients(ep)
        want = exp.addresses(ch)
        missed = want - set(got)
        assert not missed, f"{ep}: {len(missed)} never reached, e.g. {sorted(missed)[:5]}"
        extra = set(got) - want
        assert not extra, f"{ep}: unexpected recipients {sorted(extra)[:5]}"
        dups += stats[ep]["duplicates"]
    return dups


def assert_job_counts(h, exp, channels=CHANNELS):
    """Asserts that the job hash h counts what exp expects: every message once
    in a status, the skipped residents, no failures, and each channel's sent
    and delivered."""
    assert int(h["messages"]) == exp.total == status_total(h)
    assert counter(h, "skipped") == len(exp.skipped)
    assert counter(h, "failed") == 0
    for ch in channels:
        ok = counter(h, f"sent:{ch}") + counter(h, f"delivered:{ch}")
        assert ok == exp.count(ch), f"{ch}: {ok} recorded, expected {exp.count(ch)}"


class Expect:
    """What a job should do to a seeded audience, computed from the data the
    test wrote: one message per (subscriber, channel) used, one skipped per
    subscriber with no usable channel (or no hash at all)."""

    def __init__(self, subscribers, audience, channels, suppress=None):
        suppress = {c: set(v) for c, v in (suppress or {}).items()}
        self.audience = list(dict.fromkeys(audience))
        self.messages = []  # (sub, channel, address)
        self.suppressed = []
        self.skipped = []
        for sid in self.audience:
            fields = subscribers.get(sid)
            if fields is None:
                self.skipped.append(sid)
                continue
            used = [c for c in channels if fields.get(CONTACT[c])]
            pref = fields.get("channels")
            if pref:
                wanted = {p.strip() for p in pref.split(",")}
                used = [c for c in used if c in wanted]
            if not used:
                self.skipped.append(sid)
                continue
            for c in used:
                addr = fields[CONTACT[c]]
                if addr in suppress.get(c, ()):
                    self.suppressed.append((sid, c, addr))
                else:
                    self.messages.append((sid, c, addr))

    @property
    def total(self):
        """The job's `messages` counter."""
        return len(self.messages) + len(self.suppressed) + len(self.skipped)

    def addresses(self, channel):
        return {a for _, c, a in self.messages if c == channel}

    def count(self, channel, rows=None):
        return sum(1 for _, c, _a in (self.messages if rows is None else rows) if c == channel)


def make_population(n, rng, id_prefix="r", areas=("area:A", "area:B", "area:C"),
                    overlap=0.1, langs=("en",) * 4 + ("pl",)):
    """n subscribers with mixed contacts, channel preferences and languages,
    spread over areas (a fraction `overlap` in two areas). Returns
    (subscribers, segments). Every address is unique so that the simulator's
    per-recipient counts map back to one subscriber and channel."""
    subs, segs = {}, {a: [] for a in areas}
    first = ("Ann", "Bob", "Cara", "Dev", "Ewa", "Finn", "Gosia", "Hal", "Iwona", "Jo")
    for i in range(n):
        sid = f"{id_prefix}{i:06d}"
        f = {"name": f"{first[i % len(first)]} {i}", "lang": rng.choice(langs)}
        if rng.random() < 0.85:
            f["email"] = f"{sid}@mail.crier.test"
        if rng.random() < 0.75:
            f["phone"] = f"+4477001{i:05d}" if n <= 100000 else f"+447{i:09d}"
        if rng.random() < 0.55:
            f["push_token"] = f"tok-{sid}-{rng.getrandbits(32):08x}"
            f["push_platform"] = "fcm"
        roll = rng.random()
        if roll < 0.4:
            pass  # every channel they have a contact for
        else:
            f["channels"] = ",".join(rng.sample(CHANNELS, rng.randint(1, 3)))
        subs[sid] = f
        home = rng.randrange(len(areas))
        segs[areas[home]].append(sid)
        if rng.random() < overlap and len(areas) > 1:
            segs[areas[(home + 1) % len(areas)]].append(sid)
    return subs, segs


# ---- provider outages -------------------------------------------------------

def kill_sim(sim):
    """SIGKILL a crier-sim: the provider vanishes mid-request, as in an outage."""
    _kill(sim.proc)
    sim.proc = None
    wait_until(lambda: not port_open(sim.port), 10, what="crier-sim port to close")


def restart_sim(sim, timeout=30):
    """Starts a stopped crier-sim again on the port it had, with the same
    flags (its counters and log start empty): the provider is back."""
    flags = sim.args
    sim.args = list(flags) + ["--port", str(sim.port)]  # the last --port wins
    try:
        return sim.start(timeout)
    finally:
        sim.args = flags


# ---- sanitizer reports --------------------------------------------------------

SANITIZER_MARKERS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")


def sanitizer_env(directory):
    """Makes every sanitized process the tests start (crierd, crier-sim,
    crierctl, built with SANITIZE=address,undefined) stop at its first report
    and write it to directory/{asan,ubsan}.<pid> as well as nowhere else, so
    that a report cannot hide in a log nobody reads: see sanitizer_reports.
    Options already in the environment are kept unless these override them."""
    d = Path(directory)
    for var, opts in (("UBSAN_OPTIONS", f"halt_on_error=1:print_stacktrace=1:log_path={d}/ubsan"),
                      ("ASAN_OPTIONS", f"halt_on_error=1:log_path={d}/asan")):
        old = os.environ.get(var)
        os.environ[var] = f"{old}:{opts}" if old else opts


def sanitizer_reports(directory, seen=()):
    """The text of every sanitizer report file in directory not named in seen
    (each one read and removed), or "" when there is none."""
    out = []
    d = Path(directory)
    if not d.is_dir():
        return ""
    for p in sorted(d.iterdir()):
        if p.name in seen:
            continue
        try:
            text = p.read_text(errors="replace")
            p.unlink()
        except OSError:
            continue
        if any(m in text for m in SANITIZER_MARKERS) or text.strip():
            out.append(f"---- {p.name} ----\n{text[-8000:]}")
    return "\n".join(out)


# ---- a replicated Redis with Sentinels ---------------------------------------

def tls_client_kw(tls):
    """redis-py keyword arguments for a server of a topology with tls (None:
    plain TCP)."""
    return {"ssl": True, "ssl_ca_certs": str(tls["ca"])} if tls else {}


class RedisNode(RedisServer):
    """One redis-server of a replicated topology, in its own directory under
    workdir/name, optionally started as a replica of replicaof (a port). With
    tls ({"cert", "key", "ca"} paths) its port speaks only TLS, replication
    too."""

    def __init__(self, workdir, name, replicaof=None, tls=None):
        super().__init__(Path(workdir) / name, client_kw=tls_client_kw(tls),
                         extra=["--replicaof", "127.0.0.1", str(replicaof)] if replicaof else ())
        self.name = name
        self.replicaof = replicaof
        self.tls = tls

    def _argv(self, port):
        argv = super()._argv(port)
        if self.tls:
            argv[argv.index("--port") + 1] = "0"
            argv += ["--tls-port", str(port), "--tls-cert-file", str(self.tls["cert"]),
                     "--tls-key-file", str(self.tls["key"]),
                     "--tls-ca-cert-file", str(self.tls["ca"]), "--tls-auth-clients", "no",
                     "--tls-replication", "yes"]
        return argv

    def role(self):
        """"master" or "slave" as ROLE says, None when it does not answer."""
        try:
            return self.client().execute_command("ROLE")[0]
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return None

    def link_up(self):
        """True on a replica whose link to its primary is up."""
        try:
            info = self.client().info("replication")
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        return info.get("role") == "slave" and info.get("master_link_status") == "up"


class SentinelProc:
    """One redis-sentinel on a free port with its own config file and
    directory (Sentinel rewrites its config), monitoring master at 127.0.0.1:
    primary_port with the given quorum and a fast failure detection."""

    def __init__(self, workdir, index, master, primary_port, quorum=2,
                 down_after_ms=1000, failover_timeout_ms=5000, tls=None):
        self.tls = tls
        self.dir = Path(workdir) / f"sentinel{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.dir / "sentinel.conf"
        self.log_path = self.dir / "sentinel.log"
        self.master = master
        self.settings = (primary_port, quorum, down_after_ms, failover_timeout_ms)
        self.port = None
        self.proc = None

    def _write_conf(self, port):
        primary, quorum, down_after, failover_timeout = self.settings
        tls = self.tls
        listen = (f"port 0\ntls-port {port}\ntls-cert-file {tls['cert']}\n"
                  f"tls-key-file {tls['key']}\ntls-ca-cert-file {tls['ca']}\n"
                  f"tls-auth-clients no\ntls-replication yes\n") if tls else f"port {port}\n"
        self.conf_path.write_text(
            f"{listen}bind 127.0.0.1\nprotected-mode no\ndaemonize no\n"
            f"dir {self.dir}\nlogfile \"\"\n"
            f"sentinel monitor {self.master} 127.0.0.1 {primary} {quorum}\n"
            f"sentinel down-after-milliseconds {self.master} {down_after}\n"
            f"sentinel failover-timeout {self.master} {failover_timeout}\n"
            f"sentinel parallel-syncs {self.master} 1\n")

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                           socket_timeout=5, socket_connect_timeout=2,
                           **tls_client_kw(self.tls))

    def start(self, timeout=30):
        def spawn(p):
            self._write_conf(p)
            return _spawn(["redis-sentinel", str(self.conf_path)], self.log_path)

        def answers(p):
            try:
                return redis.Redis(host="127.0.0.1", port=p, socket_timeout=1,
                                   socket_connect_timeout=1, **tls_client_kw(self.tls)).ping()
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        self.port, self.proc = _start_on_a_port(spawn, answers, "redis-sentinel",
                                                self.log_path, timeout=timeout)
        return self

    def primary_port(self):
        """The port this Sentinel names for the master now, or None."""
        try:
            addr = self.client().execute_command("SENTINEL", "get-master-addr-by-name",
                                                 self.master)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return None
        return int(addr[1]) if addr else None

    def stop(self):
        _stop(self.proc, 10)
        self.proc = None


class Topology:
    """A primary, one replica (replicaof) and three Sentinels monitoring them as
    master, all on free loopback ports under workdir. start() returns once the
    replica's link is up and every Sentinel sees the replica and the other
    Sentinels, so a failover can be asked for at once."""

    def __init__(self, workdir, master="crier", nsentinels=3, quorum=2, tls=None):
        self.tls = tls  # {"cert", "key", "ca"}: every node and Sentinel speaks only TLS
        self.dir = Path(workdir)
        self.master = master
        self.nsentinels = nsentinels
        self.quorum = quorum
        self.nodes = {}  # port -> RedisNode
        self.sentinels = []

    def start(self, timeout=60):
        primary = RedisNode(self.dir, "node1", tls=self.tls).start()
        replica = RedisNode(self.dir, "node2", replicaof=primary.port, tls=self.tls).start()
        self.nodes = {primary.port: primary, replica.port: replica}
        wait_until(replica.link_up, timeout, 0.05, what="the replica's link to the primary")
        self.sentinels = [SentinelProc(self.dir, i + 1, self.master, primary.port,
                                       self.quorum, tls=self.tls).start()
                          for i in range(self.nsentinels)]
        self.wait_healthy(primary.port, timeout)
        return self

    def wait_healthy(self, primary_port, timeout=60):
        """Waits until every Sentinel names primary_port, sees every other node
        as a replica with its link up and not down, and sees the other
        Sentinels."""
        want_replicas = {p for p in self.nodes if p != primary_port and self.nodes[p].proc}

        def healthy():
            for s in self.sentinels:
                if s.primary_port() != primary_port:
                    return False
                c = s.client()
                try:
                    reps = c.execute_command("SENTINEL", "replicas", self.master)
                    peers = c.execute_command("SENTINEL", "sentinels", self.master)
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    return False
                ok = set()
                for rep in reps:
                    f = dict(zip(rep[::2], rep[1::2])) if isinstance(rep, list) else rep
                    if ("s_down" not in f.get("flags", "") and "disconnected" not in
                            f.get("flags", "") and f.get("master-link-status") == "ok"
                            and f.get("master-port") == str(primary_port)):
                        ok.add(int(f["port"]))
                if not want_replicas <= ok or len(peers) < self.nsentinels - 1:
                    return False
            return all(self.nodes[p].link_up() for p in want_replicas)

        wait_until(healthy, timeout, 0.1,
                   what=f"Sentinels to agree on primary {primary_port} with its replicas")

    @property
    def sentinel_nodes(self):
        """The Sentinels as crierd's redis.sentinel.nodes wants them."""
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def primary_port(self):
        """The primary the first answering Sentinel names."""
        for s in self.sentinels:
            p = s.primary_port()
            if p:
                return p
        raise HarnessError("no Sentinel names a primary")

    def node(self, port):
        return self.nodes[port]

    def client(self, port):
        """A client of the node on port (TLS when the topology has it)."""
        return self.nodes[port].client()

    def wait_switch(self, old_port, timeout=60):
        """Waits until a majority of the Sentinels name a primary other than
        old_port, and it says ROLE master; returns its port."""
        def switched():
            ports = [s.primary_port() for s in self.sentinels]
            new = [p for p in ports if p and p != old_port]
            if len(new) * 2 > len(ports) and len(set(new)) == 1 \
                    and self.nodes[new[0]].role() == "master":
                return new[0]
            return None

        return wait_until(switched, timeout, 0.02,
                          what=f"Sentinel to name a primary other than {old_port}")

    def logs(self):
        out = [(f"{n.name} (port {p}) log", tail(n.log_path, 40)) for p, n in self.nodes.items()]
        out += [(f"sentinel {s.port} log", tail(s.log_path, 40)) for s in self.sentinels]
        return out

    def stop(self):
        for s in self.sentinels:
            s.stop()
        for n in self.nodes.values():
            n.stop()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """Stops everything; first prints every log when the body raised."""
        if exc_type is not None:
            for title, text in self.logs():
                print(f"---- {title} ----\n{text}")
        self.stop()
        return False


def sentinel_crierd_config(topo, sim_port, consumer="crierd-a", **overrides):
    """crierd_config with redis.sentinel naming topo's Sentinels instead of a
    host and port."""
    cfg = crierd_config(0, sim_port, consumer=consumer)
    cfg["redis"] = {"prefix": PREFIX,
                    "sentinel": {"master": topo.master, "nodes": topo.sentinel_nodes}}
    return deep_merge(cfg, overrides)
def start_unready(d, timeout=30):
    """Starts crierd d without waiting for 'ready' (for a Redis it cannot use):
    returns once its HTTP listener, when it has one, accepts connections."""
    d.write_config()
    d._log_start = d.log_path.stat().st_size if d.log_path.exists() else 0
    d.proc = _spawn([binary("crierd"), "-c", str(d.config_path)], d.log_path)
    listen = d.config.get("http", {}).get("listen")
    if listen:
        port = int(listen.rsplit(":", 1)[1])
        wait_until(lambda: d.check_alive() or port_open(port), timeout,
                   what=f"crierd {d.name} to listen on {port}")
    return d

# ---- replicas -----------------------------------------------------------------

def start_replica(env, primary, name="replica", timeout=30):
    """Starts a replica of primary and returns it once its link is up and the
    initial sync is done. The caller stops it (or env.close() kills it)."""
    rep = RedisNode(env.dir, name, replicaof=primary.port).start()
    env.replicas = getattr(env, "replicas", []) + [rep]

    def synced():
        info = rep.client().info("replication")
        return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")

    wait_until(synced, timeout, 0.05, what=f"replica {name} to sync")
    return rep


# ---- crier-audit and its databases ------------------------------------------

AUDIT_GROUP = "audit"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def pg_bin(name):
    """A PostgreSQL server program (initdb, pg_ctl): Debian keeps them out of PATH."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for d in versions:
        if (d / name).exists():
            return str(d / name)
    raise HarnessError(f"{name} not found: install the postgresql package")


class Postgres:
    """A private PostgreSQL server (initdb + pg_ctl) on a free loopback port in
    its own temporary directory, trust authentication for user 'crier',
    database 'crier'. As root the server runs as the 'postgres' user (it
    refuses root). restart() keeps the data; close() removes everything."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="crier-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.port = None
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, argv, timeout=120):
        res = subprocess.run(self.as_user + argv, stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=timeout)
        if res.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} failed:\n"
                               + (res.stdout + res.stderr).decode(errors="replace")
                               + tail(self.log_path, 30))
        return res

    def start(self, timeout=60):
        if not self.data.exists():
            self._run([pg_bin("initdb"), "-D", str(self.data), "-U", "crier", "-A", "trust",
                       "-E", "UTF8", "--no-sync"])
        self.port = self.port or free_port()
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                "-c fsync=on -c shared_buffers=32MB -c max_connections=20")
        self._run([pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", opts,
                   "-w", "-t", str(timeout), "start"], timeout=timeout + 10)
        if not getattr(self, "_created", False):
            self.psql("CREATE DATABASE crier", db="postgres")
            self._created = True
        return self

    def stop(self, mode="fast"):
        """Stops the server (mode 'immediate' is a crash: no checkpoint)."""
        if self.port and (self.data / "postmaster.pid").exists():
            self._run([pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self, mode="immediate"):
        self.stop(mode)
        return self.start()

    @property
    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} user=crier dbname=crier connect_timeout=5"

    def psql(self, sql, db="crier"):
        """Runs sql with psql; returns the rows as lists of strings."""
        res = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-h", "127.0.0.1", "-p", str(self.port), "-U", "crier", "-d", db,
                              "-c", sql], stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=120)
        if res.returncode != 0:
            raise HarnessError(f"psql failed: {res.stderr.decode(errors='replace')}\n{sql}")
        out = res.stdout.decode()
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def close(self):
        try:
            self.stop("immediate")
        except HarnessError:
            pass
        if not os.environ.get("CRIER_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def audit_config(redis_port, database, **overrides):
    """crier-audit's configuration for the tests: database is
    {"type": "sqlite", "path": ...} or {"type": "postgresql", "conninfo": ...}."""
    cfg = {"redis": {"host": "127.0.0.1", "port": redis_port}, "prefix": PREFIX,
           "group": AUDIT_GROUP, "consumer": "audit-1", "database": database,
           "log_level": "info"}
    return deep_merge(cfg, overrides)


class Audit(ConfiguredProcess):
    """One crier-audit process with its own config and log file. Ready once
    its log says it is reading the streams."""

    program = "crier-audit"
    ready_line = "audit: reading"

    def __init__(self, workdir, config, name="audit"):
        super().__init__(workdir, config, name)

    def term(self, timeout=30):
        return super().term(timeout)


def audit_backlog(r, stream, group=AUDIT_GROUP):
    """Entries of stream the audit group has not acknowledged yet (read and
    pending, or not read), or None when the group does not exist."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:
        return None
    for g in groups:
        if g["name"] == group:
            lag = g.get("lag")
            return g["pending"] + (lag if lag is not None else r.xlen(stream))
    return None


# ---- HTTP ---------------------------------------------------------------------

def http_request(url, body=None, headers=None, method="GET", timeout=30):
    """(status, headers, body bytes) of one request, without raising on an
    HTTP error status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def http_get(port, path, timeout=5):
    """(status, text) of GET path on a loopback listener (crierd's /readyz,
    /metrics ...), without raising on an HTTP error status."""
    status, _headers, body = http_request(f"http://127.0.0.1:{port}{path}", timeout=timeout)
    return status, body.decode()


# The ledger: one byte per audience position, bit i (MSB first) = channel i
# (email, sms, push, whatsapp), then skipped (include/cr_types.h).
LEDGER_BITS = 8
LEDGER_SKIPPED = 4


def ledger_bit(pos, slot):
    """The ledger bit of audience position pos, slot = channel index or
    LEDGER_SKIPPED."""
    return pos * LEDGER_BITS + slot
