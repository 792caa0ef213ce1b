"""What a newcomer meets first: `crierd --help` is help (exit 0), a wrong
option is a usage error (exit 2); `crierctl send` points at broken JSON by
file, line and column with the line itself; a job id posted again is refused
with its own exit code (5) and not posted."""

import json
import subprocess

from harness import PREFIX, binary, wait_job

JOB = {"id": "first-contact-0001", "audience": {"subscribers": ["fc1"]}, "channels": ["sms"],
       "message": {"sms": "Road closed on High Street until 6pm."}}


def run(argv, stdin=None):
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def ctl(env, *args, stdin=None):
    return run([binary("crierctl"), "-p", str(env.redis.port)] + [str(a) for a in args], stdin)


def test_crierd_help_and_usage_errors():
    for flag in ("--help", "-h"):
        res = run([binary("crierd"), flag])
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("usage: crierd -c FILE")
        assert "--config FILE" in res.stdout and "Exit codes" in res.stdout
        assert res.stderr == ""
    for argv in (["--bogus"], ["-c"], [], ["-c", "x.json", "extra"]):
        res = run([binary("crierd")] + argv)
        assert res.returncode == 2, argv
        assert "usage: crierd" in res.stderr
    # the long forms of -c and -t work
    res = run([binary("crierd"), "--test", "--config", "/nonexistent/crierd.json"])
    assert res.returncode == 1 and "/nonexistent/crierd.json" in res.stderr


def test_send_broken_json_names_line_and_column(env, tmp_path):
    env.start_redis()
    doc = ('{\n  "id": "broken-0001",\n  "channels": ["sms"],\n'
           '  "message": {"sms": "Zażółć" "gęślą"}\n}\n')
    path = tmp_path / "broken.json"
    path.write_text(doc)
    res = ctl(env, "send", path)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    # line 4; the quote before gęślą is its 31st character (ż, ó, ł, ć count once)
    assert lines[0].startswith(f"{path}:4:31: not_json: "), res.stderr
    assert lines[1] == '    "message": {"sms": "Zażółć" "gęślą"}'
    assert lines[2] == "  " + " " * 30 + "^"
    assert env.r.xlen(f"{PREFIX}jobs") == 0

    garbage = ctl(env, "send", "-", stdin=json.dumps(JOB) + "\n  {}\n")
    assert garbage.returncode == 1
    assert garbage.stderr.startswith("-:2:3: not_json: "), garbage.stderr


def test_send_existing_id_exits_5_and_posts_nothing(env):
    env.start_redis()
    env.r.hset(f"{PREFIX}sub:fc1", mapping={"phone": "+447700900001"})
    env.start_sim()
    d = env.crierd()
    first = ctl(env, "send", "-", stdin=json.dumps(JOB))
    assert first.returncode == 0 and first.stdout.strip() == JOB["id"], first.stderr
    wait_job(env.r, JOB["id"], [d], timeout=30)
    before = env.r.xlen(f"{PREFIX}jobs")
    again = ctl(env, "send", "-", stdin=json.dumps(JOB))
    assert again.returncode == 5, again.stderr
    assert f"job {JOB['id']} already exists (state completed); not posted" in again.stderr
    assert again.stdout == ""
    assert env.r.xlen(f"{PREFIX}jobs") == before
    helptext = ctl(env, "--help")
    assert "5 send: a job with this id exists already" in helptext.stdout
