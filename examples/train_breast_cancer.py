"""Breast Cancer Wisconsin (Diagnostic): benign or malignant from 30 cell-nucleus
features, with a generated sigmoid + binary cross-entropy classifier, beside
scikit-learn's MLPClassifier with the same settings.

    python examples/train_breast_cancer.py                # one seed; scikit-learn if installed
    python examples/train_breast_cancer.py --seeds 10     # mean ± sd over seeds 0-9
    python examples/train_breast_cancer.py --plot         # docs/img/breast_cancer_training.png

Data: examples/data/breast_cancer.csv (Wolberg, Street, Mangasarian 1995; see
examples/data/README.md). Spec: examples/breast_cancer.yaml, 30 → 16 tanh → 1 sigmoid,
binary cross-entropy, l2 = 0.001, adam.
"""

from __future__ import annotations

import realdata as rd

from symgrad.plot import fit_with_grad_norms

# 35 divides the 455 training examples: every batch is full, so scikit-learn's L2 penalty
# (alpha / batch size) equals the spec's l2 on every step with alpha = l2 · 35.
EPOCHS, BATCH_SIZE = 50, 35


def load_split() -> rd.Split:
    """80/20 train/test split with a fixed seed; features standardized with the
    training set's statistics. y: 1 = benign, 0 = malignant."""
    X, y, _classes = rd.load_breast_cancer()
    X_train, X_test, y_train, y_test = rd.train_test_split(X, y, seed=0)
    X_train, X_test = rd.standardize(X_train, X_test)
    return rd.Split(X_train, X_test, y_train, y_test)


def train(split: rd.Split, *, name="breast_cancer", epochs=EPOCHS, seed=0):
    """Fresh parameters from the seed, then mini-batch adam; returns the model, the
    trained parameters and the history (loss, accuracy, val_*, grad_norms per epoch)."""
    model = rd.load_model(name)  # generated/breast_cancer.py
    params = model.init_params(seed)
    history = fit_with_grad_norms(  # model.fit, also recording ‖∂L/∂Wₗ‖ per epoch
        model,
        params,
        split.X_train,
        split.y_train,  # 0/1 labels, shape (m,) or (m, 1)
        epochs=epochs,
        batch_size=BATCH_SIZE,
        seed=seed,
        validation_data=(split.X_test, split.y_test),
    )
    return model, params, history


EXAMPLE = rd.Example(
    title="Breast cancer (sigmoid + binary cross-entropy)",
    names=("breast_cancer",),
    load_split=load_split,
    train=train,
    epochs=EPOCHS,
    batch_size=BATCH_SIZE,
)

if __name__ == "__main__":
    rd.main(EXAMPLE)
