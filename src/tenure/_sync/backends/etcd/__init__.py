# GENERATED from src/tenure/_async/backends/etcd/__init__.py by scripts/unasync.py: do not edit; edit the source and re-run.
"""The ``etcd://`` backend."""

from tenure._sync.backends.etcd.store import EtcdStore

__all__ = ["EtcdStore"]
