"""The real services on loopback, over TLS: enrol through the proxy, score through the
client app, and bad requests get a 4xx while the server keeps serving.

The scoring server and the proxy run as `ppxgb` subprocesses; CLI commands run
in-process through ppxgb.app.cli.main.  Keys are the default 2048 bits.
"""

import hashlib
import json
import os
import socket
import ssl
import stat
import subprocess
import sys

import httpx
import msgpack
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppxgb.app.cli import main
from ppxgb.errors import FormatError
from ppxgb.formats import EncryptedQueries, UserKeys
from ppxgb.inference import Client
from ppxgb.tls import make_test_pki
from ppxgb.wire import MSGPACK
from test_services_hostile import wait_healthy

pytestmark = pytest.mark.slow   # subprocesses or real services: seconds per test on 2 cores

NAMES = ["age", "sbp", "chol", "bmi", "glucose", "smoker"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def secret(tmp, name, kind="token"):
    path = str(tmp / name)
    assert main(["proxy", "new-secret", "--out", path, "--kind", kind]) == 0
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("services")
    pki = make_test_pki(tmp / "pki", ["scoring-server", "proxy"])
    ca = ssl.create_default_context(cafile=pki["scoring-server"].ca)
    ca_path = pki["scoring-server"].ca
    rng = np.random.default_rng(11)
    X = pd.DataFrame(rng.normal(size=(400, len(NAMES))).astype(np.float32), columns=NAMES)
    X.iloc[rng.random(X.shape) < 0.1] = np.nan
    y = (X.age.fillna(0) + X.sbp.fillna(0) * X.chol.fillna(0) > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4}, xgb.DMatrix(X, label=y), 15)
    model_path = str(tmp / "model.json")
    booster.save_model(model_path)

    server_token, proxy_token = secret(tmp, "server.token"), secret(tmp, "proxy.token")
    master = secret(tmp, "master.key", "master-key")
    db = tmp / "models.db"
    sport, pport = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ppxgb.app.cli", "scoring-server", "--db", f"sqlite:///{db}",
         "--admin-token-file", server_token, "--port", str(sport), "--pair-table-mb", "64",
         "--tls-cert", pki["scoring-server"].cert, "--tls-key", pki["scoring-server"].key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    server_url = f"https://127.0.0.1:{sport}"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "ppxgb.app.cli", "proxy", "serve", "--model", f"heart={model_path}",
         "--server-url", server_url, "--server-admin-token-file", server_token, "--server-ca", ca_path,
         "--admin-token-file", proxy_token, "--keystore", str(tmp / "keystore"),
         "--master-key-file", master, "--port", str(pport),
         "--tls-cert", pki["proxy"].cert, "--tls-key", pki["proxy"].key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_healthy(server_url, server, verify=ca)
        wait_healthy(f"https://127.0.0.1:{pport}", proxy, verify=ca)
        yield dict(tmp=tmp, ca=ca, ca_path=ca_path, X=X, booster=booster, model_path=model_path, server_url=server_url,
                   proxy_url=f"https://127.0.0.1:{pport}", server_token=server_token,
                   proxy_token=proxy_token, master=master, db=db, server=server)
    finally:
        for proc in (proxy, server):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def alice(env):
    tmp = env["tmp"]
    key, token = str(tmp / "alice.key"), str(tmp / "alice.token")
    assert main(["proxy", "enroll", "--proxy-url", env["proxy_url"], "--admin-token-file", env["proxy_token"],
                 "--ca-cert", env["ca_path"], "--model", "heart", "--user", "alice",
                 "--key-out", key, "--token-out", token]) == 0
    return key, token


@pytest.fixture(scope="module")
def bob(env):
    """Enrolled by the proxy's local CLI (no proxy service), straight to the server."""
    tmp = env["tmp"]
    key, token = str(tmp / "bob.key"), str(tmp / "bob.token")
    assert main(["proxy", "enroll", "--model", env["model_path"], "--user", "bob",
                 "--server-url", env["server_url"], "--server-admin-token-file", env["server_token"],
                 "--server-ca", env["ca_path"], "--key-out", key, "--token-out", token]) == 0
    return key, token


def score_cli(env, who, rows_path, out_path, *extra):
    key, token = who
    return main(["score", "--keys", key, "--token-file", token, "--server-url", env["server_url"],
                 "--ca-cert", env["ca_path"], "--input", str(rows_path), "--output", str(out_path), *extra])


def test_enrol_then_score_through_the_client_app(env, alice, tmp_path):
    for path in alice:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rows = env["X"].iloc[:60]
    csv = tmp_path / "patients.csv"
    rows.to_csv(csv, index=False)
    assert score_cli(env, alice, csv, tmp_path / "out.csv") == 0
    got = pd.read_csv(tmp_path / "out.csv")["prediction"].to_numpy()
    np.testing.assert_allclose(got, env["booster"].predict(xgb.DMatrix(rows)), rtol=1e-5, atol=1e-6)
    # JSON in (objects keyed by name, null for missing), JSON out, margins
    js = tmp_path / "patients.json"
    js.write_text(json.dumps([{k: (None if pd.isna(v) else float(v)) for k, v in r.items()}
                              for r in rows.to_dict("records")]))
    assert score_cli(env, alice, js, tmp_path / "out.json", "--output-margin", "--batch-size", "7") == 0
    got = np.array(json.loads((tmp_path / "out.json").read_text()))
    np.testing.assert_allclose(got, env["booster"].predict(xgb.DMatrix(rows), output_margin=True),
                               rtol=1e-5, atol=1e-6)


def test_keystore_is_sealed(env, alice):
    from ppxgb.proxy.keystore import KeyStore, load_master_key

    keys = UserKeys.from_bytes(open(alice[0], "rb").read())
    sealed = [f for f in os.listdir(env["tmp"] / "keystore")]
    assert sealed == [f"{keys.model_id}.keys.sealed"]
    blob = open(env["tmp"] / "keystore" / sealed[0], "rb").read()
    assert keys.ope_key not in blob and keys.prf_key not in blob
    store = KeyStore(str(env["tmp"] / "keystore"), load_master_key(env["master"]))
    assert store.get(keys.model_id, "alice") == keys
    with pytest.raises(FormatError):
        store.get(keys.model_id, "mallory")                       # bound to its owner
    with pytest.raises(FormatError):
        KeyStore(str(env["tmp"] / "keystore"), b"\x01" * 32).get(keys.model_id, "alice")


def post_queries(env, model_id, token, body):
    headers = {"content-type": MSGPACK, **({"authorization": f"Bearer {token}"} if token else {})}
    return httpx.post(f"{env['server_url']}/v1/models/{model_id}/predict", content=body,
                      verify=env["ca"], headers=headers, timeout=60)


def db_digest(env):
    import sqlite3

    with sqlite3.connect(env["db"]) as conn:
        rows = conn.execute("select model_id, user_id, token_sha256, blob from ppxgb_models order by model_id").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest(), len(rows)


def test_bad_requests_get_4xx_and_the_server_keeps_serving(env, alice, bob):
    keys = UserKeys.from_bytes(open(alice[0], "rb").read())
    bob_keys = UserKeys.from_bytes(open(bob[0], "rb").read())
    token = open(alice[1]).read().strip()
    bob_token = open(bob[1]).read().strip()
    client = Client(keys)
    good = client.encrypt(env["X"].iloc[:5]).to_bytes()
    before = db_digest(env)
    assert before[1] == 2

    doc = msgpack.unpackb(good, raw=False)
    fewer = EncryptedQueries(keys.model_id, tuple(doc["columns"][:-1]),
                             np.frombuffer(doc["values"]["data"], "<i8").reshape(5, -1)[:, :-1].copy())
    nan_values = dict(doc, values={"shape": [5, len(doc["columns"])],
                                   "data": np.full((5, len(doc["columns"])), np.nan).tobytes()})
    inf_values = dict(doc, values={"shape": [5, len(doc["columns"])],
                                   "data": np.full((5, len(doc["columns"])), np.inf, "<f8").tobytes()})
    negative = dict(doc, values={"shape": [5, len(doc["columns"])],
                                 "data": np.full((5, len(doc["columns"])), -1, "<i8").tobytes()})
    cases = [
        ("wrong token", keys.model_id, "not-the-token-0123456789", good, 401, "not valid"),
        ("no token", keys.model_id, "", good, 401, "Bearer"),
        ("another user's model", bob_keys.model_id, token, good, 404, "no model"),   # same as unknown
        ("unknown model", "m-doesnotexist", token, good, 404, "no model"),
        ("truncated ciphertexts", keys.model_id, token, good[:-9], 400, "malformed"),
        ("garbage", keys.model_id, token, b"\x93\x01\x02", 400, "malformed"),
        ("empty body", keys.model_id, token, b"", 400, "empty"),
        ("wrong feature count", keys.model_id, token, fewer.to_bytes(), 422, "columns"),
        ("NaN where ciphertexts go", keys.model_id, token, msgpack.packb(nan_values), 400, "malformed"),
        ("inf where ciphertexts go", keys.model_id, token, msgpack.packb(inf_values), 400, "malformed"),
        ("out-of-range ciphertexts", keys.model_id, token, msgpack.packb(negative), 400, "malformed"),
        ("queries for another model", keys.model_id, token,
         EncryptedQueries(bob_keys.model_id, fewer.columns, fewer.values).to_bytes(), 422, "model_id"),
    ]
    for name, model_id, tok, body, status, words in cases:
        r = post_queries(env, model_id, tok, body)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert words.lower() in r.json()["detail"].lower(), (name, r.json())
        assert post_queries(env, keys.model_id, token, good).status_code == 200, f"after {name}"
    # bob can still score his own model, and nothing stored changed
    bob_q = Client(bob_keys).encrypt(env["X"].iloc[:3]).to_bytes()
    assert post_queries(env, bob_keys.model_id, bob_token, bob_q).status_code == 200
    assert db_digest(env) == before
    assert env["server"].poll() is None


def test_uploads_need_the_admin_token_and_are_write_once(env, alice):
    keys = UserKeys.from_bytes(open(alice[0], "rb").read())
    url = f"{env['server_url']}/v1/models/{keys.model_id}"
    admin = open(env["server_token"]).read().strip()
    hdr = {"content-type": MSGPACK, "x-ppxgb-token-sha256": "0" * 64}
    r = httpx.put(url, content=b"x", headers={**hdr, "authorization": "Bearer wrong-admin-token-123"},
                  verify=env["ca"])
    assert r.status_code == 401
    r = httpx.put(url, content=b"not a model", headers={**hdr, "authorization": f"Bearer {admin}"},
                  verify=env["ca"])
    assert r.status_code == 400 and "malformed" in r.json()["detail"]


def test_client_app_rejects_bad_rows_cleanly(env, alice, tmp_path, capsys):
    rows = env["X"].iloc[:3].copy()
    rows.iloc[1, 2] = np.inf
    rows.to_csv(tmp_path / "inf.csv", index=False)
    assert score_cli(env, alice, tmp_path / "inf.csv", tmp_path / "o.csv") == 2
    assert "inf" in capsys.readouterr().err
    (tmp_path / "nan.json").write_text('[[1, 2, NaN, 4, 5, 6]]')
    assert score_cli(env, alice, tmp_path / "nan.json", tmp_path / "o.csv") == 2
    env["X"].iloc[:3, :4].to_csv(tmp_path / "narrow.csv", index=False)
    assert score_cli(env, alice, tmp_path / "narrow.csv", tmp_path / "o.csv") == 2
    assert "feature columns" in capsys.readouterr().err
    (tmp_path / "text.csv").write_text(",".join(NAMES) + "\n" + "a,b,c,d,e,f\n")
    assert score_cli(env, alice, tmp_path / "text.csv", tmp_path / "o.csv") == 2


def test_tls_is_required_unless_explicitly_waived(env, alice, tmp_path, capsys):
    env["X"].iloc[:2].to_csv(tmp_path / "r.csv", index=False)
    plain_url = env["server_url"].replace("https://", "http://")
    key, token = alice
    assert main(["score", "--keys", key, "--token-file", token, "--server-url", plain_url,
                 "--input", str(tmp_path / "r.csv")]) == 2
    assert "https" in capsys.readouterr().err
    assert main(["scoring-server", "--admin-token-file", env["server_token"], "--port", "1"]) == 2
    assert "tls" in capsys.readouterr().err.lower()
    assert main(["scoring-server", "--admin-token-file", env["server_token"], "--host", "0.0.0.0",
                 "--insecure-http"]) == 2
    # the key file must stay private
    os.chmod(key, 0o644)
    try:
        assert main(["score", "--keys", key, "--token-file", token, "--server-url", env["server_url"],
                     "--input", str(tmp_path / "r.csv")]) == 2
    finally:
        os.chmod(key, 0o600)


def test_openapi_schema_is_published(env):
    doc = httpx.get(env["server_url"] + "/openapi.json", verify=env["ca"]).json()
    assert "/v1/models/{model_id}/predict" in doc["paths"]
    body = doc["paths"]["/v1/models/{model_id}/predict"]["post"]["requestBody"]["content"]
    assert MSGPACK in body
    proxy_doc = httpx.get(env["proxy_url"] + "/openapi.json", verify=env["ca"]).json()
    assert "/v1/enroll" in proxy_doc["paths"]


def test_proxy_refuses_bad_enrolments(env):
    admin = open(env["proxy_token"]).read().strip()
    url = env["proxy_url"] + "/v1/enroll"
    r = httpx.post(url, json={"user_id": "eve", "model": "heart"}, verify=env["ca"],
                   headers={"authorization": "Bearer nope-nope-nope-nope"})
    assert r.status_code == 401
    r = httpx.post(url, json={"user_id": "eve", "model": "nosuch"}, verify=env["ca"],
                   headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 404
    r = httpx.post(url, json={"user_id": "bad id", "model": "heart"}, verify=env["ca"],
                   headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 422


_scalars = st.one_of(st.integers(-2**63, 2**64 - 1), st.binary(max_size=20), st.text(max_size=8),
                    st.none(), st.floats())
_fields = st.fixed_dictionaries(
    {"format": st.sampled_from(["ppxgb.encrypted_queries", "ppxgb.keys", "x"]), "v": st.sampled_from([1, 2, "1"])},
    optional={"model_id": _scalars, "columns": st.lists(_scalars, max_size=3),
              "values": st.one_of(_scalars, st.fixed_dictionaries({"shape": st.lists(st.integers(-2, 4), max_size=3),
                                                                   "data": st.binary(max_size=64)}))})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), _fields.map(lambda d: msgpack.packb(d, use_bin_type=True))))
def test_fuzzed_bodies_never_cause_a_server_error(env, alice, body):
    keys = UserKeys.from_bytes(open(alice[0], "rb").read())
    token = open(alice[1]).read().strip()
    r = post_queries(env, keys.model_id, token, body)
    assert 400 <= r.status_code < 500, r.text


def test_the_database_holds_no_plaintext(env, alice, bob):
    """The server's stored bytes (the SQLite file) contain no name, threshold or leaf value."""
    import struct

    from ppxgb.model import Ensemble

    blob = open(env["db"], "rb").read()
    ens = Ensemble.load(env["model_path"])
    for name in NAMES:
        raw = name.encode()
        # as a msgpack or JSON string it cannot hide; a short raw string (3 bytes: "sbp")
        # turns up in megabytes of ciphertext by chance, so raw bytes are checked only
        # when long enough, and short ones must not be more frequent than chance allows
        for form in (msgpack.packb(name), b'"' + raw + b'"') + ((raw,) if len(raw) >= 6 else ()):
            assert form not in blob, name
        assert blob.count(raw) <= 3 + 4 * len(blob) / 256 ** len(raw), name
    values = np.concatenate([t.threshold for t in ens.trees] + [ens.base_margin()])
    for v in {float(x) for x in values}:
        if v in (0.0, 1.0, -1.0):
            continue
        for form in (struct.pack("<d", v), struct.pack(">d", v), repr(v).encode()):
            if len(form) >= 6:                 # shorter strings could occur by chance
                assert form not in blob, v
    token = open(alice[1]).read().strip()
    assert token.encode() not in blob                      # only its SHA-256 is stored
