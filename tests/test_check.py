"""symgrad check: generated gradients against finite differences; a broken module fails."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import symgrad
import symgrad.check as check_mod
from symgrad.activations import a
from symgrad.check import check_gradients, compare_module, import_path, target_kind
from symgrad.cli import main

XOR = """name: xor
input: 2
layers:
  - {units: 8, activation: tanh}
  - {units: 1, activation: sigmoid}
loss: binary_crossentropy
"""
CUSTOM = """name: custom_net
input: 3
layers:
  - units: 5
    activation: {name: scaled_tanh, expr: "s*tanh(z)", s: 1.7}
  - units: 4
    activation: {name: my_softsign, expr: "z / (1 + abs(z))"}
  - {units: 3, activation: softmax}
loss: categorical_crossentropy
l2: 0.01
"""
REGRESSION = """name: reg
input: 3
layers:
  - {units: 4, activation: elu}
  - {units: 2, activation: identity}
loss: {name: logcosh, expr: "log(cosh(yhat - y))"}
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def generated_module(tmp_path: Path, spec: Path):  # noqa: ANN201 - a module
    path = symgrad.generate(spec, tmp_path / "out")
    return import_path(path, "_test_check_module")


def test_good_spec_passes_with_a_table(tmp_path) -> None:
    result = check_gradients(write(tmp_path, XOR))
    assert result.ok and result.targets == "0/1"
    assert [p.name for p in result.params] == ["W1", "b1", "W2", "b2"]
    assert [p.checked for p in result.params] == [16, 8, 8, 1]
    assert result.max_rel_error < 1e-6
    table = result.table()
    assert "parameter  shape   checked  max abs error  max rel error" in table
    assert "ok: all 4 gradients match finite differences" in table


@pytest.mark.parametrize("spec", [CUSTOM, REGRESSION], ids=["softmax", "regression"])
def test_custom_expressions_pass(tmp_path, spec) -> None:
    result = check_gradients(write(tmp_path, spec), seed=3, examples=5)
    assert result.ok, result.table()


def test_targets_suit_the_loss(tmp_path) -> None:
    assert target_kind(symgrad.derive(str(write(tmp_path, XOR)))) == "0/1"
    assert target_kind(symgrad.derive(str(write(tmp_path, CUSTOM)))) == "one-hot"
    assert target_kind(symgrad.derive(str(write(tmp_path, REGRESSION)))) == "normal"
    custom_bce = XOR.replace(
        "loss: binary_crossentropy",
        'loss: {name: my_bce, expr: "-(y*log(yhat) + (1 - y)*log(1 - yhat))"}',
    )
    assert target_kind(symgrad.derive(str(write(tmp_path, custom_bce)))) == "0/1"


def test_a_wrong_gradient_is_a_mismatch(tmp_path) -> None:
    module = generated_module(tmp_path, write(tmp_path, XOR))
    assert compare_module(module, targets="0/1").ok
    right = module.loss_and_grad

    def wrong(params, X, Y):  # noqa: ANN001, ANN202
        L, grads = right(params, X, Y)
        grads["b1"] = grads["b1"] * 1.01  # a 1% error in one parameter
        return L, grads

    module.loss_and_grad = wrong
    result = compare_module(module, targets="0/1")
    assert not result.ok
    assert [result.failed(p) for p in result.params] == [False, True, False, False]
    assert "MISMATCH: b1 differ from finite differences" in result.table()


def test_a_nonfinite_loss_is_a_mismatch(tmp_path) -> None:
    module = generated_module(tmp_path, write(tmp_path, XOR))
    module.loss_and_grad = lambda p, X, Y: (
        float("nan"),
        {k: 0 * v for k, v in p.items()},
    )
    result = compare_module(module, targets="0/1")
    assert not result.ok and "the loss is not finite" in result.table()


def test_cli_check_exits_zero_and_prints_the_table(tmp_path, capsys) -> None:
    assert main(["check", str(write(tmp_path, XOR)), "--seed", "1", "-m", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 random examples (seed 1, 0/1 targets)" in out
    for name in ("W1", "b1", "W2", "b2"):
        assert f"\n{name} " in out
    assert "ok: all 4 gradients match" in out


def test_cli_check_exits_one_on_a_wrong_derivative(
    tmp_path, capsys, monkeypatch
) -> None:
    """A derivation bug (tanh' = 1 + a² instead of 1 - a²) reaches the module; check sees it."""

    def broken_derive(spec):  # noqa: ANN001, ANN202
        d = symgrad.derive(spec)
        hidden = d.layers[0]
        bad = dataclasses.replace(hidden.activation, df=1 + a**2)
        layers = (dataclasses.replace(hidden, activation=bad), *d.layers[1:])
        return dataclasses.replace(d, layers=layers)

    monkeypatch.setattr(check_mod, "derive", broken_derive)
    assert main(["check", str(write(tmp_path, XOR))]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: W1, b1 differ from finite differences" in out
    assert "\nW2 " in out and out.count(" ok\n") == 2  # the output layer is still right


def test_cli_check_bad_spec_is_a_user_error(tmp_path, capsys) -> None:
    spec = write(tmp_path, XOR.replace("tanh", "tahn"))
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown activation 'tahn'" in err[0]
    assert main(["check", str(write(tmp_path, XOR)), "-m", "0"]) == 2


def test_check_of_a_network_with_norms_dropout_and_a_residual_layer(tmp_path):
    # buffers (batchnorm's running statistics) are not checked, gains and shifts are;
    # the differences are taken of the training loss, as loss_and_grad's gradient is
    spec = {
        "name": "v2check",
        "input": 5,
        "layers": [
            {"units": 6, "activation": "tanh"},
            {"type": "layernorm"},
            {"type": "dropout", "rate": 0.2},
            {"units": 6, "activation": "relu", "residual": True},
            {"type": "batchnorm"},
            {"units": 3, "activation": "softmax"},
        ],
        "loss": "categorical_crossentropy",
    }
    result = check_gradients(spec)
    assert result.ok, result.table()
    checked = {p.name for p in result.params}
    assert checked == {
        "W1",
        "b1",
        "gamma2",
        "beta2",
        "W4",
        "b4",
        "gamma5",
        "beta5",
        "W6",
        "b6",
    }


KINKED_CNN = """name: kinked_cnn
input: [1, 6, 6]
layers:
  - {type: conv2d, filters: 2, kernel: 3, padding: 1, activation: relu}
  - {type: maxpool2d, size: 2}
  - {type: flatten}
  - {units: 3, activation: softmax}
loss: categorical_crossentropy
"""


class _WithParams:
    """A generated module whose init_params returns given arrays (less the noise
    compare_module adds to the biases, so that the check sees exactly `params`)."""

    def __init__(self, module, params: dict) -> None:  # noqa: ANN001
        self._module, self._params = module, params

    def __getattr__(self, name: str):  # noqa: ANN204 - what is not set here
        return getattr(self._module, name)

    def init_params(self, seed: int, dtype) -> dict:  # noqa: ANN001
        import numpy as np

        rng = np.random.default_rng(seed)  # compare_module's draws, in its order
        sizes = self._module.LAYER_SIZES
        check_mod.random_batch(sizes[0], sizes[-1], 8, "one-hot", rng)
        out = {}
        for key in self._module.PARAM_NAMES:
            noise = (
                0
                if key.startswith("W")
                else 0.1 * rng.standard_normal(self._params[key].shape)
            )
            out[key] = (self._params[key] - noise).astype(dtype)
        return out


def test_a_relu_within_h_of_its_kink_before_maxpool_is_no_mismatch(tmp_path) -> None:
    """A pre-activation 3e-6 from ReLU's kink (h = 1e-5), the maximum of its pooling
    window: perturbing its bias by ±h crosses the kink, and the central difference
    misses the slope by a third. The check sees the jump of the one-sided slopes,
    checks that entry with h/10, and says so; a wrong gradient still fails."""
    import numpy as np
    import torch

    module = generated_module(tmp_path, write(tmp_path, KINKED_CNN))
    params = module.init_params(seed=0)
    X, _ = check_mod.random_batch(36, 3, 8, "one-hot", np.random.default_rng(0))
    z = torch.nn.functional.conv2d(  # channel 0's pre-activations, bias left out
        torch.from_numpy(X.reshape(8, 1, 6, 6)),
        torch.from_numpy(params["W1"]),
        None,
        padding=1,
    )[:, 0].numpy()
    params["b1"][0] = 3e-6 - z.max()  # its largest entry: 3e-6, all others below
    kinked = _WithParams(module, params)

    plain = compare_module(kinked, targets="one-hot", step=1e-5)
    assert plain.ok, plain.table()
    b1 = next(p for p in plain.params if p.name == "b1")
    assert b1.near_kink >= 1 and b1.excluded == 0
    assert "note: b1: " in plain.table() and "checked with h = 1e-06" in plain.table()

    right = module.loss_and_grad

    def wrong(params, X, Y):  # noqa: ANN001, ANN202
        L, grads = right(params, X, Y)
        grads["b1"] = grads["b1"] * 1.01
        return L, grads

    kinked.loss_and_grad = wrong
    result = compare_module(kinked, targets="one-hot")
    assert [p.name for p in result.params if result.failed(p)] == ["b1"]
