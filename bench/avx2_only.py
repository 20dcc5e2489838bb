"""Run a command as if on an AVX2-only x86 CPU (no AVX-512, no VNNI), natively: ``python bench/avx2_only.py
bench/scan.py --tiles 6000``. Libraries pick their AVX2 kernels (tests/fixtures/cpu_mask.py explains how), so the
bench measures the kernels an AVX2-only EPYC runs, on this machine's cores (not that CPU's clock or caches).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.fixtures.cpu_mask import avx2_only_env


def main() -> None:
    """Exec this Python with the given arguments (a script and its options, or -c CODE) under the CPUID shim."""
    if len(sys.argv) < 2:
        sys.exit("usage: python bench/avx2_only.py SCRIPT.py [ARGS...]")
    env = avx2_only_env(Path(tempfile.mkdtemp(prefix="avx2-only-")))
    if env is None:
        sys.exit("this machine cannot hide CPU features (needs Linux x86-64 with cpuid_fault and a C compiler)")
    os.execve(sys.executable, [sys.executable, *sys.argv[1:]], env)


if __name__ == "__main__":
    main()
