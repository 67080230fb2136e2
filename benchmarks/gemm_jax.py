"""The matrix products of a config's step alone: NumPy (OpenBLAS) against XLA (jax.jit).

    python benchmarks/gemm_jax.py [--config layers] [--dtype float32]

The products of benchmarks/impls.py's GEMM floor (forward A W per dense layer; Aᵀδ per
dense layer and δWᵀ below the first), timed in one process as NumPy calls and as one
jax.jit function: where XLA's products are faster than OpenBLAS's, no NumPy module can be
as fast as a JAX step, whatever it does between the products. Prints the CPU model, the
BLAS NumPy uses and the medians of 7 rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import impls  # noqa: E402
import run  # noqa: E402


def products(X, Ws, Ds):
    A, As = X, [X]
    for W in Ws[:-1]:
        A = A @ W
        As.append(A)
    out = [As[-1] @ Ws[-1]]
    for l in range(len(Ws) - 1, -1, -1):
        out.append(As[l].T @ Ds[l])
        if l:
            out.append(Ds[l] @ Ws[l].T)
    return out


def median_time(f, args, n: int = 200, rounds: int = 7) -> float:
    import jax

    for _ in range(20):
        result = f(*args)
    jax.block_until_ready(result)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            result = f(*args)
        jax.block_until_ready(result)
        times.append((time.perf_counter() - t0) / n)
    return float(np.median(times))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="layers", choices=list(impls.CONFIGS))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    cfg = impls.CONFIGS[args.config]
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    dense = [(n, k) for n, k in zip(cfg.sizes[:-1], cfg.sizes[1:], strict=True)]
    Ws = [rng.standard_normal(s).astype(dtype) for s in dense]
    X = rng.standard_normal((cfg.batch, cfg.sizes[0])).astype(dtype)
    Ds = [rng.standard_normal((cfg.batch, k)).astype(dtype) for _, k in dense]
    jitted = jax.jit(products)
    on_device = [jax.numpy.asarray(a) for a in (X,)], Ws, Ds
    t_np = median_time(products, (X, Ws, Ds))
    t_jax = median_time(
        jitted,
        (
            on_device[0][0],
            [jax.numpy.asarray(w) for w in Ws],
            [jax.numpy.asarray(d) for d in Ds],
        ),
    )
    print(f"Machine: {run.machine()}")
    count = len(Ws) + 2 * len(Ws) - 1  # forward, Aᵀδ, δWᵀ below the first
    print(f"{args.config} {args.dtype}: the {count} products of a step")
    print(f"  NumPy (np.dot, OpenBLAS): {t_np * 1e3:.3f} ms")
    print(
        f"  XLA (jax.jit):            {t_jax * 1e3:.3f} ms  ({t_np / t_jax:.2f}× faster)"
    )


if __name__ == "__main__":
    main()
