"""The crypto layer: pure maths on ints and arrays, no I/O, no protocol.

    fixedpoint  signed fixed point in Z_2^64 (FixedPointEncoder)
    sharing     additive secret sharing and the AES-CTR randomness it draws from
    aes_tables  the AES S-box and T-tables (one copy, for every compiled AES)
    prf         AES-128 in numba (AES-NI where the processor has it): the PRF of the
                permutation protocol, callable inside compiled kernels
    ope         Boldyreva order-preserving encryption, bit-compatible with pyope
    paillier    Paillier on gmpy2, compatible with phe

Everything else in ppxgb imports these; they import nothing of ppxgb but its errors.
"""
