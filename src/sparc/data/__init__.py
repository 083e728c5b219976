"""Feature stores: aligned per-stream features on disk, and batches for training.

A store is a directory of memory-mappable ``.npy`` files (one per stream), per-row
metadata and a group-based train/val/test split; see ``DESIGN.md`` beside this file.
Stores are filled by :mod:`sparc.extract` (datasets through backbones) or imported
from the original code's HDF5 files (:func:`import_h5`).
"""

from sparc.data.describe import describe_store
from sparc.data.h5import import import_h5
from sparc.data.loader import Batch, BatchLoader
from sparc.data.rows import RowMeta
from sparc.data.splits import Split
from sparc.data.store import FeatureStore
from sparc.data.writer import StoreWriter

__all__ = [
    "Batch",
    "BatchLoader",
    "FeatureStore",
    "RowMeta",
    "Split",
    "StoreWriter",
    "describe_store",
    "import_h5",
]
