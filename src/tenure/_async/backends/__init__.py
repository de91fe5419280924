"""Backends: one atomic server-side step per method; policy lives in the primitives."""
