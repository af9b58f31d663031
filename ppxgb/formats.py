"""Versioned wire formats for encrypted inference: user keys, encrypted models,
encrypted queries and encrypted scores.

Every object is a small frozen dataclass with `to_bytes()` / `from_bytes()`.  The
encoding is a msgpack map with a `format` tag (e.g. "ppxgb.keys"), a version `v`, and
typed fields: ints, strings, raw bytes, numeric arrays as little-endian bytes with an
explicit shape, and Paillier ciphertexts as fixed-width big-endian bytes.  Nothing is
pickled.  Any malformed, truncated, mistyped or wrong-version input raises
`FormatError` with one message naming the field; the schemas are written out in
docs/inference.md.

Names the server sees are pseudonyms: column `j` of a query is the PRF image of
(feature index, slot) under the user's PRF key, and OPE keys are derived per
(feature, slot) from the user's OPE master key, so order cannot be compared across
features or users.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .errors import FormatError
from .crypto import ore as _ore
from .objectives import OBJECTIVES
from .crypto.ope import IN_RANGE, OUT_RANGE

VERSION = 1
#: Documents with categorical features (category tokens, feature kinds) are version 2,
#: so readers that predate them refuse them by version; every reader here takes both.
CATEGORICAL_VERSION = 2
_VERSIONS = (VERSION, CATEGORICAL_VERSION)
#: Slot 0 ("low") encodes a missing value below every float32, slot 1 ("high") above.
SLOT_LOW, SLOT_HIGH = 0, 1
TRANSFORMS = tuple(sorted({o.transform for o in OBJECTIVES.values()}))   # every registered objective's
#: Comparison schemes: "ope" (order-preserving, int64 ciphertexts; the default, and what
#: files without a "scheme" field hold) and "ore" (Lewi-Wu left/right ciphertexts,
#: ppxgb.crypto.ore, with ORE_BLOCK_BITS-bit blocks).
SCHEMES = ("ope", "ore")
ORE_BLOCK_BITS = _ore.BLOCK_BITS
_ID = re.compile(r"[A-Za-z0-9_.@-]{1,128}")      # used with fullmatch: no trailing newline
MAX_ROWS = 100_000
#: Decoding bounds: the longest list in any format (query columns: 2 per feature, at
#: most 100_000 features), the most keys in a map, and the most list/map items in one
#: document.  msgpack objects cost 8-60 bytes of memory per byte of input, so without
#: them 64 MiB of nested empty lists would take gigabytes.
MAX_LIST = 200_000
MAX_MAP = 64
MAX_ITEMS = 1_000_000


# ---------------------------------------------------------------- derivations
def column_pseudonym(prf_key: bytes, feature: int, slot: int) -> str:
    """PRF pseudonym of one (feature, slot) query column: 128 bits, hex."""
    return hmac.digest(prf_key, f"ppxgb.column|{feature}|{slot}".encode(), hashlib.sha256)[:16].hex()


def ope_feature_key(ope_key: bytes, feature: int, slot: int) -> bytes:
    """The OPE key of one (feature, slot): independent keys, so no cross-feature order."""
    return hmac.digest(ope_key, f"ppxgb.crypto.ope|{feature}|{slot}".encode(), hashlib.sha256)


def ore_feature_key(order_key: bytes, feature: int, slot: int) -> bytes:
    """The ORE key (AES-128) of one (feature, slot), from the same master key field."""
    return hmac.digest(order_key, f"ppxgb.crypto.ore|{feature}|{slot}".encode(), hashlib.sha256)[:16]


def _scheme_in(doc, kind) -> str:
    """The "scheme" field; absent in files written before ORE, which are OPE."""
    scheme = doc.get("scheme", "ope")
    if scheme not in SCHEMES:
        raise FormatError(f"{kind}: field 'scheme' must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "ore" and doc.get("ore_block_bits") != ORE_BLOCK_BITS:
        raise FormatError(f"{kind}: unsupported ORE block size {doc.get('ore_block_bits')!r}, "
                          f"expected {ORE_BLOCK_BITS}")
    return scheme


def _scheme_out(scheme: str) -> dict:
    """OPE documents stay as before ORE (no field), so older readers still read them."""
    return {"scheme": scheme, "ore_block_bits": ORE_BLOCK_BITS} if scheme == "ore" else {}


# ---------------------------------------------------------------- envelope helpers
def _pack(kind: str, fields: dict[str, Any], version: int = VERSION) -> bytes:
    return msgpack.packb({"format": kind, "v": version, **fields}, use_bin_type=True)


class _TooManyItems(Exception):
    pass


def _bounded_unpackb(data: bytes):
    """msgpack.unpackb with every allocation bounded: string and binary lengths by the
    input size, lists by MAX_LIST, maps by MAX_MAP, no ext types, and the items of all
    lists and maps together by MAX_ITEMS (counted by hooks as each container is built)."""
    count = [0]

    def counted(container):
        count[0] += len(container) + 1
        if count[0] > MAX_ITEMS:
            raise _TooManyItems
        return container

    n = len(data)
    return msgpack.unpackb(data, raw=False, strict_map_key=True, list_hook=counted, object_hook=counted,
                           max_bin_len=n, max_str_len=n,
                           max_array_len=min(n, MAX_LIST), max_map_len=min(n, MAX_MAP), max_ext_len=0)


def _unpack(data, kind: str, versions: tuple[int, ...] = (VERSION,)) -> dict[str, Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"{kind}: expected bytes, got {type(data).__name__}")
    try:
        doc = _bounded_unpackb(bytes(data))
    except _TooManyItems:
        raise FormatError(f"{kind}: more than {MAX_ITEMS} list or map items") from None
    except Exception:  # msgpack raises many types for bad input
        raise FormatError(f"{kind}: not a valid msgpack document "
                          f"(or a list over {MAX_LIST} items, a map over {MAX_MAP} keys)") from None
    if not isinstance(doc, dict) or doc.get("format") != kind:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise FormatError(f"{kind}: wrong format tag {got!r}")
    if doc.get("v") not in versions:
        raise FormatError(f"{kind}: unsupported version {doc.get('v')!r}, expected one of {versions}")
    return doc


def _categorical_in(doc, kind, names) -> bool:
    """Whether a document carries categorical fields; they need version 2, and a
    version-2 document must carry them."""
    present = any(n in doc for n in names)
    if present != (doc["v"] == CATEGORICAL_VERSION):
        raise FormatError(f"{kind}: categorical fields {names} come with version {CATEGORICAL_VERSION} "
                          f"and only with it (got version {doc['v']})")
    return present


def _get(doc: dict, kind: str, name: str, typ, check=None):
    value = doc.get(name)
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok or (check is not None and not check(value)):
        raise FormatError(f"{kind}: field {name!r} is missing or invalid")
    return value


def _ident(doc, kind, name) -> str:
    return _get(doc, kind, name, str, _ID.fullmatch)


def _array_out(a: np.ndarray, dtype) -> dict:
    a = np.ascontiguousarray(a, dtype=dtype)
    return {"shape": list(a.shape), "data": a.astype(np.dtype(dtype).newbyteorder("<")).tobytes()}


#: The largest length of any dimension of a received array (an empty array's too).
MAX_DIM = 1 << 31


def _array_in(doc, kind, name, dtype, ndim) -> np.ndarray:
    spec = _get(doc, kind, name, dict)
    shape = spec.get("shape")
    data = spec.get("data")
    if (not isinstance(shape, list) or len(shape) != ndim or not isinstance(data, bytes)
            or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in shape)):
        raise FormatError(f"{kind}: field {name!r} is not a valid array")
    dt = np.dtype(dtype).newbyteorder("<")
    # Python ints: a numpy product of [2**62, 4] wraps around in int64
    if len(data) != math.prod(int(s) for s in shape) * dt.itemsize or any(s > len(data) for s in shape[1:]):
        raise FormatError(f"{kind}: field {name!r} has the wrong length for its shape")
    if any(s > MAX_DIM for s in shape):       # (2**60, 0) is empty, but numpy refuses its size
        raise FormatError(f"{kind}: field {name!r} has a dimension over {MAX_DIM}")
    return np.frombuffer(data, dtype=dt).astype(dtype).reshape(shape)


def _int_to_bytes(v: int) -> bytes:
    return int(v).to_bytes((int(v).bit_length() + 7) // 8 or 1, "big")


def _bigint(doc, kind, name) -> int:
    raw = _get(doc, kind, name, bytes, lambda b: 0 < len(b) <= 1024)
    return int.from_bytes(raw, "big")


def cipher_width(n: int) -> int:
    """Bytes per raw ciphertext: the byte length of n**2."""
    return ((n * n).bit_length() + 7) // 8


def ciphers_out(cs, n: int) -> bytes:
    w = cipher_width(n)
    return b"".join(int(c).to_bytes(w, "big") for c in cs)


def ciphers_in(doc, kind, name, n: int, count: int) -> list[int]:
    w = cipher_width(n)
    raw = _get(doc, kind, name, bytes)
    if len(raw) != w * count:
        raise FormatError(f"{kind}: field {name!r} must hold {count} ciphertexts of {w} bytes")
    n2 = n * n
    out = [int.from_bytes(raw[i * w:(i + 1) * w], "big") for i in range(count)]
    if any(not 0 < c < n2 or c % n == 0 for c in out):
        raise FormatError(f"{kind}: field {name!r} holds a value that is not a ciphertext")
    return out


def _freeze(*arrays: np.ndarray) -> None:
    """Make the numpy fields of an immutable object read-only."""
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.setflags(write=False)


# ---------------------------------------------------------------- user keys
@dataclass(frozen=True)
class UserKeys:
    """A user's secret key material, for the client only (never sent to the server)."""

    user_id: str
    model_id: str
    n_features: int
    ope_key: bytes
    prf_key: bytes
    paillier_n: int
    paillier_p: int
    paillier_q: int
    slots: tuple[int, ...]             # per feature: bit SLOT_LOW / bit SLOT_HIGH in use
    n_groups: int
    transform: str
    feature_names: tuple[str, ...] | None = None
    scheme: str = "ope"                # "ope" or "ore": ope_key is the order master key of either
    #: per feature "q" (numeric) or "c" (categorical: category tokens); None: all numeric
    feature_types: tuple[str, ...] | None = None
    #: per feature its category list (index = code), for re-coding DataFrames; or None
    categories: tuple | None = None

    KIND = "ppxgb.keys"

    def is_categorical(self, feature: int) -> bool:
        return self.feature_types is not None and self.feature_types[feature] == "c"

    def columns(self, categorical: bool = False) -> list[tuple[int, int, str]]:
        """(feature, slot, pseudonym) of every numeric column the client sends (of every
        category-token column with categorical=True), in wire order."""
        cols = [(f, s, column_pseudonym(self.prf_key, f, s))
                for f in range(self.n_features) for s in (SLOT_LOW, SLOT_HIGH)
                if self.slots[f] >> s & 1 and self.is_categorical(f) == categorical]
        return sorted(cols, key=lambda c: c[2])  # pseudonym order hides feature order

    def to_bytes(self) -> bytes:
        return _pack(self.KIND, {
            "user_id": self.user_id, "model_id": self.model_id, "n_features": self.n_features,
            "ope_key": self.ope_key, "prf_key": self.prf_key,
            "paillier_n": _int_to_bytes(self.paillier_n), "paillier_p": _int_to_bytes(self.paillier_p),
            "paillier_q": _int_to_bytes(self.paillier_q), "slots": list(self.slots),
            "n_groups": self.n_groups, "transform": self.transform,
            "feature_names": list(self.feature_names) if self.feature_names else None,
            "ope_in_range": list(IN_RANGE), "ope_out_range": list(OUT_RANGE),
            **_scheme_out(self.scheme),
            **({"feature_types": list(self.feature_types),
                "categories": [list(c) if c is not None else None for c in self.categories or
                               [None] * self.n_features]} if self.feature_types else {}),
        }, version=CATEGORICAL_VERSION if self.feature_types else VERSION)

    @classmethod
    def from_bytes(cls, data) -> "UserKeys":
        k = cls.KIND
        doc = _unpack(data, k, _VERSIONS)
        nf = _get(doc, k, "n_features", int, lambda v: 0 < v <= 100_000)
        if doc.get("ope_in_range") != list(IN_RANGE) or doc.get("ope_out_range") != list(OUT_RANGE):
            raise FormatError(f"{k}: unsupported OPE ranges")
        names = doc.get("feature_names")
        if names is not None and (not isinstance(names, list) or len(names) != nf
                                  or not all(isinstance(s, str) for s in names)):
            raise FormatError(f"{k}: field 'feature_names' is missing or invalid")
        slots = _get(doc, k, "slots", list, lambda v: len(v) == nf)
        if any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= 3 for s in slots):
            raise FormatError(f"{k}: field 'slots' is missing or invalid")
        n, p, q = (_bigint(doc, k, f) for f in ("paillier_n", "paillier_p", "paillier_q"))
        if p * q != n or p == q or p < 3 or q < 3:
            raise FormatError(f"{k}: Paillier factors do not match the modulus")
        types = cats = None
        if _categorical_in(doc, k, ("feature_types", "categories")):
            types = _get(doc, k, "feature_types", list, lambda v: len(v) == nf and set(v) <= {"q", "c"})
            cats = _get(doc, k, "categories", list, lambda v: len(v) == nf and all(
                c is None or (isinstance(c, list) and all(isinstance(x, (str, int, float)) for x in c))
                for c in v))
            if any(c is not None and t != "c" for c, t in zip(cats, types)):
                raise FormatError(f"{k}: field 'categories' lists categories of a numeric feature")
            types, cats = tuple(types), tuple(tuple(c) if c is not None else None for c in cats)
        return cls(
            user_id=_ident(doc, k, "user_id"), model_id=_ident(doc, k, "model_id"), n_features=nf,
            ope_key=_get(doc, k, "ope_key", bytes, lambda b: len(b) == 32),
            prf_key=_get(doc, k, "prf_key", bytes, lambda b: len(b) == 32),
            paillier_n=n, paillier_p=p, paillier_q=q, slots=tuple(slots),
            n_groups=_get(doc, k, "n_groups", int, lambda v: 1 <= v <= 10_000),
            transform=_get(doc, k, "transform", str, lambda v: v in TRANSFORMS),
            feature_names=tuple(names) if names else None, scheme=_scheme_in(doc, k),
            feature_types=types, categories=cats,
        )


# ---------------------------------------------------------------- encrypted model
@dataclass(frozen=True)
class EncryptedModel:
    """What the scoring server holds: tree shapes, OPE thresholds, Paillier leaves.

    Node arrays are flattened over all trees (tree t owns nodes roots[t]..roots[t+1]-1,
    children are absolute indices).  column[i] indexes `columns` for an inner node and
    is -1 for a leaf; leaf[i] indexes `leaf_ciphers` for a leaf and is -1 otherwise.
    """

    model_id: str
    user_id: str
    paillier_n: int
    n_groups: int
    columns: tuple[str, ...]
    roots: np.ndarray          # int32 (n_trees + 1,)
    tree_group: np.ndarray     # int32 (n_trees,)
    left: np.ndarray           # int32 (n_nodes,)
    right: np.ndarray          # int32 (n_nodes,)
    column: np.ndarray         # int32 (n_nodes,)
    threshold: np.ndarray      # int64 (n_nodes,) OPE ciphertext, 0 for leaves
    leaf: np.ndarray           # int32 (n_nodes,)
    leaf_ciphers: tuple[int, ...]
    base_ciphers: tuple[int, ...]   # one encrypted intercept per output group
    scheme: str = "ope"
    ore_right: np.ndarray | None = None   # "ore": uint8 (n_nodes, ore.right_width()), zeros for leaves
    # Categorical splits (ppxgb.cattokens): node i is categorical when its token set
    # cat_tokens[cat_ptr[i]:cat_ptr[i + 1]] is non-empty; its column then indexes cat_columns.
    cat_columns: tuple[str, ...] = ()
    cat_ptr: np.ndarray | None = None     # int64 (n_nodes + 1,)
    cat_tokens: np.ndarray | None = None  # uint64 (n_tokens, 2), blinded, sorted within each node
    cat_nonces: np.ndarray | None = None  # uint64 (n_nodes, 2): each node's blinding nonce

    KIND = "ppxgb.encrypted_model"

    def __post_init__(self) -> None:
        _freeze(self.roots, self.tree_group, self.left, self.right, self.column, self.threshold, self.leaf,
                self.ore_right, self.cat_ptr, self.cat_tokens, self.cat_nonces)

    @property
    def is_categorical(self) -> np.ndarray:
        """Per node: a categorical split (a non-empty token set)."""
        if self.cat_ptr is None:
            return np.zeros(self.left.shape[0], dtype=bool)
        return np.diff(self.cat_ptr) > 0

    @property
    def n_trees(self) -> int:
        return int(self.tree_group.shape[0])

    def to_bytes(self) -> bytes:
        return _pack(self.KIND, {
            "model_id": self.model_id, "user_id": self.user_id,
            "paillier_n": _int_to_bytes(self.paillier_n), "n_groups": self.n_groups,
            "fixed_exponent": -38, "columns": list(self.columns),
            "roots": _array_out(self.roots, np.int32), "tree_group": _array_out(self.tree_group, np.int32),
            "left": _array_out(self.left, np.int32), "right": _array_out(self.right, np.int32),
            "column": _array_out(self.column, np.int32), "threshold": _array_out(self.threshold, np.int64),
            "leaf": _array_out(self.leaf, np.int32),
            "n_leaves": len(self.leaf_ciphers),
            "leaf_ciphers": ciphers_out(self.leaf_ciphers, self.paillier_n),
            "base_ciphers": ciphers_out(self.base_ciphers, self.paillier_n),
            **_scheme_out(self.scheme),
            **({"ore_right": _array_out(self.ore_right, np.uint8)} if self.scheme == "ore" else {}),
            **({"cat_columns": list(self.cat_columns), "cat_ptr": _array_out(self.cat_ptr, np.int64),
                "cat_tokens": _array_out(self.cat_tokens, np.uint64),
                "cat_nonces": _array_out(self.cat_nonces, np.uint64)} if self.cat_ptr is not None else {}),
        }, version=CATEGORICAL_VERSION if self.cat_ptr is not None else VERSION)

    @classmethod
    def from_bytes(cls, data) -> "EncryptedModel":
        k = cls.KIND
        doc = _unpack(data, k, _VERSIONS)
        n = _bigint(doc, k, "paillier_n")
        if n.bit_length() < 500 or n % 2 == 0:
            raise FormatError(f"{k}: field 'paillier_n' is not a Paillier modulus")
        if doc.get("fixed_exponent") != -38:
            raise FormatError(f"{k}: unsupported fixed exponent")
        groups = _get(doc, k, "n_groups", int, lambda v: 1 <= v <= 10_000)
        columns = _pseudonyms(doc, k, "columns")
        cat_columns, cat_ptr, cat_tokens, cat_nonces = (), None, None, None
        if _categorical_in(doc, k, ("cat_columns", "cat_ptr", "cat_tokens", "cat_nonces")):
            cat_columns = tuple(_pseudonyms(doc, k, "cat_columns"))
            cat_ptr = _array_in(doc, k, "cat_ptr", np.int64, 1)
            cat_tokens = _array_in(doc, k, "cat_tokens", np.uint64, 2)
            cat_nonces = _array_in(doc, k, "cat_nonces", np.uint64, 2)
        roots = _array_in(doc, k, "roots", np.int32, 1)
        group = _array_in(doc, k, "tree_group", np.int32, 1)
        arrays = {f: _array_in(doc, k, f, np.int32, 1) for f in ("left", "right", "column", "leaf")}
        thr = _array_in(doc, k, "threshold", np.int64, 1)
        n_leaves = _get(doc, k, "n_leaves", int, lambda v: 0 < v <= 10_000_000)
        scheme = _scheme_in(doc, k)
        model = cls(
            model_id=_ident(doc, k, "model_id"), user_id=_ident(doc, k, "user_id"), paillier_n=n,
            n_groups=groups, columns=tuple(columns), roots=roots, tree_group=group,
            left=arrays["left"], right=arrays["right"], column=arrays["column"], threshold=thr,
            leaf=arrays["leaf"], leaf_ciphers=tuple(ciphers_in(doc, k, "leaf_ciphers", n, n_leaves)),
            base_ciphers=tuple(ciphers_in(doc, k, "base_ciphers", n, groups)), scheme=scheme,
            ore_right=_array_in(doc, k, "ore_right", np.uint8, 2) if scheme == "ore" else None,
            cat_columns=cat_columns, cat_ptr=cat_ptr, cat_tokens=cat_tokens, cat_nonces=cat_nonces,
        )
        model.check()
        return model

    def check(self) -> None:
        """Structural validation: every index in range, every tree a tree (each node
        reached exactly once from its root, children inside their own tree), and every
        leaf ciphertext used by exactly one leaf, so no tree reaches into another's."""
        k = self.KIND
        n_nodes = self.left.shape[0]
        t = self.tree_group.shape[0]
        n_leaves = len(self.leaf_ciphers)
        if t == 0 or self.roots.shape != (t + 1,) or self.roots[0] != 0 or self.roots[-1] != n_nodes \
                or np.any(np.diff(self.roots.astype(np.int64)) < 1):
            raise FormatError(f"{k}: tree offsets are invalid")
        if len(self.base_ciphers) != self.n_groups:
            raise FormatError(f"{k}: expected {self.n_groups} base ciphertexts, got {len(self.base_ciphers)}")
        if np.any((self.tree_group < 0) | (self.tree_group >= self.n_groups)):
            raise FormatError(f"{k}: a tree names an output group that does not exist")
        if any(a.shape != (n_nodes,) for a in (self.right, self.column, self.threshold, self.leaf)):
            raise FormatError(f"{k}: node arrays differ in length")
        inner = self.column >= 0
        self._check_categorical(inner)
        cat = self.is_categorical
        width = np.where(cat, len(self.cat_columns), len(self.columns))
        if np.any(self.column < -1) or np.any(self.column >= width) \
                or np.any(self.leaf < -1) or np.any(inner == (self.leaf >= 0)):
            raise FormatError(f"{k}: a node is neither a split on a listed column nor a leaf")
        if np.any(self.leaf >= n_leaves):
            raise FormatError(f"{k}: a leaf index is out of range")
        leaves = self.leaf[~inner]
        if leaves.shape[0] != n_leaves or np.bincount(leaves, minlength=n_leaves).max() != 1:
            raise FormatError(f"{k}: leaf ciphertexts must be used by exactly one leaf each "
                              f"({n_leaves} ciphertexts, {leaves.shape[0]} leaves)")
        owner = np.repeat(np.arange(t), np.diff(self.roots.astype(np.int64)))
        idx = np.flatnonzero(inner)
        for kids in (self.left[inner], self.right[inner]):
            if np.any((kids <= idx) | (kids >= n_nodes)) or np.any(owner[np.clip(kids, 0, n_nodes - 1)] != owner[idx]):
                raise FormatError(f"{k}: a child index points before its parent or out of its tree")
        # children come after parents, so every node reached once from its root = a tree
        parents = np.bincount(np.concatenate([self.left[inner], self.right[inner]]), minlength=n_nodes)
        is_root = np.zeros(n_nodes, dtype=bool)
        is_root[self.roots[:-1]] = True
        if np.any(parents[is_root] != 0) or np.any(parents[~is_root] != 1):
            raise FormatError(f"{k}: a tree's nodes must each be reached exactly once from its root")
        numeric = inner & ~cat
        if np.any((self.threshold[numeric] < OUT_RANGE[0]) | (self.threshold[numeric] > OUT_RANGE[1])):
            raise FormatError(f"{k}: a threshold is not an OPE ciphertext")
        if self.scheme not in SCHEMES:
            raise FormatError(f"{k}: field 'scheme' must be one of {SCHEMES}, got {self.scheme!r}")
        if (self.scheme == "ore") != (self.ore_right is not None) or (
                self.ore_right is not None and self.ore_right.shape != (n_nodes, _ore.right_width())):
            raise FormatError(f"{k}: an 'ore' model needs ORE right ciphertexts of shape "
                              f"({n_nodes}, {_ore.right_width()}), an 'ope' model none")

    def _check_categorical(self, inner: np.ndarray) -> None:
        k = self.KIND
        if self.cat_ptr is None:
            if self.cat_tokens is not None or self.cat_nonces is not None or self.cat_columns:
                raise FormatError(f"{k}: category tokens without cat_ptr")
            return
        n_nodes = self.left.shape[0]
        ptr, toks = self.cat_ptr, self.cat_tokens
        if ptr.shape != (n_nodes + 1,) or toks is None or toks.ndim != 2 or toks.shape[1] != 2 \
                or ptr[0] != 0 or ptr[-1] != toks.shape[0] or np.any(np.diff(ptr) < 0):
            raise FormatError(f"{k}: cat_ptr must be {n_nodes + 1} non-decreasing offsets into "
                              f"cat_tokens (n, 2), from 0 to its length")
        if self.cat_nonces is None or self.cat_nonces.shape != (n_nodes, 2):
            raise FormatError(f"{k}: cat_nonces must be ({n_nodes}, 2) words")
        if np.any(self.is_categorical & ~inner):
            raise FormatError(f"{k}: a leaf holds category tokens")
        if set(self.cat_columns) & set(self.columns) or len(set(self.cat_columns)) != len(self.cat_columns):
            raise FormatError(f"{k}: field 'cat_columns' repeats a column")

    def depth(self) -> int:
        """Longest root-to-leaf path (children have larger indices than parents)."""
        d = np.zeros(self.left.shape[0], dtype=np.int64)
        for i in np.flatnonzero(self.column >= 0):
            d[self.left[i]] = d[self.right[i]] = d[i] + 1
        return int(d.max())


def _pseudonyms(doc, kind, name) -> list[str]:
    columns = _get(doc, kind, name, list)
    if not all(isinstance(c, str) and re.fullmatch(r"[0-9a-f]{32}", c) for c in columns) \
            or len(set(columns)) != len(columns):
        raise FormatError(f"{kind}: field {name!r} is missing or invalid")
    return columns


# ---------------------------------------------------------------- queries and scores
@dataclass(frozen=True)
class EncryptedQueries:
    """OPE-encrypted rows: values[i, j] is row i's ciphertext for column `columns[j]`."""

    model_id: str
    columns: tuple[str, ...]
    values: np.ndarray        # int64 (n_rows, n_columns); zeros for "ore"
    scheme: str = "ope"
    ore_left: np.ndarray | None = None   # "ore": uint8 (n_rows, n_columns * ore.left_width())
    cat_columns: tuple[str, ...] = ()     # category-token columns (ppxgb.cattokens)
    tokens: np.ndarray | None = None      # uint64 (n_rows, len(cat_columns), 2)

    KIND = "ppxgb.encrypted_queries"

    def __post_init__(self) -> None:
        _freeze(self.values, self.ore_left, self.tokens)

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    def to_bytes(self) -> bytes:
        return _pack(self.KIND, {"model_id": self.model_id, "columns": list(self.columns),
                                 "values": _array_out(self.values, np.int64), **_scheme_out(self.scheme),
                                 **({"ore_left": _array_out(self.ore_left, np.uint8)}
                                    if self.scheme == "ore" else {}),
                                 **({"cat_columns": list(self.cat_columns),
                                     "tokens": _array_out(self.tokens, np.uint64)}
                                    if self.tokens is not None else {})},
                     version=CATEGORICAL_VERSION if self.tokens is not None else VERSION)

    @classmethod
    def from_bytes(cls, data) -> "EncryptedQueries":
        k = cls.KIND
        doc = _unpack(data, k, _VERSIONS)
        columns = _get(doc, k, "columns", list, lambda v: all(isinstance(c, str) for c in v))
        values = _array_in(doc, k, "values", np.int64, 2)
        if values.shape[1] != len(columns) or not 0 < values.shape[0] <= MAX_ROWS:
            raise FormatError(f"{k}: values must be (1..{MAX_ROWS}) rows x {len(columns)} columns")
        if values.size and (values.min() < OUT_RANGE[0] or values.max() > OUT_RANGE[1]):
            raise FormatError(f"{k}: a value is not an OPE ciphertext")
        scheme = _scheme_in(doc, k)
        ore_left = None
        if scheme == "ore":
            ore_left = _array_in(doc, k, "ore_left", np.uint8, 2)
            if ore_left.shape != (values.shape[0], len(columns) * _ore.left_width()):
                raise FormatError(f"{k}: field 'ore_left' must be {values.shape[0]} rows x "
                                  f"{len(columns) * _ore.left_width()} bytes")
        cat_columns, tokens = (), None
        if _categorical_in(doc, k, ("cat_columns", "tokens")):
            cat_columns = tuple(_get(doc, k, "cat_columns", list, lambda v: all(isinstance(c, str) for c in v)))
            tokens = _array_in(doc, k, "tokens", np.uint64, 3)
            if tokens.shape != (values.shape[0], len(cat_columns), 2):
                raise FormatError(f"{k}: field 'tokens' must be {values.shape[0]} rows x "
                                  f"{len(cat_columns)} columns x 2 words")
        return cls(model_id=_ident(doc, k, "model_id"), columns=tuple(columns), values=values,
                   scheme=scheme, ore_left=ore_left, cat_columns=cat_columns, tokens=tokens)


@dataclass(frozen=True)
class EncryptedScores:
    """Paillier-encrypted margins: ciphers[i * n_groups + g] is row i, output group g."""

    model_id: str
    paillier_n: int
    n_rows: int
    n_groups: int
    ciphers: tuple[int, ...]

    KIND = "ppxgb.encrypted_scores"

    def to_bytes(self) -> bytes:
        return _pack(self.KIND, {"model_id": self.model_id, "paillier_n": _int_to_bytes(self.paillier_n),
                                 "n_rows": self.n_rows, "n_groups": self.n_groups,
                                 "fixed_exponent": -38,
                                 "ciphers": ciphers_out(self.ciphers, self.paillier_n)})

    @classmethod
    def from_bytes(cls, data) -> "EncryptedScores":
        k = cls.KIND
        doc = _unpack(data, k)
        n = _bigint(doc, k, "paillier_n")
        if doc.get("fixed_exponent") != -38:
            raise FormatError(f"{k}: unsupported fixed exponent")
        rows = _get(doc, k, "n_rows", int, lambda v: 0 < v <= MAX_ROWS)
        groups = _get(doc, k, "n_groups", int, lambda v: 1 <= v <= 10_000)
        return cls(model_id=_ident(doc, k, "model_id"), paillier_n=n, n_rows=rows, n_groups=groups,
                   ciphers=tuple(ciphers_in(doc, k, "ciphers", n, rows * groups)))
