"""The spec's `task:` key in the generated modules: TASK, TARGETS and what predict returns.

A custom loss on an output in [0, 1] is taken as a binary classifier (predict gives 0/1);
`task: values` corrects that guess, `task: binary` makes a squared error on a sigmoid a
classifier. Both module targets carry the decision; predict is compared with PyTorch's
forward pass (tests/torch_reference.py), not with the module's own.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch_reference as tr
from harness import import_path

import symgrad

SQUARED = {"name": "scaled_sq", "expr": "c*(yhat - y)**2", "c": 3.0}


def bounded(loss, task: str | None) -> dict:
    """A sigmoid-output network with `loss`, and `task:` where given."""
    spec = {
        "name": "bounded",
        "input": 3,
        "layers": [
            {"units": 4, "activation": "tanh"},
            {"units": 2, "activation": "sigmoid"},
        ],
        "loss": loss,
    }
    return {**spec, "task": task} if task else spec


def both_modules(spec: dict, directory):
    """The NumPy and the array-API module of spec."""
    paths = (
        symgrad.generate(spec, directory),
        symgrad.generate(spec, directory, target="array-api"),
    )
    return [import_path(p, f"_task_{directory.name}_{i}") for i, p in enumerate(paths)]


def _problem(module, m: int = 30):
    rng = np.random.default_rng(0)
    params = module.init_params(3)
    params["b2"] += rng.normal(0.0, 0.5, params["b2"].shape)
    return params, rng.standard_normal((m, 3))


@pytest.mark.parametrize(
    ("loss", "task", "expected", "targets"),
    [
        (SQUARED, None, "binary", "real"),  # the guess: a likelihood of 0/1 labels
        (SQUARED, "values", "values", "real"),  # corrected: Ŷ
        ("mse", None, "values", "real"),
        ("mse", "binary", "binary", "real"),
        ("binary_crossentropy", "values", "values", "unit_interval"),
    ],
)
def test_predict_follows_the_task(tmp_path, loss, task, expected, targets) -> None:
    spec = bounded(loss, task)
    for module in both_modules(spec, tmp_path):
        assert (module.TASK, module.TARGETS) == (expected, targets)
        params, X = _problem(module)
        yhat = tr.forward(spec, params, X)
        predicted = np.asarray(module.predict(params, X))
        if expected == "binary":
            zero_one = (yhat >= 0.5).astype(np.int64)
            assert 0 < zero_one.sum() < zero_one.size  # both labels occur
            np.testing.assert_array_equal(predicted, zero_one)
        else:
            np.testing.assert_allclose(predicted, yhat, rtol=1e-12)


def test_task_values_keeps_the_loss_target_check(tmp_path) -> None:
    # what Y must hold is the loss's (binary cross-entropy: [0, 1]), whatever the task
    spec = bounded("binary_crossentropy", "values")
    for module in both_modules(spec, tmp_path):
        params, X = _problem(module, m=4)
        Y = np.full((4, 2), 0.5)
        Y[1, 0] = 2.0
        with pytest.raises(ValueError, match=r"takes targets in \[0, 1\]"):
            module.loss_and_grad(params, X, Y)


def test_the_cli_refuses_a_bad_task_in_one_located_line(tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ninput: 2\nlayers:\n  - {units: 1, activation: identity}\n"
        "loss: mse\ntask: binary\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "symgrad", "generate", str(path), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert f"{path}:6:7: task: task 'binary' needs predictions in (0, 1)" in run.stderr


@pytest.mark.parametrize(
    ("task", "returns"),
    [
        (None, "predict returns argmaxₖ ŷₖ."),
        ("values", "predict returns ŷ itself (the spec's task: values)."),
        (
            "binary",
            "predict returns 1 where ŷₖ is at least 0.5 (the spec's task: binary).",
        ),
    ],
)
def test_the_report_says_what_predict_returns_on_a_softmax(task, returns) -> None:
    from symgrad.report import render_report

    spec = {
        "name": "soft",
        "input": 2,
        "layers": [{"units": 3, "activation": "softmax"}],
        "loss": "categorical_crossentropy",
        **({"task": task} if task else {}),
    }
    d = symgrad.derive(spec)
    text = " ".join(render_report(d, "text").split())
    assert (
        "through the Jacobian" in text
    )  # a softmax couples its outputs, whatever the task
    assert returns in text
    for fmt in ("markdown", "latex"):
        assert "Jacobian" in render_report(d, fmt)
