# GENERATED from src/tenure/_async/backends/__init__.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""Backends: one atomic server-side step per method; policy lives in the primitives."""
