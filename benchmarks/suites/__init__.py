"""One module per suite, each defining ``SUITE``; listed in ``benchmarks.registry.SUITES``."""
