"""A ``.npy`` file that grows by rows while it is written.

The row count of a store is unknown until extraction ends, so each stream's file is
written with a fixed-size header, rows are appended, and the header is rewritten with
the final shape on :meth:`NpyAppender.close`. The result is a plain NPY 1.0 file that
``np.load(..., mmap_mode="r")`` opens.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# Magic + version + header and padding: 128 bytes keeps the data 64-byte aligned
# (what numpy itself does) and leaves room for any realistic shape.
HEADER_BYTES = 128
_MAGIC = b"\x93NUMPY\x01\x00"


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """Return an NPY 1.0 header of exactly :data:`HEADER_BYTES` bytes.

    Parameters
    ----------
    shape
        Array shape, C order.
    dtype
        Element type (little-endian or native numeric).
    """
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    body = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    n_pad = HEADER_BYTES - len(_MAGIC) - 2 - len(body) - 1
    if n_pad < 0:
        raise ValueError(f"npy header for shape {shape} does not fit in {HEADER_BYTES} bytes")
    header = body + " " * n_pad + "\n"
    return _MAGIC + len(header).to_bytes(2, "little") + header.encode("latin1")


class NpyAppender:
    """Append rows ``[n, d]`` to a new ``.npy`` file; fix the header on close.

    Parameters
    ----------
    path
        File to create (must not exist).
    dim
        Row width ``d``.
    dtype
        Element type stored on disk.
    """

    def __init__(self, path: str | os.PathLike, dim: int, dtype: np.dtype):
        self.path = Path(path)
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self.n_rows = 0
        self._file = open(self.path, "xb")
        self._file.write(npy_header((0, self.dim), self.dtype))

    def append(self, x_nd: np.ndarray) -> None:
        """Write rows ``x_nd`` (already of the right dtype and width)."""
        assert x_nd.ndim == 2 and x_nd.shape[1] == self.dim and x_nd.dtype == self.dtype
        # Writing the buffer directly avoids the extra copy tobytes() would make.
        self._file.write(np.ascontiguousarray(x_nd).data)
        self.n_rows += x_nd.shape[0]

    def close(self) -> None:
        """Rewrite the header with the final row count and close the file."""
        if self._file.closed:
            return
        self._file.seek(0)
        self._file.write(npy_header((self.n_rows, self.dim), self.dtype))
        self._file.close()

    def discard(self) -> None:
        """Close without finalising (the caller deletes the directory)."""
        self._file.close()
