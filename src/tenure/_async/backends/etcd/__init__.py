"""The ``etcd://`` backend."""

from tenure._async.backends.etcd.store import AsyncEtcdStore

__all__ = ["AsyncEtcdStore"]
