"""A CNN on scikit-learn's 8×8 digits beside the same CNN in PyTorch and beside an MLP:
examples/digits_cnn.yaml (conv 8 3×3 relu → maxpool 2 → conv 16 3×3 same relu → avgpool 2
→ flatten → 10 softmax, categorical cross-entropy, adam lr 0.003) and
examples/digits_mlp.yaml (64 → 32 relu → 10 softmax, the same loss and optimizer).

    python examples/compare_cnn.py --seeds 5      # needs scikit-learn (its digits) and torch
    python examples/compare_cnn.py --quick        # 1 seed, 2 epochs: the tests' smoke run

The digits are load_digits() (1797 images, shipped inside scikit-learn: nothing is
downloaded), pixel values scaled by 1/16, split 80/20 with a fixed seed. For each seed s
both start from the module's init_params(s) (copied into torch.nn.Conv2d and Linear:
PyTorch's layout, a dense W transposed) and train in float32 with adam on the same
batches in the same order (fit's: default_rng(s + epoch).permutation, batches of 32, the
last one smaller); the MLP starts from its own init_params(s) and trains on the same
batches. The table gives the held-out accuracy as mean ± sd over the seeds.
The lockstep column trains both in float64 from seed 0 for one epoch and gives the
largest difference of any parameter at the end: what is left is arithmetic.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import realdata as rd

NAME, MLP, EPOCHS, BATCH_SIZE = "digits_cnn", "digits_mlp", 30, 32


def load_digits_split(seed: int = 0):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = rd.train_test_split(X / 16.0, y, seed=seed)
    return X_train, X_test, y_train, y_test


def torch_twin(module, params: dict, dtype):
    """The same network in PyTorch, holding copies of params."""
    import torch
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).to(dtype)
    with torch.no_grad():
        for layer, l in ((net[0], 1), (net[3], 3), (net[7], 6)):
            W = params[f"W{l}"]
            layer.weight.copy_(torch.from_numpy(W.T.copy() if W.ndim == 2 else W))
            layer.bias.copy_(torch.from_numpy(params[f"b{l}"]))
    return net


def train_torch(net, X, y, *, epochs: int, seed: int, dtype) -> None:
    import torch

    optimizer = torch.optim.Adam(net.parameters(), lr=0.003)
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.from_numpy(X.reshape(-1, 1, 8, 8)).to(dtype)
    labels = torch.from_numpy(y).long()
    n = len(X)
    for epoch in range(epochs):
        order = np.random.default_rng(seed + epoch).permutation(n)
        for start in range(0, n, BATCH_SIZE):
            batch = torch.from_numpy(order[start : start + BATCH_SIZE])
            optimizer.zero_grad()
            loss_fn(net(images[batch]), labels[batch]).backward()
            optimizer.step()


def torch_accuracy(net, X, y, dtype) -> float:
    import torch

    with torch.no_grad():
        logits = net(torch.from_numpy(X.reshape(-1, 1, 8, 8)).to(dtype))
    return float((logits.argmax(dim=1).numpy() == y).mean())


def lockstep(module, X, y) -> float:
    """Both in float64 from seed 0 for one epoch: the largest |Δ| of any parameter."""
    import torch

    params = module.init_params(0)
    net = torch_twin(module, params, torch.float64)
    module.fit(params, X, y, epochs=1, batch_size=BATCH_SIZE, seed=0)
    train_torch(net, X, y, epochs=1, seed=0, dtype=torch.float64)
    pairs = ((net[0], 1), (net[3], 3), (net[7], 6))
    worst = 0.0
    for layer, l in pairs:
        W = layer.weight.detach().numpy()
        W = W.T if W.ndim == 2 else W
        worst = max(worst, float(np.abs(W - params[f"W{l}"]).max()))
        b = layer.bias.detach().numpy()
        worst = max(worst, float(np.abs(b - params[f"b{l}"]).max()))
    return worst


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 1, 2
    import torch

    torch.set_num_threads(1)  # tiny tensors: one thread is PyTorch's fastest here
    module, mlp = rd.load_model(NAME), rd.load_model(MLP)
    X_train, X_test, y_train, y_test = load_digits_split()
    scores: dict[str, list[float]] = {"symgrad": [], "torch": [], "mlp": []}
    seconds: dict[str, float] = {"symgrad": 0.0, "torch": 0.0, "mlp": 0.0}
    for seed in range(args.seeds):
        params = mlp.init_params(seed, dtype=np.float32)
        t0 = time.perf_counter()
        mlp.fit(
            params,
            X_train,
            y_train,
            epochs=args.epochs,
            batch_size=BATCH_SIZE,
            seed=seed,
        )
        seconds["mlp"] += time.perf_counter() - t0
        predicted = mlp.predict(params, X_test.astype(np.float32))
        scores["mlp"].append(float((predicted == y_test).mean()))
        params = module.init_params(seed, dtype=np.float32)
        net = torch_twin(module, params, torch.float32)
        t0 = time.perf_counter()
        module.fit(
            params,
            X_train,
            y_train,
            epochs=args.epochs,
            batch_size=BATCH_SIZE,
            seed=seed,
        )
        seconds["symgrad"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        train_torch(
            net, X_train, y_train, epochs=args.epochs, seed=seed, dtype=torch.float32
        )
        seconds["torch"] += time.perf_counter() - t0
        predicted = module.predict(params, X_test.astype(np.float32))
        scores["symgrad"].append(float((predicted == y_test).mean()))
        scores["torch"].append(torch_accuracy(net, X_test, y_test, torch.float32))
    drift = lockstep(module, X_train, y_train)
    print(
        f"digits_cnn and digits_mlp on scikit-learn's digits: {len(X_train)} training /"
        f" {len(X_test)} test images; {args.epochs} epochs, batch {BATCH_SIZE},"
        f" seeds 0-{args.seeds - 1}"
    )
    print("  model                          test accuracy (mean ± sd)   time per run")
    for name, label in (
        ("symgrad", "symgrad generated/digits_cnn"),
        ("torch", "PyTorch"),
        ("mlp", "symgrad generated/digits_mlp"),
    ):
        print(
            f"  {label:<30} {rd.summary(scores[name]):<27} "
            f"{seconds[name] / args.seeds:.1f} s"
        )
    print(f"  lockstep, 1 epoch in float64 from seed 0: max |Δparameter| = {drift:.1e}")
    return {"scores": scores, "lockstep": drift}


if __name__ == "__main__":
    main()
