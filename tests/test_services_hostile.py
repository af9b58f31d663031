"""A hostile client against the real services on loopback (127.0.0.1, plain HTTP).

Each test sends what an attacker would (oversize, chunked, unauthenticated, crafted or
half-sent requests) to a `ppxgb scoring-server` / `ppxgb proxy serve` subprocess and
measures the answer: status codes, time to answer, and the server's peak RSS (VmHWM).
Models are 1024-bit (allow_weak_keys) so that building them is fast; the point here is
parsing and limits.  Helpers at the top are shared with test_services_postgres.py.
"""

import dataclasses
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import time

import httpx
import msgpack
import numpy as np
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppxgb.app.cli import main
from ppxgb.formats import EncryptedModel
from ppxgb.inference import Client, Server
from ppxgb.proxy import Proxy
from ppxgb.wire import MAX_QUERY_BYTES, MSGPACK

pytestmark = pytest.mark.slow   # subprocesses or real services: seconds per test on 2 cores

HOST = "127.0.0.1"


# ---------------------------------------------------------------- shared helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def secret(tmp, name, kind="token") -> str:
    path = str(tmp / name)
    assert main(["proxy", "new-secret", "--out", path, "--kind", kind]) == 0
    return path


def start_scoring_server(tmp, db_url, admin_token_file, workers=1, env=None):
    """A `ppxgb scoring-server` subprocess on loopback; returns (proc, base URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppxgb.app.cli", "scoring-server", "--db", db_url, "--admin-token-file",
         admin_token_file, "--host", HOST, "--port", str(port), "--insecure-http", "--workers", str(workers),
         "--pair-table-mb", "0"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"server-{port}.log", "wb"),
        env={**os.environ, **(env or {})}, cwd=tmp)
    url = f"http://{HOST}:{port}"
    wait_healthy(url, proc, tmp / f"server-{port}.log")
    return proc, url


def wait_healthy(url, proc, log=None, timeout=60, verify=True):
    """Poll /v1/health until it answers; fail with the service's log (a path, or its
    stderr pipe) if it exits or does not come up."""
    def tail():
        return (open(log).read() if log else proc.stderr.read().decode() if proc.poll() is not None else "")[-2000:]

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited: {tail()}")
        try:
            if httpx.get(url + "/v1/health", timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"service did not come up: {tail()}")


def stop(*procs) -> None:
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def small_enrollment(user_id="hostile", seed=3):
    """A 1024-bit enrollment of a small 3-tree binary model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(X, label=(X[:, 0] > 0).astype(int)), 3)
    return Proxy(1024, allow_weak_keys=True).enroll(booster, user_id=user_id), X


def upload(url, admin, model: EncryptedModel, token: str, body=None):
    return httpx.put(f"{url}/v1/models/{model.model_id}", content=model.to_bytes() if body is None else body,
                     headers={"authorization": f"Bearer {admin}", "content-type": MSGPACK,
                              "x-ppxgb-token-sha256": hashlib.sha256(token.encode()).hexdigest()}, timeout=60)


def predict(url, model_id, token, body):
    return httpx.post(f"{url}/v1/models/{model_id}/predict", content=body, timeout=60,
                      headers={"authorization": f"Bearer {token}", "content-type": MSGPACK})


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process so far (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def raw_request(port, head: bytes, body_chunks=(), read_timeout=30.0) -> tuple[int, bytes, float]:
    """Send a hand-written request over a socket; returns (status, answer, seconds).

    The body is sent chunk by chunk until the server answers or closes (a server that
    refuses early stops reading): the answer is read as soon as it comes.
    """
    t0 = time.time()
    with socket.create_connection((HOST, port), timeout=read_timeout) as s:
        s.sendall(head)
        s.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            try:
                answer += s.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                s.setblocking(True)
                s.settimeout(read_timeout)
                s.sendall(chunk)
                s.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
        s.setblocking(True)
        s.settimeout(read_timeout)
        try:
            while b"\r\n\r\n" not in answer:
                more = s.recv(65536)
                if not more:
                    break
                answer += more
        except (ConnectionResetError, socket.timeout):
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer, time.time() - t0


def chunked(total: int, piece: bytes):
    """Chunked transfer encoding of `total` bytes made of `piece`, lazily."""
    sent = 0
    while sent < total:
        part = piece[:total - sent]
        sent += len(part)
        yield b"%x\r\n" % len(part) + part + b"\r\n"
    yield b"0\r\n\r\n"


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    server_token, proxy_token, master = secret(tmp, "server.token"), secret(tmp, "proxy.token"), \
        secret(tmp, "master.key", "master-key")
    enrollment, X = small_enrollment()
    model_path = str(tmp / "model.json")
    xgb.train({"objective": "binary:logistic", "max_depth": 2},
              xgb.DMatrix(X, label=(X[:, 1] > 0).astype(int)), 2).save_model(model_path)
    header_env = {"PPXGB_HEADER_TIMEOUT": "2"}
    server, url = start_scoring_server(tmp, f"sqlite:///{tmp / 'models.db'}", server_token, env=header_env)
    pport = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "ppxgb.app.cli", "proxy", "serve", "--model", f"heart={model_path}",
         "--server-url", url, "--server-admin-token-file", server_token, "--insecure-http",
         "--admin-token-file", proxy_token, "--keystore", str(tmp / "keystore"), "--master-key-file", master,
         "--host", HOST, "--port", str(pport)],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "proxy.log", "wb"), env={**os.environ, **header_env})
    try:
        wait_healthy(f"http://{HOST}:{pport}", proxy, tmp / "proxy.log")
        admin = open(server_token).read().strip()
        token = "hostile-user-token-0123456789abcdef"
        assert upload(url, admin, enrollment.model, token).status_code == 201
        yield dict(tmp=tmp, url=url, server=server, proxy=proxy, pport=pport, sport=int(url.rsplit(":", 1)[1]),
                   proxy_url=f"http://{HOST}:{pport}", admin=admin, proxy_admin=open(proxy_token).read().strip(),
                   server_token=server_token, model_path=model_path, enrollment=enrollment, X=X, token=token)
    finally:
        stop(proxy, server)


def good_queries(svc, rows=4) -> bytes:
    return Client(svc["enrollment"].keys).encrypt(svc["X"][:rows]).to_bytes()


def assert_still_serving(svc):
    r = predict(svc["url"], svc["enrollment"].model.model_id, svc["token"], good_queries(svc))
    assert r.status_code == 200, r.text
    assert svc["server"].poll() is None and svc["proxy"].poll() is None


# ---------------------------------------------------------------- 1. the proxy authenticates first
def test_proxy_refuses_a_100mb_unauthenticated_body_before_reading_it(svc):
    total = 100 * 2**20
    rss0 = peak_rss_mb(svc["proxy"].pid)
    head = (f"POST /v1/enroll HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {total}\r\n\r\n").encode()
    status, answer, seconds = raw_request(svc["pport"], head, (b"[" * 2**20 for _ in range(100)))
    assert status == 401, answer[:300]
    assert seconds < 3, seconds
    assert peak_rss_mb(svc["proxy"].pid) - rss0 < 50
    # the same body chunked, and an invalid body: still 401, not 422
    head = (f"POST /v1/enroll HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    status, answer, seconds = raw_request(svc["pport"], head, chunked(total, b"[" * 2**20))
    assert status == 401 and seconds < 3, (status, seconds)
    r = httpx.post(svc["proxy_url"] + "/v1/enroll", content=b"{not json")
    assert r.status_code == 401, r.text
    growth = peak_rss_mb(svc["proxy"].pid) - rss0
    assert growth < 50
    print(f"proxy, 100 MiB unauthenticated (length-declared, then chunked): 401 in {seconds:.2f} s, "
          f"peak RSS growth {growth:.1f} MiB")


def test_proxy_counts_an_authenticated_body_while_it_streams(svc):
    auth = f"Authorization: Bearer {svc['proxy_admin']}\r\n"
    head = (f"POST /v1/enroll HTTP/1.1\r\nHost: {HOST}\r\n{auth}Content-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    status, answer, seconds = raw_request(svc["pport"], head, chunked(100 * 2**20, b" " * 2**16))
    assert status == 413 and seconds < 5, (status, answer[:300], seconds)
    head = (f"POST /v1/enroll HTTP/1.1\r\nHost: {HOST}\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {100 * 2**20}\r\n\r\n").encode()
    assert raw_request(svc["pport"], head, [b" " * 2**16] * 10)[0] == 413
    hdr = {"authorization": f"Bearer {svc['proxy_admin']}"}
    for body, words in [(b"{not json", "invalid json"), (b"[" * 10000, "json"), (b"\xff\xfe", "json"),
                        (json.dumps({"user_id": "alice\n", "model": "heart"}).encode(), "user_id"),
                        (json.dumps({"user_id": "alice", "model": "heart\n"}).encode(), "model"),
                        (json.dumps([1, 2]).encode(), "")]:
        r = httpx.post(svc["proxy_url"] + "/v1/enroll", content=body, headers=hdr)
        assert r.status_code == 422, (body[:40], r.status_code, r.text)
        assert words in json.dumps(r.json()["detail"]).lower(), r.text
    assert_still_serving(svc)


# ---------------------------------------------------------------- 2. the scoring server's limits
def test_scoring_server_counts_chunked_bodies_and_bounds_decoding(svc):
    model_id, token, port = svc["enrollment"].model.model_id, svc["token"], svc["sport"]
    head = (f"POST /v1/models/{model_id}/predict HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {MSGPACK}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    rss0 = peak_rss_mb(svc["server"].pid)
    status, answer, seconds = raw_request(port, head, chunked(200 * 2**20, b"\x90" * 2**20))
    assert status == 413, answer[:300]
    chunked_peak = peak_rss_mb(svc["server"].pid) - rss0
    assert chunked_peak < 3 * MAX_QUERY_BYTES / 2**20, chunked_peak
    # within the limit: lists of empty lists, which msgpack would turn into ~60M Python
    # lists (gigabytes) without decoding bounds
    inner = b"\xdc\xff\xff" + b"\x90" * 0xFFFF
    n_inner = (MAX_QUERY_BYTES - 1024) // len(inner)
    head = {"format": "ppxgb.encrypted_queries", "v": 1, "model_id": model_id}
    body = (bytes([0x80 | (len(head) + 1)]) + msgpack.packb(head)[1:]          # a 4-key map ...
            + msgpack.packb("columns") + b"\xdd" + n_inner.to_bytes(4, "big") + inner * n_inner)
    assert len(body) <= MAX_QUERY_BYTES
    r = predict(svc["url"], model_id, token, body)
    assert r.status_code == 400, r.text
    nested_peak = peak_rss_mb(svc["server"].pid) - rss0
    # the body itself is held about twice (read chunks, joined); the decoded items are bounded
    assert nested_peak < 4 * MAX_QUERY_BYTES / 2**20, nested_peak
    print(f"peak RSS growth: chunked 200 MiB -> {chunked_peak:.0f} MiB, "
          f"{len(body) / 2**20:.0f} MiB of nested empty lists -> {nested_peak:.0f} MiB")
    assert_still_serving(svc)


# ---------------------------------------------------------------- 3. crafted shapes and models
def test_crafted_shapes_and_foreign_leaves_are_400(svc):
    model = svc["enrollment"].model
    doc = msgpack.unpackb(good_queries(svc), raw=False)
    for shape in ([2**62, 4], [2**63 - 1, 2**63 - 1], [4, 2**62], [0, 2**62]):
        bad = dict(doc, values={"shape": shape, "data": b""})
        r = predict(svc["url"], model.model_id, svc["token"], msgpack.packb(bad))
        assert r.status_code == 400 and "values" in r.json()["detail"], (shape, r.text)
    # a leaf of tree 0 pointing at tree 1's leaf ciphertext; a child in another tree
    roots = model.roots
    leaf = model.leaf.copy()
    leaves0 = np.flatnonzero(leaf[roots[0]:roots[1]] >= 0) + roots[0]
    leaves1 = np.flatnonzero(leaf[roots[1]:roots[2]] >= 0) + roots[1]
    leaf[leaves0[0]] = leaf[leaves1[0]]
    left = model.left.copy()
    inner0 = np.flatnonzero(model.column[roots[0]:roots[1]] >= 0) + roots[0]
    left[inner0[-1]] = roots[1] + 1
    left_shared = model.left.copy()
    left_shared[inner0[0]] = model.right[inner0[0]]          # a node reached twice
    for name, kw, words in [("foreign leaf", dict(leaf=leaf), "exactly one leaf"),
                            ("child in another tree", dict(left=left), "out of its tree"),
                            ("node reached twice", dict(left=left_shared), "exactly once")]:
        crafted = raw_model(model, model_id=f"crafted-{len(name)}", **kw)
        r = upload(svc["url"], svc["admin"], model, svc["token"], body=crafted)
        assert r.status_code == 400 and words in r.json()["detail"], (name, r.text)
    assert_still_serving(svc)


def raw_model(model: EncryptedModel, **changes) -> bytes:
    """The model's bytes with fields replaced (bypassing the constructor's checks)."""
    doc = msgpack.unpackb(model.to_bytes(), raw=False)
    for name, value in changes.items():
        if isinstance(value, np.ndarray):
            dt = "<i8" if name == "threshold" else "<i4"
            value = {"shape": list(value.shape), "data": value.astype(dt).tobytes()}
        doc[name] = value
    return msgpack.packb(doc, use_bin_type=True)


_ARRAYS = ("roots", "tree_group", "left", "right", "column", "leaf", "threshold")


@st.composite
def mutated_model(draw, model: EncryptedModel):
    doc = msgpack.unpackb(model.to_bytes(), raw=False)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(_ARRAYS + ("n_leaves", "n_groups", "columns", "leaf_ciphers", "model_id")))
        if field in _ARRAYS:
            dt = "<i8" if field == "threshold" else "<i4"
            data = doc[field]["data"]
            a = np.frombuffer(data[:len(data) // np.dtype(dt).itemsize * np.dtype(dt).itemsize], dt).copy()
            if a.size and draw(st.booleans()):
                a[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([-2, -1, 0, 1, 2**31 - 1, a.size, 3]))
                doc[field] = {"shape": [a.size], "data": a.tobytes()}
            else:
                doc[field] = {"shape": draw(st.lists(st.integers(-1, 2**63 - 1), max_size=2)),
                              "data": draw(st.binary(max_size=16))}
        elif field == "leaf_ciphers":
            doc[field] = doc[field][:draw(st.integers(0, len(doc[field])))]
        else:
            doc[field] = draw(st.one_of(st.integers(-1, 2**64 - 1), st.text(max_size=4), st.none(),
                                        st.lists(st.text(max_size=3), max_size=3)))
    return msgpack.packb(doc, use_bin_type=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_models_and_queries_over_http_are_never_a_500(svc, data):
    model = svc["enrollment"].model
    body = data.draw(mutated_model(model))
    r = upload(svc["url"], svc["admin"], model, svc["token"], body=body)
    assert r.status_code in (400, 409, 422), r.text
    assert "detail" in r.json()
    q = msgpack.unpackb(good_queries(svc, 2), raw=False)
    q["values"] = data.draw(st.one_of(
        st.fixed_dictionaries({"shape": st.lists(st.integers(-1, 2**63 - 1), min_size=2, max_size=2),
                               "data": st.binary(max_size=64)}),
        st.integers(-2**63, 2**64 - 1), st.none()))
    r = predict(svc["url"], model.model_id, svc["token"], msgpack.packb(q))
    assert 400 <= r.status_code < 500 and r.status_code != 413, r.text


# ---------------------------------------------------------------- 5. the compiled-model cache
def test_compiled_model_cache_is_bounded_and_least_recently_used():
    enrollment, X = small_enrollment("cache", seed=5)
    models = [dataclasses.replace(enrollment.model, model_id=f"m{i}") for i in range(4)]
    from ppxgb.inference.server import compiled_size

    one = compiled_size(models[0], 0)
    server = Server(cache_mb=2.5 * one / 2**20)            # room for two compiled models
    client = Client(enrollment.keys)
    for m in models[:2]:
        server.add(m)
    q = client.encrypt(X[:3])
    server.predict("m0", dataclasses.replace(q, model_id="m0"))       # m0 now most recent
    server.add(models[2])
    assert server.held() == ["m0", "m2"]                               # m1 was least recently used
    assert server.held_bytes <= 2.5 * one
    server.add(models[3])
    assert server.held() == ["m2", "m3"]
    def scores(mid):
        s = server.predict(mid, dataclasses.replace(q, model_id=mid))
        return client.decrypt(dataclasses.replace(s, model_id=enrollment.model.model_id))

    expected = scores("m3")
    server.add(models[0])                                              # recompiled after eviction
    np.testing.assert_allclose(scores("m0"), expected)


# ---------------------------------------------------------------- 6. leaks and slow clients
def test_health_ids_and_probing_reveal_nothing(svc):
    assert httpx.get(svc["proxy_url"] + "/v1/health").json() == {"status": "ok"}
    other, _ = small_enrollment("someone-else", seed=4)
    other_token = "someone-else-token-0123456789abcdef"
    assert upload(svc["url"], svc["admin"], other.model, other_token).status_code == 201
    q = good_queries(svc)
    answers = [predict(svc["url"], mid, svc["token"], q) for mid in (other.model.model_id, "m-does-not-exist")]
    assert [a.status_code for a in answers] == [404, 404]
    assert len({a.json()["detail"].replace(mid, "ID") for a, mid in
                zip(answers, (other.model.model_id, "m-does-not-exist"))}) == 1
    assert stat.S_IMODE(os.stat(svc["tmp"] / "models.db").st_mode) == 0o600
    newline = msgpack.unpackb(q, raw=False)
    newline["model_id"] += "\n"
    r = predict(svc["url"], svc["enrollment"].model.model_id, svc["token"], msgpack.packb(newline))
    assert r.status_code == 400 and "model_id" in r.json()["detail"]


def test_half_sent_headers_time_out(svc):
    for port in (svc["sport"], svc["pport"]):
        t0 = time.time()
        with socket.create_connection((HOST, port), timeout=20) as s:
            s.sendall(b"POST /v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            try:
                closed = s.recv(100) == b""
            except ConnectionResetError:
                closed = True
        assert closed and time.time() - t0 < 8, time.time() - t0      # PPXGB_HEADER_TIMEOUT=2 here
    # a body that stalls after its headers: 408 after PPXGB_HEADER_TIMEOUT
    mid = svc["enrollment"].model.model_id
    for port, path, token in ((svc["sport"], f"/v1/models/{mid}/predict", svc["token"]),
                              (svc["pport"], "/v1/enroll", svc["proxy_admin"])):
        head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Length: 1000\r\n\r\n").encode()
        status, answer, seconds = raw_request(port, head, [b"{"])
        assert status == 408 and seconds < 8, (port, status, answer[:200], seconds)
    assert_still_serving(svc)


def test_score_output_is_owner_only(svc, tmp_path):
    from ppxgb.app.inference_cli import write_predictions

    write_predictions(np.array([0.5, 0.25]), str(tmp_path / "scores.csv"))
    assert stat.S_IMODE(os.stat(tmp_path / "scores.csv").st_mode) == 0o600


# ---------------------------------------------------------------- 7. enrolment is all or nothing
def test_enroll_checks_its_outputs_before_enrolling(svc, tmp_path, capsys):
    import sqlite3

    def stored():
        with sqlite3.connect(svc["tmp"] / "models.db") as conn:
            return conn.execute("select count(*) from ppxgb_models").fetchone()[0]

    before = stored()
    (tmp_path / "taken.key").write_bytes(b"x")
    (tmp_path / "taken.token").write_bytes(b"x")
    local = ["--model", svc["model_path"], "--server-url", svc["url"], "--server-admin-token-file",
             svc["server_token"], "--insecure-http", "--key-bits", "2048"]
    for outs, words in ((["--key-out", str(tmp_path / "taken.key")], "does not exist yet"),
                        (["--key-out", str(tmp_path / "new.key"), "--token-out", str(tmp_path / "taken.token")],
                         "does not exist yet"),
                        (["--key-out", str(tmp_path / "nodir" / "a.key")], "existing writable directory"),
                        (["--key-out", str(tmp_path / "same"), "--token-out", str(tmp_path / "same")],
                         "different file")):
        assert main(["proxy", "enroll", "--user", "carol", *local, *outs]) == 2
        assert words in capsys.readouterr().err
        assert stored() == before
        assert not (tmp_path / "new.key").exists()


def test_enroll_refused_by_the_server_leaves_nothing_behind(svc, tmp_path):
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-server-admin-token-0123\n")
    os.chmod(wrong, 0o600)
    master = secret(tmp_path, "master.key", "master-key")
    (tmp_path / "keystore").mkdir()
    assert main(["proxy", "enroll", "--user", "dave", "--model", svc["model_path"], "--server-url", svc["url"],
                 "--server-admin-token-file", str(wrong), "--insecure-http", "--keystore",
                 str(tmp_path / "keystore"), "--master-key-file", master,
                 "--key-out", str(tmp_path / "dave.key"), "--token-out", str(tmp_path / "dave.token")]) == 2
    assert os.listdir(tmp_path / "keystore") == []
    assert not (tmp_path / "dave.key").exists() and not (tmp_path / "dave.token").exists()


# ---------------------------------------------------------------- 8. the published schemas
def test_openapi_declares_errors_and_bearer_auth(svc):
    for url, path, method, codes in [(svc["url"], "/v1/models/{model_id}/predict", "post", {400, 401, 404, 408, 413, 422}),
                                     (svc["url"], "/v1/models/{model_id}", "put", {400, 401, 408, 409, 413, 422}),
                                     (svc["proxy_url"], "/v1/enroll", "post", {401, 404, 408, 413, 422})]:
        doc = httpx.get(url + "/openapi.json").json()
        assert doc["components"]["securitySchemes"]["bearerAuth"] == {
            "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]
            ["bearerAuth"]["description"]}
        op = doc["paths"][path][method]
        assert {int(c) for c in op["responses"]} >= codes, op["responses"].keys()
        assert op["security"] == [{"bearerAuth": []}]
        assert "security" not in doc["paths"]["/v1/health"]["get"]
    enroll = httpx.get(svc["proxy_url"] + "/openapi.json").json()["paths"]["/v1/enroll"]["post"]
    assert "user_id" in json.dumps(enroll["requestBody"])
