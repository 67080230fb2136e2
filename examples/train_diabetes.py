"""Diabetes progression (Efron et al. 2004) from 10 baseline variables: a generated
regression net trained with ½ squared error and with the Huber loss, beside scikit-learn's
MLPRegressor (squared error; it has no Huber loss) and a least-squares line.

    python examples/train_diabetes.py                # one seed; scikit-learn if installed
    python examples/train_diabetes.py --seeds 10     # mean ± sd over seeds 0-9
    python examples/train_diabetes.py --plot         # docs/img/diabetes_training.png

Data: examples/data/diabetes_*.csv.gz (see examples/data/README.md). Specs:
examples/diabetes.yaml (mse) and examples/diabetes_huber.yaml (huber, δ = 1), both
10 → 16 ReLU → 1 linear with Nesterov momentum. Errors are root mean squared errors in
the target's units (its test-set standard deviation is 77).
"""

from __future__ import annotations

import numpy as np
import realdata as rd

from symgrad.plot import fit_with_grad_norms

EPOCHS, BATCH_SIZE = 20, 32


def load_split() -> rd.Split:
    """80/20 train/test split with a fixed seed; features and target standardized with
    the training set's statistics (errors are reported back in the target's units)."""
    X, y = rd.load_diabetes()
    X_train, X_test, y_train, y_test = rd.train_test_split(X, y, seed=0)
    X_train, X_test = rd.standardize(X_train, X_test)
    y_mean, y_std = float(y_train.mean()), float(y_train.std())
    y_train, y_test = rd.standardize(y_train, y_test)
    return rd.Split(X_train, X_test, y_train, y_test, y_mean, y_std)


def train(split: rd.Split, *, name="diabetes", epochs=EPOCHS, seed=0):
    """Fresh parameters from the seed, then mini-batch Nesterov momentum; returns the
    model, the trained parameters and the history (loss, val_loss, grad_norms)."""
    model = rd.load_model(name)  # generated/diabetes.py or generated/diabetes_huber.py
    params = model.init_params(seed)
    history = fit_with_grad_norms(  # model.fit, also recording ‖∂L/∂Wₗ‖ per epoch
        model,
        params,
        split.X_train,
        split.y_train,  # shape (m,): one output unit
        epochs=epochs,
        batch_size=BATCH_SIZE,
        seed=seed,
        validation_data=(split.X_test, split.y_test),
    )
    return model, params, history


def least_squares(split: rd.Split) -> tuple[str, float]:
    """The linear model's test RMSE, for scale: diabetes is close to linear."""
    A = np.column_stack([split.X_train, np.ones(len(split.X_train))])
    w, *_ = np.linalg.lstsq(A, split.y_train, rcond=None)
    prediction = np.column_stack([split.X_test, np.ones(len(split.X_test))]) @ w
    return "least squares (linear, for scale)", rd.score(
        prediction, split.y_test, split, classifier=False
    )


EXAMPLE = rd.Example(
    title="Diabetes (linear output, mse and huber)",
    names=("diabetes", "diabetes_huber"),
    load_split=load_split,
    train=train,
    epochs=EPOCHS,
    batch_size=BATCH_SIZE,
    baseline=least_squares,
)

if __name__ == "__main__":
    rd.main(EXAMPLE)
