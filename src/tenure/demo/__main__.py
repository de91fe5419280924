"""Run the demo without the ``tenure`` command: ``python -m tenure.demo [--url URL] [options]``."""

from __future__ import annotations

import argparse
import sys

from tenure.demo.app import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` like ``tenure demo`` would, plus the global ``--url``, and run the demo."""
    parser = argparse.ArgumentParser(prog="python -m tenure.demo")
    parser.add_argument(
        "--url", default=None, help="backend URL (default: $TENURE_URL, else a fresh SQLite file)"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
