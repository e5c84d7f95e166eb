"""Gantry: promotes immutable container images (by digest) through a team's environments."""

__version__ = "0.1.0"
