"""`ppxgb demo --services`: the same story with every role a separate OS process.

- Training: `ppxgb federation` starts the four hospitals, two compute servers and the
  coordinator as processes that talk over mutual TLS on loopback.
- Inference: `ppxgb scoring-server` and `ppxgb proxy serve` run as HTTPS services; the
  user is enrolled through the proxy service (`ppxgb proxy enroll --proxy-url`), and the
  client app (`ppxgb score`) encrypts a CSV of patients, calls the server and decrypts.

Every command is the public CLI a deployment would use; the logs of the services go to
files in the working directory, which is removed at the end.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ppxgb.errors import PPXGBError
from ppxgb.tls import make_test_pki

from .deploy import CLI_COMMAND, free_ports
from .stories import HORIZONTAL_PARAMS, HORIZONTAL_ROUNDS, horizontal_story, say, split_hospitals


def _ppxgb(*args: str, log: Path | None = None, check: bool = True, popen: bool = False):
    cmd = [*CLI_COMMAND, *args]
    if popen:
        out = open(log, "wb") if log else subprocess.DEVNULL
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise PPXGBError(f"`ppxgb {' '.join(args[:2])}` failed: {res.stderr.strip()[-1500:]}")
    return res


def _wait_healthy(url: str, ca: str, proc, log: Path, timeout: float = 60.0) -> None:
    import ssl

    import httpx

    verify = ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PPXGBError(f"service at {url} exited: {log.read_text()[-1500:]}")
        try:
            if httpx.get(url + "/v1/health", verify=verify, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise PPXGBError(f"service at {url} did not come up within {timeout:.0f}s")


def run_services_story(args, clock):
    """(horizontal results, model, held-out rows, inference results), every role a process."""
    import pandas as pd
    import xgboost as xgb

    work = Path(tempfile.mkdtemp(prefix="ppxgb-demo-"))
    procs = []
    try:
        train, test = split_hospitals(args.seed)
        files = []
        for name, (X, y) in train.items():
            path = work / f"{name.replace(' ', '_')}.csv"
            X.assign(disease=y).to_csv(path, index=False)
            files.append(str(path))
        model_path = work / "model.json"

        def federate():
            from ppxgb.datasets.heart import CATEGORICAL

            _ppxgb("federation", "--data", *files, "--label", "disease", "--servers", "2",
                   "--categorical", ",".join(CATEGORICAL),
                   "--params", json.dumps(HORIZONTAL_PARAMS), "--rounds", str(HORIZONTAL_ROUNDS),
                   "--out", str(model_path), "--timeout", "60")
            return xgb.Booster(model_file=str(model_path))

        horizontal, booster, X_test = horizontal_story(clock, args.seed, train_fn=federate)

        say("[2/3] Encrypted inference: the scoring server and the proxy start as HTTPS services "
            "on loopback; user 'alice' is enrolled through the proxy service")
        pki = make_test_pki(work / "pki", ["scoring-server", "proxy"])
        ca = pki["scoring-server"].ca
        secrets = {}
        for name, kind in (("server.token", "token"), ("proxy.token", "token"), ("master.key", "master-key")):
            secrets[name] = str(work / name)
            _ppxgb("proxy", "new-secret", "--out", secrets[name], "--kind", kind)
        sport, pport = free_ports(2)
        server_url, proxy_url = f"https://127.0.0.1:{sport}", f"https://127.0.0.1:{pport}"
        server_log, proxy_log = work / "scoring-server.log", work / "proxy.log"
        procs.append(_ppxgb("scoring-server", "--db", f"sqlite:///{work / 'models.db'}",
                            "--admin-token-file", secrets["server.token"], "--port", str(sport),
                            "--tls-cert", pki["scoring-server"].cert, "--tls-key", pki["scoring-server"].key,
                            log=server_log, popen=True))
        procs.append(_ppxgb("proxy", "serve", "--model", f"heart={model_path}", "--server-url", server_url,
                            "--server-admin-token-file", secrets["server.token"], "--server-ca", ca,
                            "--admin-token-file", secrets["proxy.token"], "--keystore", str(work / "keystore"),
                            "--master-key-file", secrets["master.key"], "--key-bits", str(args.key_bits),
                            "--port", str(pport), "--tls-cert", pki["proxy"].cert,
                            "--tls-key", pki["proxy"].key, log=proxy_log, popen=True))
        _wait_healthy(server_url, ca, procs[0], server_log)
        _wait_healthy(proxy_url, ca, procs[1], proxy_log)

        key, token = work / "alice.key", work / "alice.token"
        clock.run("proxy service: enroll user", _ppxgb, "proxy", "enroll", "--proxy-url", proxy_url,
                  "--admin-token-file", secrets["proxy.token"], "--ca-cert", ca, "--model", "heart",
                  "--user", "alice", "--key-out", str(key), "--token-out", str(token))
        X = X_test.iloc[:args.queries]
        patients, predictions = work / "patients.csv", work / "predictions.csv"
        X.to_csv(patients, index=False)
        say(f"      The client app scores {len(X)} patients through the scoring service")
        clock.run("client app: encrypt, score remotely, decrypt", _ppxgb, "score", "--keys", str(key),
                  "--token-file", str(token), "--server-url", server_url, "--ca-cert", ca,
                  "--input", str(patients), "--output", str(predictions))
        decrypted = pd.read_csv(predictions).iloc[:, -1].to_numpy(dtype=np.float64)
        plain = booster.predict(xgb.DMatrix(X, enable_categorical=True))
        inference = {"max_abs_diff": float(np.max(np.abs(decrypted - plain))), "n_queries": int(len(X)),
                     "tolerance": 1e-6, "key_bits": args.key_bits, "transport": "HTTPS services"}
        return horizontal, booster, X_test, inference
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
