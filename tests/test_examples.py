"""The real-data examples and symgrad.plot keep working: each example's symgrad part runs
(few epochs) with the test extra alone; the scikit-learn side-by-side and the plots run
when their extras (compare, plot) are installed and are skipped, by name, when not; the
PyTorch side-by-side (examples/compare_torch.py) runs when torch is installed (no extra
installs it) and is skipped, saying so, when not."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

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


def test_grad_norms_are_of_the_dense_layers_weights_in_layer_order() -> None:
    # layernorm between the dense layers: the weights are W1, W3, …, W13, W14, and the
    # norms' gamma{l}, beta{l} are not among them
    model = rd.load_model("deep_sigmoid_ln")
    dense = [f"W{l}" for l in (1, 3, 5, 7, 9, 11, 13, 14)]
    assert plot.weight_keys(model) == dense
    params = model.init_params(1)
    split = example("train_breast_cancer").load_split()
    X, y = split.X_train[:50], split.y_train[:50]
    _, grads = model.loss_and_grad(params, X, y)
    assert {k for k in grads if k.startswith(("gamma", "beta"))}  # they are there
    norms = plot.grad_norms(model, params, X, y)
    assert norms == [pytest.approx(float(np.linalg.norm(grads[k]))) for k in dense]
    # W10 sorts after W9, not after W1
    fake = type("M", (), {"PARAM_NAMES": ("W10", "b10", "W2", "gamma9", "W9")})
    assert plot.weight_keys(fake) == ["W2", "W9", "W10"]


def test_vanishing_gradients_in_the_deep_sigmoid_net_not_the_others(capsys) -> None:
    vanishing = importlib.import_module("vanishing_gradients")
    histories = vanishing.main(["--quick"])
    assert list(histories) == [
        "deep_sigmoid",
        "deep_sigmoid_ln",
        "deep_sigmoid_res",
        "deep_relu",
    ]
    last = {k: np.asarray(h["grad_norms"][-1]) for k, h in histories.items()}
    assert {len(norms) for norms in last.values()} == {8}  # the eight dense layers
    ratio = {k: norms[0] / norms[-1] for k, norms in last.items()}
    # the README's claim: the sigmoid stack's first layer gets a gradient thousands of
    # times smaller than its last; with layernorm, residual connections or ReLU the
    # layers' gradients are of one order (a margin of 30 between 1e-2 and 0.3)
    assert ratio["deep_sigmoid"] < 1e-2
    for name in ("deep_sigmoid_ln", "deep_sigmoid_res", "deep_relu"):
        assert 0.3 < ratio[name] < 5, (name, ratio[name])
    accuracy = {k: h["val_accuracy"][-1] for k, h in histories.items()}
    assert accuracy["deep_sigmoid"] == pytest.approx(76 / 114)  # the majority class
    assert histories["deep_sigmoid_ln"]["grad_norm_keys"][1] == "W3"
    out = capsys.readouterr().out
    assert out.count("first layer / last layer") == 4


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


# --- beside PyTorch: runs when torch is installed (it is in no extra) -------------------

TORCH = "PyTorch is in no extra of symgrad (pip install torch): compare_torch.py's twin"


def torch_example():
    pytest.importorskip("torch", reason=TORCH)
    compare = importlib.import_module("compare_torch")
    model = rd.load_model(compare.NAME)
    spec = importlib.import_module("symgrad").load_spec(
        EXAMPLES / f"{compare.NAME}.yaml"
    )
    return compare, model, spec, compare.load_split()


def test_torch_lockstep_with_the_same_masks_agrees_to_rounding() -> None:
    compare, model, spec, split = torch_example()
    assert model.DROPOUT and model.BUFFER_NAMES  # dropout and batchnorm, trained
    dw, steps, same = compare.lockstep(model, spec, split, epochs=2)
    assert steps == 2 * 15  # 455 examples: 14 batches of 32 and one of 7 per epoch
    assert dw < 1e-12  # every weight, gain, shift and running statistic
    assert same == 1.0


def test_torch_lockstep_sees_a_mask_that_differs(monkeypatch) -> None:
    # the agreement above is not vacuous: one mask entry changed in one step shows
    compare, model, spec, split = torch_example()
    replay, calls = compare.replayed_masks, []

    def one_entry_off(spec, rng, m):
        masks, after = replay(spec, rng, m)
        calls.append(m)
        if len(calls) == 3:
            kept = masks[-1].max()  # 1/(1 − rate)
            masks[-1][0, 0] = kept - masks[-1][0, 0]  # kept <-> dropped
        return masks, after

    monkeypatch.setattr(compare, "replayed_masks", one_entry_off)
    dw, _, _ = compare.lockstep(model, spec, split, epochs=1)
    assert dw > 1e-6


def test_torch_comparison_prints_the_table(capsys) -> None:
    compare, *_ = torch_example()
    text = compare.main(["--quick"])
    rows = text.split("\n\n")[0].splitlines()
    assert len(rows) == 4  # header, rule, accuracy, loss
    assert rows[2].count("within noise") + rows[2].count("outside noise") == 1
    lockstep = float(rows[2].rsplit("|", 2)[1].split()[0])
    assert lockstep < 1e-12
    assert "100% of test predictions equal" in capsys.readouterr().out


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
    # a network with norm layers: its dense weights label the curves, and a row whose
    # weights differ from those of every legend above gets its own legend
    normed = dict(history, grad_norm_keys=["W1", "W3"])
    runs = {"a": history, "b": normed, "c": normed, "d": history}
    fig = plot.plot_histories(runs)
    legends = [ax.get_legend() for ax in fig.axes[2::3]]
    labels = [[t.get_text() for t in lg.get_texts()] if lg else None for lg in legends]
    assert labels == [["W1", "W2"], ["W1", "W3"], None, None]


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_plot_option(script: str, tmp_path: Path, capsys) -> None:
    pytest.importorskip(
        "matplotlib", reason='the plot extra: pip install "symgrad[plot]"'
    )
    png = tmp_path / "curves.png"
    rd.main(example(script), ["--quick", "--no-compare", "--plot", str(png)])
    assert png.stat().st_size > 1000


# --- the README's tutorial runs as shown --------------------------------------------------

README = ROOT / "README.md"
TUTORIAL = "## Tutorial: from a spec to a trained model"
FIRST = "## A first network"
BY_HAND = "## Backpropagation by hand, with the numbers"
# what each README section that is run as shown needs beside it (from examples/)
SECTIONS = {
    FIRST: ("xor.yaml",),
    TUTORIAL: ("iris.yaml", "data"),
    BY_HAND: ("mazur.yaml", "data"),
}
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
# Runs the tutorial's python blocks in one interpreter, in order, from the directory given
# as the working directory (the repository root, as a reader types them); writes each
# block's stdout. A block that plots is left out unless argv[3] == "plot".
DRIVER = """
import contextlib, io, json, sys
sys.path.insert(0, ".")
blocks, plot = json.load(open(sys.argv[1])), sys.argv[3] == "plot"
namespace, outputs = {"__name__": "__main__"}, []
for code in blocks:
    if "plot_history(" in code and not plot:
        outputs.append(None)
        continue
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, "README.md", "exec"), namespace)
    outputs.append(buffer.getvalue())
json.dump(outputs, open(sys.argv[2], "w"))
"""


def tutorial_blocks(title: str = TUTORIAL) -> list[tuple[str, str]]:
    """(language, text) of every fenced block of a README section, in order."""
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    section = text[start : end if end >= 0 else len(text)]
    return re.findall(r"^```(\w*)\n(.*?)^```$", section, flags=re.S | re.M)


def tutorial_steps(
    title: str = TUTORIAL,
) -> tuple[list[tuple[str, str]], list[tuple[str, str | None]]]:
    """The console commands with their shown output, and the python blocks with the
    text block that follows each (None when none does)."""
    blocks = tutorial_blocks(title)
    commands, programs = [], []
    for i, (language, text) in enumerate(blocks):
        if language == "console":
            for chunk in re.split(r"^\$ ", text, flags=re.M)[1:]:
                command, _, output = chunk.partition("\n")
                commands.append((command, output))
        elif language == "python":
            follows = blocks[i + 1] if i + 1 < len(blocks) else ("", "")
            programs.append((text, follows[1] if follows[0] == "text" else None))
    return commands, programs


def run_tutorial(
    directory: Path, *, plot: bool, title: str = TUTORIAL
) -> list[tuple[str, str, str]]:
    """Run a README section in a fresh copy of the files it uses; returns (step, shown,
    printed) for every command and python block run."""
    (directory / "examples").mkdir()
    for name in SECTIONS[title]:
        if (EXAMPLES / name).is_dir():
            shutil.copytree(EXAMPLES / name, directory / "examples" / name)
        else:
            shutil.copy(EXAMPLES / name, directory / "examples")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    commands, programs = tutorial_steps(title)
    results = []
    for command, shown in commands:
        done = subprocess.run(
            command,
            shell=True,
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"$ {command}\n{done.stdout}{done.stderr}"
        results.append((f"$ {command}", shown, done.stdout + done.stderr))
    blocks, outputs = directory / "blocks.json", directory / "outputs.json"
    blocks.write_text(json.dumps([code for code, _ in programs]))
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, blocks, outputs, "plot" if plot else "no"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for (code, shown), printed in zip(
        programs, json.loads(outputs.read_text()), strict=True
    ):
        if printed is not None:
            results.append((code, shown or "", printed))
    return results


def same_output(printed: str, shown: str) -> bool:
    """Equal text; integers equal; other numbers equal to the last digit shown (±1.5
    units, for rounding), except round-off-sized ones (< 1e-6, such as a finite-difference
    error), which differ between machines and only have to stay that small."""
    if NUMBER.sub("#", printed.strip()) != NUMBER.sub("#", shown.strip()):
        return False
    pairs = zip(NUMBER.findall(printed), NUMBER.findall(shown), strict=True)
    return all(_same_number(a, b) for a, b in pairs)


def _same_number(printed: str, shown: str) -> bool:
    a, b = float(printed), float(shown)
    mantissa, _, exponent = shown.lower().partition("e")
    if "." not in mantissa and not exponent:
        return printed == shown
    if abs(b) < 1e-6:
        return abs(a) < 1e-6
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (int(exponent or 0) - decimals)
    return abs(a - b) <= 1.5 * unit


def check_tutorial(directory: Path, *, plot: bool, title: str = TUTORIAL) -> None:
    for step, shown, printed in run_tutorial(directory, plot=plot, title=title):
        assert same_output(printed, shown), (
            f"README tutorial step\n{step}\nnow prints\n{printed}\nbut the README "
            f"shows\n{shown}\nupdate the README (python tests/test_examples.py prints "
            "every step's current output)"
        )


def test_vanishing_gradients_section_shows_what_a_rerun_prints(
    capsys: pytest.CaptureFixture,
) -> None:
    text = (ROOT / "docs" / "examples.md").read_text()
    section = text[text.index("## Vanishing gradients, seen") :]
    command = "$ python examples/vanishing_gradients.py\n"
    shown = section[section.index(command) + len(command) : section.index("```\n\n")]
    vanishing = importlib.import_module("vanishing_gradients")
    vanishing.main(["--plot", os.devnull])
    printed = capsys.readouterr().out

    def without_picture(text: str) -> str:  # the line naming where the PNG went
        return "".join(x for x in text.splitlines(True) if not x.startswith("wrote "))

    shown, printed = without_picture(shown), without_picture(printed)
    assert shown.count("\n") == 20
    assert same_output(printed, shown), (
        f"python examples/vanishing_gradients.py now prints\n{printed}\nbut the "
        f"README shows\n{shown}"
    )


def test_tutorial_spec_is_examples_iris_yaml() -> None:
    yaml_blocks = [text for language, text in tutorial_blocks() if language == "yaml"]
    assert yaml_blocks == [(EXAMPLES / "iris.yaml").read_text()]


def test_first_network_runs_as_shown(tmp_path: Path) -> None:
    commands, programs = tutorial_steps(FIRST)
    assert commands and programs
    check_tutorial(tmp_path, plot=False, title=FIRST)


def test_backpropagation_by_hand_runs_as_shown(tmp_path: Path) -> None:
    commands, _ = tutorial_steps(BY_HAND)
    assert commands
    check_tutorial(tmp_path, plot=False, title=BY_HAND)


def test_tutorial_runs_as_shown(tmp_path: Path) -> None:
    commands, programs = tutorial_steps()
    assert commands and programs
    check_tutorial(tmp_path, plot=False)


def test_tutorial_plot_step(tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason='the plot extra: pip install "symgrad[plot]"'
    )
    check_tutorial(tmp_path, plot=True)
    assert (tmp_path / "iris_training.png").stat().st_size > 1000


if __name__ == "__main__":
    # print what every tutorial step prints now, to paste into the README
    import tempfile

    for title in SECTIONS:
        with tempfile.TemporaryDirectory() as temporary:
            for step, _, printed in run_tutorial(
                Path(temporary), plot=True, title=title
            ):
                print(f"----- {step.splitlines()[0]}\n{printed}")


def _shown_output(page: Path, heading: str, command: str) -> str:
    """The output a page shows for `command`, in the section under `heading`."""
    text = page.read_text()
    section = text[text.index(heading) :]
    shown = section[section.index(f"$ {command}") :]
    return shown[: shown.index("```")]


def test_cnn_section_shows_what_a_rerun_prints() -> None:
    """docs/examples.md's digits CNN beside PyTorch and the MLP, and the README's copy
    of it: the accuracies and the lockstep difference a rerun prints (the times are
    the machine's)."""
    pytest.importorskip("torch", reason=TORCH)
    pytest.importorskip("sklearn", reason='the compare extra: pip install ".[compare]"')
    command = "python examples/compare_cnn.py --seeds 5"
    pages = {
        "docs/examples.md": _shown_output(
            ROOT / "docs" / "examples.md",
            "## A CNN on the digits, beside PyTorch and an MLP",
            command,
        ),
        "README.md": _shown_output(
            ROOT / "README.md", "## The digits: a CNN, PyTorch and an MLP", command
        ),
    }
    cnn = importlib.import_module("compare_cnn")
    results = cnn.main(["--seeds", "5"])
    assert results["lockstep"] < 1e-12  # rounding: its digits are the machine's
    for page, shown in pages.items():
        rows = {
            name: next(line for line in shown.splitlines() if label in line)
            for name, label in (
                ("symgrad", "generated/digits_cnn"),
                ("torch", "PyTorch"),
                ("mlp", "generated/digits_mlp"),
            )
        }
        for name, row in rows.items():
            assert rd.summary(results["scores"][name]) in row, (page, name, row)
        shown_lockstep = float(shown.split("max |Δparameter| = ")[1].split()[0])
        assert shown_lockstep < 1e-12, page
