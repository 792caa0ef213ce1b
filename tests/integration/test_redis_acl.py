"""crier under the Redis ACL users of config/redis-users.acl (the file
docs/security.md describes): crierd as user `crierd` takes, sends and
completes a signed job without a NOPERM (and says it cannot check ROLE), and
the integrator user `integrator-web` can post to crier:jobs and read its own
jobs' hashes, and nothing else."""

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
import redis

from harness import wait_until, PREFIX, RedisServer, seed, wait_job

ACL_FILE = Path(__file__).resolve().parents[2] / "config" / "redis-users.acl"
PASSWORDS = {"CHANGE-ME-admin": "admin-pw-0123", "CHANGE-ME-crierd": "crierd-pw-0123",
             "CHANGE-ME-web": "web-pw-0123"}
WEB_SECRET = "web-secret-0123456789abcdef"


class AclRedis(RedisServer):
    """redis-server with the shipped ACL file (passwords filled in); the
    harness talks to it as `admin`."""

    def __init__(self, workdir):
        super().__init__(workdir, client_kw={"username": "admin",
                                             "password": PASSWORDS["CHANGE-ME-admin"]})
        text = ACL_FILE.read_text()
        for k, v in PASSWORDS.items():
            text = text.replace(k, v)
        self.acl_path = self.dir / "users.acl"
        self.acl_path.write_text(text)
        self.extra += ["--aclfile", str(self.acl_path)]

    def client(self, user="admin", password=None):
        return self._client(self.port, decode_responses=True, username=user,
                            password=password or PASSWORDS["CHANGE-ME-admin"],
                            socket_timeout=30, socket_connect_timeout=5)


def signed(doc):
    ts = str(int(time.time()))
    mac = hmac.new(WEB_SECRET.encode(), f"{ts}.".encode() + doc.encode(), hashlib.sha256)
    return {"job": doc, "key": "web", "ts": ts, "sig": "v1=" + mac.hexdigest()}


def test_crier_runs_under_least_privilege_acl_users(env):
    env.redis = AclRedis(env.dir).start()
    env.r = env.redis.client()
    subs = {f"a{i}": {"name": f"A {i}", "email": f"a{i}@mail.crier.test",
                      "phone": f"+4477009000{i:02d}"} for i in range(30)}
    seed(env.r, subs, {"area:LE1": list(subs), "optout:x": ["a1"]})
    env.start_sim()
    d = env.crierd(redis={"username": "crierd", "password": PASSWORDS["CHANGE-ME-crierd"]},
                   intake={"require_signed": True},
                   integrators={"web": {"secret": WEB_SECRET, "segments": ["area:*"]}},
                   fanout={"batch_size": 10, "max_batches": 8, "reclaim_idle_ms": 60000})
    web = env.redis.client("integrator-web", PASSWORDS["CHANGE-ME-web"])

    doc = json.dumps({"id": "web-0001", "audience": {"segments": ["area:LE1"],
                                                     "exclude": ["optout:x"]},
                      "channels": ["email", "sms"],
                      "message": {"subject": "Road closure", "text": "Hello {{name}}",
                                  "sms": "A6 closed."}})
    web.xadd(f"{PREFIX}jobs", signed(doc))
    h = wait_job(env.r, "web-0001", [d], timeout=60)
    assert h["key"] == "web" and int(h["targeted"]) == 29
    assert web.hgetall(f"{PREFIX}job:web-0001")["state"] == "completed"
    assert web.hget(f"{PREFIX}job:web-0001", "key") == "web"

    # what the integrator may not do
    denied = [
        lambda: web.hgetall(f"{PREFIX}sub:a1"),                 # residents' contacts
        lambda: web.smembers(f"{PREFIX}seg:area:LE1"),
        lambda: web.xadd(f"{PREFIX}batches:urgent", {"job": "x"}),  # around the intake
        lambda: web.xadd(f"{PREFIX}jobs:dead", {"job": "x"}),
        lambda: web.hset(f"{PREFIX}job:web-0001", "state", "cancelling"),
        lambda: web.delete(f"{PREFIX}jobs"),
        lambda: web.xrange(f"{PREFIX}jobs"),                     # others' job entries
        lambda: web.xtrim(f"{PREFIX}jobs", maxlen=0),
        lambda: web.sadd(f"{PREFIX}suppress:email", "a@b"),
        lambda: web.execute_command("EVAL", "return 1", 0),
        lambda: web.keys("*"),
    ]
    for i, call in enumerate(denied):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    env.r.hset(f"{PREFIX}job:other-1", mapping={"state": "completed", "key": "cc"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        web.hgetall(f"{PREFIX}job:other-1")      # another integrator's job

    # the fleet heartbeat and its backlog reads work under crierd's user too
    wait_until(lambda: env.r.exists(f"{PREFIX}fleet:crierd-a"), 10, 0.05, what="the heartbeat")

    log = d.log_text()
    # ROLE and CONFIG GET are refused: each is said once, and neither drops the
    # connection (which would make every reconnect meet the same refusal).
    assert "cannot check that this is the primary (ROLE refused" in log
    assert "could not be checked" in log
    assert "ACL user lacks a permission" not in log
    d.check_alive()
