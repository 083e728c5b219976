"""Feature stores: aligned per-stream features on disk, and batches for training.

A store is a directory of memory-mappable ``.npy`` files (one per stream), per-row
metadata and a group-based train/val/test split; see ``DESIGN.md`` beside this file.
Stores are filled by :mod:`sparc.extract` (datasets through backbones) or imported
from the original code's HDF5 files (:func:`import_h5`).
"""

from sparc.data.splits import Split
from sparc.lazy import lazy_exports

# The store and its loader load PyTorch: imported on first use (sparc/lazy.py).
__getattr__ = lazy_exports(__name__, {
    "sparc.data.describe": ["describe_store"],
    "sparc.data.h5import": ["import_h5"],
    "sparc.data.loader": ["Batch", "BatchLoader"],
    "sparc.data.rows": ["RowMeta"],
    "sparc.data.store": ["FeatureStore"],
    "sparc.data.writer": ["StoreWriter"],
})

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
