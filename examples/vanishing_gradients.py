"""Vanishing gradients, seen: the same eight dense layers with sigmoid hidden units, with
sigmoid units and layer normalization between them, with residual sigmoid layers, and
with ReLU units, trained with plain SGD on the breast-cancer data, recording ‖∂L/∂W‖ of
every dense layer after every epoch (with the generated module's own loss_and_grad).

    python examples/vanishing_gradients.py           # prints the norms, writes the PNG
    python examples/vanishing_gradients.py --quick   # 3 epochs, no PNG (the tests)

The sigmoid's derivative is at most 1/4, so each layer the error signal passes back
through shrinks it: the first layer's gradient ends up thousands of times smaller than the
last one's, the first layers barely move, and the net predicts the majority class. A
layer normalization after each sigmoid divides by the spread σ of the layer's values, and
its backward pass by the same σ: the small derivatives no longer compound. A residual
layer passes the gradient back through its identity term unshrunk. ReLU's derivative is
1 where a unit is active and He initialization keeps the signal's scale. In the last
three every layer gets a gradient of the same order and the net learns, with the same
optimizer and learning rate.

Specs: examples/deep_sigmoid.yaml, deep_sigmoid_ln.yaml, deep_sigmoid_res.yaml
and deep_relu.yaml (30 → 7 × 32 → 1 sigmoid, binary cross-entropy, sgd with learning rate
0.02). Picture: docs/img/vanishing_gradients.png.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import realdata as rd
from train_breast_cancer import load_split

from symgrad.plot import fit_with_grad_norms, plot_histories

EPOCHS, BATCH_SIZE = 60, 32
NAMES = (
    "deep_sigmoid",
    "deep_sigmoid_ln",
    "deep_sigmoid_res",
    "deep_relu",
)


def train(split: rd.Split, name: str, *, epochs=EPOCHS, seed=0) -> dict:
    """Train one of the deep specs; returns its history with "grad_norms" (and
    "grad_norm_keys", the dense layers' weights they are of)."""
    model = rd.load_model(name)
    params = model.init_params(seed)
    return fit_with_grad_norms(
        model,
        params,
        split.X_train,
        split.y_train,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        seed=seed,
        validation_data=(split.X_test, split.y_test),
    )


def main(argv: list[str] | None = None) -> dict[str, dict]:
    p = argparse.ArgumentParser(
        description="vanishing gradients: sigmoid, with layernorm, residual, and ReLU"
    )
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"default {EPOCHS}")
    p.add_argument("--quick", action="store_true", help="3 epochs and no picture")
    p.add_argument(
        "--plot",
        metavar="PNG",
        default=str(rd.IMG / "vanishing_gradients.png"),
        help="where the picture goes (default docs/img/vanishing_gradients.png)",
    )
    args = p.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    split = load_split()
    histories = {name: train(split, name, epochs=epochs) for name in NAMES}
    for name, history in histories.items():
        first, last = np.asarray(history["grad_norms"])[[0, -1]]
        print(
            f"{name}: test accuracy after {epochs} epochs {history['val_accuracy'][-1]:.3f}"
        )
        keys = " ".join(f"{key:>8}" for key in history["grad_norm_keys"])
        print(f"  {'‖∂L/∂W‖ of':<15} {keys}")
        for when, norms in (("epoch 1", first), (f"epoch {epochs}", last)):
            cells = " ".join(f"{g:8.1e}" for g in norms)
            print(f"  after {when:>8}: {cells}")
        print(
            f"  first layer / last layer after {epochs} epochs: {last[0] / last[-1]:.1e}"
        )
    if not args.quick:
        if rd.have("matplotlib"):
            plot_histories(
                {f"{name}.yaml": h for name, h in histories.items()},
                args.plot,
                title=f"8 dense layers on breast cancer, plain SGD (lr 0.02), batch "
                f"{BATCH_SIZE}: sigmoid; sigmoid + layernorm; sigmoid + residual; ReLU",
            )
            print(f"wrote {os.path.relpath(args.plot)}")
        else:
            rd.warn('matplotlib is not installed: pip install "symgrad[plot]" to draw')
    return histories


if __name__ == "__main__":
    main()
