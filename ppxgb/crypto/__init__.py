"""The crypto layer: pure maths on ints and arrays, no I/O, no protocol.

    fixedpoint  signed fixed point in Z_2^64 (FixedPointEncoder)
    sharing     additive secret sharing and the AES-CTR randomness it draws from
    aes         the one compiled AES (128/192/256-bit keys; AES-NI where the processor
                has it, T-tables otherwise), callable inside numba kernels
    sha256      SHA-256 and HMAC-SHA256 compiled in numba, for the OPE sampler
    prf         the PRF of the permutation protocol: AES-128 of a counter block, on
                arrays or inside compiled kernels
    ope         Boldyreva order-preserving encryption, bit-compatible with pyope
    paillier    Paillier on gmpy2, compatible with phe

Everything else in ppxgb imports these; they import nothing of ppxgb but its errors.

aes and sha256 hand-write what `cryptography` and hashlib provide because their
callers run inside compiled loops, where leaving for Python costs more than the
primitive (numbers in their docstrings); tests/test_crypto_primitives.py holds them to
the libraries and to FIPS-197 / RFC 4231 vectors.
"""
