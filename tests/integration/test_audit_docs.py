"""Every SQL query in docs/audit.md runs, on a real SQLite file and a real
PostgreSQL server filled by two crier-audit processes (two consumer groups)
from a survey job with answers and its follow-up, and answers sensibly."""

import re
import time

from harness import REPO, Audit, Postgres, audit_config, group_caught_up, wait_until
from harness import post_job
from test_audit import Rig, job_doc, sqlite_query

DOC_JOB, DOC_FOLLOWUP, DOC_SUB = "appeal-2026-11-22-0001", "newsletter-2026-12", "10442"
DOC_FROM, DOC_TO = "1767225600000", "1798761600000"


def doc_queries():
    """[(dialect or None for both, sql)] from the ```sql fences of docs/audit.md."""
    text = (REPO / "docs" / "audit.md").read_text()
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"```sql(?: (sqlite|postgresql))?\n(.*?)```", text, re.S)]


def test_every_query_in_docs_audit_runs(env):
    queries = doc_queries()
    assert len(queries) >= 8
    pg = Postgres().start()
    try:
        path = str(env.dir / "audit.db")
        rig = Rig(env, {"type": "sqlite", "path": path})
        rig.audit.start()
        second = Audit(env.dir, audit_config(env.redis.port,
                                             {"type": "postgresql", "conninfo": pg.conninfo},
                                             group="audit-pg"), name="audit-pg")
        env.daemons.append(second)
        second.start()
        rig.populate(300)
        rig.send_and_answer("docs-survey", answers=12)
        rig.send_and_answer("docs-followup", answers=0)
        # a wave of a multi-question survey, answered by SMS (the first question)
        views = job_doc("docs-views")
        views["survey"] = {"id": "your-views", "wave": "2026-11", "questions": [
            {"id": q, "text": f"{q}?", "scale": ["Agree", "Neither", "Disagree", "No idea", "?"],
             "score": [100, 75, 50, 25, 0]} for q in ("safe", "trust")]}
        post_job(rig.env.r, views)
        rig.finish("docs-views", answers=12)
        rig.wait_stored()
        wait_until(lambda: all(group_caught_up(env.r, f"crier:{s}",
                                               env.r.xinfo_stream(f"crier:{s}")
                                               ["last-generated-id"], "audit-pg")
                               for s in ("receipts", "replies", "events")), 120, 0.1,
                   what="the PostgreSQL sink to catch up")
        sub = sqlite_query(path)("SELECT sub FROM survey_answers WHERE counted = 1 "
                                 "ORDER BY sub LIMIT 1")[0][0]
        now = int(time.time() * 1000)
        subst = {DOC_JOB: "docs-survey", DOC_FOLLOWUP: "docs-followup", f"'{DOC_SUB}'": f"'{sub}'",
                 DOC_FROM: str(now - 86400000), DOC_TO: str(now + 86400000),
                 # a few answers in the test: no area reaches the documented 10
                 "HAVING count(DISTINCT r.sub) >= 10": "HAVING count(DISTINCT r.sub) >= 1"}
        for dialect, run in (("sqlite", sqlite_query(path)), ("postgresql", pg.psql)):
            answers = []
            for d, sql in queries:
                if d not in (None, dialect):
                    continue
                for k, v in subst.items():
                    sql = sql.replace(k, v)
                rows = run(sql)
                assert rows, f"{dialect}: no rows from\n{sql}"
                answers.append(rows)
            # the resident who answered first: messages of both jobs
            assert {r[1] for r in answers[0]} >= {"docs-survey", "docs-followup"}
            # "you said, we did": every counted answer, each followed up
            # the wave's confidence per area: areas of the job, scores on the scale
            conf = answers[-3]
            assert {r[1] for r in conf} <= {"area:A", "area:B", "area:C"}, conf
            assert all(r[0] == "2026-11" and 0 <= float(r[3]) <= 100 for r in conf), conf
            said = answers[-2]
            assert len(said) == int(run("SELECT count(*) FROM survey_answers "
                                        "WHERE job = 'docs-survey' AND counted = 1")[0][0])
            assert all(r[2] not in (None, "") for r in said), said
    finally:
        pg.close()
