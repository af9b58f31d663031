"""Per-user key issuing and model encryption (the trusted proxy's core work).

For each user the proxy draws fresh keys (OPE master key, PRF key, Paillier key pair)
and encrypts the plaintext model under them:

* each split on feature f with default direction d becomes a comparison against
  column (f, slot d) of the query: slot LOW encodes a missing value below every float32
  (so it goes left), slot HIGH above every float32 (so it goes right);
* its float32 threshold t becomes OPE(key[f, slot], ordinal(t) + 1) (scheme "ope";
  thresholds de-duplicated per (feature, slot) and encrypted in one sorted walk), or
  an ORE right ciphertext of ordinal(t) + 1 with a fresh nonce per node (scheme "ore");
* each leaf value and each per-group intercept becomes a Paillier ciphertext of
  value * 2**152 (one fixed exponent, so no magnitude leaks through exponents);
* a categorical split becomes the sorted set of category tokens that go right
  (ppxgb.cattokens: keyed per user, feature and slot; the missing token included when
  missing goes right), padded with random dummies to one size per feature.
"""

from __future__ import annotations

import re
import secrets
import weakref
from dataclasses import dataclass

import numpy as np

from ppxgb import cattokens
from ppxgb.errors import ParameterError
from ppxgb.formats import (SCHEMES, SLOT_HIGH, SLOT_LOW, EncryptedModel, UserKeys, column_pseudonym,
                           ope_feature_key, ore_feature_key)
from ppxgb.model import Ensemble
from ppxgb.objectives import get_objective
from ppxgb.splitrule import missing_goes_below
from ppxgb.crypto import ore
from ppxgb.crypto.ope import OPE, float32_plaintext
from ppxgb.crypto.paillier import FastEncryptor, generate_keypair

from .keypool import KeyPool, PooledKey

_USER_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


@dataclass(frozen=True)
class Enrollment:
    """The result of enrolling one user: `.keys` go to the client, `.model` to the server."""

    keys: UserKeys
    model: EncryptedModel


class Proxy:
    """The trusted proxy: issues per-user keys and per-user encrypted models.

    key_bits is the Paillier modulus size (2048 by default, 3072 selectable; 1024 only
    for tests, and only when allow_weak_keys=True is passed explicitly).  scheme is
    the threshold comparison: "ope" (the default; the server can estimate values, see
    docs/inference.md) or "ore" (Lewi-Wu: stored thresholds are semantically secure).

    key_pool=N keeps up to N users' Paillier key pairs, with their encryption
    randomness, ready in memory, made by a low-priority helper process (proxy/keypool.py);
    an enrolment takes one when it is ready and generates inline otherwise.  0 (the
    default here; `ppxgb proxy serve` uses 4) makes everything inline.  The helper
    starts with the first `prepare` or `enroll`; `close` (or `with Proxy(...)`) stops it.
    """

    def __init__(self, key_bits: int = 2048, allow_weak_keys: bool = False, scheme: str = "ope",
                 key_pool: int = 0):
        allowed = (2048, 3072) + ((512, 1024) if allow_weak_keys else ())
        if key_bits not in allowed:
            raise ParameterError.bad("key_bits", f"one of {allowed}", key_bits)
        if scheme not in SCHEMES:
            raise ParameterError.bad("scheme", f"one of {SCHEMES}", scheme)
        self._key_bits = key_bits
        self.scheme = scheme
        self.pool = KeyPool(key_pool, key_bits)
        # a Proxy dropped without close(): its pool's helper stops with it, not at exit
        weakref.finalize(self, self.pool.close)

    @property
    def key_bits(self) -> int:
        """The Paillier modulus size (fixed: the key pool makes keys of this size)."""
        return self._key_bits

    def prepare(self, *models) -> None:
        """Start the key pool, its entries sized for the largest of `models` (Ensembles)."""
        for ensemble in models:
            self.pool.expect(_n_ciphertexts(ensemble))
        self.pool.start()

    def close(self) -> None:
        """Stop the key pool's helper; the entries not taken are dropped."""
        self.pool.close()

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def enroll(self, model, user_id: str, model_id: str | None = None) -> Enrollment:
        """Fresh keys for `user_id` and `model` encrypted under them."""
        if not isinstance(user_id, str) or not _USER_ID.match(user_id):
            raise ParameterError.bad("user_id", "1-128 characters of [A-Za-z0-9_.@-]", user_id)
        if model_id is not None and not _USER_ID.match(str(model_id)):
            raise ParameterError.bad("model_id", "1-128 characters of [A-Za-z0-9_.@-]", model_id)
        model = _best_iterations(model)
        _check_objective(model)
        ensemble = Ensemble.load(model)
        if not ensemble.trees:
            raise ParameterError.bad("model", "a model with at least one tree", "no trees")
        self.prepare(ensemble)
        pooled = self.pool.take(self.key_bits)
        if pooled is None:
            pooled = PooledKey(generate_keypair(self.key_bits)[1], ())
        return encrypt_for_user(ensemble, user_id, model_id or "m-" + secrets.token_hex(8),
                                ope_key=secrets.token_bytes(32), prf_key=secrets.token_bytes(32),
                                private_key=pooled.private_key, scheme=self.scheme,
                                encryptor=pooled.encryptor())


def _n_ciphertexts(ensemble: Ensemble) -> int:
    """Paillier encryptions of one enrolment: a leaf value per leaf, an intercept per group."""
    return sum(int(np.count_nonzero(t.left < 0)) for t in ensemble.trees) + ensemble.n_groups


def _best_iterations(model):
    """An XGBClassifier/XGBRegressor trained with early stopping predicts with its first
    best_iteration + 1 rounds (iteration_range); enrol exactly those."""
    if not hasattr(model, "get_booster"):
        return model
    booster = model.get_booster()
    try:
        best = model.best_iteration
    except AttributeError:
        return booster
    if best is None or best + 1 >= booster.num_boosted_rounds():
        return booster
    return booster[: best + 1]


def _check_objective(model) -> None:
    """A valid model whose objective ppxgb cannot score: name it and the supported ones
    (ParameterError), rather than calling the model file invalid."""
    import json

    import xgboost

    if isinstance(model, xgboost.Booster):
        get_objective(json.loads(model.save_config())["learner"]["objective"]["name"])


def encrypt_for_user(ensemble: Ensemble, user_id: str, model_id: str, *, ope_key: bytes,
                     prf_key: bytes, private_key, scheme: str = "ope",
                     encryptor: FastEncryptor | None = None) -> Enrollment:
    """Deterministic given the keys (Paillier randomness aside): the proxy's core step.
    `encryptor` (for private_key, e.g. with pooled randomness) encrypts the leaves."""
    trees = ensemble.trees
    sizes = np.array([t.n_nodes for t in trees], dtype=np.int64)
    roots = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    offset = np.repeat(roots[:-1], sizes)
    left = np.concatenate([t.left for t in trees]).astype(np.int64)
    right = np.concatenate([t.right for t in trees]).astype(np.int64)
    inner = left >= 0
    feature = np.concatenate([t.feature for t in trees]).astype(np.int64)
    thr = np.concatenate([t.threshold for t in trees]).astype(np.float32)
    below = [missing_goes_below(dl) for t in trees for dl in t.default_left]
    slot = np.where(np.array(below, dtype=bool), SLOT_LOW, SLOT_HIGH)
    is_cat = np.concatenate([t.is_categorical for t in trees])
    typed_cat = np.zeros(ensemble.num_feature, dtype=bool)
    typed_cat[list(ensemble.categorical_features)] = True
    if np.any(typed_cat[feature[inner & ~is_cat]]):
        raise ParameterError.bad("model", "numeric splits on numeric features only",
                                 "a threshold split on a feature typed 'c'")

    # Which (feature, slot) columns the model reads, and their OPE thresholds.
    slots = np.zeros(ensemble.num_feature, dtype=np.int64)
    np.bitwise_or.at(slots, feature[inner], 1 << slot[inner])
    numeric = inner & ~is_cat
    used = sorted({(int(f), int(s)) for f, s in zip(feature[numeric], slot[numeric])},
                  key=lambda fs: column_pseudonym(prf_key, *fs))
    col_index = {fs: j for j, fs in enumerate(used)}
    column = np.full(left.shape, -1, dtype=np.int32)
    threshold = np.zeros(left.shape, dtype=np.int64)
    ore_right = np.zeros((left.shape[0], ore.right_width()), dtype=np.uint8) if scheme == "ore" else None
    plain = np.zeros(left.shape, dtype=np.int64)
    plain[numeric] = float32_plaintext(thr[numeric])
    for (f, s), j in col_index.items():
        nodes = np.flatnonzero(numeric & (feature == f) & (slot == s))
        column[nodes] = j
        if scheme == "ore":
            ore_right[nodes] = ore.ORE(ore_feature_key(ope_key, f, s)).encrypt_right(plain[nodes])
        else:
            threshold[nodes] = OPE(ope_feature_key(ope_key, f, s)).encrypt(plain[nodes])

    cat_used, cat_ptr, cat_tokens, cat_nonces = _category_sets(ensemble, prf_key, feature, slot, is_cat, column)

    leaf = np.full(left.shape, -1, dtype=np.int32)
    leaf_nodes = np.flatnonzero(~inner)
    leaf[leaf_nodes] = np.arange(leaf_nodes.size, dtype=np.int32)
    encryptor = encryptor or FastEncryptor(private_key)
    leaf_ciphers = encryptor.encrypt_fixed(thr[leaf_nodes])
    base_ciphers = encryptor.encrypt_fixed(ensemble.base_margin())

    n = private_key.public_key.n
    model = EncryptedModel(
        model_id=model_id, user_id=user_id, paillier_n=n, n_groups=ensemble.n_groups,
        columns=tuple(column_pseudonym(prf_key, f, s) for f, s in used),
        roots=roots, tree_group=np.asarray(ensemble.tree_info, dtype=np.int32),
        left=np.where(inner, left + offset, -1).astype(np.int32),
        right=np.where(inner, right + offset, -1).astype(np.int32),
        column=column, threshold=threshold, leaf=leaf,
        leaf_ciphers=tuple(leaf_ciphers), base_ciphers=tuple(base_ciphers),
        scheme=scheme, ore_right=ore_right,
        cat_columns=tuple(column_pseudonym(prf_key, f, s) for f, s in cat_used),
        cat_ptr=cat_ptr, cat_tokens=cat_tokens, cat_nonces=cat_nonces,
    )
    model.check()
    keys = UserKeys(
        user_id=user_id, model_id=model_id, n_features=ensemble.num_feature, ope_key=ope_key,
        prf_key=prf_key, paillier_n=n, paillier_p=private_key.p, paillier_q=private_key.q,
        slots=tuple(int(s) for s in slots), n_groups=ensemble.n_groups, transform=ensemble.transform,
        feature_names=ensemble.feature_names, scheme=scheme,
        feature_types=tuple("c" if c else "q" for c in typed_cat) if typed_cat.any() else None,
        categories=(ensemble.categories or (None,) * ensemble.num_feature) if typed_cat.any() else None,
    )
    return Enrollment(keys=keys, model=model)


def _category_sets(ensemble: Ensemble, prf_key: bytes, feature, slot, is_cat, column):
    """The (feature, slot) token columns of the categorical nodes (in pseudonym order),
    and every node's padded token set as offsets and sorted tokens; sets `column` of
    the categorical nodes; and each node's blinding nonce.  Offsets, tokens and nonces
    are None for a model without categorical nodes."""
    if not is_cat.any():
        return [], None, None, None
    sets = [t.categories[i] if t.categories is not None else np.zeros(0, np.int32)
            for t in ensemble.trees for i in range(t.n_nodes)]
    used = sorted({(int(f), int(s)) for f, s in zip(feature[is_cat], slot[is_cat])},
                  key=lambda fs: column_pseudonym(prf_key, *fs))
    size = {}
    for f in {f for f, _ in used}:
        known = ensemble.categories[f] if ensemble.categories is not None else None
        largest = max(int(sets[i].max()) for i in np.flatnonzero(is_cat & (feature == f)))
        size[f] = cattokens.padded_size(max(len(known or ()), largest + 1))
    blocks = [np.zeros((0, 2), np.uint64)] * len(sets)
    nonces = np.zeros((len(sets), 2), np.uint64)
    nonces[is_cat] = cattokens.random_words(int(is_cat.sum()))
    for j, (f, s) in enumerate(used):
        key = cattokens.category_key(prf_key, f, s)
        for i in np.flatnonzero(is_cat & (feature == f) & (slot == s)):
            column[i] = j
            blocks[i] = cattokens.node_set(key, sets[i], s == SLOT_HIGH, size[f], nonces[i])
    ptr = np.concatenate([[0], np.cumsum([b.shape[0] for b in blocks])]).astype(np.int64)
    return used, ptr, np.concatenate(blocks), nonces
