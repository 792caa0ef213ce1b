"""A SendGrid request for many residents says everything a request for one
says: the sender's name in `from`, `reply_to`, and per personalization the
job (`custom_args.crier_job`), the message's own reference and its own
List-Unsubscribe headers. Compared field by field between a request crierd
sent for one resident (whose value cannot share the tagged rendering) and
the batched requests of the same job, as crier-sim recorded them."""

import json

from harness import post_job, seed, wait_job

SIM_ARGS = ("--log-body-bytes", "1048576")
OVERRIDES = {
    "fanout": {"batch_size": 1000, "max_batches": 4, "reclaim_idle_ms": 60000},
    "providers": {"sendgrid": {"max_inflight": 4, "max_unrecorded": 3000,
                               "from_name": "Crier Alerts",
                               "reply_to": "help@crier.test"}},
    "webhooks": {"public_url": "https://alerts.crier.test"},
    "links": {"secret": "link-secret-for-tests-0123", "ttl_days": 30},
}
JOB_ID = "batch-fields-same-0001"
N = 80
ALONE = "r00005"  # a value holding the tag mark: rendered and sent by itself


def residents():
    subs = {}
    for i in range(N):
        sid = f"r{i:05d}"
        subs[sid] = {"email": f"{sid}@mail.crier.test", "name": f"Resident {i}"}
    subs[ALONE]["name"] = "x-crier-t-0-x"
    return subs


def requests(sim):
    return [json.loads(e["body"]) for e in sim.log_all("sendgrid") if e["status"] == 202]


def test_batched_requests_carry_what_a_single_request_carries(env):
    subs = residents()
    env.start_redis()
    seed(env.r, subs)
    env.start_sim(*SIM_ARGS)
    d = env.crierd(**OVERRIDES)
    post_job(env.r, {
        "id": JOB_ID, "priority": "urgent", "audience": {"subscribers": sorted(subs)},
        "channels": ["email"], "sender": {"name": "PC Jane Smith", "team": "City NPT"},
        "message": {"lang": "en", "subject": "Flood warning, {{name}}",
                    "text": "Hello {{name}}, the river is rising. Stop: {{unsubscribe_url}}",
                    "html": "<p>Hello {{name}}, the river is rising.</p>"}})
    h = wait_job(env.r, JOB_ID, [d], timeout=60)
    assert int(h["messages"]) == N

    docs = requests(env.sim)
    single = [doc for doc in docs if len(doc["personalizations"]) == 1
              and doc["personalizations"][0]["to"][0]["email"] == subs[ALONE]["email"]]
    batched = [doc for doc in docs if len(doc["personalizations"]) > 1]
    assert len(single) == 1, [len(doc["personalizations"]) for doc in docs]
    assert batched, "no request carried more than one resident"
    one = single[0]
    p1 = one["personalizations"][0]
    assert one["from"] == {"email": "alerts@crier.test", "name": "PC Jane Smith"}
    assert p1["custom_args"] == {"crier_ref": p1["custom_args"]["crier_ref"], "crier_job": JOB_ID}

    seen = set()
    for doc in batched:
        # the request's own fields: the same keys and the same sender as one alone
        assert set(doc) == set(one), (sorted(doc), sorted(one))
        assert doc["from"] == one["from"]
        assert doc["reply_to"] == one["reply_to"] == {"email": "help@crier.test"}
        for p in doc["personalizations"]:
            email = p["to"][0]["email"]
            seen.add(email)
            # per resident: everything one alone has (and its substitutions)
            assert set(p) == set(p1) | {"substitutions"}, sorted(p)
            assert set(p["custom_args"]) == set(p1["custom_args"])
            assert p["custom_args"]["crier_job"] == JOB_ID
            assert p["custom_args"]["crier_ref"].startswith(JOB_ID + "/")
            assert set(p["headers"]) == set(p1["headers"])
            assert p["headers"]["List-Unsubscribe"].startswith("<https://alerts.crier.test/u/")
    # each personalization its own reference and link
    refs = [p["custom_args"]["crier_ref"] for doc in docs for p in doc["personalizations"]]
    links = [p["headers"]["List-Unsubscribe"] for doc in docs for p in doc["personalizations"]]
    assert len(set(refs)) == len(refs) == N
    assert len(set(links)) == N
    assert seen | {subs[ALONE]["email"]} == {s["email"] for s in subs.values()}
