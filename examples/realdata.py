"""Shared plumbing of the real-data examples: load the shipped CSVs, split, standardize,
load a generated module, and build scikit-learn's MLP twin of a spec for a side-by-side.

NumPy only, except `sklearn_twin` and `sklearn_lockstep` (scikit-learn, the `compare`
extra) and `load_model` (symgrad, only when a module has to be generated). The train_*.py
scripts show the steps that matter; this module keeps them short.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent
DATA = EXAMPLES / "data"
GENERATED = ROOT / "generated"
IMG = ROOT / "docs" / "img"

# ---------------------------------------------------------------------------------------
# data


def _sklearn_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's CSV layout: a header `rows,features,class names...`, then rows of
    features followed by an integer class."""
    with open(path) as f:
        header = f.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    rows, features = int(header[0]), int(header[1])
    assert table.shape == (rows, features + 1), (path, table.shape)
    return table[:, :features], table[:, features].astype(np.int64), header[2:]


def load_iris() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """X (150, 4) in cm, y (150,) in {0, 1, 2}, and the species names."""
    return _sklearn_csv(DATA / "iris.csv")


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """X (569, 30), y (569,) with 0 = malignant, 1 = benign, and the class names."""
    return _sklearn_csv(DATA / "breast_cancer.csv")


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """X (442, 10) unscaled baseline variables, y (442,) disease progression after a year."""
    X = np.loadtxt(DATA / "diabetes_data_raw.csv.gz")
    y = np.loadtxt(DATA / "diabetes_target.csv.gz")
    return X, y


def train_test_split(X, y, *, test_fraction=0.2, seed=0):
    """A random split with default_rng(seed): X_train, X_test, y_train, y_test."""
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = round(test_fraction * len(X))
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


def standardize(train, *others):
    """Scale to zero mean and unit variance with the training set's statistics only."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple((a - mean) / std for a in (train, *others))


# ---------------------------------------------------------------------------------------
# the generated module


# compare_sklearn.py --init: train every spec with this init instead of its own
INIT_OVERRIDE: str | None = None


def load_model(name: str) -> ModuleType:
    """Import generated/<name>.py, generating it from examples/<name>.yaml first when it
    is missing or older than the spec (`symgrad generate examples/<name>.yaml`).

    With INIT_OVERRIDE set, the spec with that init is generated into a temporary
    directory instead (generated/ is left alone)."""
    spec_path = EXAMPLES / f"{name}.yaml"
    path = GENERATED / f"{name}.py"
    if INIT_OVERRIDE is not None:
        path = _variant(spec_path, INIT_OVERRIDE)
    elif not path.is_file() or path.stat().st_mtime < spec_path.stat().st_mtime:
        import symgrad

        symgrad.generate(spec_path, GENERATED)
    return _import(path, path.stat().st_mtime)


@functools.cache
def _import(path: Path, mtime: float) -> ModuleType:
    module_spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@functools.cache
def _variant(spec_path: Path, init: str) -> Path:
    import symgrad

    spec = dataclasses.replace(symgrad.load_spec(spec_path), init=init)
    return symgrad.generate(spec, Path(_variants().name) / init)


@functools.cache
def _variants() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="symgrad-examples-")  # removed at exit


def is_classifier(model: ModuleType) -> bool:
    return model.LOSS in ("categorical_crossentropy", "binary_crossentropy")


@dataclass(frozen=True)
class Split:
    """Standardized features; y as the model trains on it: class labels, or for
    regression (y − y_mean) / y_std, so that errors can be reported in y's units."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    y_mean: float = 0.0
    y_std: float = 1.0

    def unscale(self, y):
        return np.ravel(y) * self.y_std + self.y_mean


def rmse(prediction, y) -> float:
    return float(np.sqrt(np.mean((np.ravel(prediction) - np.ravel(y)) ** 2)))


def score(predictions, y, split: Split, classifier: bool) -> float:
    """Accuracy for a classifier; root mean squared error in y's units otherwise."""
    if classifier:
        return float(np.mean(np.ravel(predictions) == np.ravel(y)))
    return rmse(split.unscale(predictions), split.unscale(y))


# ---------------------------------------------------------------------------------------
# scikit-learn's twin of a spec

# symgrad hidden activation -> scikit-learn's name for it
SKLEARN_ACTIVATION = {
    "relu": "relu",
    "tanh": "tanh",
    "sigmoid": "logistic",
    "identity": "identity",
}


def _hidden_activation(name: str) -> str:
    import symgrad

    spec = symgrad.load_spec(EXAMPLES / f"{name}.yaml")
    hidden = {layer.activation.name for layer in spec.layers[:-1]}
    if len(hidden) != 1 or next(iter(hidden)) not in SKLEARN_ACTIVATION:
        raise ValueError(
            f"{name}.yaml: scikit-learn's MLP needs one hidden activation out of "
            f"{sorted(SKLEARN_ACTIVATION)} for all hidden layers, found {sorted(hidden)}"
        )
    return SKLEARN_ACTIVATION[hidden.pop()]


def sklearn_twin(
    name: str, model: ModuleType, *, epochs: int, batch_size: int, seed: int
):
    """scikit-learn's MLPClassifier/MLPRegressor with the spec's architecture, optimizer,
    l2, epochs, batch size and seed.

    What matches: layer sizes and hidden activation; the output layer and loss
    (scikit-learn picks softmax + cross-entropy, sigmoid + binary cross-entropy, or
    identity + ½ squared error, each a mean over the batch as in symgrad); adam's or
    (Nesterov) momentum's settings; a constant learning rate; max_iter = epochs with the
    early stop disabled; the batch size; reshuffling every epoch.

    What cannot match: scikit-learn draws its own initial weights (Glorot uniform for
    every layer, biases too; symgrad follows the spec's init, which the examples set to
    glorot_uniform where auto would pick He normal, and starts biases at zero) and its
    own shuffling, from its own RNG. Its adam adds eps to √v before the bias
    correction (torch's formula, which symgrad follows, after). Its L2 term is
    alpha/(2·batch)·Σ‖W‖², so alpha = l2 · batch_size (exact for all full batches).
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    opt = model.OPTIMIZER
    kwargs = dict(
        hidden_layer_sizes=tuple(model.LAYER_SIZES[1:-1]),
        activation=_hidden_activation(name),
        alpha=model.L2 * batch_size,
        batch_size=batch_size,
        learning_rate="constant",
        learning_rate_init=opt["learning_rate"],
        max_iter=epochs,
        shuffle=True,
        random_state=seed,
        tol=0.0,
        n_iter_no_change=max(epochs, 1),  # never stop before max_iter
    )
    if opt["name"] == "adam":
        kwargs.update(
            solver="adam", beta_1=opt["beta1"], beta_2=opt["beta2"], epsilon=opt["eps"]
        )
    elif opt["name"] == "momentum":
        kwargs.update(
            solver="sgd", momentum=opt["momentum"], nesterovs_momentum=opt["nesterov"]
        )
    else:
        kwargs.update(solver="sgd", momentum=0.0, nesterovs_momentum=False)
    if model.LOSS == "categorical_crossentropy":
        return MLPClassifier(**kwargs)
    if model.LOSS == "binary_crossentropy" and model.LAYER_SIZES[-1] == 1:
        return MLPClassifier(**kwargs)
    if model.LOSS == "mse" and model.LAYER_SIZES[-1] == 1:
        return MLPRegressor(**kwargs)
    raise ValueError(f"no scikit-learn MLP has the loss {model.LOSS!r}")


def sklearn_fit(clf, X, y):
    """clf.fit(X, y) without the ConvergenceWarning that max_iter < convergence gives."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


def sklearn_lockstep(name, model, X, y, *, epochs, batch_size, seed):
    """Train scikit-learn's twin with fit(), and symgrad from the same initial weights
    through the same batches: returns (clf, params).

    scikit-learn's fit draws everything from one RandomState(seed): first each layer's
    weights and biases, uniform in ±√(f/(fan_in + fan_out)) with f = 2 for a logistic
    hidden activation and 6 otherwise, then one reshuffle of the example order per
    epoch. Replaying those draws gives symgrad the same start and the same batches, so
    what remains of the difference is arithmetic (adam's eps, l2 on a short last batch).
    """
    from sklearn.utils import shuffle

    clf = sklearn_fit(
        sklearn_twin(name, model, epochs=epochs, batch_size=batch_size, seed=seed), X, y
    )
    rng = np.random.RandomState(seed)
    factor = 2.0 if clf.activation == "logistic" else 6.0
    params = {}
    sizes = model.LAYER_SIZES
    for l in range(1, len(sizes)):
        bound = np.sqrt(factor / (sizes[l - 1] + sizes[l]))
        params[f"W{l}"] = rng.uniform(-bound, bound, (sizes[l - 1], sizes[l]))
        params[f"b{l}"] = rng.uniform(-bound, bound, sizes[l])
    state = model.init_state(params)
    Y = y if model.LOSS == "categorical_crossentropy" else y.reshape(-1, 1)
    order = np.arange(len(X))
    for _ in range(epochs):
        order = shuffle(order, random_state=rng)
        for start in range(0, len(X), batch_size):
            batch = order[start : start + batch_size]
            model.step(params, state, X[batch], Y[batch])
    return clf, params


def max_weight_difference(clf, params) -> float:
    """max |w_sklearn − w_symgrad| over all weights and biases."""
    pairs = [(c, params[f"W{i + 1}"]) for i, c in enumerate(clf.coefs_)]
    pairs += [(b, params[f"b{i + 1}"]) for i, b in enumerate(clf.intercepts_)]
    return max(float(np.max(np.abs(a - b))) for a, b in pairs)


# ---------------------------------------------------------------------------------------
# running an example: symgrad, then scikit-learn beside it


@dataclass(frozen=True)
class Example:
    """What a train_*.py script declares: its data, its specs, how to train one."""

    title: str
    names: tuple[
        str, ...
    ]  # specs trained by symgrad; names[0] is set beside scikit-learn
    load_split: Callable[[], Split]
    train: Callable[
        ..., tuple[ModuleType, dict, dict]
    ]  # (split, *, name, epochs, seed)
    epochs: int
    batch_size: int
    baseline: Callable[[Split], tuple[str, float]] | None = None


@dataclass
class Results:
    split: Split
    epochs: int
    seeds: list[int]
    classifier: bool
    symgrad: dict[str, list[float]] = field(
        default_factory=dict
    )  # spec → score per seed
    histories: dict[str, dict] = field(
        default_factory=dict
    )  # spec → first seed's history
    seconds: dict[str, float] = field(default_factory=dict)  # per run, mean over seeds
    sklearn: list[float] | None = None
    lockstep: tuple[float, float] | None = None  # max |Δw|, prediction agreement
    baseline: tuple[str, float] | None = None

    @property
    def metric(self) -> str:
        return "test accuracy" if self.classifier else "test RMSE"


def run(example: Example, *, epochs: int, seeds: list[int], compare: bool) -> Results:
    """Train every spec of the example for each seed; with compare, scikit-learn's twin
    of names[0] too, and the lockstep check on the first seed."""
    split = example.load_split()
    results = None
    for name in example.names:
        start = time.perf_counter()
        for seed in seeds:
            model, params, history = example.train(
                split, name=name, epochs=epochs, seed=seed
            )
            if results is None:
                results = Results(split, epochs, list(seeds), is_classifier(model))
            prediction = model.predict(params, split.X_test)
            s = score(prediction, split.y_test, split, results.classifier)
            results.symgrad.setdefault(name, []).append(s)
            results.histories.setdefault(name, history)
        results.seconds[name] = (time.perf_counter() - start) / len(seeds)
    if example.baseline is not None:
        results.baseline = example.baseline(split)
    if compare:
        name = example.names[0]
        model = load_model(name)
        results.sklearn = []
        start = time.perf_counter()
        for seed in seeds:
            clf = sklearn_twin(
                name, model, epochs=epochs, batch_size=example.batch_size, seed=seed
            )
            sklearn_fit(clf, split.X_train, split.y_train)
            s = score(
                clf.predict(split.X_test), split.y_test, split, results.classifier
            )
            results.sklearn.append(s)
        results.seconds["sklearn"] = (time.perf_counter() - start) / len(seeds)
        clf, params = sklearn_lockstep(
            name,
            model,
            split.X_train,
            split.y_train,
            epochs=epochs,
            batch_size=example.batch_size,
            seed=seeds[0],
        )
        ours = np.ravel(model.predict(params, split.X_test))
        theirs = np.ravel(clf.predict(split.X_test))
        if results.classifier:
            agreement = float(np.mean(ours == theirs))
        else:
            agreement = float(
                np.max(np.abs(split.unscale(ours) - split.unscale(theirs)))
            )
        results.lockstep = (max_weight_difference(clf, params), agreement)
    return results


def summary(values: list[float]) -> str:
    values = np.asarray(values)
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def print_results(example: Example, results: Results) -> None:
    seeds, split = results.seeds, results.split
    seed_text = (
        f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
    )
    print(
        f"{example.title}: {len(split.X_train)} training / {len(split.X_test)} test "
        f"examples; {results.epochs} epochs, batch {example.batch_size}, {seed_text}"
    )
    if len(seeds) > 1:
        print(f"  (mean ± standard deviation over {len(seeds)} seeds)")
    unit = "" if results.classifier else " (target units)"
    print(f"  {'model':<36} {results.metric}{unit}")
    rows = [
        (f"symgrad generated/{k}.py", v, results.seconds[k])
        for k, v in results.symgrad.items()
    ]
    if results.sklearn is not None:
        kind = "MLPClassifier" if results.classifier else "MLPRegressor"
        rows.insert(
            1, (f"scikit-learn {kind}", results.sklearn, results.seconds["sklearn"])
        )
    for label, scores, seconds in rows:
        print(f"  {label:<36} {summary(scores):<18} {seconds:.2f} s/run")
    if results.baseline is not None:
        label, value = results.baseline
        print(f"  {label:<36} {value:.4f}")
    if results.lockstep is not None:
        dw, agreement = results.lockstep
        same = (
            f"{agreement:.0%} of test predictions equal"
            if results.classifier
            else f"test predictions within {agreement:.2g}"
        )
        print(
            f"  symgrad from scikit-learn's initial weights and batch order "
            f"({example.names[0]}, seed {seeds[0]}):\n"
            f"    max |w_sklearn − w_symgrad| = {dw:.1e}, {same}"
        )


def main(example: Example, argv: list[str] | None = None) -> Results:
    """The command line of a train_*.py script."""
    p = argparse.ArgumentParser(description=example.title)
    p.add_argument(
        "--epochs", type=int, default=example.epochs, help=f"default {example.epochs}"
    )
    p.add_argument("--seed", type=int, default=0, help="the first training seed (0)")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="train with N seeds from --seed on and report mean ± sd (default 1)",
    )
    p.add_argument("--quick", action="store_true", help="3 epochs: a smoke test")
    p.add_argument(
        "--no-compare",
        action="store_true",
        help="skip scikit-learn even when it is installed",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        nargs="?",
        const="",
        help="write the training curves of the first seed "
        f"(default {IMG.relative_to(ROOT)}/{example.names[0]}_training.png)",
    )
    args = p.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    seeds = list(range(args.seed, args.seed + args.seeds))
    compare = not args.no_compare and have("sklearn")
    if not compare and not args.no_compare:
        warn('scikit-learn is not installed: pip install "symgrad[compare]" to compare')
    results = run(example, epochs=epochs, seeds=seeds, compare=compare)
    print_results(example, results)
    if args.plot is not None and not have("matplotlib"):
        warn('matplotlib is not installed: pip install "symgrad[plot]" to plot')
    elif args.plot is not None:
        from symgrad.plot import plot_histories

        path = args.plot or IMG / f"{example.names[0]}_training.png"
        labels = {name: f"{name}.yaml, seed {seeds[0]}" for name in results.histories}
        plot_histories(
            {labels[k]: h for k, h in results.histories.items()},
            path,
            title=f"{example.title}: {results.epochs} epochs, batch {example.batch_size}",
        )
        print(f"wrote {os.path.relpath(path)}")
    return results


def have(package: str) -> bool:
    """Whether an optional package (an extra) imports."""
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


def warn(message: str) -> None:
    print(message, file=sys.stderr)
