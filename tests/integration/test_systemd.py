"""crierd under systemd: the installed unit passes `systemd-analyze verify`;
crierd speaks sd_notify over $NOTIFY_SOCKET (a datagram socket the test
owns, no systemd needed): READY=1 once ready, WATCHDOG=1 from its loop when
$WATCHDOG_USEC asks for it, STOPPING=1 on SIGTERM; with workers the
supervisor alone speaks; `make install` installs a starting crierd.json and
keeps an existing one."""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess

import pytest

from harness import REPO, HarnessError, binary, build_dir, crierd_config, wait_until

SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)


class NotifySocket:
    """The service manager's end: datagrams with the sender's pid."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.got = []  # (pid, {key: value})

    def poll(self):
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                return self.got
            pid = 0
            for level, kind, blob in anc:
                if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                    pid = struct.unpack("iII", blob[:12])[0]
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.got.append((pid, fields))

    def seen(self, key, value="1"):
        return [pid for pid, f in self.poll() if f.get(key) == value]

    def close(self):
        self.sock.close()


def start(tmp_path, env_extra, redis_port, **cfg_over):
    cfg = crierd_config(redis_port, 9, **cfg_over)
    path = tmp_path / "crierd.json"
    path.write_text(json.dumps(cfg))
    log = open(tmp_path / "crierd.log", "ab")
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    environ.update(env_extra)
    try:
        return subprocess.Popen([binary("crierd"), "-c", str(path)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, env=environ)
    finally:
        log.close()


def stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_watchdog_and_stopping_over_notify_socket(env, tmp_path, workers):
    env.start_redis()
    ns = NotifySocket(tmp_path / "notify")
    proc = start(tmp_path, {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "400000"},
                 env.redis.port, workers=workers)
    try:
        def alive_and(key):
            if proc.poll() is not None:
                raise HarnessError(f"crierd exited with {proc.returncode}:\n"
                                   + (tmp_path / "crierd.log").read_text())
            return ns.seen(key)

        wait_until(lambda: alive_and("READY"), 30, what="READY=1")
        # With workers, READY=1 waits for every worker to be ready.
        log = (tmp_path / "crierd.log").read_text()
        ready_lines = [ln for ln in log.splitlines() if "crierd ready:" in ln]
        assert len(ready_lines) == workers, log
        # Fed every WATCHDOG_USEC/2 from the loop: several pings arrive.
        wait_until(lambda: len(alive_and("WATCHDOG")) >= 3, 30, what="three WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: ns.seen("STOPPING"), 15, what="STOPPING=1")
        assert proc.wait(15) == 0
        # Only the main process speaks (NotifyAccess=main), workers or not.
        senders = {pid for pid, _f in ns.poll()}
        assert senders == {proc.pid}, f"notifications from {senders}, main pid {proc.pid}"
        ready = [f for _p, f in ns.got if f.get("READY") == "1"]
        assert len(ready) == 1 and ready[0].get("STATUS", "").startswith("ready")
    finally:
        stop(proc)
        ns.close()


def test_no_watchdog_pings_unless_asked(env, tmp_path):
    env.start_redis()
    ns = NotifySocket(tmp_path / "notify")
    proc = start(tmp_path, {"NOTIFY_SOCKET": ns.path}, env.redis.port)
    try:
        wait_until(lambda: ns.seen("READY"), 30, what="READY=1")
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: ns.seen("STOPPING"), 15, what="STOPPING=1")
        assert proc.wait(15) == 0
        assert not ns.seen("WATCHDOG")
    finally:
        stop(proc)
        ns.close()


def make_install(prefix):
    # -o all: install what the tests run against, never rebuild it here
    res = subprocess.run(["make", "--no-print-directory", "-o", "all", "install",
                          f"PREFIX={prefix}", f"BUILD={build_dir()}"], cwd=REPO,
                         capture_output=True, timeout=300)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    return res.stdout.decode()


def test_install_puts_a_starting_config_and_keeps_an_existing_one(tmp_path):
    prefix = tmp_path / "usr"
    make_install(prefix)
    conf = prefix / "etc" / "crier" / "crierd.json"
    unit = prefix / "lib" / "systemd" / "system" / "crierd.service"
    assert conf.is_file() and (prefix / "etc" / "crier" / "crierd.example.json").is_file()
    text = unit.read_text()
    assert f"ExecStart={prefix}/bin/crierd -c {conf}\n" in text
    assert "Type=notify\n" in text and "WatchdogSec=" in text
    # The starting config is valid as soon as its credential exists.
    cred = tmp_path / "twilio_auth_token"
    cred.write_text("token\n")
    start_conf = conf.read_text().replace("/run/credentials/crierd.service/twilio_auth_token",
                                          str(cred))
    (tmp_path / "check.json").write_text(start_conf)
    res = subprocess.run([binary("crierd"), "-t", "-c", str(tmp_path / "check.json")],
                         capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr.decode()
    # An operator's config survives the next install.
    conf.write_text("{ \"operator\": true }\n")
    out = make_install(prefix)
    assert conf.read_text() == "{ \"operator\": true }\n"
    assert "keeping" in out

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit was not verified "
                    "(everything else passed)")
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    assert res.stderr.decode().strip() == "", res.stderr.decode()


def test_supervisor_restarts_a_worker_whose_loop_stops(env, tmp_path):
    """A worker that stops pinging its watchdog (here: SIGSTOP) is killed by
    the supervisor and started again; the service itself stays up and keeps
    feeding systemd's watchdog."""
    env.start_redis()
    ns = NotifySocket(tmp_path / "notify")
    proc = start(tmp_path, {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "600000"},
                 env.redis.port, workers=2)
    log_path = tmp_path / "crierd.log"
    started = re.compile(r"worker (\d) started \(pid (\d+)\)")
    try:
        wait_until(lambda: ns.seen("READY"), 30, what="READY=1")
        first = {m.group(1): int(m.group(2)) for m in started.finditer(log_path.read_text())}
        assert set(first) == {"0", "1"}
        os.kill(first["1"], signal.SIGSTOP)
        wait_until(lambda: "worker 1 (pid %d) sent no watchdog ping" % first["1"]
                   in log_path.read_text(), 30, what="the supervisor to see worker 1 stuck")
        wait_until(lambda: len(started.findall(log_path.read_text())) >= 3, 30,
                   what="worker 1 started again")
        wait_until(lambda: log_path.read_text().count("crierd ready:") >= 3, 30,
                   what="the new worker 1 ready")
        assert proc.poll() is None
        pings = len(ns.seen("WATCHDOG"))
        wait_until(lambda: len(ns.seen("WATCHDOG")) > pings, 10, what="the service's pings")
        assert len([1 for _p, f in ns.got if f.get("READY") == "1"]) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        stop(proc)
        ns.close()
