"""Side-by-side benchmarks of tenure's locks against their peers and raw floors.

Run ``python -m benchmarks.run --help``; see ``benchmarks/README.md`` for what each figure means
and how a backend plugs its suite into the registry (``benchmarks.registry``).
"""
