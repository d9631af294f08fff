"""The fused CPU kernels (``csrc/kernels.cpp``): built once per machine, loaded lazily.

The pure-torch kernels in :mod:`stochgrad.special.gamma` and :mod:`stochgrad.special.beta` run
hundreds of small ATen ops per block, each ending in a thread barrier; when the cores are shared
(a second DDP rank, pytest workers, other jobs) every barrier waits for a descheduled thread and
the kernels slow down 6-60x. The compiled kernels do the same arithmetic in one parallel pass.

They are compiled with :func:`torch.utils.cpp_extension.load` (g++ and ninja) into torch's
extension cache (``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``), at the
project's set-up (``python -m stochgrad.special.build``) or else at first use. Without a compiler
the torch path is used, with one warning. ``STOCHGRAD_NATIVE=0`` selects the torch path always.
The torch path also serves traced code (``torch.compile``, ``torch.func``), non-CPU tensors and
half precision.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "build", "usable"]

_SOURCE = Path(__file__).with_name("csrc") / "kernels.cpp"
_NAME = "stochgrad_special"


def _flags() -> list[str]:
    # No FMA contraction: the kernels must round as the sequence of torch ops does.
    flags = ["-O3", "-ffp-contract=off", "-std=c++17"]
    # ATen's vector classes at the width ATen itself runs at on this CPU, on the Sleef functions
    # that libtorch_cpu exports (the flags of ATen's own kernels of that capability).
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512":
        flags += ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"]
    if capability in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma", "-mf16c"]
        flags += [f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}"]
    return flags


def build(verbose: bool = False) -> None:
    """Compile (or find in the cache) and load the kernels; raises if that fails."""
    from torch.utils import cpp_extension

    cpp_extension.load(
        name=_NAME,
        sources=[str(_SOURCE)],
        extra_cflags=_flags(),
        is_python_module=False,
        verbose=verbose,
    )


@functools.cache
def available() -> bool:
    """Whether the fused kernels are loaded (building them on the first call if needed)."""
    if os.environ.get("STOCHGRAD_NATIVE", "1") == "0":
        return False
    try:
        build()
    except Exception as error:  # no compiler, no ninja, a read-only cache...
        warnings.warn(
            f"stochgrad: the fused CPU kernels could not be built ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); using the slower pure-torch "
            "kernels. Install g++ and ninja, then run `python -m stochgrad.special.build`.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def usable(*tensors: Tensor) -> bool:
    """Whether the fused kernels apply: eager CPU float32/float64 tensors, kernels built."""
    from stochgrad.special._quadrature import traced

    first = tensors[0]
    return (
        first.device.type == "cpu"
        and first.dtype in (torch.float32, torch.float64)
        and not traced(*tensors)
        and available()
    )
