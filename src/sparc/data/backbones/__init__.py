"""Backbones: frozen models that turn images or captions into feature vectors.

``build(FAMILY, **options)`` makes one (weights load lazily); ``available()`` lists the
families. See :mod:`.base` for the interface and :mod:`.preprocess` for the shared
image pipeline.
"""

from sparc.data.backbones.base import Backbone, available, build, register
from sparc.data.backbones.preprocess import ImagePreprocess

__all__ = ["Backbone", "ImagePreprocess", "available", "build", "register"]
