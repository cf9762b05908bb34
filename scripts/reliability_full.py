"""The whole reliability campaign of docs/reliability.md, from a checkout of the repository:
``python -m vocalsep.reliability run --full`` (the package's part), then the repository's
property tests with 500 examples each and the web server's campaign with ten times the floods.

    python scripts/reliability_full.py [--no-properties] [--no-server] [run options ...]

Exit status 1 if any part failed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: (name, test file, environment, the option that leaves it out)
PYTEST_PARTS = (
    ("property tests (500 examples each)", "test_properties.py", {"VOCALSEP_PROPERTY_EXAMPLES": "500"},
     "--no-properties"),
    ("web server abuse (floods x10)", "test_server_abuse.py", {"VOCALSEP_RELIABILITY_FULL": "1"},
     "--no-server"),
)


def main(argv: list[str]) -> int:
    skip = {flag for *_, flag in PYTEST_PARTS if flag in argv}
    rest = [a for a in argv if a not in skip]
    ok = subprocess.run([sys.executable, "-m", "vocalsep.reliability", "run", "--full", *rest],
                        cwd=REPO).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, file, extra, flag in PYTEST_PARTS:
        if flag in skip:
            continue
        started = time.monotonic()
        passed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 str(REPO / "tests" / file)], env={**env, **extra}, cwd=REPO).returncode == 0
        print(f"\n{name}: {'passed' if passed else '**FAILED**'} ({time.monotonic() - started:.0f} s)")
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
