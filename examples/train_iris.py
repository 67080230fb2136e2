"""Iris species from four flower measurements: a generated softmax classifier trained on
real data, beside scikit-learn's MLPClassifier with the same settings.

    python examples/train_iris.py                 # one seed; scikit-learn if installed
    python examples/train_iris.py --seeds 10      # mean ± sd over seeds 0-9
    python examples/train_iris.py --plot          # docs/img/iris_training.png

Data: examples/data/iris.csv (Fisher 1936; see examples/data/README.md). Spec:
examples/iris.yaml, 4 → 16 ReLU → 3 softmax, categorical cross-entropy, adam.
"""

from __future__ import annotations

import realdata as rd

from symgrad.plot import fit_with_grad_norms

EPOCHS, BATCH_SIZE = 50, 16


def load_split() -> rd.Split:
    """80/20 train/test split with a fixed seed; features standardized with the
    training set's mean and standard deviation."""
    X, y, _species = rd.load_iris()
    X_train, X_test, y_train, y_test = rd.train_test_split(X, y, seed=0)
    X_train, X_test = rd.standardize(X_train, X_test)
    return rd.Split(X_train, X_test, y_train, y_test)


def train(split: rd.Split, *, name="iris", epochs=EPOCHS, seed=0):
    """Fresh parameters from the seed, then mini-batch adam; returns the model, the
    trained parameters and the history (loss, accuracy, val_*, grad_norms per epoch)."""
    model = rd.load_model(name)  # generated/iris.py (generated first if missing)
    params = model.init_params(seed)
    history = fit_with_grad_norms(  # model.fit, also recording ‖∂L/∂Wₗ‖ per epoch
        model,
        params,
        split.X_train,
        split.y_train,  # integer labels 0-2; one-hot rows work too
        epochs=epochs,
        batch_size=BATCH_SIZE,
        seed=seed,
        validation_data=(split.X_test, split.y_test),
    )
    return model, params, history


EXAMPLE = rd.Example(
    title="Iris (softmax + categorical cross-entropy)",
    names=("iris",),
    load_split=load_split,
    train=train,
    epochs=EPOCHS,
    batch_size=BATCH_SIZE,
)

if __name__ == "__main__":
    rd.main(EXAMPLE)
