"""BASELINE ONLY -- a plain implementation of the published PPXGBoost design, kept for
side-by-side benchmarking (benchmarks/bench_inference.py).  ppxgb never imports it.

PPXGBoost (Meng & Feigenbaum, "Privacy-preserving XGBoost inference", 2020): the proxy
OPE-encrypts every split threshold and Paillier-encrypts every leaf; the client
OPE-encrypts each query value; the server walks each tree per query and adds the
reached leaves homomorphically; the client decrypts.  This file does exactly that
with the reference libraries and no optimisation:

* pyope.ope.OPE, one call per threshold and per query value (no de-duplication),
* phe's PaillierPublicKey.encrypt per leaf (its own per-number exponent, full-size
  random r**n), phe's EncryptedNumber addition, phe's PaillierPrivateKey.decrypt,
* a per-query, per-tree Python walk on the server.

For a like-for-like comparison it uses ppxgb's exact float32 order map and OPE ranges
and derives its per-feature OPE keys the same way, so its ciphertexts are the very
same integers that ppxgb's fast OPE produces (the benchmark checks that).  Missing
values are not handled by the published design; this baseline sends a missing flag
in the clear, which ppxgb does not.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

import numpy as np
from phe import paillier
from pyope.ope import OPE, ValueRange

from ppxgb.model import Ensemble
from ppxgb.crypto.ope import IN_RANGE, OUT_RANGE, float32_plaintext

SLOT = 1   # every split of a dense model defaults right: ppxgb's "high" slot


def _ope_key(master: bytes, feature: int) -> bytes:
    return hmac.digest(master, f"ppxgb.crypto.ope|{feature}|{SLOT}".encode(), hashlib.sha256)


class BaselineProxy:
    def __init__(self, key_bits: int = 2048):
        self.key_bits = key_bits

    def enroll(self, booster, ope_master: bytes | None = None):
        ens = Ensemble.load(booster)
        public, private = paillier.generate_paillier_keypair(n_length=self.key_bits)
        master = ope_master or secrets.token_bytes(32)
        ciphers = {f: OPE(_ope_key(master, f), ValueRange(*IN_RANGE), ValueRange(*OUT_RANGE))
                   for f in range(ens.num_feature)}
        trees = []
        for tree in ens.trees:
            nodes = []
            for i in range(tree.n_nodes):
                if tree.left[i] < 0:
                    nodes.append({"leaf": public.encrypt(float(tree.threshold[i]))})
                else:
                    f = int(tree.feature[i])
                    t = int(float32_plaintext(tree.threshold[i:i + 1])[0])
                    nodes.append({"feature": f, "threshold": ciphers[f].encrypt(t),
                                  "left": int(tree.left[i]), "right": int(tree.right[i]),
                                  "default_left": bool(tree.default_left[i])})
            trees.append(nodes)
        base = public.encrypt(float(ens.base_margin()[0]))
        keys = {"ope_master": master, "public": public, "private": private,
                "n_features": ens.num_feature}
        return keys, {"trees": trees, "base": base}


class BaselineClient:
    def __init__(self, keys):
        self.keys = keys
        self.ciphers = {f: OPE(_ope_key(keys["ope_master"], f), ValueRange(*IN_RANGE), ValueRange(*OUT_RANGE))
                        for f in range(keys["n_features"])}

    def encrypt(self, X):
        X = np.asarray(X, dtype=np.float32)
        rows = []
        for row in X:
            enc = []
            for f, v in enumerate(row):
                if np.isnan(v):
                    enc.append(None)                 # the published design has no hidden missing
                else:
                    enc.append(self.ciphers[f].encrypt(int(float32_plaintext(row[f:f + 1])[0])))
            rows.append(enc)
        return rows

    def decrypt(self, scores):
        margins = np.array([self.keys["private"].decrypt(s) for s in scores], dtype=np.float32)
        return (1.0 / (1.0 + np.exp(-margins.astype(np.float64)))).astype(np.float32)


class BaselineServer:
    def __init__(self, model):
        self.model = model

    def predict(self, queries):
        out = []
        for q in queries:
            total = self.model["base"]
            for nodes in self.model["trees"]:
                i = 0
                while "leaf" not in nodes[i]:
                    node = nodes[i]
                    x = q[node["feature"]]
                    go_left = node["default_left"] if x is None else x < node["threshold"]
                    i = node["left"] if go_left else node["right"]
                total = total + nodes[i]["leaf"]
            out.append(total)
        return out


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))
