"""Dataset adapters: deterministic sequences of samples (image, caption, labels).

``build(name, **options)`` instantiates a registered adapter; ``DATASETS.names()`` lists
them: ``coco``, ``fashion-mnist``, ``image-folder``, ``open-images``, ``openmoji``. Each
adapter's options are a frozen dataclass (``DATASETS.get(name).Options``); ``sparc
extract --list`` prints them.
"""

from sparc.extract.datasets.base import DATASETS, Dataset, Sample, build

__all__ = ["DATASETS", "Dataset", "Sample", "build"]
