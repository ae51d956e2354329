"""Polres 110 station controller."""

__version__ = "0.1.0"
