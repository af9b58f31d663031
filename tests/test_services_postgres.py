"""The scoring server as a real deployment: 2 uvicorn workers sharing one database,
PostgreSQL (a server this test starts from Debian's postgresql package, installed by
.ci/run) and SQLite in WAL mode; 4 concurrent clients x 40 uploads, then scoring
through both workers, with 0 errors.

No silent skip: if PostgreSQL is missing or does not start, the test fails and says why.
"""

import dataclasses
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import psutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ppxgb.inference import Client
from test_services_hostile import (HOST, free_port, predict, secret, small_enrollment, start_scoring_server, stop,
                                   upload)

CLIENTS, UPLOADS = 4, 40


def pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None)
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed: run .ci/run (it installs Debian's postgresql "
                    "package) or apt-get install postgresql")
    return found


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server in a temp dir, as the `postgres` system user when
    run as root (PostgreSQL refuses to run as root); its URL for SQLAlchemy."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    as_user: list[str] = []
    base = tempfile.mkdtemp(prefix="ppxgb-pg-", dir="/tmp")
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, and there is no `postgres` system user to run PostgreSQL as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(base, "data"), free_port()
    done = subprocess.run(as_user + [initdb, "-D", data, "-U", "ppxgb", "--auth=trust", "-E", "UTF8"],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"initdb failed: {done.stderr[-2000:]}")
    opts = f"-p {port} -k {base} -h {HOST} -c fsync=off -c max_connections=100"
    done = subprocess.run(as_user + [pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(base, "log"), "-w",
                                     "start"], capture_output=True, text=True)
    if done.returncode:
        log = open(os.path.join(base, "log")).read()[-2000:] if os.path.exists(os.path.join(base, "log")) else ""
        pytest.fail(f"PostgreSQL did not start: {done.stderr[-1000:]} {log}")
    try:
        yield f"postgresql+psycopg://ppxgb@{HOST}:{port}/postgres"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_workers_concurrent_uploads_and_scores(backend, request, tmp_path):
    db = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'm.db'}"
    admin_file = secret(tmp_path, "server.token")
    admin = open(admin_file).read().strip()
    enrollment, X = small_enrollment(f"deploy-{backend}")
    token = f"deploy-{backend}-token-0123456789abcdef"
    client = Client(enrollment.keys)
    queries = client.encrypt(X[:3])
    expected = client.decrypt(_local_scores(enrollment, queries))
    server, url = start_scoring_server(tmp_path, db, admin_file, workers=2)
    try:
        pids = {p.pid for p in psutil.Process(server.pid).children(recursive=True)}
        assert len(pids) >= 2, "expected 2 uvicorn worker processes"

        def one_client(c: int) -> list[str]:
            errors = []
            for i in range(UPLOADS):
                mid = f"m-{backend}-{c}-{i}"
                r = upload(url, admin, dataclasses.replace(enrollment.model, model_id=mid), token)
                if r.status_code != 201:
                    errors.append(f"upload {mid}: {r.status_code} {r.text[:200]}")
                    continue
                if i % 8 == 0:                      # score some right away (either worker)
                    r = predict(url, mid, token, dataclasses.replace(queries, model_id=mid).to_bytes())
                    if r.status_code != 200:
                        errors.append(f"score {mid}: {r.status_code} {r.text[:200]}")
                        continue
                    got = _decrypt_for(client, enrollment, r.content)
                    if not np.allclose(got, expected, rtol=1e-6, atol=1e-7):
                        errors.append(f"score {mid}: wrong values")
            return errors

        with ThreadPoolExecutor(CLIENTS) as pool:
            errors = [e for errs in pool.map(one_client, range(CLIENTS)) for e in errs]
        assert errors == [], errors[:5]
        # write-once under concurrency: the same id twice at once, one 201 and one 409
        dup = dataclasses.replace(enrollment.model, model_id=f"m-{backend}-dup")
        with ThreadPoolExecutor(2) as pool:
            codes = sorted(pool.map(lambda _: upload(url, admin, dup, token).status_code, range(2)))
        assert codes == [201, 409], codes
    finally:
        stop(server)


def _local_scores(enrollment, queries):
    from ppxgb.inference import Server

    server = Server()
    server.add(enrollment.model)
    return server.predict(enrollment.model.model_id, queries)


def _decrypt_for(client, enrollment, body: bytes):
    from ppxgb.formats import EncryptedScores

    scores = EncryptedScores.from_bytes(body)
    return client.decrypt(dataclasses.replace(scores, model_id=enrollment.model.model_id))
