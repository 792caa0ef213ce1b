"""Multi-question survey results from the audit database: two waves of the
"Your Views" survey answered by the signed form (partial answers, changes of
mind, taking back a free text, replayed posts); once crier-audit has stored
the streams, `crierctl survey scores/trend/answers` and `crierctl report
JOB --by demo:age:*` print the same from SQLite and from a real PostgreSQL
as from Redis, and the wave tables hold the last answer of each resident."""

import json
import random
import sqlite3
import subprocess

import pytest

from harness import (AUDIT_GROUP, PREFIX, Postgres, binary, free_port, post_job, seed, wait_job,
                     wait_until)
from test_audit import Rig
from test_surveys import LINK_SECRET, QUESTIONS, Site, survey_path, wave_job

N = 400
AREAS = ["N1", "N2", "N3", "N4"]
WAVES = ["2026-05", "2026-11"]


def ctl(env, *args):
    argv = [binary("crierctl"), "-p", str(env.redis.port)] + [str(a) for a in args]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def population():
    subs, segs = {}, {}
    for i in range(N):
        sid = f"r{i}"
        subs[sid] = {"name": f"Resident {i}", "email": f"{sid}@mail.crier.test",
                     "channels": "email"}
        age = "90+" if i % 100 == 1 else ["18-34", "35-54", "55+"][i % 3]
        for name in (f"area:{AREAS[i % 4]}", f"demo:age:{age}"):
            segs.setdefault(name, []).append(sid)
    return subs, segs


def answer_waves(env, rig, site, rnd):
    last = {w: {} for w in WAVES}  # wave -> (sub, question) -> step
    for w in WAVES:
        job_id = f"views-{w}"
        post_job(env.r, wave_job(job_id, w))
        wait_job(env.r, job_id, [rig.d], timeout=120)
        posts = []
        for s in rnd.sample(sorted(rig.subs), N // 2):
            fields = {f"q.{q}": str(rnd.randint(1, 5)) for q, _ in QUESTIONS
                      if rnd.random() < 0.8} or {"q.safe": "2"}
            if rnd.random() < 0.3:
                fields["free"] = f"Parking outside the school ({s})"
            posts.append((s, fields))
        later = [(s, {"q.safe": str(rnd.randint(1, 5)), "free": ""})
                 for s, _ in rnd.sample(posts, 40)]
        replays = rnd.sample(posts, 20)
        for s, fields in posts + replays + later:
            st, _ = site.post_form(survey_path(s, job_id), fields)
            assert st == 200
        for s, fields in posts + later:
            for k, v in fields.items():
                if k.startswith("q."):
                    last[w][(s, k[2:])] = int(v)
    return last


def outputs(env, *db):
    by = ["--by", "area:*", "--by", "demo:age:*"]
    return {
        "scores": ctl(env, "survey", "scores", "your-views", *by, *db),
        "trend": ctl(env, "survey", "trend", "your-views", "--by", "area:*", *db),
        "trend_csv": ctl(env, "survey", "trend", "your-views", "--by", "area:*", "--csv", *db),
        "answers": sorted(ctl(env, "survey", "answers", "your-views", "--wave", WAVES[1],
                              "--segment", "area:N2", *db).splitlines()),
        "report_by": ctl(env, "report", *(db + ("--from-audit",) if db else ()),
                         f"views-{WAVES[1]}", "--by", "demo:age:*"),
    }


def run_case(env, database, db_args, rows_of):
    port = free_port()
    # small batches: a resident's answers and changes land in different transactions
    rig = Rig(env, database, crierd_overrides={
        "http": {"listen": f"127.0.0.1:{port}"},
        "links": {"secret": LINK_SECRET, "ttl_days": 30}}, audit_overrides={"batch": 25})
    subs, segs = population()
    seed(env.r, subs, segs)
    rig.subs = subs
    last = answer_waves(env, rig, Site(port), random.Random(31))
    live = outputs(env)
    # figures worth comparing: cells shown, a small cell suppressed, a change
    assert ",area:N2,0," in live["scores"] and ",demo:age:90+,1," in live["scores"]
    assert "Parking" in "".join(live["answers"])
    rig.audit.start()
    rig.wait_stored()
    stored = outputs(env, *db_args)
    for k in live:
        assert stored[k] == live[k], k
    got = rows_of("SELECT wave, sub, question, step FROM wave_answers")
    assert {(w, s, q): int(st) for w, s, q, st in got} == \
        {(w, s, q): st for w in WAVES for (s, q), st in last[w].items()}

    # every reply read again from the start (as after a crash before the
    # acknowledgement): the older answers do not overwrite the newer ones
    env.r.xgroup_destroy(f"{PREFIX}replies", AUDIT_GROUP)
    wait_until(lambda: "creating it again" in rig.audit.log_text(), 30, 0.05,
               what="crier-audit to notice its group is gone")
    rig.wait_stored()
    assert outputs(env, *db_args) == stored
    assert sorted(rows_of("SELECT wave, sub, question, step FROM wave_answers")) == sorted(got)
    texts = rows_of("SELECT count(*) FROM wave_texts WHERE answer IS NOT NULL")
    assert int(texts[0][0]) == sum(1 for w in WAVES for _ in
                              env.r.hkeys(f"{PREFIX}survey:your-views:{w}:text"))
    # free text never in the aggregate outputs
    assert "Parking" not in live["scores"] + live["trend"]

    # the threshold configured in crier-audit's config (survey.min_cell)
    # serves crierctl survey --config as --min-cell does
    cfg = json.loads(rig.audit.config_path.read_text())
    cfg["survey"] = {"min_cell": 150}
    path = env.dir / "report.json"
    path.write_text(json.dumps(cfg))
    big = ctl(env, "survey", "scores", "your-views", "--by", "area:*", "--min-cell", 150)
    assert ",area:N2,1," in big and ",all,0," in big
    assert ctl(env, "survey", "scores", "your-views", "--by", "area:*", "--config", path) == big


def test_survey_results_from_sqlite(env):
    path = str(env.dir / "audit.db")

    def rows_of(sql):
        with sqlite3.connect(path) as c:
            return c.execute(sql).fetchall()

    run_case(env, {"type": "sqlite", "path": path}, ("--sqlite", path), rows_of)


@pytest.fixture
def pg():
    p = Postgres().start()
    try:
        yield p
    finally:
        p.close()


def test_survey_results_from_postgresql(env, pg):
    run_case(env, {"type": "postgresql", "conninfo": pg.conninfo},
             ("--postgresql", pg.conninfo), pg.psql)
