"""Regenerate the known-answer vectors (run by hand; the tests only read the JSON).

OPE vectors come from pyope itself, the reference implementation; Paillier vectors pin
ppxgb's DJN encryption under a tiny (512-bit) key and a deterministic coin stream.
"""

import hashlib
import json
import os
import random

import pyope.ope as po

HERE = os.path.dirname(os.path.abspath(__file__))


def ope_vectors():
    rnd = random.Random(20261123)
    cases = []
    for in_range, out_range, key in [
        ((0, 2**15 - 1), (0, 2**31 - 1), b"0123456789abcdef0123456789abcdef"),
        ((0, 100), (0, 1000), b"short key"),
        ((5, 20), (3, 40), b"k"),
        ((0, 2**32 + 1), (0, 2**62 - 1), bytes(range(32))),
        ((0, 2**32 + 1), (0, 2**62 - 1), hashlib.sha256(b"ppxgb").digest()),
    ]:
        cipher = po.OPE(key, po.ValueRange(*in_range), po.ValueRange(*out_range))
        pts = sorted({rnd.randint(*in_range) for _ in range(12)} | set(in_range))
        cases.append({"key_hex": key.hex(), "in_range": list(in_range), "out_range": list(out_range),
                      "plaintexts": pts, "ciphertexts": [cipher.encrypt(p) for p in pts]})
    return {"source": "pyope 0.2.2 OPE(key, ValueRange(*in_range), ValueRange(*out_range))",
            "cases": cases}


def deterministic_randbits(seed: bytes):
    counter = [0]

    def randbits(k: int) -> int:
        out = b""
        while len(out) * 8 < k:
            out += hashlib.sha256(seed + counter[0].to_bytes(8, "big")).digest()
            counter[0] += 1
        return int.from_bytes(out, "big") >> (len(out) * 8 - k)
    return randbits


def paillier_vectors():
    from ppxgb.crypto.paillier import FastEncryptor, encode_fixed, private_key_from_factors
    import gmpy2
    p = int(gmpy2.next_prime(int(hashlib.sha256(b"ppxgb p").hexdigest() * 2, 16) >> 256))
    q = int(gmpy2.next_prime(int(hashlib.sha256(b"ppxgb q").hexdigest() * 2, 16) >> 256))
    key = private_key_from_factors(p * q, p, q)
    enc = FastEncryptor(key, randbits=deterministic_randbits(b"ppxgb-kat"))
    values = [0.5, -1.25, 3.0e-30, 0.0, -0.0, 1.0e30]
    plain = encode_fixed(values)
    return {"p": str(p), "q": str(q), "seed": "ppxgb-kat", "values": values,
            "encoded": [str(m) for m in plain],
            "ciphertexts": [str(c) for c in enc.encrypt_raw(plain)]}


if __name__ == "__main__":
    with open(os.path.join(HERE, "ope_pyope.json"), "w") as fh:
        json.dump(ope_vectors(), fh, indent=1)
    with open(os.path.join(HERE, "paillier_djn.json"), "w") as fh:
        json.dump(paillier_vectors(), fh, indent=1)
