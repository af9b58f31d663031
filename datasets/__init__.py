"""ppxgb.datasets: data for simulated hospitals, shipped in the repo (no download).

- ``load_heart_disease()``: UCI Heart Disease, four real hospitals (Cleveland, Hungary,
  Switzerland, VA Long Beach) as a natural horizontal split; CC BY 4.0, see
  ``data/SOURCES.md``. ``load_heart_frame()`` gives all 920 rows in one frame.
- ``make_ms_ehr()``: an MS-like synthetic EHR with clinic, lab and insurer columns
  that share a ``patient_id`` (``MS_COLUMNS``, ``MS_BLOCKS``).
- ``split_horizontal`` (IID or non-IID sizes and case mixes), ``split_by_group``,
  ``pool``, ``split_vertical`` and ``align_on_id``: partitioners.

The encodings and the generative model are documented in ``docs/datasets.md``.
"""

from .heart import ENCODINGS, FEATURES, HOSPITALS, load_heart_disease, load_heart_frame
from .partition import align_on_id, pool, split_by_group, split_horizontal, split_vertical
from .synthetic_ms import MS_BLOCKS, MS_COLUMNS, MS_ID, MS_LABEL, make_ms_ehr

__all__ = [
    "ENCODINGS",
    "FEATURES",
    "HOSPITALS",
    "MS_BLOCKS",
    "MS_COLUMNS",
    "MS_ID",
    "MS_LABEL",
    "align_on_id",
    "load_heart_disease",
    "load_heart_frame",
    "make_ms_ehr",
    "pool",
    "split_by_group",
    "split_horizontal",
    "split_vertical",
]
