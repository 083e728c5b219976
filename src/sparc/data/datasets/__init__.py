"""Dataset adapters: deterministic sequences of samples (image, caption, labels).

``build(name, **options)`` instantiates a registered adapter; ``available()`` lists
them: ``coco``, ``fashion-mnist``, ``image-folder``, ``open-images``, ``openmoji``.
"""

from sparc.data.datasets.base import Dataset, Sample, available, build, register

__all__ = ["Dataset", "Sample", "available", "build", "register"]
