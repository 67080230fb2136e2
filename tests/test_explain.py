"""The worked example (`symgrad explain`): its numbers are the generated module's.

The evaluator runs the plan's statements; these tests compare what it computes with a
module generated into tmp_path and imported (its `loss_and_grad` and `step`), for every
example spec and a batch.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from harness import generate_module, make_targets, perturb_biases

from symgrad.cli import main
from symgrad.derive import derive
from symgrad.plan import build
from symgrad.worked.evaluate import evaluate
from symgrad.worked.module import module_of

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))  # the specs
SMALL = [  # written per neuron: every kind of layer, loss and optimizer of the examples
    {
        "name": "small_softmax",
        "input": 2,
        "layers": [
            {"units": 3, "activation": "relu"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": "categorical_crossentropy",
        "optimizer": {"name": "momentum", "learning_rate": 0.1, "nesterov": True},
    },
    {
        "name": "small_norms",
        "input": 3,
        "layers": [
            {"units": 3, "activation": "tanh"},
            {"type": "layernorm"},
            {"units": 2, "activation": "sigmoid"},
        ],
        "loss": "binary_crossentropy",
        "optimizer": {"name": "adam", "learning_rate": 0.1},
    },
    {
        "name": "small_residual",
        "input": 2,
        "layers": [
            {"units": 2, "activation": "tanh"},
            {"units": 2, "activation": "elu", "residual": True},
            {"units": 1, "activation": "identity"},
        ],
        "loss": {"name": "huber", "delta": 0.5},
        "l2": 0.1,
    },
    {
        "name": "small_dropout",
        "input": 2,
        "layers": [
            {"units": 3, "activation": "relu"},
            {"type": "dropout", "rate": 0.5},
            {"type": "batchnorm"},
            {"units": 1, "activation": "sigmoid"},
        ],
        "loss": "binary_crossentropy",
    },
]
SPECS = [(p.stem, p) for p in EXAMPLES] + [(s["name"], s) for s in SMALL]


def load(spec: Path | dict) -> dict:
    return yaml.safe_load(spec.read_text()) if isinstance(spec, Path) else spec


def close(a, b, tol=1e-12) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(
        np.all(np.abs(a - b) <= tol * np.maximum(1.0, np.abs(b)))
    )


def problem(module, spec: dict, m: int = 5, seed: int = 3):
    rng = np.random.default_rng(seed)
    params = module.init_params(seed)
    perturb_biases(params, rng)
    width = int(
        np.prod(spec["input"])
    )  # an image (C, H, W) given flat, as --x takes it
    X = rng.standard_normal((m, width))
    Y = make_targets(spec, m, rng)
    return params, X, Y


@pytest.mark.parametrize("name, path", SPECS, ids=[n for n, _ in SPECS])
def test_evaluated_plan_equals_the_module(name: str, path, tmp_path: Path) -> None:
    spec = load(path)
    generated = generate_module(spec, tmp_path)
    params, X, Y = problem(generated, spec)
    d = derive(path)
    step = evaluate(build(d), module_of(d), params, X, Y, np.random.default_rng(7))

    loss, grads = generated.loss_and_grad(params, X, Y, rng=np.random.default_rng(7))
    assert close(step.values["L"], loss)
    for k, g in grads.items():
        assert close(step.values[f"d{k}"], g), k

    updated = {k: v.copy() for k, v in params.items()}
    state = generated.init_state(updated, seed=7)
    before = generated.step(updated, state, X, Y)
    assert close(step.values["L"], before)
    assert set(step.after) == set(updated)
    for k, v in updated.items():
        assert close(step.after[k], v), k
    for key in step.state_after:
        for k, v in step.state_after[key].items():
            assert close(v, state[key][k]), (key, k)


# ------------------------------------------------------------------ the printed numbers


def module_values(generated, params, X, Y, seed: int) -> dict[str, np.ndarray]:
    """What the generated module computes, by the names the worked example shows:
    the loss, Ŷ and the forward values its `_forward_pass` keeps for the backward
    pass (named as its `return` statement names them), each gradient, and each
    parameter, buffer and optimizer array after `step`."""
    import ast
    import inspect

    import symgrad.worked.write as write

    rng = np.random.default_rng(seed) if generated.DROPOUT else None
    loss, grads = generated.loss_and_grad(params, X, Y, rng=rng)
    out: dict[str, np.ndarray] = {"L": np.asarray(loss)}
    tree = ast.parse(inspect.getsource(generated._forward_pass))
    (returned,) = [n.value for n in ast.walk(tree) if isinstance(n, ast.Return)]
    first, kept = returned.elts
    names = [first.id] + [n.id for n in kept.elts]
    training = generated._forward_pass(params, X, True, np.random.default_rng(seed))
    for name, value in zip(names, [training[0], *training[1]], strict=True):
        out[name] = value
    out.update({f"d{k}": g for k, g in grads.items()})
    updated = {k: v.copy() for k, v in params.items()}
    state = generated.init_state(updated, seed=seed)
    generated.step(updated, state, X, Y)
    out.update({write.AFTER + k: v for k, v in updated.items()})
    for key in generated.MOMENTS:
        out.update({f"{key}:{k}": v for k, v in state[key].items()})
    return out


def agrees(text: str, value: float, scale: float = 0.0) -> bool:
    """The printed text is value rounded to the digits printed (half a unit of the
    last digit, and a hair for a value on a rounding boundary); a value at rounding
    level (1e-12 of its array's scale, such as the gradient of a bias under batchnorm,
    0 in exact arithmetic) only has to be printed as one."""
    printed = float(text)
    mantissa, _, exponent = f"{printed:.17e}".partition("e")
    digits = len(
        text.lower().partition("e")[0].replace("-", "").replace(".", "").lstrip("0")
    )
    unit = 10.0 ** (int(exponent) - max(digits, 1) + 1)
    return abs(printed - value) <= 0.5 * unit * (1 + 1e-9) + 1e-12 * scale


@pytest.mark.parametrize("name, path", SPECS, ids=[n for n, _ in SPECS])
def test_every_printed_result_is_the_modules(name: str, path, tmp_path: Path) -> None:
    import symgrad.worked as E

    spec = load(path)
    generated = generate_module(spec, tmp_path)
    params, X, Y = problem(generated, spec, m=3)
    out = E.explain(path, params, X, Y, digits=6, seed=5)
    expected = module_values(generated, params, X, Y, seed=5)
    checked = 0
    for name, idx, text in out._writer.shown:
        if name not in expected:
            continue
        value = np.asarray(expected[name], dtype=float)
        if idx is None:
            pairs = zip(text, value.ravel(), strict=True)
        else:
            pairs = [(text, float(value[idx]))]
        scale = float(np.max(np.abs(value)))
        for t, v in pairs:
            assert t in out, (name, t)
            assert agrees(t, v, scale), (name, idx, t, v)
            checked += 1
    n_params = sum(params[k].size for k in generated.PARAM_NAMES)
    assert checked >= 2 * n_params  # every gradient and every updated entry at least


# ------------------------------------------------------------------ Mazur's page

MAZUR = [  # (what, the number as his page prints it), in the page's order
    ("net_h1", "0.3775"),
    ("out_h1", "0.593269992"),
    ("out_h2", "0.596884378"),
    ("out_o1", "0.75136507"),
    ("out_o2", "0.772928465"),
    ("E_o1", "0.274811083"),
    ("E_o2", "0.023560026"),
    ("E_total", "0.298371109"),
    ("dE/dw5", "0.082167041"),
    ("w5+", "0.35891648"),
    ("w6+", "0.408666186"),
    ("w7+", "0.511301270"),
    ("w8+", "0.561370121"),
    ("w1+", "0.149780716"),
    ("w2+", "0.19956143"),
    ("w3+", "0.24975114"),
    ("w4+", "0.29950229"),
]
MAZUR_COMMAND = [
    "explain",
    str(ROOT / "examples" / "mazur.yaml"),
    "--params",
    str(ROOT / "examples" / "data" / "mazur_params.yaml"),
    "--x",
    "0.05,0.10",
    "--y",
    "0.01,0.99",
]
NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?|-?\d+")


def test_mazur_page_numbers_appear_in_his_order(capsys) -> None:
    """Every number of Matt Mazur's 'A Step by Step Backpropagation Example', in his
    order: each printed number is found, rounded to the decimals his page shows, after
    the one before it."""
    assert main(MAZUR_COMMAND) == 0
    printed = [(m.start(), m.group()) for m in NUMBER.finditer(capsys.readouterr().out)]
    at = 0
    for what, published in MAZUR:
        decimals = len(published.partition(".")[2])
        found = next(
            (
                i
                for i in range(at, len(printed))
                if f"{float(printed[i][1]):.{decimals}f}" == published
            ),
            None,
        )
        assert (
            found is not None
        ), f"{what} = {published} not found after {printed[at - 1:at]}"
        at = found + 1


def test_mazur_lines_read_as_a_textbook(capsys) -> None:
    assert main(MAZUR_COMMAND) == 0
    out = capsys.readouterr().out
    assert "z¹₁ = w₁·x₁ + w₂·x₂ + b¹₁ = 0.15·0.05 + 0.2·0.1 + 0.35 = 0.3775" in out
    assert "a¹₁ = σ(z¹₁) = σ(0.3775) = 0.593269992" in out
    assert "ℓ₁ = (ŷ₁ − y₁)²/2 = (0.75136507 − 0.01)²/2 = 0.274811083" in out
    assert "∂L/∂w₅ = δ²₁·a¹₁ = 0.138498562·0.593269992 = 0.0821670406" in out
    assert "∂L/∂a¹₁ = δ²₁·w₅ + δ²₂·w₇" in out  # the hidden delta's Σₖ δₖ wⱼₖ
    assert "δ¹₁ = ∂L/∂a¹₁·a¹₁·(1 − a¹₁)" in out  # times σ'(z) = a(1 − a)
    assert "w₅⁺ = w₅ − η·∂L/∂w₅ = 0.4 − 0.5·0.0821670406 = 0.35891648" in out


# ------------------------------------------------------------------ formats


def test_markdown_has_math_blocks_and_a_jupyter_display() -> None:
    import symgrad

    params = ROOT / "examples" / "data" / "mazur_params.yaml"
    out = symgrad.explain(
        ROOT / "examples" / "mazur.yaml", params, [0.05, 0.1], [0.01, 0.99], "markdown"
    )
    assert out.startswith("# One training step of mazur")
    assert "$$\n" in out and r"w_{5}" in out
    assert out._repr_markdown_() == str(out)


@pytest.mark.parametrize("spec", ["mazur", "cancer_norm_drop"])
def test_latex_compiles(spec: str, tmp_path: Path) -> None:
    from test_report import compile_tex

    import symgrad

    path = ROOT / "examples" / f"{spec}.yaml"
    if spec == "mazur":
        params, X, Y = (
            ROOT / "examples" / "data" / "mazur_params.yaml",
            [0.05, 0.1],
            [0.01, 0.99],
        )
    else:
        params, X, Y = None, np.linspace(-1, 1, 60).reshape(2, 30), [1, 0]
    doc = symgrad.explain(path, params, X, Y, "latex", 4, standalone=True)
    compile_tex(tmp_path, doc)


# ------------------------------------------------------------------ mistakes


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


GOOD = {
    "W1": "[[0.15, 0.25], [0.2, 0.3]]",
    "b1": "[0.35, 0.35]",
    "W2": "[[0.4, 0.5], [0.45, 0.55]]",
    "b2": "[0.6, 0.6]",
}


def params_text(**change: str | None) -> str:
    """Mazur's parameters as YAML, with some keys changed (None: left out)."""
    entries = {**GOOD, **change}
    return "".join(f"{k}: {v}\n" for k, v in entries.items() if v is not None)


BOMB = "".join(  # 10**5 values from 50 written: bounded by the reader's count
    f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n"
    for p, k in zip("abcd", "bcde", strict=True)
)
MISTAKES = [
    (
        params_text(W1="[[0.15, 0.25], [0.2]]"),
        "p.yaml:1:",
        "W1[1]: expected shape (2, 2): a list of 2 here, found a list of 1",
    ),
    (
        params_text(W1="[[0.15, 0.25], [0.2, .nan]]"),
        "p.yaml:1:",
        "expected a finite number, found nan",
    ),
    (
        params_text(b2=None, bb2="[0.6, 0.6]"),
        "p.yaml:4:",
        "'bb2' is not a parameter of this network",
    ),
    (params_text(b2=None), "p.yaml:1", "missing b2"),
    (
        params_text(W1="[[0.15, 0.25], [0.2, x]]"),
        "p.yaml:1:",
        "expected a number, found 'x'",
    ),
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + BOMB, "p.yaml:", "more than 20000"),
]


@pytest.mark.parametrize("text, where, what", MISTAKES)
def test_a_wrong_parameter_file_gets_one_located_message(
    text: str, where: str, what: str, tmp_path: Path, capsys
) -> None:
    params = tmp_path / "p.yaml"
    params.write_text(text)
    argv = MAZUR_COMMAND[:3] + [str(params)] + MAZUR_COMMAND[4:]
    code, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("symgrad: error: ") and str(params) in err
    assert f"{tmp_path}/{where}" in err and what in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "x, y, what",
    [
        ("0.05", "0.01,0.99", "--x: example 1 has 1 values; the network takes 2"),
        ("0.05,nan", "0.01,0.99", "--x: example 1, value 2: expected a finite number"),
        (
            "0.05,abc",
            "0.01,0.99",
            "--x: example 1, value 2: expected a number, found 'abc'",
        ),
        ("0.05,0.1;0.2,0.3", "0.01,0.99", "--x gives 2 examples and --y 1"),
        ("0.05,0.1", "0.01,0.9,0.3", "--y: example 1 has 3 targets; the network has 2"),
        (";".join(["1,1"] * 1001), "1,1", "at most 1000"),
    ],
)
def test_wrong_examples_get_one_message(x: str, y: str, what: str, capsys) -> None:
    argv = MAZUR_COMMAND[:5] + [x, "--y", y]
    code, err = run(argv, capsys)
    assert code == 2 and what in err, err
    assert err.count("\n") == 1


def test_targets_are_checked_as_the_module_checks_them(capsys) -> None:
    iris = str(ROOT / "examples" / "iris.yaml")
    code, err = run(["explain", iris, "--x", "1,2,3,4", "--y", "5"], capsys)
    assert code == 2 and "labels must be 1 integers in [0, 3), found 5" in err, err
    xor = str(ROOT / "examples" / "xor.yaml")
    code, err = run(["explain", xor, "--x", "1,0", "--y", "1.5"], capsys)
    assert code == 2 and "targets in [0, 1]" in err, err


def test_npz_from_save_params_and_the_seed(tmp_path: Path, capsys) -> None:
    import symgrad

    spec = ROOT / "examples" / "mazur.yaml"
    from symgrad.worked.module import module_of

    module = module_of(symgrad.derive(spec))
    params = module.init_params(4)
    module.save_params(tmp_path / "p.npz", params)
    argv = ["explain", str(spec), "--x", "0.05,0.1", "--y", "0.01,0.99"]
    assert main(argv + ["--params", str(tmp_path / "p.npz")]) == 0
    from_npz = capsys.readouterr().out
    assert main(argv + ["--seed", "4"]) == 0
    assert capsys.readouterr().out == from_npz
    (tmp_path / "bad.npz").write_bytes(b"PK not a zip")
    code, err = run(argv + ["--params", str(tmp_path / "bad.npz")], capsys)
    assert code == 2 and "bad.npz" in err and "Traceback" not in err


def test_dropout_masks_come_from_the_seed(capsys) -> None:
    import symgrad

    X = np.linspace(-1, 1, 60).reshape(2, 30)
    spec = ROOT / "examples" / "cancer_norm_drop.yaml"
    one = symgrad.explain(spec, None, X, [1, 0], digits=4, seed=1)
    again = symgrad.explain(spec, None, X, [1, 0], digits=4, seed=1)
    other = symgrad.explain(spec, None, X, [1, 0], digits=4, seed=2)
    assert one == again != other
    assert "K3 = " in one  # the mask is shown


def test_same_input_same_bytes() -> None:
    import symgrad

    params = ROOT / "examples" / "data" / "mazur_params.yaml"
    spec = ROOT / "examples" / "mazur.yaml"
    a = symgrad.explain(spec, params, [0.05, 0.1], [0.01, 0.99], "latex")
    b = symgrad.explain(spec, params, [0.05, 0.1], [0.01, 0.99], "latex")
    assert a == b


# ------------------------------------------------------------------ the tutorial

DOC = ROOT / "docs" / "worked-example.md"


def doc_blocks() -> list[tuple[str, str]]:
    return re.findall(r"^```(\w*)\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def uncommented(text: str) -> str:
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(lines).strip() + "\n"


def test_tutorial_shows_the_files_it_uses() -> None:
    yaml_blocks = [text for language, text in doc_blocks() if language == "yaml"]
    spec = uncommented((ROOT / "examples" / "mazur.yaml").read_text())
    params = uncommented((ROOT / "examples" / "data" / "mazur_params.yaml").read_text())
    assert yaml_blocks == [spec, params]


def test_tutorial_command_prints_what_it_shows(capsys) -> None:
    from test_examples import same_output

    (console,) = [text for language, text in doc_blocks() if language == "console"]
    command, _, shown = console.partition("\n")
    words = shlex.split(command.removeprefix("$ "))
    assert words[0] == "symgrad"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert main(words[1:]) == 0
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert same_output(
        printed, shown
    ), f"docs/worked-example.md shows\n{shown}\nbut the command now prints\n{printed}"


# ------------------------------------------------------------------ the figure


def test_figure_is_written_with_the_steps_numbers(tmp_path: Path, capsys) -> None:
    pytest.importorskip(
        "matplotlib", reason='the plot extra: pip install "symgrad[plot]"'
    )
    svg = tmp_path / "fig" / "mazur.svg"
    assert main(MAZUR_COMMAND + ["--figure", str(svg), "--digits", "4"]) == 0
    text = svg.read_text()
    for shown in ("0.5933", "0.7514", "0.08217", "w₅", "0.4", "δ 0.1385"):
        assert shown in text, shown  # the SVG holds its text as text
    again = tmp_path / "again.svg"
    assert main(MAZUR_COMMAND + ["--figure", str(again), "--digits", "4"]) == 0
    assert again.read_bytes() == svg.read_bytes()
    png = tmp_path / "mazur.png"
    assert main(MAZUR_COMMAND + ["--figure", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


def test_figure_mistakes_get_one_message(tmp_path: Path, capsys, monkeypatch) -> None:
    code, err = run(MAZUR_COMMAND + ["--figure", str(tmp_path / "f.pdf")], capsys)
    assert code == 2 and "--figure writes a .png or an .svg file" in err
    xor = str(ROOT / "examples" / "breast_cancer.yaml")
    x = ",".join(["0.1"] * 30)
    code, err = run(["explain", xor, "--x", x, "--y", "1", "--figure", "f.png"], capsys)
    assert code == 2 and "at most 12 units a layer" in err, err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    code, err = run(MAZUR_COMMAND + ["--figure", str(tmp_path / "f.png")], capsys)
    assert code == 2 and 'pip install "symgrad[plot]"' in err, err


def test_examples_from_a_csv_file(tmp_path: Path, capsys) -> None:
    data = tmp_path / "few.csv"
    data.write_text("x1,x2,y1,y2\n0.05,0.10,0.01,0.99\n")
    argv = MAZUR_COMMAND[:4] + ["--data", str(data)]
    assert main(argv) == 0
    from_csv = capsys.readouterr().out
    assert main(MAZUR_COMMAND) == 0
    assert capsys.readouterr().out == from_csv
    data.write_text("0.05,0.10,0.01\n")
    code, err = run(argv, capsys)
    assert code == 2 and "row 1 has 3 columns; expected 2 inputs then 2 targets" in err
    code, err = run(MAZUR_COMMAND + ["--data", str(data)], capsys)
    assert code == 2 and "either as --x/--y or as --data" in err


def test_a_negative_seed_is_one_message(capsys) -> None:
    code, err = run(
        MAZUR_COMMAND[:2] + ["--x", "1,2", "--y", "0,1", "--seed", "-1"], capsys
    )
    assert code == 2 and "the seed must be a whole number ≥ 0, found -1" in err, err


def test_the_l2_term_is_added_to_the_loss_before_it(tmp_path: Path) -> None:
    """L = ℓ terms, then L = λ/2 Σ w² + L: the second line reads the first L, the loss
    without l2 (a module generated without l2 computes it), and ends at the loss."""
    import symgrad

    spec = SMALL[2]
    without = generate_module({**spec, "l2": 0.0, "name": "no_l2"}, tmp_path)
    generated = generate_module(spec, tmp_path)
    params, X, Y = problem(generated, spec, m=1)
    out = symgrad.explain(spec, params, X, Y, digits=6)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("L = λ·"))
    plain = float(without.loss_and_grad(params, X, Y)[0])
    assert lines[at + 1].endswith(f"+ {plain:.6g}"), lines[at : at + 3]
    full = float(generated.loss_and_grad(params, X, Y)[0])
    assert lines[at + 2].strip() == f"= {full:.6g}"
