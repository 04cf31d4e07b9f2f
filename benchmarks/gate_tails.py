"""What a gate loop's scalar remainder costs at the project's widths.

    PYTHONPATH=src .venv/bin/python benchmarks/gate_tails.py [--widths 36,46] [--llvm-option OPT]

The fused kernels' gate loops run ``out[b, j] = sigmoid(x[b, j] + r[b, j] + bias[j])`` over
``B = 4`` rows of ``G`` columns per step (``rnnbench.nn.kernels.common._sigmoid``, the rational
form that vectorises). LLVM vectorises the loop over ``j`` in blocks and runs the remainder
one element at a time, so a width just short of a block costs nearly as much as the next block
(issue 22: the GRU's H = 46, the LSTM's 36, the head's 88). For each width this prints the
nanoseconds per call (one thread, best of 7 blocks of 20,000 calls, CPU time) of the plain loop
and of one where the row is first copied into a buffer padded to a multiple of 8 (the
remainder then vectorised too; the copies are the price), after checking that both give the
same bits. ``--llvm-option`` passes one LLVM command-line option (``llvmlite.binding.set_option``)
before anything compiles, e.g. ``--prefer-predicate-over-epilogue=predicate-else-scalar-epilogue``
(masked tails). Nothing here is cached; no kernel of the package changes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="36,40,46,48,88,92,138,144")
    p.add_argument("--llvm-option", default="")
    p.add_argument("--calls", type=int, default=20000)
    args = p.parse_args()
    if args.llvm_option:
        import llvmlite.binding as ll

        ll.set_option("", args.llvm_option)
    import numba
    import numpy as np

    from rnnbench.nn.kernels.common import _sigmoid

    jit = numba.njit(nogil=True, error_model="numpy")

    @jit
    def plain(x, r, bias, out, n):
        B, G = x.shape
        for _ in range(n):
            for b in range(B):
                for j in range(G):
                    out[b, j] = _sigmoid(x[b, j] + r[b, j] + bias[j])

    @jit
    def padded(x, r, bias, out, n):
        B, G = x.shape
        P = (G + 7) // 8 * 8
        pre = np.zeros(P, np.float32)
        act = np.empty(P, np.float32)
        for _ in range(n):
            for b in range(B):
                for j in range(G):
                    pre[j] = x[b, j] + r[b, j] + bias[j]
                for j in range(P):
                    act[j] = _sigmoid(pre[j])
                for j in range(G):
                    out[b, j] = act[j]

    rng = np.random.default_rng(0)
    print(f"one thread; LLVM option: {args.llvm_option or 'none'}")
    print("| width G | plain ns per call (4 rows) | padded | plain ns per element |")
    print("|---:|---:|---:|---:|")
    for g in (int(w) for w in args.widths.split(",")):
        x, r = (rng.standard_normal((4, g), dtype=np.float32) for _ in range(2))
        bias = rng.standard_normal(g, dtype=np.float32)
        outs = {"plain": np.empty_like(x), "padded": np.empty_like(x)}
        fns = {"plain": plain, "padded": padded}
        for name, fn in fns.items():
            fn(x, r, bias, outs[name], 1)
        if not np.array_equal(outs["plain"], outs["padded"]):
            raise SystemExit(f"width {g}: the padded loop's results differ from the plain loop's")
        best: dict[str, float] = {}
        for _ in range(7):
            for name, fn in fns.items():
                start = time.process_time()
                fn(x, r, bias, outs[name], args.calls)
                ns = (time.process_time() - start) / args.calls * 1e9
                best[name] = min(best.get(name, float("inf")), ns)
        per = best["plain"] / (4 * g)
        print(f"| {g} | {best['plain']:.1f} | {best['padded']:.1f} | {per:.2f} |")


if __name__ == "__main__":
    main()
