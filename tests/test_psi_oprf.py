"""The OPRF PSI (training/vertical/psi_oprf.py, ppxgb/crypto/ot.py): its pieces against
references, and attack tests that play each side on what crossed the transport.

Attacks (run with -s to see the figures docs/vertical.md quotes):
(a) A curious feature holder tests guessed IDs against U, the label holder's OT
    extension matrix: for each guess and each of its three bins, the agreement of the
    bin's row with the guess's code word, raw and after removing what the feature holder
    knows of its own base-OT keys.  It must not tell the label holder's IDs from others;
    the mutant whose label holder uses one key for both messages of every base OT
    (so U is the code matrix in the clear) must be caught.
(b) A curious label holder tests guessed IDs (not its own) against the feature
    holder's PRF values, with the PRF values it can compute itself for any choice
    vector it can guess: constants, and every vector from a 16-bit seed, each checked
    against a common ID's value under a second hash function.  It must find none of the
    feature holder's IDs; the mutants whose feature holder's choice vector is constant
    or comes from 16 random bits must be caught.  And all 3 |P| values differ (one code
    for all three functions, the mutant, repeats a value whenever two of an ID's bins
    coincide, narrowing which ID it is).
(c) Two runs on the same IDs: no PRF value of the feature holder repeats across runs;
    the mutant that reuses every key of the first run must be caught.
(d) Base OT: the key the feature holder did not choose is none of those it can form
    from what it holds (its scalars, A, B_i and their sums).
"""

import hashlib
import threading

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from nacl import bindings as sodium

from ppxgb.crypto import ot, prf
from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import FormatError, ParameterError, ProtocolError
from ppxgb.training.vertical import psi, psi_oprf
from ppxgb.transport import InMemoryTransport

from helpers import psi_federation


def _run(id_lists, recorder=None):
    return psi_federation(id_lists, recorder, timeout=60, protocol="oprf")


# ---------------------------------------------------------------- pieces

def test_bit_transpose_equals_numpy():
    rand = Randomness(b"\x01" * 32)
    for n_rows in (1, 63, 64, 65, 1000):
        cols = rand.uint64((512, -(-n_rows // 64)))
        rows = ot.columns_to_rows(cols, n_rows)
        by_numpy = np.unpackbits(cols.view(np.uint8), axis=1, bitorder="little")[:, :n_rows].T
        np.testing.assert_array_equal(np.unpackbits(rows.view(np.uint8), axis=1, bitorder="little"), by_numpy)


def test_base_ot_gives_the_receiver_exactly_its_chosen_keys():
    rand = Randomness()
    a, big_a = ot.base_ot_sender_start(rand)
    choices = psi_oprf.choice_bits(rand)
    b_points, keys = ot.base_ot_receive(big_a, choices, rand)
    k0, k1 = ot.base_ot_sender_keys(a, big_a, b_points)
    np.testing.assert_array_equal(keys, np.where(choices[:, None], k1, k0))
    assert len({bytes(k) for k in np.concatenate([k0, k1])}) == 2 * ot.WIDTH     # all distinct


def test_base_ot_refuses_values_outside_the_group():
    rand = Randomness()
    a, big_a = ot.base_ot_sender_start(rand)
    bad = np.zeros((4, 32), np.uint8)
    bad[:, 0] = 1                                                  # the identity's encoding
    with pytest.raises(FormatError, match="prime-order group"):
        ot.base_ot_sender_keys(a, big_a, bad)
    with pytest.raises(FormatError, match="prime-order group"):
        ot.base_ot_receive(b"\xff" * 32, np.zeros(4, bool), rand)


def test_output_hash_is_sha256_of_the_row_and_its_number():
    rows = Randomness(b"\x02" * 32).uint64((40, 8))
    bins = np.array([0, 5, 39, 7])
    got = ot.receiver_outputs(rows, bins)
    assert [tuple(map(int, g)) for g in got] == [ot.hash_row_reference(rows[b], b) for b in bins]
    np.testing.assert_array_equal(ot.hash_rows(rows[bins], bins), got)
    d = hashlib.sha256(rows[5].astype("<u8").tobytes() + (5).to_bytes(8, "little")).digest()
    assert int(got[1, 0]).to_bytes(8, "little") + int(got[1, 1]).to_bytes(8, "little") == d[:16]


def test_code_words_are_aes_of_the_item():
    _, code_keys = psi_oprf.public_keys(b"k" * 16)
    items = Randomness(b"\x03" * 32).uint64((5, 2))
    codes = ot.code_rows(code_keys, items, np.array([0, 1, 2, -1, 1]))
    raw = prf.rows(prf.round_keys(b"k" * 16), 15).tobytes()
    for r, fn in enumerate([0, 1, 2, None, 1]):
        if fn is None:
            assert not codes[r].any()                               # an empty bin
            continue
        for c in range(4):
            key = raw[16 * (3 + 4 * fn + c):16 * (4 + 4 * fn + c)]
            enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
            assert enc.update(items[r].astype("<u8").tobytes()) == codes[r, 2 * c:2 * c + 2].astype("<u8").tobytes()


def test_cuckoo_puts_every_item_in_one_of_its_bins():
    items = Randomness(b"\x04" * 32).uint64((5000, 2))
    hash_keys, _ = psi_oprf.public_keys(b"s" * 16)
    m = psi_oprf.bin_count(len(items))
    bins = psi_oprf.bins_of(hash_keys, items, m)
    table, fn = psi_oprf.cuckoo(bins, m, Randomness())
    assert sorted(table[table >= 0]) == list(range(len(items)))
    placed = np.flatnonzero(table >= 0)
    assert np.all(bins[fn[placed], table[placed]] == placed)
    half = len(items) // 2                                                    # too few bins: it says so
    assert psi_oprf.cuckoo(psi_oprf.bins_of(hash_keys, items, half), half, Randomness()) is None
    with pytest.raises(ParameterError, match="bins"):
        psi_oprf.cuckoo(bins, half, Randomness())


def test_a_table_that_cannot_be_built_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(psi_oprf, "bin_count", lambda n: n // 2 + 1)
    monkeypatch.setattr(psi_oprf, "MAX_SEEDS", 3)
    with pytest.raises(ProtocolError, match="cuckoo hashing of 400 IDs failed under 3 seeds"):
        _run([list(range(400)), list(range(10))])


def test_auto_chooses_by_the_largest_party():
    """A small label holder facing a large feature holder gets the OPRF PSI too (the
    Diffie-Hellman PSI would take minutes at a million IDs)."""
    for sizes, expected in (([10, 10], "psi_a"), ([10, psi.OPRF_MIN], "psi_oprf_setup"),
                            ([psi.OPRF_MIN, 10], "psi_oprf_setup")):
        seen = []
        orders, _ = psi_federation([list(range(sizes[0])), list(range(5, 5 + sizes[1]))], seen.append, timeout=60)
        assert expected in {m.stage for m in seen}
        assert len(orders[0]) == min(sizes[0], sizes[1] + 5) - 5


def test_protocol_choice():
    assert psi.choose_protocol("auto", psi.OPRF_MIN - 1) == "ecdh"
    assert psi.choose_protocol("auto", psi.OPRF_MIN) == "oprf"
    assert psi.choose_protocol("ecdh", 10**6) == "ecdh"
    with pytest.raises(ParameterError, match="psi_protocol"):
        psi.choose_protocol("kkrt", 10)


def test_no_id_digest_or_item_crosses_the_wire():
    ids_a = [f"patient-{i}" for i in range(300)]
    ids_b = [f"patient-{i}" for i in range(150, 450)]
    seen = []
    _run([ids_a, ids_b], recorder=seen.append)
    digests = psi.hash_ids(ids_a + ids_b)
    forbidden = {bytes(d[o:o + 16]) for d in digests for o in range(0, 64, 16)}
    for msg in seen:
        for key, v in msg.payload.items():
            if isinstance(v, np.ndarray) and v.size:
                raw = v.tobytes()
                assert not any(raw[o:o + 16] in forbidden for o in range(0, len(raw) - 15, 8)), (msg.stage, key)
            assert not (isinstance(v, str) and "patient" in v)
    assert [m.stage for m in seen] == ["psi_size", "psi_hello", "psi_oprf_setup", "psi_oprf_ot", "psi_oprf_u", "psi_oprf_f",
                                       "psi_result"]


# ---------------------------------------------------------------- attack (a): the feature holder reads U

def _id_sets(seed, n_leader=3000, n_follower=3000, n_common=1500):
    rng = np.random.default_rng(seed)
    u = rng.permutation(20 * (n_leader + n_follower))
    common, only_l = u[:n_common], u[n_common:n_leader]
    only_f = u[n_leader:n_leader + n_follower - n_common]
    outside = u[n_leader + n_follower:n_leader + n_follower + 1500]         # held by neither
    return ([f"MRN{x}" for x in np.concatenate([common, only_l])],
            [f"MRN{x}" for x in np.concatenate([common, only_f])],
            [f"MRN{x}" for x in only_l], [f"MRN{x}" for x in only_f], [f"MRN{x}" for x in outside])


def _spy_receiver(monkeypatch):
    """The feature holder's own secrets (its choice bits and base-OT keys), as it knows them."""
    kept = {}
    real = ot.base_ot_receive

    def spy(big_a, choices, rand):
        kept["s"], (b_points, kept["keys"]) = choices, real(big_a, choices, rand)
        return b_points, kept["keys"]
    monkeypatch.setattr(ot, "base_ot_receive", spy)
    return kept


def feature_holder_guess(seen, kept, guesses):
    """For each guessed ID, the best agreement over its three bins between the bin's U
    row and the guess's code word, over all 512 bits: of U as sent, and of U after
    removing the feature holder's own key stream G(k_s).  1.0 would mean the ID is in
    that bin for sure; 0.5 is a coin."""
    setup = next(m for m in seen if m.stage == "psi_oprf_setup").payload
    u = next(m for m in seen if m.stage == "psi_oprf_u").payload["u"]
    m = setup["bins"]
    hash_keys, code_keys = psi_oprf.public_keys(setup["seed"].tobytes())
    items = psi_oprf.items_of(psi.hash_ids(guesses))
    bins = psi_oprf.bins_of(hash_keys, items, m)
    g_s = ot.columns_to_rows(ot.expand_columns(kept["keys"], m), m)
    s = kept["s"]
    best = np.zeros(len(guesses))
    for f in range(psi_oprf.N_FUNCTIONS):
        code = np.unpackbits(ot.code_rows(code_keys, items, np.full(len(items), f)).view(np.uint8), axis=1,
                             bitorder="little").astype(bool)
        raw = np.unpackbits(u[bins[f]].view(np.uint8), axis=1, bitorder="little").astype(bool)
        known = np.unpackbits((u[bins[f]] ^ g_s[bins[f]]).view(np.uint8), axis=1, bitorder="little").astype(bool)
        best = np.maximum(best, np.maximum((raw == code).mean(axis=1), (known == code).mean(axis=1)))
    return best


def _attack_u(monkeypatch):
    ids_l, ids_f, only_l, only_f, outside = _id_sets(5)
    kept = _spy_receiver(monkeypatch)
    seen = []
    _run([ids_l, ids_f], recorder=seen.append)
    members, others = feature_holder_guess(seen, kept, only_l), feature_holder_guess(seen, kept, outside)
    threshold = 0.75
    return float((members > threshold).mean()), float((others > threshold).mean()), members, others


def test_feature_holder_cannot_test_guesses_against_u(monkeypatch):
    """The label holder's IDs that the feature holder does not hold, against IDs held by
    neither: the best agreement of either kind stays a coin's (3 bins x 2 views of 512
    or ~256 bits: the maximum of six near-binomial draws, never near 0.75)."""
    hit_l, hit_o, members, others = _attack_u(monkeypatch)
    print(f"\n(a) U: label holder's IDs flagged {hit_l:.3f}, others {hit_o:.3f}; mean best agreement "
          f"{members.mean():.4f} vs {others.mean():.4f}")
    assert hit_l == 0 and hit_o == 0
    assert abs(members.mean() - others.mean()) < 0.01


def test_guess_attack_catches_one_key_for_both_base_ot_messages(monkeypatch):
    real = ot.base_ot_sender_keys
    monkeypatch.setattr(ot, "base_ot_sender_keys", lambda a, big_a, b: (real(a, big_a, b)[0],) * 2)
    hit_l, hit_o, _, _ = _attack_u(monkeypatch)
    print(f"\n(a) reused-key mutant: label holder's IDs flagged {hit_l:.3f}, others {hit_o:.3f}")
    assert hit_l == 1.0 and hit_o == 0


# ---------------------------------------------------------------- attack (b): the label holder reads the PRF values

def _spy_sender(monkeypatch):
    """The label holder's own secrets: its base-OT keys and its cuckoo table's code words."""
    kept = {}
    real_keys, real_init = ot.base_ot_sender_keys, psi_oprf.Leader.__init__

    def keys(a, big_a, b):
        kept["k0"], kept["k1"] = real_keys(a, big_a, b)
        return kept["k0"], kept["k1"]

    def init(self, *args):
        real_init(self, *args)
        kept["codes"] = self.codes
    monkeypatch.setattr(ot, "base_ot_sender_keys", keys)
    monkeypatch.setattr(psi_oprf.Leader, "__init__", init)
    return kept


def weak_choice(seed: int) -> np.ndarray:
    """A choice vector from a 16-bit seed (the weak generator of the mutant)."""
    digest = hashlib.sha512(b"weak-choice" + seed.to_bytes(2, "little")).digest()
    return np.unpackbits(np.frombuffer(digest, np.uint8), bitorder="little").astype(bool)


def candidate_choices() -> np.ndarray:
    """Every choice vector the curious label holder tries: all ones and 2^16 weak ones
    (all zeros would break the intersection itself)."""
    return np.stack([np.ones(ot.WIDTH, bool)] + [weak_choice(k) for k in range(2**16)])


def _bits_to_words(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


def label_holder_guess(seen, kept, ids_l, common_id, guesses):
    """The label holder's attack on the feature holder's PRF values.

    1. Find the choice vector s among its candidates: for a common ID x (the label
       holder learns the intersection), the feature holder sent F(b', (x, f')) at x's
       bin b' under another function f'; the label holder computes
       H(b', t_b' xor ((C(x_b') xor C(x, f')) and s)) for every candidate s and looks
       for it among the values sent.
    2. With s found, compute every guess's PRF values and look them up.
    Returns (whether s was found, for each guess whether it was found)."""
    setup = next(m for m in seen if m.stage == "psi_oprf_setup").payload
    f = next(m for m in seen if m.stage == "psi_oprf_f").payload["f"]
    m = setup["bins"]
    hash_keys, code_keys = psi_oprf.public_keys(setup["seed"].tobytes())
    t_rows = ot.columns_to_rows(ot.expand_columns(kept["k0"], m), m)
    codes = kept["codes"]
    sent = {(int(lo), int(hi)) for lo, hi in f.reshape(-1, 2)}

    def values(items, fn, s_words):
        bins = psi_oprf.bins_of(hash_keys, items, m)[fn]
        rows = t_rows[bins] ^ ((codes[bins] ^ ot.code_rows(code_keys, items, np.full(len(items), fn))) & s_words)
        return ot.hash_rows(rows, bins)

    x = psi_oprf.items_of(psi.hash_ids([common_id]))
    s_found = None
    cands = _bits_to_words(candidate_choices())
    for fn in range(psi_oprf.N_FUNCTIONS):
        bins = psi_oprf.bins_of(hash_keys, x, m)[fn]
        diff = codes[bins] ^ ot.code_rows(code_keys, x, np.array([fn]))
        rows = t_rows[bins] ^ (diff & cands)
        informative = (diff & cands).any(axis=1)      # else the row is t_b': a common ID in b' would match
        hits = [k for k, v in enumerate(ot.hash_rows(rows, np.repeat(bins, len(cands))))
                if informative[k] and (int(v[0]), int(v[1])) in sent]
        if hits:
            s_found = cands[hits[0]]
            break
    if s_found is None:
        return False, np.zeros(len(guesses), bool)
    items = psi_oprf.items_of(psi.hash_ids(guesses))
    found = np.zeros(len(guesses), bool)
    for fn in range(psi_oprf.N_FUNCTIONS):
        found |= np.array([(int(lo), int(hi)) in sent for lo, hi in values(items, fn, s_found)])
    return True, found


def _attack_f(monkeypatch):
    ids_l, ids_f, _, only_f, outside = _id_sets(6)
    kept = _spy_sender(monkeypatch)
    seen = []
    _run([ids_l, ids_f], recorder=seen.append)
    common = sorted(set(ids_l) & set(ids_f))[0]
    got_s, found_f = label_holder_guess(seen, kept, ids_l, common, only_f)
    _, found_o = label_holder_guess(seen, kept, ids_l, common, outside)
    return got_s, float(found_f.mean()), float(found_o.mean())


def test_label_holder_finds_none_of_the_feature_holders_other_ids(monkeypatch):
    got_s, found_f, found_o = _attack_f(monkeypatch)
    print(f"\n(b) PRF values: choice vector found {got_s}; feature holder's own IDs found {found_f:.3f}, "
          f"others {found_o:.3f}")
    assert not got_s and found_f == 0 and found_o == 0


@pytest.mark.parametrize("weak", ["all ones", "16-bit seed"])
def test_label_holder_attack_catches_a_guessable_choice_vector(monkeypatch, weak):
    if weak == "all ones":
        monkeypatch.setattr(psi_oprf, "choice_bits", lambda rand: np.ones(ot.WIDTH, bool))
    else:
        monkeypatch.setattr(psi_oprf, "choice_bits", lambda rand: weak_choice(int(rand.words(1)[0] % 2**16)))
    got_s, found_f, found_o = _attack_f(monkeypatch)
    print(f"\n(b) {weak} mutant: choice vector found {got_s}; feature holder's own IDs found {found_f:.3f}, "
          f"others {found_o:.3f}")
    assert got_s and found_f == 1.0 and found_o == 0


def _f_values():
    rng = np.random.default_rng(8)
    ids = [f"MRN{x}" for x in rng.permutation(100_000)[:21_000]]
    seen = []
    _run([ids[:1000], ids[500:]], recorder=seen.append)
    f = next(m for m in seen if m.stage == "psi_oprf_f").payload["f"]
    return len({(int(lo), int(hi)) for lo, hi in f.reshape(-1, 2)}), f.shape[0] * f.shape[1]


def test_the_three_values_of_an_id_all_differ():
    distinct, total = _f_values()
    assert distinct == total


def test_distinct_values_catch_one_code_for_all_functions(monkeypatch):
    real = psi_oprf.public_keys

    def one_code(seed):
        hash_keys, code_keys = real(seed)
        return hash_keys, np.concatenate([code_keys[:4]] * psi_oprf.N_FUNCTIONS)
    monkeypatch.setattr(psi_oprf, "public_keys", one_code)
    distinct, total = _f_values()
    print(f"\n(b) one-code mutant: {total - distinct} repeated values among {total}")
    assert total - distinct > 5


# ---------------------------------------------------------------- attack (c): linkage across runs

def _repeats(fixed_key=None):
    ids_l, ids_f, _, _, _ = _id_sets(7, 1500, 1500, 500)
    values = []
    for _ in range(2):
        seen = []
        if fixed_key is None:
            _run([ids_l, ids_f], recorder=seen.append)
        else:
            transport = InMemoryTransport(recorder=seen.append)
            th = threading.Thread(target=psi.run_psi_follower, args=(transport, "party-1", "party-0", ids_f, 60),
                                  kwargs={"rand": Randomness(fixed_key)}, daemon=True)
            th.start()
            psi.run_psi_leader(transport, "party-0", ["party-1"], ids_l, 60, rand=Randomness(fixed_key),
                               protocol="oprf")
            th.join(60)
        f = next(m for m in seen if m.stage == "psi_oprf_f").payload["f"]
        values.append({(int(lo), int(hi)) for lo, hi in f.reshape(-1, 2)})
    return len(values[0] & values[1]) / len(values[0])


def test_prf_values_do_not_repeat_across_runs():
    share = _repeats()
    print(f"\n(c) share of the feature holder's PRF values seen again in a second run: {share:.4f}")
    assert share == 0


def test_linkage_catches_reused_keys():
    assert _repeats(fixed_key=b"\x07" * 32) == 1.0


# ---------------------------------------------------------------- (d) the base OT's other key

def _unchosen_keys_formable(monkeypatch):
    """How many of the 512 keys the receiver did not choose it can form itself: H of
    (i, A, B_i, X) for X in [b_i]A, [b_i]A +- A, [b_i]G, A, B_i and B_i - A."""
    drawn = []
    real = ot.random_scalar

    def spy(rand):
        drawn.append(real(rand))
        return drawn[-1]
    monkeypatch.setattr(ot, "random_scalar", spy)
    rand = Randomness()
    a, big_a = ot.base_ot_sender_start(rand)
    choices = psi_oprf.choice_bits(rand)
    b_points, _ = ot.base_ot_receive(big_a, choices, rand)
    k0, k1 = ot.base_ot_sender_keys(a, big_a, b_points)
    formable = 0
    for i, (b, big_b) in enumerate(zip(drawn[1:], b_points)):
        big_b = big_b.tobytes()
        ba = sodium.crypto_scalarmult_ed25519_noclamp(b, big_a)
        points = [ba, sodium.crypto_core_ed25519_add(ba, big_a), sodium.crypto_core_ed25519_sub(ba, big_a),
                  sodium.crypto_scalarmult_ed25519_base_noclamp(b), big_a, big_b,
                  sodium.crypto_core_ed25519_sub(big_b, big_a)]
        other = (k0 if choices[i] else k1)[i].tobytes()
        formable += other in {ot._key(i, big_a, big_b, x) for x in points}
    return formable


def test_the_unchosen_base_ot_key_is_not_formable(monkeypatch):
    assert _unchosen_keys_formable(monkeypatch) == 0


def test_formable_keys_catch_a_key_of_public_values(monkeypatch):
    monkeypatch.setattr(ot, "_key", lambda i, a_point, b_point, shared:
                        hashlib.sha256(i.to_bytes(4, "little") + a_point + b_point).digest()[:16])
    assert _unchosen_keys_formable(monkeypatch) == ot.WIDTH
