"""`ppxgb proxy serve --workers 2` as a real deployment: two uvicorn workers share one key
store and enrol concurrently (4 clients x 6 users), with 0 errors; both workers do
enrolment work; every user's sealed keys are in the store and open only for that user;
and every enrolled user scores through the scoring server, equal to xgboost's predict."""

import base64
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import psutil
import pytest
import xgboost as xgb

from ppxgb.errors import FormatError
from ppxgb.formats import EncryptedScores, UserKeys
from ppxgb.inference import Client
from ppxgb.proxy.keystore import KeyStore, load_master_key
from test_services_hostile import HOST, free_port, predict, secret, start_scoring_server, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CLIENTS, PER_CLIENT, ROUNDS = 4, 6, 4


def start_proxy(tmp, server_url, server_token, proxy_token, master, model_path, workers):
    port = free_port()
    log = tmp / f"proxy-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppxgb.app.cli", "proxy", "serve", "--model", f"heart={model_path}",
         "--server-url", server_url, "--server-admin-token-file", server_token, "--insecure-http",
         "--admin-token-file", proxy_token, "--keystore", str(tmp / "keystore"), "--master-key-file", master,
         "--host", HOST, "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    url = f"http://{HOST}:{port}"
    wait_healthy(url, proc, log, timeout=120)
    return proc, url



def test_two_proxy_workers_enrol_concurrently_into_one_keystore(tmp_path):
    server_token, proxy_token = secret(tmp_path, "server.token"), secret(tmp_path, "proxy.token")
    master = secret(tmp_path, "master.key", "master-key")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 4))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(X, label=(X[:, 0] + X[:, 2] > 0).astype(int)), 4)
    model_path = str(tmp_path / "model.json")
    booster.save_model(model_path)
    expected = booster.predict(xgb.DMatrix(X[:5]))

    server, server_url = start_scoring_server(tmp_path, f"sqlite:///{tmp_path / 'models.db'}", server_token)
    proxy, url = start_proxy(tmp_path, server_url, server_token, proxy_token, master, model_path, workers=2)
    admin = open(proxy_token).read().strip()
    try:
        workers = [c for c in psutil.Process(proxy.pid).children(recursive=True)
                   if "uvicorn" in " ".join(c.cmdline()) or "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) >= 2, [c.cmdline() for c in psutil.Process(proxy.pid).children(recursive=True)]
        before = {w.pid: sum(w.cpu_times()[:2]) for w in workers}

        def one_client(c: int, rnd: int) -> list:
            out = []
            # a new connection per request, so the workers' shared socket hands them out afresh
            with httpx.Client(base_url=url, timeout=300, headers={"authorization": f"Bearer {admin}"},
                              limits=httpx.Limits(max_keepalive_connections=0)) as http:
                for i in range(PER_CLIENT):
                    user = f"user-{rnd}-{c}-{i}"
                    r = http.post("/v1/enroll", json={"user_id": user, "model": "heart"})
                    out.append((user, r.status_code, r.json() if r.status_code == 200 else r.text[:300]))
            return out

        answers: list = []
        # the kernel decides which worker accepts a connection: load again (at most 4 rounds)
        # until both have done enrolment work
        for rnd in range(ROUNDS):
            started = time.monotonic()
            with ThreadPoolExecutor(CLIENTS) as pool:
                answers += [a for part in pool.map(one_client, range(CLIENTS), [rnd] * CLIENTS) for a in part]
            grew = {w.pid: sum(w.cpu_times()[:2]) - before[w.pid] for w in workers}
            print(f"round {rnd}: {len(answers)} enrolments by {CLIENTS} clients in "
                  f"{time.monotonic() - started:.1f} s; CPU s per worker: {grew}")
            if sum(1 for g in grew.values() if g > 0.2) >= 2:
                break
        errors = [(u, code, body) for u, code, body in answers if code != 200]
        assert errors == [], errors[:3]
        assert sum(1 for g in grew.values() if g > 0.2) >= 2, f"only one worker enrolled: {grew}"

        store = KeyStore(str(tmp_path / "keystore"), load_master_key(master))
        sealed = sorted(os.listdir(tmp_path / "keystore"))
        assert len(sealed) == len(answers) == len({body["model_id"] for _, _, body in answers})
        for user, _, body in answers:
            keys = UserKeys.from_bytes(base64.b64decode(body["keys"]))
            held = store.get(body["model_id"], user)
            assert held.to_bytes() == keys.to_bytes() and held.user_id == user
            with pytest.raises(FormatError):
                store.get(body["model_id"], "someone-else")
        for user, _, body in answers[:: CLIENTS]:          # one user of each client scores for real
            keys = UserKeys.from_bytes(base64.b64decode(body["keys"]))
            client = Client(keys)
            r = predict(server_url, body["model_id"], body["access_token"], client.encrypt(X[:5]).to_bytes())
            assert r.status_code == 200, r.text
            got = client.decrypt(EncryptedScores.from_bytes(r.content))
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    finally:
        stop(proxy, server)
