"""The real-data examples and symgrad.plot keep working: each example's symgrad part runs
(few epochs) with the test extra alone; the scikit-learn side-by-side and the plots run
when their extras (compare, plot) are installed and are skipped, by name, when not."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))  # the examples import each other as scripts do

rd = importlib.import_module("realdata")
plot = importlib.import_module("symgrad.plot")
SCRIPTS = ("train_iris", "train_breast_cancer", "train_diabetes")


def example(script: str):
    return importlib.import_module(script).EXAMPLE


# --- the shipped data --------------------------------------------------------------------


def test_datasets_load_with_numpy_only() -> None:
    X, y, names = rd.load_iris()
    assert X.shape == (150, 4) and np.bincount(y).tolist() == [50, 50, 50]
    assert names == ["setosa", "versicolor", "virginica"]
    X, y, names = rd.load_breast_cancer()
    assert X.shape == (569, 30) and np.bincount(y).tolist() == [212, 357]
    assert names == ["malignant", "benign"]
    X, y = rd.load_diabetes()
    assert X.shape == (442, 10) and y.shape == (442,)
    assert 25 <= y.min() and y.max() <= 346


def test_split_and_standardize_use_training_statistics() -> None:
    X, y, _ = rd.load_iris()
    X_train, X_test, y_train, y_test = rd.train_test_split(X, y, seed=0)
    assert (len(X_train), len(X_test)) == (120, 30)
    again = rd.train_test_split(X, y, seed=0)
    assert np.array_equal(again[1], X_test)
    S_train, S_test = rd.standardize(X_train, X_test)
    np.testing.assert_allclose(S_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(S_train.std(axis=0), 1)
    np.testing.assert_allclose(S_test, (X_test - X_train.mean(0)) / X_train.std(0))


# --- symgrad's part of every example: needs numpy only ----------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_trains_and_scores(script: str) -> None:
    ex = example(script)
    results = rd.run(ex, epochs=3, seeds=[0], compare=False)
    assert set(results.symgrad) == set(ex.names)
    for name, (score,) in results.symgrad.items():
        history = results.histories[name]
        assert len(history["loss"]) == len(history["grad_norms"]) == 3
        assert np.isfinite(history["loss"]).all()
        if results.classifier:
            assert 0.6 < score <= 1.0, (name, score)  # 3 epochs already beat chance
        else:
            assert 45 < score < 77, (name, score)  # below the target's spread (77)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_command_line(script: str, capsys: pytest.CaptureFixture) -> None:
    importlib.import_module(script)
    rd.main(example(script), ["--quick", "--no-compare"])
    out = capsys.readouterr().out
    assert "3 epochs" in out and "symgrad generated/" in out


def test_full_run_of_iris_reaches_its_published_accuracy() -> None:
    results = rd.run(example("train_iris"), epochs=50, seeds=[0], compare=False)
    assert results.symgrad["iris"] == [pytest.approx(0.9)]


def test_fit_with_grad_norms_is_fit_one_epoch_at_a_time() -> None:
    split = example("train_iris").load_split()
    model = rd.load_model("iris")
    once, stepwise = model.init_params(3), model.init_params(3)
    history = model.fit(
        once, split.X_train, split.y_train, epochs=4, batch_size=16, seed=3
    )
    traced = plot.fit_with_grad_norms(
        model, stepwise, split.X_train, split.y_train, epochs=4, batch_size=16, seed=3
    )
    for key in once:
        np.testing.assert_array_equal(once[key], stepwise[key])
    assert traced["loss"] == history["loss"]
    _, grads = model.loss_and_grad(stepwise, split.X_train, split.y_train)
    assert traced["grad_norms"][-1] == [
        pytest.approx(float(np.linalg.norm(grads[k]))) for k in ("W1", "W2")
    ]


def test_vanishing_gradients_in_the_deep_sigmoid_net_not_the_relu_net(capsys) -> None:
    vanishing = importlib.import_module("vanishing_gradients")
    histories = vanishing.main(["--quick"])
    sigmoid = np.asarray(histories["deep_sigmoid"]["grad_norms"][-1])
    relu = np.asarray(histories["deep_relu"]["grad_norms"][-1])
    assert len(sigmoid) == len(relu) == 8
    assert sigmoid[0] / sigmoid[-1] < 1e-2  # first layer's gradient thousands× smaller
    assert 0.2 < relu[0] / relu[-1] < 5  # same order in every layer
    assert "first layer / last layer" in capsys.readouterr().out


# --- the side-by-side: needs the compare extra -------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_lockstep_with_scikit_learn(script: str) -> None:
    pytest.importorskip(
        "sklearn", reason='the compare extra: pip install "symgrad[compare]"'
    )
    ex = example(script)
    split = ex.load_split()
    model = rd.load_model(ex.names[0])
    clf, params = rd.sklearn_lockstep(
        ex.names[0],
        model,
        split.X_train,
        split.y_train,
        epochs=3,
        batch_size=ex.batch_size,
        seed=0,
    )
    # same start, same batches: only adam's eps placement differs (none for momentum)
    tolerance = 1e-4 if model.OPTIMIZER["name"] == "adam" else 1e-12
    assert rd.max_weight_difference(clf, params) < tolerance


def test_sklearn_twin_matches_the_spec() -> None:
    pytest.importorskip(
        "sklearn", reason='the compare extra: pip install "symgrad[compare]"'
    )
    model = rd.load_model("breast_cancer")
    clf = rd.sklearn_twin("breast_cancer", model, epochs=7, batch_size=35, seed=4)
    assert clf.hidden_layer_sizes == (16,) and clf.activation == "tanh"
    assert clf.solver == "adam" and clf.learning_rate_init == 0.001
    assert clf.alpha == pytest.approx(
        0.001 * 35
    )  # scikit-learn divides alpha by the batch
    assert (clf.max_iter, clf.batch_size, clf.random_state) == (7, 35, 4)


def test_compare_script_prints_the_table(capsys) -> None:
    pytest.importorskip(
        "sklearn", reason='the compare extra: pip install "symgrad[compare]"'
    )
    compare = importlib.import_module("compare_sklearn")
    table = compare.main(["--quick"])
    assert (
        table.count("\n") == 6
    )  # header, rule, iris, breast cancer, 2 diabetes, linear
    assert "within noise" in table or "outside noise" in table


# --- the plots: need the plot extra --------------------------------------------------------


def test_plot_without_matplotlib_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "symgrad\[plot\]"'):
        plot.plot_history({"loss": [1.0, 0.5]})


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason='the plot extra: pip install "symgrad[plot]"'
    )
    history = {
        "loss": [1.0, 0.5, 0.25],
        "accuracy": [0.5, 0.7, 0.9],
        "val_loss": [1.1, 0.6, 0.4],
        "val_accuracy": [0.4, 0.6, 0.8],
        "grad_norms": [[1e-4, 1e-1], [2e-4, 2e-1], [1e-4, 1e-1]],
    }
    fig = plot.plot_history(history, tmp_path / "one" / "curves.png", title="t")
    assert len(fig.axes) == 3
    assert (tmp_path / "one" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    regression = {"loss": [1.0, 0.5], "val_loss": [1.2, 0.7]}
    fig = plot.plot_histories({"a": history, "b": regression}, tmp_path / "two.png")
    assert len(fig.axes) == 6  # 2 runs × (loss, accuracy, gradient norms)
    assert (tmp_path / "two.png").stat().st_size > 1000


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_plot_option(script: str, tmp_path: Path, capsys) -> None:
    pytest.importorskip(
        "matplotlib", reason='the plot extra: pip install "symgrad[plot]"'
    )
    png = tmp_path / "curves.png"
    rd.main(example(script), ["--quick", "--no-compare", "--plot", str(png)])
    assert png.stat().st_size > 1000
