"""Oblivious training: the trees are computed on secret shares by two compute servers
with a dealer of correlated randomness, and revealed only to the analyst."""

from .api import run_oblivious_federation, train_oblivious

__all__ = ["run_oblivious_federation", "train_oblivious"]
