#!/usr/bin/env python3
"""Generate the sync twin of tenure's async source by rewriting tokens (httpcore's approach).

    python scripts/unasync.py          write src/tenure/_sync and tests/_sync
    python scripts/unasync.py --check  exit 1 if a generated file is missing, stale or extra

The async code never imports asyncio directly; what differs between the colours lives in the
hand-written ``tenure._concurrency``, whose ``Async*``/``async_*`` names map to plain twins.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [
    (ROOT / "src/tenure/_async", ROOT / "src/tenure/_sync"),
    (ROOT / "tests/_async", ROOT / "tests/_sync"),
]

# Applied in order to every line. Word boundaries keep e.g. "asyncio" and "awaitable" intact.
SUBSTITUTIONS = [
    # ``return async_entering(self._acquire(...))`` makes an acquisition awaitable *and* an async
    # context manager; in sync code the call has already acquired, and a lease or leadership is
    # its own context manager, so the twin is the plain call (the wrapper must end its line).
    (r"^\s*(?:AsyncEntering|async_entering),\n", ""),  # a name alone on a line of an import
    (r"\b(?:AsyncEntering|async_entering), ", ""),  # a name inside an import line
    (r"\bAsyncEntering\[(\w+)\]", r"\1"),
    (r"\basync_entering\((.*)\)$", r"\1"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\baclose\b", "close"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\bhandle_async_request\b", "handle_request"),  # an httpx transport's one method
    (r"\bredis\.asyncio\b", "redis"),
    # grpc's asyncio API lives in grpc.aio; the same channel factories exist on grpc itself.
    (r"\bgrpc\.aio\b", "grpc"),
    # aiomysql is PyMySQL's asyncio port: the same connect/cursor calls, minus the awaits.
    (r"\baiomysql\b", "pymysql"),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"\basync_(\w+)", r"\1"),
    (r"\b_async\b", "_sync"),
    (r"\basync (code|API|source)\b", r"sync \1"),
]
COMPILED = [(re.compile(pattern), repl) for pattern, repl in SUBSTITUTIONS]


def header(source: Path) -> str:
    """Return the banner of a generated file."""
    rel = source.relative_to(ROOT).as_posix()
    return f"# GENERATED from {rel} by scripts/unasync.py: do not edit; edit the source and re-run.\n"


def unasync_text(text: str) -> str:
    """Return the sync twin of one async source file."""
    out = []
    for source in text.splitlines(keepends=True):
        line = source
        for pattern, repl in COMPILED:
            line = pattern.sub(repl, line)
        if re.search(r"AsyncEntering|async_entering", source) and re.search(r"\b[Ee]ntering\b", line):
            raise SystemExit(f"unasync: cannot rewrite async_entering/AsyncEntering in: {source.strip()}")
        out.append(line)
    return "".join(out)


def expected_files() -> dict[Path, str]:
    """Return every generated file's path and its expected contents."""
    files: dict[Path, str] = {}
    for source_dir, target_dir in PAIRS:
        for source in sorted(source_dir.rglob("*.py")):
            target = target_dir / source.relative_to(source_dir)
            files[target] = header(source) + unasync_text(source.read_text())
    return files


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail on drift instead of writing")
    args = parser.parse_args()
    expected = expected_files()
    existing = {p for _, target_dir in PAIRS for p in target_dir.rglob("*.py")}
    problems = []
    for path, text in expected.items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            problems.append(f"{'stale' if current is not None else 'missing'}: {path.relative_to(ROOT)}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for path in sorted(existing - set(expected)):
        if args.check:
            problems.append(f"extra (no async source): {path.relative_to(ROOT)}")
        else:
            path.unlink()
    if problems:
        print("generated sync code has drifted; run: python scripts/unasync.py", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
