"""Dev check: the generated step's optimizers against torch.optim, float64.

    python benchmarks/optimizers_vs_torch.py

The test suite compares against optax (tests/test_optimizers.py) to keep CI light; this
script runs the same trajectories beside torch.optim.SGD (plain, momentum, Nesterov) and
torch.optim.Adam: the same start, the same mini-batches, torch's autograd for the
gradients, and prints the largest relative difference of the parameters after 20 steps.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import impls  # noqa: E402

OPTIMIZERS = {
    "sgd": (
        {"name": "sgd", "learning_rate": 0.1},
        lambda p: torch.optim.SGD(p, lr=0.1),
    ),
    "momentum": (
        {"name": "momentum", "learning_rate": 0.05, "momentum": 0.8},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8),
    ),
    "nesterov": (
        {"name": "momentum", "learning_rate": 0.05, "momentum": 0.8, "nesterov": True},
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
    ),
    "adam": (
        {
            "name": "adam",
            "learning_rate": 0.01,
            "beta1": 0.8,
            "beta2": 0.99,
            "eps": 1e-6,
        },
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    ),
}


def main() -> None:
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    Y = np.eye(3)[rng.integers(0, 3, 40)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (settings, make_opt) in OPTIMIZERS.items():
            spec = {
                "name": f"opt_{name}",
                "input": 5,
                "layers": [
                    {"units": 8, "activation": "tanh"},
                    {"units": 3, "activation": "softmax"},
                ],
                "loss": "categorical_crossentropy",
                "l2": 0.01,
                "optimizer": settings,
            }
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(yaml.safe_dump(spec))
            import symgrad

            module = impls.load_module(symgrad.generate(path, tmp), f"opt_{name}")
            params = module.init_params(seed=1)
            tensors = {
                k: torch.tensor(v, requires_grad=True) for k, v in params.items()
            }
            opt = make_opt(list(tensors.values()))
            state = module.init_state(params)
            for step in range(20):
                batch = np.random.default_rng(step).permutation(40)[:16]
                module.step(params, state, X[batch], Y[batch])
                opt.zero_grad()
                Xb, Yb = torch.from_numpy(X[batch]), torch.from_numpy(Y[batch])
                a = torch.tanh(Xb @ tensors["W1"] + tensors["b1"])
                z = a @ tensors["W2"] + tensors["b2"]
                loss = -(Yb * torch.log_softmax(z, dim=1)).sum() / len(batch)
                loss = loss + 0.005 * (
                    tensors["W1"].square().sum() + tensors["W2"].square().sum()
                )
                loss.backward()
                opt.step()
            worst = max(
                float(
                    np.abs(params[k] - t.detach().numpy()).max()
                    / np.abs(params[k]).max()
                )
                for k, t in tensors.items()
            )
            print(f"{name:9s} max relative difference after 20 steps: {worst:.1e}")


if __name__ == "__main__":
    main()
