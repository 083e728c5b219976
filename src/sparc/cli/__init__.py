"""The ``sparc`` command line."""
