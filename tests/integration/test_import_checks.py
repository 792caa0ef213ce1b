"""`crierctl import` against a real redis-server: a header over the column cap
stops the import naming the line; phone numbers written the way people write
them (UK national numbers, spaces, dashes, parentheses, 00) are stored in
E.164; garbage is refused naming line and column; and one bad cell drops only
its own field, saying which, while the resident's good fields are imported."""

import subprocess

import pytest

from harness import PREFIX, binary


def ctl(env, *args, stdin=None):
    argv = [binary("crierctl"), "-p", str(env.redis.port)] + [str(a) for a in args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def test_header_over_the_column_cap_stops_the_import(env, tmp_path):
    env.start_redis()
    cols = ["id", "name"] + [f"x{i}" for i in range(255)]  # 257 columns
    path = tmp_path / "wide.csv"
    path.write_text(",".join(cols) + "\n" + ",".join(["r1", "Ann"] + ["v"] * 255) + "\n")
    res = ctl(env, "import", path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"{path}:1: the header has more than 256 columns" in res.stderr, res.stderr
    assert "import stopped" in res.stdout or "import stopped" in res.stderr
    assert env.r.keys(f"{PREFIX}*") == []

    # 256 columns are fine
    cols = ["id", "name"] + [f"x{i}" for i in range(254)]
    path.write_text(",".join(cols) + "\n" + ",".join(["r1", "Ann"] + ["v"] * 254) + "\n")
    res = ctl(env, "import", path)
    assert res.returncode == 0, res.stderr
    assert env.r.hlen(f"{PREFIX}sub:r1") == 255


PHONES = [
    # (as written, default country, stored)
    ("07700 900123", None, "+447700900123"),
    ("07700-900-123", None, "+447700900123"),
    ("(07700) 900123", None, "+447700900123"),
    ("+44 7700 900123", None, "+447700900123"),
    ("+44 (0)7700 900123", None, "+447700900123"),
    ("0044 7700 900123", None, "+447700900123"),
    ("0044 (0)20 7946 0018", None, "+442079460018"),
    ("020 7946 0018", None, "+442079460018"),
    ("+447700900123", None, "+447700900123"),
    ("087 123 4567", "IE", "+353871234567"),
    ("(415) 555-0100", "US", "+14155550100"),
    ("1 415 555 0100", "US", "+14155550100"),
    ("06 12 34 56 78", "FR", "+33612345678"),
    ("+48 512 345 678", "GB", "+48512345678"),
]


@pytest.mark.parametrize("written,country,stored", PHONES, ids=[p[0] for p in PHONES])
def test_phone_numbers_are_stored_in_e164(env, written, country, stored):
    env.start_redis()
    args = ["import"] + (["--country", country] if country else []) + ["-"]
    csv_text = f'id,phone\np1,"{written}"\n'
    res = ctl(env, *args, stdin=csv_text)
    assert res.returncode == 0, res.stderr
    assert env.r.hget(f"{PREFIX}sub:p1", "phone") == stored


BAD_PHONES = ["call me", "7700 900123", "07700 9001", "+44", "0044", "+0 7700 900123",
              "07700 900123 ext 4", "++447700900123", "077009001234567"]


def test_garbage_phone_is_refused_naming_line_and_column(env, tmp_path):
    env.start_redis()
    lines = ["id,name,phone,email"]
    for i, p in enumerate(BAD_PHONES):
        lines.append(f'g{i},Resident {i},"{p}",g{i}@example.org')
    path = tmp_path / "garbage.csv"
    path.write_text("\n".join(lines) + "\n")
    res = ctl(env, "import", path)
    assert res.returncode == 1, res.stderr
    errs = res.stderr.splitlines()
    assert len(errs) == len(BAD_PHONES), res.stderr
    for i, p in enumerate(BAD_PHONES):
        line = i + 2
        e = next((e for e in errs if e.startswith(f"{path}:{line}: ")), None)
        assert e is not None, (p, res.stderr)
        assert f"g{i} imported without phone: phone (column 3) '{p}'" in e, e
        # the resident is there with the good fields, without a phone
        assert env.r.hgetall(f"{PREFIX}sub:g{i}") == {"name": f"Resident {i}",
                                                      "email": f"g{i}@example.org"}
    assert f"0 lines rejected, {len(BAD_PHONES)} imported without some fields" in res.stdout


def test_bad_cells_drop_only_their_field_and_say_so(env, tmp_path):
    env.start_redis()
    # what the resident had before: a bad cell must not wipe it
    env.r.hset(f"{PREFIX}sub:r1", mapping={"email": "old@example.org", "push_platform": "fcm"})
    path = tmp_path / "mixed.csv"
    path.write_text(
        "id,name,email,push_platform,lang,segments,ward\n"
        "r1,Ann,ann@@example.org,blackberry,en,area:A;bad name;area:B,North\n"
        "r2,Bob,bob@example.org,apns,english!,area:A,South\n")
    res = ctl(env, "import", path)
    assert res.returncode == 1, res.stderr
    errs = res.stderr.splitlines()
    assert len(errs) == 2, res.stderr
    e1 = next(e for e in errs if e.startswith(f"{path}:2: "))
    assert "r1 imported without email, push_platform, segments (some names)" in e1, e1
    assert "email (column 3) 'ann@@example.org'" in e1, e1
    assert "push_platform (column 4) 'blackberry': must be fcm or apns" in e1, e1
    assert "segments (column 6) 'bad name'" in e1, e1
    e2 = next(e for e in errs if e.startswith(f"{path}:3: "))
    assert "r2 imported without lang: lang (column 5) 'english!'" in e2, e2
    assert env.r.hgetall(f"{PREFIX}sub:r1") == {
        "name": "Ann", "email": "old@example.org", "push_platform": "fcm", "lang": "en",
        "ward": "North"}
    assert env.r.hgetall(f"{PREFIX}sub:r2") == {
        "name": "Bob", "email": "bob@example.org", "push_platform": "apns", "ward": "South"}
    assert env.r.smembers(f"{PREFIX}seg:area:A") == {"r1", "r2"}
    assert env.r.smembers(f"{PREFIX}seg:area:B") == {"r1"}
    assert "imported 2 subscribers into 2 segments, 0 lines rejected, 2 imported without " \
           "some fields" in res.stdout


@pytest.mark.parametrize("col,value", [("channels", "sms;email"), ("min_priority", "sometimes"),
                                       ("quiet", "25:00-07:00"), ("tz", "Europe/../x")])
def test_a_bad_preference_rejects_the_line(env, col, value):
    """Dropping one of these would send the resident more than they asked for
    (every channel, every priority, at night): the line is rejected instead."""
    env.start_redis()
    res = ctl(env, "import", "-", stdin=f'id,email,{col}\nr1,r1@example.org,"{value}"\n')
    assert res.returncode == 1
    assert f"-:2: line rejected: {col} (column 3) '{value}'" in res.stderr, res.stderr
    assert not env.r.exists(f"{PREFIX}sub:r1")


def test_unknown_country_is_a_usage_error(env):
    env.start_redis()
    res = ctl(env, "import", "--country", "XX", "-", stdin="id\nr1\n")
    assert res.returncode == 2
    assert "--country XX" in res.stderr and "GB" in res.stderr


def test_default_country_from_the_environment(env):
    """CRIER_COUNTRY sets the default country once for an installation; the
    flag still wins."""
    import os
    env.start_redis()
    argv = [binary("crierctl"), "-p", str(env.redis.port), "import", "-"]
    run_env = dict(os.environ, CRIER_COUNTRY="FR")
    res = subprocess.run(argv, input="id,phone\nf1,06 12 34 56 78\n", capture_output=True,
                         text=True, timeout=60, env=run_env)
    assert res.returncode == 0, res.stderr
    assert env.r.hget(f"{PREFIX}sub:f1", "phone") == "+33612345678"
    res = subprocess.run(argv[:-1] + ["--country", "GB", "-"], input="id,phone\ng1,07700 900123\n",
                         capture_output=True, text=True, timeout=60, env=run_env)
    assert res.returncode == 0, res.stderr
    assert env.r.hget(f"{PREFIX}sub:g1", "phone") == "+447700900123"
