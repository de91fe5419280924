"""Blocking driver code that both colours share (the async side runs it in a worker thread)."""
