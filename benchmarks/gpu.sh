#!/usr/bin/env bash
# Speed and accuracy of the implicit gradients and relaxations on a CUDA GPU, in under 5 minutes.
#
#   bash benchmarks/gpu.sh            (from the repository root, with the project's venv active)
#
# On CUDA the kernels run the pure-torch path (the fused kernels are CPU-only). Prints:
#   1. the GPU and torch versions;
#   2. the accuracy/consistency checks that matter on a GPU: the CUDA gradients against the CPU
#      float64 kernels on the same samples (the CPU kernels are tested against mpmath in tests/),
#      and the CUDA test subset of tests/implicit and tests/relaxed where it exists;
#   3. bench_implicit.py on the GPU in float32 and float64 (torch.utils.benchmark synchronises CUDA);
#   4. bench_relaxed.py when relaxit is installed (CPU-only library: it is skipped otherwise).
# Each step has its own time limit so that the whole script stays under 5 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}

"$PY" - <<'EOF' || { echo "no CUDA device: nothing to run"; exit 1; }
import torch
assert torch.cuda.is_available()
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())
EOF

echo "== accuracy: CUDA gradients against the CPU float64 kernels =="
timeout 90 "$PY" - <<'EOF'
import torch
import stochgrad.implicit as irt
from stochgrad.special import beta_grad, standard_gamma_log_grad

torch.manual_seed(0)
worst = {}
for dtype in (torch.float32, torch.float64):
    for a0 in (1e-3, 0.5, 3.0, 30.0, 1e4):
        a = torch.full((100_000,), a0, dtype=dtype, device="cuda")
        x = torch._standard_gamma(a).clamp_min(torch.finfo(dtype).tiny)
        gpu = standard_gamma_log_grad(a, x.log()).double().cpu()
        cpu = standard_gamma_log_grad(a.double().cpu(), x.double().cpu().log())
        err = ((gpu - cpu).abs() / cpu.abs()).max().item()
        worst[("Gamma", dtype)] = max(worst.get(("Gamma", dtype), 0.0), err)
    for a0, b0 in ((2.0, 3.0), (0.1, 0.1), (1e-3, 2.0), (50.0, 0.5)):
        a = torch.full((100_000,), a0, dtype=dtype, device="cuda")
        b = torch.full((100_000,), b0, dtype=dtype, device="cuda")
        z = irt.Beta(a, b).sample()
        gpu = [g.double().cpu() for g in beta_grad(a, b, z)]
        cpu = beta_grad(a.double().cpu(), b.double().cpu(), z.double().cpu())
        err = max(((g - c).abs() / c.abs()).max().item() for g, c in zip(gpu, cpu))
        worst[("Beta", dtype)] = max(worst.get(("Beta", dtype), 0.0), err)
for (family, dtype), err in worst.items():
    print(f"{family:5s} {str(dtype):14s} max relative difference from CPU float64: {err:.2e}")
EOF

echo "== speed: implicit gradients (float32, float64) =="
timeout 100 "$PY" benchmarks/bench_implicit.py --device cuda --repeats 3 --min-run-time 0.2
timeout 100 "$PY" benchmarks/bench_implicit.py --device cuda --dtype float64 --repeats 3 \
    --min-run-time 0.2

echo "== speed: relaxations against relaxit (CPU library) =="
if "$PY" -c "import relaxit" 2>/dev/null; then
    timeout 60 "$PY" benchmarks/bench_relaxed.py --no-shapes --repeats 1 --min-run-time 0.1
else
    echo "relaxit not installed: skipped"
fi
