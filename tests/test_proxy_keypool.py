"""The proxy's key pool: pooled enrolments are exact, every key pair and its encryption
randomness serve one user only, an empty pool never makes an enrolment wait, the key size
is respected, the helper holds no file and stops with the proxy, the service and the
interpreter.  Keys are 1024-bit (the point is the pool, not the key size)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import xgboost as xgb

from ppxgb.errors import FormatError, ParameterError
from ppxgb.inference import Client, Server
from ppxgb.model import Ensemble
from ppxgb.proxy import Proxy
from ppxgb.proxy.keypool import KeyPool, decode_entry, encode_entry

BITS = 1024


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "seed": 0},
                        xgb.DMatrix(X, label=y), 6)
    return booster, Ensemble.load(booster), X


def warm_proxy(ensemble, size, scheme="ope"):
    proxy = Proxy(BITS, allow_weak_keys=True, scheme=scheme, key_pool=size)
    proxy.prepare(ensemble)
    assert proxy.pool.wait_full(120), "the key pool did not fill within 120 s"
    return proxy


def scores(enrollment, X):
    server = Server()
    server.add(enrollment.model.to_bytes())
    client = Client(enrollment.keys.to_bytes())
    return client.decrypt(server.predict(enrollment.model.model_id, client.encrypt(X).to_bytes()).to_bytes())


@pytest.mark.parametrize("scheme", ["ope", "ore"])
def test_pooled_enrolment_scores_equal_xgboost(model, scheme):
    booster, ensemble, X = model
    with warm_proxy(ensemble, 2, scheme) as proxy:
        pooled = {e.private_key.public_key.n for e in proxy.pool._ready}
        assert all(len(e.masks) == sum(int((t.left < 0).sum()) for t in ensemble.trees) + 1
                   for e in proxy.pool._ready)
        enrollment = proxy.enroll(booster, user_id="alice")
        assert enrollment.keys.paillier_n in pooled            # the key came from the pool
        np.testing.assert_allclose(scores(enrollment, X), booster.predict(xgb.DMatrix(X)), rtol=1e-5, atol=1e-6)


def enrol_many(proxy, booster, n_users):
    """Moduli and leaf ciphertexts of n_users enrolments (pool and inline mixed)."""
    enrollments = [proxy.enroll(booster, user_id=f"user{i}") for i in range(n_users)]
    moduli = [e.keys.paillier_n for e in enrollments]
    ciphers = [c for e in enrollments for c in e.model.leaf_ciphers]
    return moduli, ciphers


def all_distinct(moduli, ciphers):
    return len(set(moduli)) == len(moduli) and len(set(ciphers)) == len(ciphers)


def test_every_pooled_key_serves_one_user(model):
    booster, ensemble, _ = model
    with warm_proxy(ensemble, 3) as proxy:
        assert all_distinct(*enrol_many(proxy, booster, 6))


def test_a_pool_that_hands_a_key_out_twice_is_caught(model, monkeypatch):
    """Mutant: take() returns the first entry without removing it."""
    booster, ensemble, _ = model
    with warm_proxy(ensemble, 2) as proxy:
        monkeypatch.setattr(proxy.pool, "take", lambda key_bits: proxy.pool._ready[0])
        moduli, ciphers = enrol_many(proxy, booster, 3)
        assert not all_distinct(moduli, ciphers)
        assert len(set(moduli)) == 1


def test_an_empty_pool_never_makes_an_enrolment_wait(model, monkeypatch):
    booster, ensemble, X = model
    monkeypatch.setattr(KeyPool, "start", lambda self: None)      # a helper that never delivers
    with Proxy(BITS, allow_weak_keys=True, key_pool=3) as proxy:
        enrollment = proxy.enroll(booster, user_id="alice")
        assert proxy.pool.ready() == 0
    np.testing.assert_allclose(scores(enrollment, X), booster.predict(xgb.DMatrix(X)), rtol=1e-5, atol=1e-6)


def test_the_pool_makes_keys_of_the_proxys_size_and_drops_others(model):
    _, ensemble, _ = model
    with warm_proxy(ensemble, 1) as proxy:
        assert proxy.pool._ready[0].private_key.public_key.n.bit_length() == BITS
        with pytest.raises(AttributeError):
            proxy.key_bits = 2048                               # fixed: the pool makes keys of this size
        assert proxy.pool.take(2048) is None                    # an entry of another size is dropped
        assert proxy.pool.ready() == 0
    with pytest.raises(ParameterError, match="key_bits"):
        Proxy(BITS, key_pool=2)                                 # weak keys still need allow_weak_keys
    for bad in (-1, 1.5, True, "4"):
        with pytest.raises(ParameterError, match="key_pool"):
            Proxy(2048, key_pool=bad)


def test_frames_from_the_helper_are_checked():
    from ppxgb.crypto.paillier import FastEncryptor, generate_keypair

    _, key = generate_keypair(512)
    masks = FastEncryptor(key).random_masks(3)
    frame = encode_entry(512, key.p, key.q, masks)
    entry = decode_entry(frame[:16], frame[16:], 512)
    assert entry.private_key.public_key.n == key.public_key.n and list(entry.masks) == masks
    n2 = key.public_key.n ** 2
    bad = {
        "other size": (encode_entry(512, key.p, key.q, masks), 1024),
        "truncated": (encode_entry(512, key.p, key.q, masks)[:-1], 512),
        "p equals q": (encode_entry(512, key.p, key.p, masks), 512),
        "short modulus": (encode_entry(512, key.p, 3, masks), 512),
        "mask of zero": (encode_entry(512, key.p, key.q, [0] + masks[1:]), 512),
        "mask of n**2": (encode_entry(512, key.p, key.q, masks[:2] + [n2]), 512),
    }
    for what, (data, bits) in bad.items():
        with pytest.raises(FormatError, match="key pool entry"):
            decode_entry(data[:16], data[16:], bits)
            pytest.fail(what)


def helper_fds(pid):
    fd_dir = f"/proc/{pid}/fd"
    return {int(fd): os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_the_helper_holds_no_file_and_stops_on_close(model):
    _, ensemble, _ = model
    proxy = warm_proxy(ensemble, 1)
    helper, thread = proxy.pool._helper, proxy.pool._thread
    fds = helper_fds(helper.pid)
    # stdin and stdout are the pool's pipes; stderr is the proxy's own, inherited; nothing else is open
    assert set(fds) == {0, 1, 2} and fds[0].startswith("pipe:") and fds[1].startswith("pipe:"), fds
    assert os.readlink("/proc/self/fd/2") == fds[2]
    proxy.close()
    assert helper.poll() is not None and not thread.is_alive()
    assert proxy.pool.ready() == 0 and proxy.pool.take(BITS) is None


def test_a_proxy_dropped_without_close_stops_its_helper(model):
    import gc

    _, ensemble, _ = model
    proxy = warm_proxy(ensemble, 1)
    helper, thread = proxy.pool._helper, proxy.pool._thread
    del proxy
    gc.collect()
    thread.join(10)
    assert helper.poll() is not None and not thread.is_alive()


def test_the_interpreter_exits_with_a_running_pool_and_the_helper_ends(tmp_path):
    code = ("import sys, time; from ppxgb.proxy import Proxy\n"
            f"p = Proxy({BITS}, allow_weak_keys=True, key_pool=3); p.prepare()\n"
            "print(p.pool._helper.pid, flush=True); time.sleep(1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_the_service_lifespan_starts_and_stops_the_pool(model, tmp_path):
    from fastapi.testclient import TestClient

    from ppxgb.proxy.keystore import KeyStore
    from ppxgb.proxy.service import ScoringServerLink, create_app

    _, ensemble, _ = model
    proxy = Proxy(BITS, allow_weak_keys=True, key_pool=1)
    app = create_app(proxy, {"m": ensemble}, ScoringServerLink(lambda: None),
                     KeyStore(str(tmp_path / "ks"), os.urandom(32)), "a" * 32)
    with TestClient(app) as http:
        assert http.get("/v1/health").status_code == 200
        assert proxy.pool.wait_full(120)
        helper = proxy.pool._helper
    assert helper.poll() is not None and not proxy.pool._thread.is_alive()


def test_proxy_serve_refuses_a_negative_key_pool(capsys):
    from ppxgb.app.cli import main

    code = main(["proxy", "serve", "--model", "m=model.json", "--admin-token-file", "a.token", "--keystore", "ks",
                 "--master-key-file", "master.key", "--key-pool", "-1", "--insecure-http"])
    assert code == 2 and "--key-pool" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_copy_of_the_pool_hands_out_nothing(model):
    """A fork copies the ready entries; only the process that made the pool may use them."""
    _, ensemble, _ = model
    with warm_proxy(ensemble, 1) as proxy:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:                                            # the child: report what take() gives
            os.write(write, b"none" if proxy.pool.take(BITS) is None else b"entry")
            os._exit(0)
        os.close(write)
        got = os.read(read, 16)
        os.waitpid(pid, 0)
        assert got == b"none"
        assert proxy.pool.take(BITS) is not None                # the parent still has its entry


def test_an_entry_made_for_a_smaller_model_still_enrols_a_larger_one_exactly(model):
    """Its masks cover the first leaves; the encryptor makes the rest itself."""
    _, ensemble, X = model
    y = (X[:, 0] - X[:, 3] > 0).astype(int)
    larger = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 0},
                       xgb.DMatrix(X, label=y), 10)
    with warm_proxy(ensemble, 1) as proxy:
        entry = proxy.pool._ready[0]
        enrollment = proxy.enroll(larger, user_id="bob")
        assert enrollment.keys.paillier_n == entry.private_key.public_key.n
        assert len(entry.masks) < len(enrollment.model.leaf_ciphers)
    np.testing.assert_allclose(scores(enrollment, X), larger.predict(xgb.DMatrix(X)), rtol=1e-5, atol=1e-6)
