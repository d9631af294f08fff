"""Compile the fused CPU kernels ahead of their first use: ``python -m stochgrad.special.build``.

The project's set-up (``./run``) calls this once per machine; the result is cached by torch
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``) and reused by every process.
Without g++ and ninja it says so and exits normally: the library then uses its pure-torch kernels.
"""

from __future__ import annotations

import sys
import time

from stochgrad.special import _native


def main() -> int:
    start = time.perf_counter()
    try:
        _native.build(verbose="-v" in sys.argv)
    except Exception as error:
        print(
            f"stochgrad: fused CPU kernels not built ({type(error).__name__}); the pure-torch "
            "kernels will be used. Install g++ and ninja, then rerun this command.",
            file=sys.stderr,
        )
        return 0
    print(f"stochgrad: fused CPU kernels ready ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
