"""Bin agreement shows a hospital the cuts, and nothing about where other values lie.

The attack: a curious hospital records every "bins" request it receives.  A request
that names key prefixes says that pooled values exist in those cells, so the hospital
collects the named cells (feature, bits, prefix).  Everything it may know anyway is
what the cuts imply: the cells around each cut.  On the code before the fix, the
requests named every occupied cell of a feature while it could still be discrete
(at most max_bin occupied cells), so another hospital's isolated value showed up at
16-bit key precision ([231, 232) here) with no cut between 150 and 350.  That code path
is kept as a mutant (the hidden request patched back to naming every cell), and the
attack must find the isolated value there and nothing beyond the cuts on the real code.
"""

import numpy as np
import pytest

from ppxgb.training import binning
from ppxgb.training.horizontal import run_federation

from helpers import recorded_federation

ISOLATED = 231.5          # hospital 1's patient: nothing else between 150 and 350
PARAMS = {"objective": "binary:logistic", "max_depth": 2}


def hospitals(seed=0, n=1500, min_mass=False):
    """Two hospitals; feature 0 is a lab value in [100, 150) or [350, 700) with two
    decimals (about 200 occupied 16-bit cells, thousands of distinct values), feature 1
    spans many magnitudes (its quantile-target cells are named), feature 2 is discrete.
    With min_mass, 30% of feature 1 sits at -1.0, below everything else."""
    rng = np.random.default_rng(seed)

    def rows(m):
        lab = np.where(rng.random(m) < 0.5, rng.uniform(100, 150, m), rng.uniform(350, 700, m)).round(2)
        wide = rng.lognormal(0.0, 3.0, m)
        if min_mass:
            wide[rng.random(m) < 0.3] = -1.0
        X = np.column_stack([lab, wide, rng.integers(0, 10, m)])
        return X, (rng.random(m) < 0.5).astype(float)

    (X0, y0), (X1, y1) = rows(n), rows(n)
    X1[7, 0] = ISOLATED
    return [(X0, y0), (X1, y1)]


def record_bins(parties):
    """Every message of bin agreement (no trees), as its receiver got it."""
    log, _ = recorded_federation(run_federation, PARAMS, parties, 0, 2)
    return log


def named_cells(log, party="party-0"):
    """The attack: {(feature, bits, prefix)} named by the bins requests the party got."""
    found = set()
    for m in log:
        if m.dst != party or m.stage != "bins" or m.payload["level"] == 1:    # level 1: the public root
            continue
        bits = 8 * (m.payload["level"] - 1)
        for f, request in enumerate(m.payload["active"]):
            request = np.asarray(request, dtype=np.uint32)
            if len(request) and request[0] < 2 ** bits:        # a list of prefixes, not a hidden request
                found |= {(f, bits, int(p)) for p in request}
    return found


def received_cuts(log, party="party-0"):
    (msg,) = [m for m in log if m.dst == party and m.stage == "cuts"]
    return [np.asarray(c, dtype=np.float32) for c in msg.payload["cuts"]]


def ancestors(f, value):
    key = int(binning.float_keys(np.array([value], dtype=np.float32))[0])
    return {(f, bits, key >> (32 - bits)) for bits in (8, 16, 24)}


def implied_by_cuts(cuts):
    """The cells around every cut (the last cut lies above every value: not a data point)."""
    return {cell for f, c in enumerate(cuts) for v in c[:-1] for cell in ancestors(f, v)}


def isolated_cells():
    return ancestors(0, ISOLATED)


def test_hospital_learns_no_cell_beyond_the_cuts():
    parties = hospitals()
    log = record_bins(parties)
    found, cuts = named_cells(log), received_cuts(log)
    assert not np.any((cuts[0] > 150) & (cuts[0] < 350))           # no cut near the isolated value
    assert {f for f, _, _ in found} == {1}                          # only quantile-target cells are named ...
    assert found <= implied_by_cuts(cuts)                           # ... and the cuts imply every one
    assert not found & isolated_cells()


def test_attack_finds_the_isolated_value_when_every_cell_is_named(monkeypatch):
    """The mutant: today's full refinement, every occupied cell named."""
    monkeypatch.setattr(binning, "hidden_request", lambda g, level, buckets: g.active)
    log = record_bins(hospitals())
    found, cuts = named_cells(log), received_cuts(log)
    assert (0, 16, int(binning.float_keys(np.float32([ISOLATED]))[0]) >> 16) in found   # [231, 232)
    assert not found <= implied_by_cuts(cuts)


def test_beyond_the_cuts_only_a_heavy_lowest_cell_is_named():
    """A lowest cell holding a quantile target (at least 1/(max_bin - 1) of the values)
    is named and may hold no cut: it contains the pooled minimum, nothing else shows."""
    parties = hospitals(seed=1, min_mass=True)
    log = record_bins(parties)
    found, cuts = named_cells(log), received_cuts(log)
    extra = found - implied_by_cuts(cuts)
    assert extra and extra <= ancestors(1, -1.0)                    # the minimum's cells, below the first cut
    assert all(binning.key_to_float(np.uint32([(p + 1) << (32 - b)]))[0] <= cuts[1][0]
               for _, b, p in extra if p + 1 < 2 ** b)
    assert not found & isolated_cells()


def _agree(parts, max_bin, hide):
    def count(level, requests):
        return sum(binning.party_cell_counts(np.asfortranarray(P), level, requests) for P in parts)
    return binning.agree_cuts(parts[0].shape[1], max_bin, count, hide=hide)


@pytest.mark.parametrize("max_bin", [16, 256])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hidden_requests_give_the_cuts_of_named_ones(seed, max_bin):
    """Sketches and tables decode to the very counts that naming every cell gives."""
    rng = np.random.default_rng(seed)
    n = 3000
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 40, n), rng.uniform(0, 30, n).round(1),
                         np.full(n, 2.5), np.where(rng.random(n) < 0.6, 1.0, rng.normal(size=n)),
                         rng.lognormal(0, 4, n)]).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    parts = np.array_split(X, 3)
    hidden, named = _agree(parts, max_bin, True), _agree([X], max_bin, False)
    for a, b in zip(hidden[0], named[0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(hidden[1], named[1])


def _colliding_prefixes(level, salt, buckets):
    """Two 16-bit cells of positive floats that share their bucket in every table."""
    prefixes = np.arange(0xB000, 0xC800, dtype=np.uint64)
    where = binning._buckets(prefixes, binning.TABLE, level, salt, buckets)
    seen = {}
    for p, b in zip(prefixes, map(tuple, where.T)):
        if b in seen:
            return int(seen[b]), int(p)
        seen[b] = p
    raise AssertionError("no colliding pair")


def test_a_table_collision_is_retried_under_a_fresh_salt():
    """Two occupied cells hashed together in every table cannot be separated; the next
    request uses another public salt and the cuts come out as with named cells."""
    p, q = _colliding_prefixes(level=3, salt=1, buckets=64)
    assert binning._peel_table(np.zeros((3, 64, 256)), np.array([p, q], np.uint32), 3, 1, 64) is None
    rng = np.random.default_rng(3)
    low = rng.integers(0, 2 ** 16, 4000, dtype=np.uint64)      # hundreds of 24-bit cells: the sketch fails
    keys = (np.where(rng.random(4000) < 0.5, p, q).astype(np.uint64) << np.uint64(16)) | low
    X = binning.key_to_float(keys.astype(np.uint32))[:, None]
    kinds = []

    def count(level, requests):
        kinds.append([binning._parse(r, level) for r in requests])
        return binning.party_cell_counts(np.asfortranarray(X), level, requests)

    cuts, mins = binning.agree_cuts(1, 16, count)
    assert [k[0][:2] if k[0] else None for k in kinds][2:] == [(binning.SKETCH, 0), (binning.TABLE, 1),
                                                              (binning.TABLE, 2)]
    named = _agree([X], 16, False)
    np.testing.assert_array_equal(cuts[0], named[0][0])
    np.testing.assert_array_equal(mins, named[1])
