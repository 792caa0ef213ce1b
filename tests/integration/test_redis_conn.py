"""How crierd reaches Redis: an ACL user, a unix socket, TLS (with and without
a client certificate), and what it does when it cannot: a wrong password, a
CA that does not match, a replica given as the address. Each working way
carries a broadcast end to end; each failing one is named in /readyz and in
the log without flooding it. Also: an idle connection notices a Redis restart
at once rather than at its command timeout."""

import re
import time

from certs import _openssl, make_ca, make_server_cert
from harness import (PREFIX, Crierd, Expect, RedisServer, counter, crierd_config, free_port,
                     http_get, post_job, seed, start_unready, status_total, wait_job, wait_until)

N = 150
OBSERVE_S = 5.0  # the window in which a failing connection must stay quiet


class CustomRedis(RedisServer):
    """A redis-server started with extra arguments, reached the way they say."""

    def __init__(self, workdir, extra=(), mode="tcp", client_kw=None, name="redis"):
        super().__init__(workdir, extra, client_kw, name)
        self.mode = mode  # "tcp", "tls" (only TLS on the port) or "unix" (no TCP)

    def _argv(self, port):
        argv = super()._argv(port)
        if self.mode != "tcp":  # plain TCP closed; the free port goes to TLS
            argv[argv.index("--port") + 1] = "0"
        if self.mode == "tls":
            argv += ["--tls-port", str(port)]
        return argv


def population(prefix="p"):
    subs = {f"{prefix}{i:04d}": {"phone": f"+4479{i:08d}", "name": f"Resident {i}"}
            for i in range(N)}
    return subs, {"area:X": list(subs)}


def job(job_id):
    return {"id": job_id, "priority": "urgent", "audience": {"segments": ["area:X"]},
            "channels": ["sms"], "message": {"sms": "Appeal for {{name}}: call 101."}}


def use(env, server):
    env.redis = server.start()
    env.r = server.client()
    return server


def launch(env, redis_conf, wait_ready=True, **overrides):
    """crierd with the given "redis" section (replacing the harness's) and its
    HTTP listener on a free port; waits for 'ready' unless told not to."""
    port = free_port()
    cfg = crierd_config(0, env.sim.port, http={"listen": f"127.0.0.1:{port}"}, **overrides)
    cfg["redis"] = dict(redis_conf, prefix=cfg["redis"]["prefix"])
    d = Crierd(env.dir, cfg, name=f"crierd-{len(env.daemons)}")
    d.http_port = port
    env.daemons.append(d)
    if wait_ready:
        d.start()
    else:
        start_unready(d)
    return d


def readyz(d):
    try:
        return http_get(d.http_port, "/readyz")
    except OSError:
        return None, ""


def metrics(d):
    status, text = http_get(d.http_port, "/metrics")
    assert status == 200, (status, text)
    return text


def broadcast(env, d, job_id):
    subs, segs = population()
    seed(env.r, subs, segs)
    exp = Expect(subs, segs["area:X"], ["sms"])
    post_job(env.r, job(job_id))
    h = wait_job(env.r, job_id, [d], timeout=60)
    got = env.sim.recipients("twilio")
    assert set(got) == exp.addresses("sms")
    assert all(v == 1 for v in got.values())
    assert int(h["messages"]) == exp.total
    assert status_total(h) == int(h["messages"])
    assert counter(h, "failed") == 0


def assert_down_quietly(d, pattern, want_in_readyz):
    """/readyz names every connection as down with want_in_readyz, and over
    OBSERVE_S seconds the log has few lines matching pattern: the failure is
    retried with backoff and its repeats are summed up, not written each time."""
    def named():
        status, body = readyz(d)
        return status == 503 and all(
            re.search(rf"redis {c}: .*{re.escape(want_in_readyz)}", body)
            for c in ("commands", "reader", "urgent")) and body
    body = wait_until(named, 20, 0.1, what=f"/readyz to say '{want_in_readyz}'")
    before = len([ln for ln in d.log_text().splitlines() if re.search(pattern, ln)])
    time.sleep(OBSERVE_S)  # an observation window, not a synchronisation
    lines = [ln for ln in d.log_text().splitlines() if re.search(pattern, ln)]
    assert before >= 1, d.log_text()[-2000:]
    assert len(lines) < 20, f"{len(lines)} log lines in {OBSERVE_S} s:\n" + "\n".join(lines[:40])
    d.check_alive()
    text = metrics(d)
    errors = int(re.search(r'crier_redis_errors_total\{conn="commands"\} (\d+)', text).group(1))
    assert errors >= 1
    assert 'crier_redis_up{conn="commands"} 0' in text
    return body


# ---- ACL user ---------------------------------------------------------------

ACL = ["--user", "crier", "on", ">s3cret-pw", "~*", "&*", "+@all", "--user", "default", "off"]


def test_acl_user_reaches_everyone(env):
    use(env, CustomRedis(env.dir, ACL, client_kw={"username": "crier",
                                                  "password": "s3cret-pw"}))
    env.start_sim()
    d = launch(env, {"host": "127.0.0.1", "port": env.redis.port, "username": "crier",
                     "password": "s3cret-pw"})
    assert readyz(d)[0] == 200
    broadcast(env, d, "acl-appeal-1")


def test_acl_user_not_allowed_role_still_works(env):
    """ROLE is an @admin/@dangerous command a least-privilege user may lack:
    crierd says it cannot check the role and goes on (a replica would still
    show itself by READONLY)."""
    acl = ["--user", "crier", "on", ">s3cret-pw", "~*", "&*", "+@all", "-@dangerous",
           "--user", "default", "off"]
    use(env, CustomRedis(env.dir, acl, client_kw={"username": "crier",
                                                  "password": "s3cret-pw"}))
    env.start_sim()
    d = launch(env, {"host": "127.0.0.1", "port": env.redis.port, "username": "crier",
                     "password": "s3cret-pw"})
    assert "cannot check that this is the primary (ROLE refused: NOPERM" in d.log_text()
    broadcast(env, d, "acl-appeal-2")


def test_acl_wrong_password_is_named_and_not_spun(env):
    use(env, CustomRedis(env.dir, ACL, client_kw={"username": "crier",
                                                  "password": "s3cret-pw"}))
    env.start_sim()
    d = launch(env, {"host": "127.0.0.1", "port": env.redis.port, "username": "crier",
                     "password": "not-the-password"}, wait_ready=False)
    body = assert_down_quietly(d, r"AUTH refused", "AUTH refused: WRONGPASS")
    assert f"127.0.0.1:{env.redis.port}" in body
    assert "not-the-password" not in d.log_text()


# ---- unix socket ------------------------------------------------------------

def test_unix_socket_reaches_everyone(env):
    sock = env.dir / "r.sock"
    use(env, CustomRedis(env.dir, ["--unixsocket", str(sock), "--unixsocketperm", "700"],
                         mode="unix", client_kw={"unix_socket_path": str(sock)}))
    env.start_sim()
    d = launch(env, {"path": str(sock)})
    assert f"redis 'commands' {sock}: connected" in d.log_text()
    broadcast(env, d, "unix-appeal-1")
    assert d.term() == 0


# ---- TLS --------------------------------------------------------------------

def tls_material(directory):
    ca, ca_key = make_ca(directory / "ca")
    cert, key = make_server_cert(directory / "ca", ca, ca_key, name="redis")
    return ca, ca_key, cert, key


def make_client_cert(directory, ca, ca_key):
    key, csr, cert = directory / "client.key", directory / "client.csr", directory / "client.pem"
    ext = directory / "client.ext"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=crierd")
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key


def tls_server(env, auth_clients, client_cert=None):
    ca, ca_key, cert, key = tls_material(env.dir)
    kw = {"ssl": True, "ssl_ca_certs": str(ca)}
    if client_cert:
        kw.update(ssl_certfile=str(client_cert[0]), ssl_keyfile=str(client_cert[1]))
    server = CustomRedis(env.dir, ["--tls-cert-file", str(cert), "--tls-key-file", str(key),
                                   "--tls-ca-cert-file", str(ca),
                                   "--tls-auth-clients", "yes" if auth_clients else "no"],
                         mode="tls", client_kw=kw)
    return use(env, server), ca, ca_key


def test_tls_reaches_everyone(env):
    _, ca, _ = tls_server(env, auth_clients=False)
    env.start_sim()
    d = launch(env, {"host": "127.0.0.1", "port": env.redis.port, "tls": {"ca_file": str(ca)}})
    assert "connected over TLS" in d.log_text()
    broadcast(env, d, "tls-appeal-1")
    assert d.term() == 0  # a clean exit (and, in a sanitizer build, nothing leaked)


def test_tls_client_certificate(env):
    ca, ca_key, cert, key = tls_material(env.dir)
    ccert, ckey = make_client_cert(env.dir / "ca", ca, ca_key)
    server = CustomRedis(env.dir, ["--tls-cert-file", str(cert), "--tls-key-file", str(key),
                                   "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "yes"],
                         mode="tls", client_kw={"ssl": True, "ssl_ca_certs": str(ca),
                                               "ssl_certfile": str(ccert),
                                               "ssl_keyfile": str(ckey)})
    use(env, server)
    env.start_sim()
    d = launch(env, {"host": "localhost", "port": env.redis.port,
                     "tls": {"ca_file": str(ca), "cert_file": str(ccert), "key_file": str(ckey),
                             "server_name": "localhost"}})
    broadcast(env, d, "tls-appeal-2")


def test_tls_wrong_ca_is_refused_clearly(env):
    tls_server(env, auth_clients=False)
    other_ca, _ = make_ca(env.dir / "other", name="some other CA")
    env.start_sim()
    d = launch(env, {"host": "127.0.0.1", "port": env.redis.port,
                     "tls": {"ca_file": str(other_ca)}}, wait_ready=False)
    assert_down_quietly(d, r"TLS", "TLS: certificate verify failed")
    assert "certificate verify failed" in d.log_text()
    assert d.term() == 0


def test_tls_file_that_does_not_load_fails_the_config_check(env):
    env.start_redis()
    bad = env.dir / "not-a-ca.pem"
    bad.write_text("this is not PEM\n")
    cfg = crierd_config(env.redis.port, 9, redis={"tls": {"ca_file": str(bad)}})
    d = Crierd(env.dir, cfg, name="crierd-check")
    code, out = d.check_config()
    assert code != 0
    assert "redis.tls.ca_file" in out, out


# ---- an idle connection notices a restart -------------------------------------

def test_idle_commands_connection_notices_redis_restart(env):
    env.start_redis()
    env.redis.persist()
    env.start_sim()
    d = launch(env, {"host": "127.0.0.1", "port": env.redis.port,
                     "command_timeout_ms": 30000, "reconnect_max_ms": 500})
    env.redis.kill()
    lost = re.compile(rf"redis 'commands' 127\.0\.0\.1:{env.redis.port}: connection lost")
    # Well before the 30 s command timeout: the connection reads all the time.
    wait_until(lambda: lost.search(d.log_text()), 10, 0.05,
               what="the commands connection to log the loss")
    env.redis.restart()
    env.r = env.redis.client()
    wait_until(lambda: readyz(d)[0] == 200, 30, 0.1, what="/readyz 200 after the restart")
    broadcast(env, d, "restart-appeal-1")


# ---- a replica given as the address -------------------------------------------

def test_replica_address_is_named_not_spun_then_primary_works(env):
    primary = use(env, CustomRedis(env.dir, name="primary"))
    replica = CustomRedis(env.dir, ["--replicaof", "127.0.0.1", str(primary.port)],
                          name="replica").start()
    try:
        env.start_sim()
        d = launch(env, {"host": "127.0.0.1", "port": replica.port}, wait_ready=False)
        body = assert_down_quietly(d, r"replica|ROLE", "replica (ROLE slave)")
        assert f"127.0.0.1:{replica.port}" in body
        d.kill()
        d2 = launch(env, {"host": "127.0.0.1", "port": primary.port})
        broadcast(env, d2, "primary-appeal-1")
    finally:
        replica.stop()


# ---- an error reply that repeats is not retried in a loop ----------------------

def test_lost_consumer_groups_no_spin_then_recreated(env):
    """Redis comes back empty (FLUSHALL stands in for a restart without its
    data): every read is answered NOGROUP. The reader waits out a backoff
    instead of asking again at once, creates the groups again, and a job
    posted afterwards completes."""
    env.start_redis()
    env.start_sim()
    d = launch(env, {"host": "127.0.0.1", "port": env.redis.port})
    env.r.flushall()
    # the blocking read in flight is answered UNBLOCKED, the next ones NOGROUP
    nogroup = re.compile(r"NOGROUP|UNBLOCKED")
    wait_until(lambda: nogroup.search(d.log_text()), 10, 0.05, what="a failed read")
    time.sleep(2.0)  # an observation window, not a synchronisation
    lines = [ln for ln in d.log_text().splitlines() if nogroup.search(ln)]
    assert len(lines) < 20, f"{len(lines)} NOGROUP lines:\n" + "\n".join(lines[:20])
    assert env.r.xinfo_groups(f"{PREFIX}jobs"), "the consumer group was not created again"
    broadcast(env, d, "nogroup-appeal-1")


# ---- crierctl: ACL user and unix socket ----------------------------------------

def test_crierctl_acl_user_and_unix_socket(env):
    import subprocess

    from harness import binary

    sock = env.dir / "ctl.sock"
    use(env, CustomRedis(env.dir, ACL + ["--unixsocket", str(sock), "--unixsocketperm", "700"],
                         mode="unix", client_kw={"unix_socket_path": str(sock),
                                                 "username": "crier", "password": "s3cret-pw"}))

    def ctl(*args, url=None):
        envv = {"PATH": "/usr/bin:/bin"}
        if url:
            envv["CRIER_REDIS_URL"] = url
        return subprocess.run([binary("crierctl"), *args, "jobs"], capture_output=True,
                              text=True, timeout=30, env=envv)

    ok = ctl("--socket", str(sock), "--user", "crier", "-a", "s3cret-pw")
    assert ok.returncode == 0, ok.stderr
    ok = ctl("-a", "s3cret-pw", "--user", "crier", url=f"unix://{sock}")
    assert ok.returncode == 0, ok.stderr
    bad = ctl("--socket", str(sock), "--user", "crier", "-a", "wrong")
    assert bad.returncode == 3 and "WRONGPASS" in bad.stderr, bad.stderr
    assert str(sock) in bad.stderr


# ---- a Redis Cluster node: MOVED to every command --------------------------------

class ClusterNode:
    """Speaks just enough of the Redis protocol to look like a node of a Redis
    Cluster: a primary (ROLE master) that answers every data command MOVED."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.commands = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _parse(buf):
        """One command off the front of buf: (argv, rest), or (None, buf)."""
        if not buf.startswith(b"*") or b"\r\n" not in buf:
            return None, buf
        head, rest = buf.split(b"\r\n", 1)
        argv = []
        for _ in range(int(head[1:])):
            if b"\r\n" not in rest:
                return None, buf
            ln, rest = rest.split(b"\r\n", 1)
            n = int(ln[1:])
            if len(rest) < n + 2:
                return None, buf
            argv.append(rest[:n])
            rest = rest[n + 2:]
        return argv, rest

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                out = b""
                while True:
                    argv, buf = self._parse(buf)
                    if argv is None:
                        break
                    self.commands += 1
                    name = argv[0].upper()
                    if name == b"ROLE":
                        out += b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
                    elif name == b"PING":
                        out += b"+PONG\r\n"
                    else:
                        out += b"-MOVED 3999 127.0.0.1:7001\r\n"
                try:
                    conn.sendall(out)
                except OSError:
                    return

    def close(self):
        self.sock.close()


def test_redis_cluster_node_is_named_and_not_spun(env):
    node = ClusterNode()
    try:
        env.start_sim()
        d = launch(env, {"host": "127.0.0.1", "port": node.port}, wait_ready=False)
        cluster = re.compile(r"Redis Cluster is not supported")
        wait_until(lambda: cluster.search(d.log_text()), 10, 0.05, what="the cluster line")
        conns0 = node.connections
        time.sleep(OBSERVE_S)  # an observation window, not a synchronisation
        lines = d.log_text().splitlines()
        about = [ln for ln in lines if cluster.search(ln) or "connected" in ln]
        assert len(about) < 30, f"{len(about)} lines in {OBSERVE_S} s:\n" + "\n".join(about[:40])
        # three connections backing off: a handful of reconnects each, not hundreds
        assert node.connections - conns0 < 40, node.connections - conns0
        assert "MOVED 3999" in d.log_text()
        d.check_alive()
    finally:
        node.close()
