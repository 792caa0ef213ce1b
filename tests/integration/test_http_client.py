"""crierd's own HTTP/1.1 client (daemon/h1.c) against deliberately awkward
HTTP servers written here, on free loopback ports: chunked answers, answers
delimited by closing the connection, interim 1xx answers, keep-alive reuse,
servers that close kept connections under crierd, a stray second answer,
servers that never answer, answers over the size cap, 429 with Retry-After,
HTTPS with the right CA, a wrong CA and a certificate for another host, a
request body of several MiB, an answer that is not HTTP, and a host name
whose first address refuses. The generic `gateway` SMS provider makes most
requests; what is asserted is what a user sees (the job's counters, the
crier:receipts entries, crierd's log) and each server's own record of the
requests and connections it took."""

import json
import re
import select
import socket
import ssl
import threading
import time

import pytest

from certs import make_ca, make_server_cert
from harness import PREFIX, counter, post_job, seed, status_total, stream_fields, wait_job

PATH = "/v1/sms"
AUTH_HEADER = "X-Api-Key"
AUTH_VALUE = "gw-key-7f3a"
FROM = "CrierAlerts"
SMS = "Flood warning: move valuables upstairs tonight."
RESPONSE_MAX = 256 * 1024  # daemon/dispatch.c RESPONSE_MAX: a provider answer's cap
KEEP, CLOSE = "keep", "close"


class Request:
    """One request as the server read it."""

    def __init__(self, conn, t, line, headers, body):
        self.conn = conn          # the server's number for the connection (1, 2, ...)
        self.t = t                # time.monotonic() once it was read whole
        self.method, self.target, self.version = line.split(" ", 2)
        self.headers = headers    # [(name, value)] as sent
        self.body = body
        self.doc = json.loads(body) if body else {}
        self.to = self.doc.get("to")
        self.nth = 0              # 1 for the first request for this number, 2 ...

    def values(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Server:
    """An HTTP/1.1 server on a free loopback port, one thread per connection.
    answer(server, req, sock) writes whatever it likes for each request and
    returns KEEP (read the next request) or CLOSE. tls: an SSLContext to serve
    HTTPS. idle_close: seconds a kept connection may wait for its next request
    before the server closes it (without having said so). bind: (address
    family, loopback address) to listen on."""

    def __init__(self, answer, tls=None, idle_close=None, bind=(socket.AF_INET, "127.0.0.1")):
        self.answer = answer
        self.tls = tls
        self.idle_close = idle_close
        self.lock = threading.Lock()
        self.requests = []
        self.connections = 0
        self.idle_closed = 0
        self.dropped = 0
        self.tls_errors = []
        self.counts = {}
        self.stopping = threading.Event()
        self.socks = set()
        self.sock = socket.socket(bind[0], socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((bind[1], 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.hostport = f"{bind[1]}:{self.port}" if bind[0] == socket.AF_INET \
            else f"[{bind[1]}]:{self.port}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://{self.hostport}"

    def _accept(self):
        while not self.stopping.is_set():
            try:
                s, _addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.socks.add(s)
            threading.Thread(target=self._serve, args=(s, n), daemon=True).start()

    def _serve(self, s, n):
        raw = s
        try:
            s.settimeout(10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                try:
                    s = self.tls.wrap_socket(s, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with self.lock:
                        self.tls_errors.append(str(e))
                    return
            buf = b""
            first = True
            while not self.stopping.is_set():
                req, buf = self._read(s, buf, n, first)
                if req is None:
                    return
                first = False
                if self.answer(self, req, s) == CLOSE:
                    return
        except OSError:
            pass
        finally:
            with self.lock:
                self.socks.discard(raw)
            try:
                s.close()
            except OSError:
                pass

    def _read(self, s, buf, n, first):
        """The next request on s, or None when the client closed it (or it
        stayed idle past idle_close)."""
        if not buf and not first and self.idle_close is not None:
            s.settimeout(self.idle_close)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                with self.lock:
                    self.idle_closed += 1
                return None, b""
            finally:
                s.settimeout(10)
            if not chunk:
                return None, b""
            buf = chunk
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None, b""
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        length = 0
        for k, v in headers:
            if k.lower() == "content-length":
                length = int(v)
        while len(buf) < length:
            chunk = s.recv(65536)
            if not chunk:
                return None, b""
            buf += chunk
        req = Request(n, time.monotonic(), lines[0], headers, buf[:length])
        with self.lock:
            self.counts[req.to] = self.counts.get(req.to, 0) + 1
            req.nth = self.counts[req.to]
            self.requests.append(req)
        return req, buf[length:]

    def to_counts(self):
        with self.lock:
            return dict(self.counts)

    def close(self):
        self.stopping.set()
        self.sock.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)


@pytest.fixture
def servers():
    made = []

    def make(*args, **kw):
        srv = Server(*args, **kw)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


# ---- answers -----------------------------------------------------------------

def provider_id(req):
    return f"gw-{req.to[-4:]}-{req.nth}"


def json_answer(status, reason, doc, extra=""):
    body = json.dumps(doc).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def accepted(req):
    return json_answer(202, "Accepted", {"id": provider_id(req), "status": "queued"})


def answer_ok(server, req, s):
    s.sendall(accepted(req))
    return KEEP


def drain_until_closed(s):
    """Reads (and drops) until the client closes the connection."""
    s.settimeout(30)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


# ---- crierd ------------------------------------------------------------------

def start_crierd(env, url, retry=None, **provider):
    """redis and one crierd whose only SMS provider is a gateway at url."""
    env.start_redis()
    gw = {"type": "gateway", "url": url, "path": PATH, "auth_header": AUTH_HEADER,
          "auth_value": AUTH_VALUE, "from": FROM}
    gw.update(provider)
    return env.crierd(channels={"sms": ["gateway"]}, providers={"gateway": gw},
                      retry=retry or {"max_attempts": 3, "base_ms": 20, "max_ms": 100})


def phones(prefix, n):
    """n subscribers {id: {phone, name}}, numbers unique to prefix."""
    base = sum(ord(c) for c in prefix) % 900 + 100
    return {f"{prefix}{i:03d}": {"phone": f"+447700{base:03d}{i:03d}", "name": f"Resident {i}"}
            for i in range(n)}


def run_job(env, d, job_id, subs, timeout=60):
    """Seeds subs in a segment, posts an SMS job to them and returns the job
    hash once it is completed."""
    seed(env.r, subs, {f"seg:{job_id}": list(subs)})
    post_job(env.r, {"id": job_id, "priority": "high",
                     "audience": {"segments": [f"seg:{job_id}"]},
                     "channels": ["sms"], "message": {"sms": SMS}})
    return wait_job(env.r, job_id, [d], timeout=timeout)


def receipts(env, job_id):
    """{phone: receipt} of the job's final outcomes (crier:receipts)."""
    subs = {k.split(":", 2)[2]: env.r.hget(k, "phone")
            for k in env.r.scan_iter(f"{PREFIX}sub:*")}
    out = {}
    for _id, rc in stream_fields(env.r, f"{PREFIX}receipts"):
        if rc.get("job") == job_id:
            assert subs[rc["sub"]] not in out, f"two outcomes for {rc['sub']}: {rc}"
            out[subs[rc["sub"]]] = rc
    return out


def assert_all_sent(env, h, job_id, subs, server, attempt="1"):
    """Every message sent once, with the id the server gave it (which proves
    the whole answer body was read), none failed."""
    n = len(subs)
    assert int(h["messages"]) == n == status_total(h), h
    assert counter(h, "sent") == n and counter(h, "failed") == 0, h
    got = receipts(env, job_id)
    assert sorted(got) == sorted(s["phone"] for s in subs.values())
    last = {}
    for req in server.requests:
        last[req.to] = req
    for phone, rc in got.items():
        assert rc["status"] == "sent" and rc["provider"] == "gateway", rc
        assert rc["provider_id"] == provider_id(last[phone]), (rc, phone)
        if attempt is not None:
            assert rc["attempt"] == attempt, rc


def assert_request_format(req, server, job_id):
    """What the adapter asked for is what went on the wire."""
    assert (req.method, req.target, req.version) == ("POST", PATH, "HTTP/1.1")
    assert req.values("Host") == [server.hostport], req.headers
    assert req.values("Content-Length") == [str(len(req.body))], req.headers
    assert req.values("Content-Type") == ["application/json"], req.headers
    assert req.values("Accept") == ["application/json"], req.headers
    assert req.values(AUTH_HEADER) == [AUTH_VALUE], req.headers
    assert not req.values("Transfer-Encoding") and not req.values("Expect"), req.headers
    ref = req.doc["reference"]
    assert re.fullmatch(re.escape(job_id) + r"/\d+/sms", ref), ref
    want = json.dumps({"to": req.to, "from": FROM, "text": SMS, "reference": ref},
                      separators=(",", ":")).encode()
    assert req.body == want, (req.body, want)


# ---- 1. chunked answers --------------------------------------------------------

def test_chunked_answer_is_read_and_classified(env, servers):
    """A 2xx JSON answer in small chunks (a chunk extension, upper-case hex,
    a trailer, pieces sent apart) is read whole: the id the adapter takes
    from it spans several chunks; the connection is reused afterwards."""
    def answer(server, req, s):
        body = json.dumps({"id": provider_id(req), "status": "queued"}).encode()
        s.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        pieces = [body[i:i + 5] for i in range(0, len(body), 5)]
        for i, p in enumerate(pieces):
            ext = b";note=x" if i == 1 else b""
            s.sendall(b"%X%s\r\n%s\r\n" % (len(p), ext, p))
            if i % 3 == 0:
                time.sleep(0.002)  # so the chunks arrive in several reads
        s.sendall(b"0\r\nX-Trailer: done\r\n\r\n")
        return KEEP

    srv = servers(answer)
    d = start_crierd(env, srv.url, max_inflight=1)
    subs = phones("chunk", 6)
    h = run_job(env, d, "h1-chunked", subs)
    assert_all_sent(env, h, "h1-chunked", subs, srv)
    assert len(srv.requests) == 6 and srv.connections == 1, (len(srv.requests), srv.connections)
    for req in srv.requests:
        assert_request_format(req, srv, "h1-chunked")


# ---- 2. an answer delimited by closing the connection ---------------------------

def test_answer_without_length_ends_at_close(env, servers):
    """No Content-Length, no chunking: the body is whatever comes until the
    server closes; the connection is not reused."""
    def answer(server, req, s):
        body = json.dumps({"id": provider_id(req)}).encode()
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body[:7])
        time.sleep(0.005)
        s.sendall(body[7:])
        s.shutdown(socket.SHUT_WR)
        return CLOSE

    srv = servers(answer)
    d = start_crierd(env, srv.url, max_inflight=2)
    subs = phones("eof", 5)
    h = run_job(env, d, "h1-eof", subs)
    assert_all_sent(env, h, "h1-eof", subs, srv)
    assert len(srv.requests) == 5 and srv.connections == 5
    for req in srv.requests:
        assert_request_format(req, srv, "h1-eof")


# ---- 3. interim 100 Continue ----------------------------------------------------

def test_interim_100_continue_is_skipped(env, servers):
    """A 100 Continue (sent apart, or in the same write as the answer) and a
    103 with headers come before the final answer: only the final one counts."""
    def answer(server, req, s):
        final = accepted(req)
        if req.nth == 1 and int(req.to[-1]) % 2 == 0:
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            time.sleep(0.01)
            s.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            time.sleep(0.01)
            s.sendall(final)
        else:
            s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + final)
        return KEEP

    srv = servers(answer)
    d = start_crierd(env, srv.url, max_inflight=1)
    subs = phones("cont", 6)
    h = run_job(env, d, "h1-continue", subs)
    assert_all_sent(env, h, "h1-continue", subs, srv)
    assert len(srv.requests) == 6 and srv.connections == 1


# ---- 4. keep-alive ---------------------------------------------------------------

def test_keep_alive_reuses_connections(env, servers):
    """30 messages, at most 2 requests at a time: they go over at most 2
    connections, each request well formed."""
    srv = servers(answer_ok)
    d = start_crierd(env, srv.url, max_inflight=2)
    subs = phones("keep", 30)
    h = run_job(env, d, "h1-keepalive", subs)
    assert_all_sent(env, h, "h1-keepalive", subs, srv)
    print(f"\nh1 keep-alive: {len(srv.requests)} requests over {srv.connections} connections")
    assert len(srv.requests) == 30
    assert srv.connections <= 2 < len(srv.requests)
    for req in srv.requests:
        assert_request_format(req, srv, "h1-keepalive")


# ---- a stray second answer -----------------------------------------------------------

@pytest.mark.parametrize("scheme", ["http", "https"])
def test_stray_second_answer_is_not_taken_for_the_next(env, servers, scheme):
    """After each real answer the server sends, in the same TCP segment, a
    second answer nobody asked for (a 400 the gateway adapter would take as a
    permanent refusal). crierd does not reuse such a connection, so the
    stray answer is never read as the answer to the next message: all are
    sent. Over HTTPS the stray bytes wait in the TLS buffer, not the socket."""
    def answer(server, req, s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)  # one segment for both
        s.sendall(accepted(req))
        s.sendall(json_answer(400, "Bad Request", {"error": "stray", "message": "not yours"}))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        return KEEP

    ctx, ca = tls_context(env) if scheme == "https" else (None, None)
    srv = servers(answer, tls=ctx)
    prov = {"max_inflight": 1}
    if ca:
        prov["ca_file"] = str(ca)
    d = start_crierd(env, srv.url, **prov)
    subs = phones("stray" + scheme, 6)
    job_id = f"h1-stray-{scheme}"
    h = run_job(env, d, job_id, subs)
    assert_all_sent(env, h, job_id, subs, srv)
    assert srv.to_counts() == {s["phone"]: 1 for s in subs.values()}
    assert srv.connections == 6


# ---- 5. servers that close idle keep-alive connections -----------------------------

def closer(delay):
    """An answer that keeps the connection by HTTP's rules (no Connection:
    close) but closes it delay seconds later, not reading what crierd sent
    meanwhile (counted in server.dropped: a request crierd must send again)."""
    def answer(server, req, s):
        s.sendall(accepted(req))
        if delay:
            time.sleep(delay)
        if select.select([s], [], [], 0)[0]:
            with server.lock:
                server.dropped += 1
        return CLOSE
    return answer


@pytest.mark.parametrize("scheme,mode", [
    ("http", "close-after-answer"), ("http", "close-50ms-after-answer"), ("http", "idle-200ms"),
    ("https", "close-50ms-after-answer"), ("https", "idle-200ms")])
def test_server_closing_idle_connections_loses_nothing(env, servers, scheme, mode):
    """The server keeps no connection long: it closes each one right after the
    answer (which did not say so) or 50 ms later (whatever crierd sent on it
    meanwhile unread), or once it has been idle for 200 ms while crierd sends
    every 250 ms (rate 4/s, one request at a time). A request that meets a
    connection the server closed goes again on a new one: every message is
    sent once, none failed, none answered twice."""
    tls, ca = (tls_context(env) if scheme == "https" else (None, None))
    prov = {"max_inflight": 1}
    if ca:
        prov["ca_file"] = str(ca)
    if mode == "idle-200ms":
        srv = servers(answer_ok, tls=tls, idle_close=0.2)
        prov.update(rate=4, burst=1)
        n = 10
    else:
        srv = servers(closer(0.05 if mode.startswith("close-50ms") else 0), tls=tls)
        n = 12
    d = start_crierd(env, srv.url, **prov)
    subs = phones(scheme + mode[:9], n)
    job_id = f"h1-{scheme}-{mode}"
    h = run_job(env, d, job_id, subs)
    assert_all_sent(env, h, job_id, subs, srv)
    print(f"\nh1 {scheme} {mode}: {len(srv.requests)} requests answered over "
          f"{srv.connections} connections, {srv.idle_closed} closed idle, "
          f"{srv.dropped} closed with a request unread")
    assert srv.to_counts() == {s["phone"]: 1 for s in subs.values()}
    if mode == "idle-200ms":
        assert srv.idle_closed >= 1
    else:
        assert srv.connections >= n
    assert "giving up" not in d.log_text()


# ---- 6. a server that never answers ------------------------------------------------

def test_no_answer_times_out_and_is_retried(env, servers):
    """The server reads each request and never answers. timeout_ms 300: each
    attempt ends with ETIMEOUT ('no answer from 127.0.0.1:P'), a transport
    error crier retries (dispatch.c on_done); one number that gets an answer on
    its second attempt is sent, the one that never does fails after
    retry.max_attempts with code ETIMEOUT."""
    subs = phones("tmo", 2)
    never, late = subs["tmo000"]["phone"], subs["tmo001"]["phone"]

    def answer(server, req, s):
        if req.to == never or req.nth == 1:
            drain_until_closed(s)
            return CLOSE
        s.sendall(accepted(req))
        return KEEP

    srv = servers(answer)
    d = start_crierd(env, srv.url, timeout_ms=300, connect_timeout_ms=300, breaker_failures=0)
    h = run_job(env, d, "h1-timeout", subs)
    assert int(h["messages"]) == 2 == status_total(h), h
    assert counter(h, "sent") == 1 and counter(h, "failed") == 1, h
    got = receipts(env, "h1-timeout")
    assert got[late]["status"] == "sent" and got[late]["attempt"] == "2", got[late]
    assert got[never]["status"] == "failed" and got[never]["code"] == "ETIMEOUT", got[never]
    assert got[never]["attempt"] == "3", got[never]
    assert srv.to_counts() == {never: 3, late: 2}
    log = d.log_text()
    assert re.search(rf"provider 'gateway' job h1-timeout: ETIMEOUT no answer from "
                     rf"{re.escape(srv.hostport)}\b[^\n]* \d+ ms, retry in", log), log[-3000:]
    assert "ETIMEOUT" in log and "giving up after 3 attempts" in log


# ---- 7. answers over the size cap ---------------------------------------------------

def test_answer_over_the_cap_fails_and_daemon_keeps_serving(env, servers):
    """An answer announcing a Content-Length over the cap, and a chunked one
    that grows past it, end with 'response body over 262144 bytes' (ETOOBIG,
    retried, then failed); a third number is sent meanwhile, and a job posted
    afterwards is served."""
    subs = phones("big", 3)
    announced, chunked = subs["big000"]["phone"], subs["big001"]["phone"]

    def answer(server, req, s):
        if req.to == announced:
            s.sendall(f"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {RESPONSE_MAX + 1}\r\n\r\n".encode())
            s.sendall(b"x" * (RESPONSE_MAX + 1))
            return KEEP
        if req.to == chunked:
            s.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            piece = b"%x\r\n%s\r\n" % (16384, b"y" * 16384)
            for _ in range(RESPONSE_MAX // 16384 + 2):
                s.sendall(piece)
            s.sendall(b"0\r\n\r\n")
            return KEEP
        s.sendall(accepted(req))
        return KEEP

    srv = servers(answer)
    d = start_crierd(env, srv.url, breaker_failures=0,
                     retry={"max_attempts": 2, "base_ms": 20, "max_ms": 100})
    h = run_job(env, d, "h1-toobig", subs)
    assert counter(h, "sent") == 1 and counter(h, "failed") == 2, h
    got = receipts(env, "h1-toobig")
    for phone in (announced, chunked):
        assert got[phone]["status"] == "failed" and got[phone]["code"] == "ETOOBIG", got[phone]
        assert got[phone]["attempt"] == "2", got[phone]
    assert got[subs["big002"]["phone"]]["status"] == "sent"
    log = d.log_text()
    assert f"ETOOBIG response body over {RESPONSE_MAX} bytes" in log, log[-3000:]
    assert srv.to_counts()[announced] == 2 and srv.to_counts()[chunked] == 2

    more = phones("after", 3)
    h2 = run_job(env, d, "h1-toobig-after", more)
    assert counter(h2, "sent") == 3 and counter(h2, "failed") == 0, h2
    d.check_alive()


# ---- 8. Retry-After ------------------------------------------------------------------

def test_retry_after_on_429_is_honoured(env, servers):
    """Each number's first request gets 429 with 'retry-after: 1' (lower case,
    padded); crier's own backoff is at most 100 ms here, so only honouring the
    header makes the next request for that number come at least 1 s later, by
    the server's clock."""
    def answer(server, req, s):
        if req.nth == 1:
            s.sendall(json_answer(429, "Too Many Requests",
                                  {"error": "rate_limited", "message": "slow down"},
                                  "retry-after:   1  \r\n"))
        else:
            s.sendall(accepted(req))
        return KEEP

    srv = servers(answer)
    d = start_crierd(env, srv.url, breaker_failures=0,
                     retry={"max_attempts": 5, "base_ms": 20, "max_ms": 100})
    subs = phones("ra", 3)
    h = run_job(env, d, "h1-retry-after", subs)
    assert_all_sent(env, h, "h1-retry-after", subs, srv, attempt="2")
    by_to = {}
    for req in srv.requests:
        by_to.setdefault(req.to, []).append(req)
    gaps = []
    for to, reqs in by_to.items():
        assert [r.nth for r in reqs] == [1, 2], to
        gaps.append((reqs[1].t - reqs[0].t) * 1000)
    print(f"\nh1 retry-after: gaps after the 429 {[round(g) for g in gaps]} ms")
    # The server stamps the 429's request before answering it, crierd stamps
    # the answer in whole milliseconds: a 2 ms allowance for the rounding.
    assert min(gaps) >= 1000 - 2, gaps


# ---- 9. HTTPS -------------------------------------------------------------------------

def tls_context(env, san="IP:127.0.0.1,DNS:localhost"):
    """A server SSLContext with a certificate for san from a CA made for the
    test; returns (context, CA file)."""
    ca, ca_key = make_ca(env.dir / "ca")
    cert, key = make_server_cert(env.dir / "ca", ca, ca_key, san=san)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx, ca


def test_https_with_the_test_ca(env, servers):
    ctx, ca = tls_context(env)
    srv = servers(answer_ok, tls=ctx)
    d = start_crierd(env, srv.url, ca_file=str(ca), max_inflight=2)
    subs = phones("tls", 6)
    h = run_job(env, d, "h1-https", subs)
    assert_all_sent(env, h, "h1-https", subs, srv)
    assert srv.connections <= 2 and not srv.tls_errors
    for req in srv.requests:
        assert_request_format(req, srv, "h1-https")


@pytest.mark.parametrize("problem", ["wrong-ca", "wrong-name"])
def test_https_certificate_refused_sends_nothing(env, servers, problem):
    """crierd trusts a CA that did not sign the server's certificate, or the
    certificate (from the trusted CA) is for another host: every attempt ends
    with a certificate error naming the server, no request reaches it, no
    message is marked sent."""
    if problem == "wrong-ca":
        ctx, _ca = tls_context(env)
        trusted, _k = make_ca(env.dir / "other-ca", name="some other CA")
        why = "unable to get local issuer certificate"
    else:
        ctx, trusted = tls_context(env, san="DNS:gateway.example.net,IP:10.9.8.7")
        why = "IP address mismatch"
    srv = servers(answer_ok, tls=ctx)
    d = start_crierd(env, srv.url, ca_file=str(trusted), breaker_failures=0,
                     retry={"max_attempts": 2, "base_ms": 20, "max_ms": 100})
    subs = phones("cert" + problem, 3)
    job_id = f"h1-{problem}"
    h = run_job(env, d, job_id, subs)
    assert counter(h, "sent") == 0 and counter(h, "failed") == 3, h
    got = receipts(env, job_id)
    assert len(got) == 3 and all(rc["status"] == "failed" for rc in got.values()), got
    assert srv.requests == [] and srv.tls_errors
    log = d.log_text()
    assert re.search(rf"job {job_id}: EHTTP SSL certificate problem: {why} "
                     rf"\({re.escape(srv.hostport)}\)", log), log[-3000:]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_request_body_of_several_mib(env, servers, scheme):
    """A SendGrid request with a 5 MiB HTML body (limits raised to allow it)
    reaches the server whole, over HTTP and over HTTPS, where the whole
    request passes through the TLS output at once."""
    def answer(server, req, s):
        s.sendall(b"HTTP/1.1 202 Accepted\r\nX-Message-Id: big-1\r\nContent-Length: 0\r\n\r\n")
        return KEEP

    ctx, ca = tls_context(env) if scheme == "https" else (None, None)
    srv = servers(answer, tls=ctx)
    env.start_redis()
    sg = {"type": "sendgrid", "url": srv.url, "api_key": "SG.h1-test", "from_email": "a@crier.test"}
    if ca:
        sg["ca_file"] = str(ca)
    d = env.crierd(channels={"email": ["sendgrid"]}, providers={"sendgrid": sg},
                   limits={"doc_bytes": 16 * 1024 * 1024, "html": 16 * 1024 * 1024},
                   retry={"max_attempts": 2, "base_ms": 20, "max_ms": 100})
    subs = {f"big{i}": {"email": f"r{i}@mail.crier.test"} for i in range(3)}
    seed(env.r, subs, {"seg:big": list(subs)})
    html = "<p>" + "x" * (5 * 1024 * 1024) + "</p>"
    post_job(env.r, {"id": "h1-big-body", "priority": "high", "audience": {"segments": ["seg:big"]},
                     "channels": ["email"],
                     "message": {"subject": "Water main", "text": "Boil water.", "html": html}})
    h = wait_job(env.r, "h1-big-body", [d], timeout=60)
    assert counter(h, "sent") == 3 and counter(h, "failed") == 0, (h, d.log_text()[-2000:])
    assert len(srv.requests) == 1, len(srv.requests)
    req = srv.requests[0]
    assert req.values("Content-Length") == [str(len(req.body))]
    content = {c["type"]: c["value"] for c in req.doc["content"]}
    assert content["text/html"] == html
    assert sorted(p["to"][0]["email"] for p in req.doc["personalizations"]) == \
        sorted(x["email"] for x in subs.values())


# ---- 10. an answer that is not HTTP -------------------------------------------------------

def test_garbage_answer_is_an_error_naming_the_host(env, servers):
    """The first answer to each number is not HTTP at all: crierd logs a
    clear error naming the host, and the message is retried and sent."""
    def answer(server, req, s):
        if req.nth == 1:
            s.sendall(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n")
            return CLOSE
        s.sendall(accepted(req))
        return KEEP

    srv = servers(answer)
    d = start_crierd(env, srv.url, breaker_failures=0)
    subs = phones("junk", 3)
    h = run_job(env, d, "h1-garbage", subs)
    assert_all_sent(env, h, "h1-garbage", subs, srv, attempt="2")
    assert srv.to_counts() == {s["phone"]: 2 for s in subs.values()}
    log = d.log_text()
    assert re.search(r"job h1-garbage: EHTTP bad answer from " + re.escape(srv.hostport)
                     + r": [^\n]+, retry in", log), log[-3000:]


# ---- a host name with several addresses -------------------------------------------------

def localhost_addresses():
    """The addresses 'localhost' resolves to, in getaddrinfo's order."""
    out = []
    for fam, _t, _p, _c, sa in socket.getaddrinfo("localhost", None, 0, socket.SOCK_STREAM):
        if (fam, sa[0]) not in out:
            out.append((fam, sa[0]))
    return out


def test_host_name_with_several_addresses_reaches_the_one_listening(env, servers):
    """'localhost' resolves to ::1 and then 127.0.0.1 on most systems. A
    gateway at http://localhost:PORT listening only on the last of them is
    reached: a refused connect moves on to the name's next address (as
    libcurl did) instead of failing every message."""
    addrs = localhost_addresses()
    if len(addrs) < 2:
        pytest.skip(f"localhost resolves to one address here ({addrs})")
    srv = servers(answer_ok, bind=addrs[-1])
    d = start_crierd(env, f"http://localhost:{srv.port}", breaker_failures=0,
                     retry={"max_attempts": 2, "base_ms": 20, "max_ms": 100})
    subs = phones("lh", 4)
    h = run_job(env, d, "h1-localhost", subs)
    assert_all_sent(env, h, "h1-localhost", subs, srv)
    for req in srv.requests:
        assert req.values("Host") == [f"localhost:{srv.port}"], req.headers
