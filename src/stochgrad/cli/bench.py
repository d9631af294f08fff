"""``stochgrad bench NAME``: run ``benchmarks/bench_NAME.py`` of the source checkout.

The benchmarks live in one place, the repository's ``benchmarks/`` folder (they need reference
packages and data that an installed wheel does not ship). The folder is looked for next to the
package's source tree (an editable install or a checkout on ``PYTHONPATH``), then in the current
directory. Without a checkout the command says so in one line and exits with status 2.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

import stochgrad

__all__ = ["BENCHMARKS", "find_benchmark", "run_benchmark"]

BENCHMARKS = {
    "implicit": "bench_implicit.py",
    "mixture": "bench_mixture_vonmises.py",
    "relaxed": "bench_relaxed.py",
    "estimators": "bench_estimators_variance.py",
}


def find_benchmark(name: str) -> Path | None:
    """The script of benchmark ``name`` in the source checkout, or ``None`` without one."""
    package = Path(stochgrad.__file__).resolve().parent
    for root in (package.parent.parent, Path.cwd()):  # <repo>/src/stochgrad, then the cwd
        script = root / "benchmarks" / BENCHMARKS[name]
        if script.is_file():
            return script
    return None


def run_benchmark(name: str, options: Sequence[str] = ()) -> int:
    """Run benchmark ``name`` with command-line ``options``; returns its exit status."""
    script = find_benchmark(name)
    if script is None:
        print(
            f"stochgrad bench: benchmarks/{BENCHMARKS[name]} is not here; the benchmarks run "
            "from a source checkout (git clone, then run stochgrad bench inside it)",
            file=sys.stderr,
        )
        return 2
    saved = sys.argv
    sys.argv = [str(script), *options]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved
    return 0
