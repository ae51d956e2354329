"""Polres 110 station controller."""

__all__ = ["__version__"]

try:  # written by setup.py from `git describe` when the package is built or installed
    from ._version import version as __version__
except ImportError:  # a bare source tree never built: say so rather than guess
    __version__ = "0+unknown"
