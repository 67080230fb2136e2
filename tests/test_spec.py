"""Spec loading: valid specs parse; each kind of mistake gives one located, actionable problem."""

from __future__ import annotations

import textwrap
import time

import pytest

from symgrad import SpecError, load_spec, parse_spec

GOOD = """\
name: net
input: 3
layers:
  - units: 4
    activation: tanh
  - units: 2
    activation: softmax
loss: categorical_crossentropy
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(textwrap.dedent(text), "s.yaml")
    return [str(p) for p in info.value.problems]


def test_valid_spec_and_defaults() -> None:
    spec = parse_spec(GOOD, "s.yaml")
    assert spec.name == "net" and spec.sizes == (3, 4, 2)
    assert spec.layers[1].activation.name == "softmax"
    assert (
        spec.optimizer.name == "sgd" and spec.optimizer.param("learning_rate") == 0.01
    )
    assert spec.l2 == 0.0 and spec.init == "auto"


def test_alias_and_parameters() -> None:
    spec = parse_spec(
        GOOD.replace("activation: tanh", "activation: {name: leaky_relu, alpha: 0.2}")
        .replace(
            "loss: categorical_crossentropy", "loss: categorical_crossentropy\nl2: 0.5"
        )
        .replace(
            "units: 2\n    activation: softmax", "units: 2\n    activation: softmax"
        ),
        "s.yaml",
    )
    assert spec.layers[0].activation.params == (("alpha", 0.2),)
    assert spec.l2 == 0.5
    linear = parse_spec(
        "name: n\ninput: 1\nlayers: [{units: 1, activation: linear}]\nloss: mse\n"
    )
    assert linear.layers[0].activation.name == "identity"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("sigmoid", "x").replace("tanh", "sigmod"),
            "unknown activation 'sigmod'",
        ),
        (GOOD.replace("activation: tanh", "activation: tahn"), "did you mean 'tanh'?"),
        (
            GOOD.replace("units: 4", "units: 2.5"),
            "layers[0].units: expected an integer",
        ),
        (GOOD.replace("units: 4", "units: true"), "found the boolean true"),
        (GOOD.replace("units: 4", "units: 0"), "expected an integer from 1"),
        (GOOD.replace("input: 3", "input: -2"), "input: expected an integer from 1"),
        (GOOD.replace("name: net", "name: 3net"), "not a Python identifier"),
        (GOOD.replace("name: net", "name: import"), "is a Python keyword"),
        (GOOD.replace("name: net", "name: numpy"), "would shadow the module 'numpy'"),
        (GOOD.replace("name: net", "name: random"), "would shadow the module 'random'"),
        (GOOD.replace("name: net", "name: ../evil"), "not a Python identifier"),
        (
            GOOD.replace("layers:", "layerz:"),
            "unknown key 'layerz' (did you mean 'layers'?)",
        ),
        (GOOD.replace("input: 3\n", ""), "missing required key 'input'"),
        (
            GOOD + "optimizer: {name: adamw}\n",
            "unknown optimizer 'adamw' (did you mean 'adam'?)",
        ),
        (
            GOOD + "optimizer: {name: adam, lr: 0.1}\n",
            "unknown parameter 'lr' for optimizer",
        ),
        (
            GOOD + "optimizer: {name: []}\n",
            "unknown optimizer []",
        ),  # found by hypothesis
        (GOOD + "l2: -1\n", "l2: expected a number ≥ 0"),
        (GOOD + "init: xavier\n", "unknown init 'xavier'"),
        (
            GOOD.replace("loss: categorical_crossentropy", "loss: mse\nloss: mae"),
            "duplicate key",
        ),
        (
            GOOD.replace("activation: tanh", "activation: softmax"),
            "softmax is only supported on the output",
        ),
        (
            GOOD.replace("activation: softmax", "activation: sigmoid"),
            "categorical_crossentropy needs a softmax output layer",
        ),
        (
            GOOD.replace("activation: softmax", "activation: relu").replace(
                "categorical_crossentropy", "binary_crossentropy"
            ),
            "binary_crossentropy needs predictions in (0, 1)",
        ),
        (GOOD.replace("layers:\n", "layers: []\nx:\n"), "layers is empty"),
        ("name: [1, 2\n", "malformed YAML"),
        ("", "the spec is empty"),
        ("- 1\n- 2\n", "a spec must be a mapping"),
        ("name: !!python/object/apply:os.system [ls]\n", "YAML tag"),
        (
            GOOD.replace(
                "activation: tanh", "activation: {name: leaky_relu, alpah: 1}"
            ),
            "unknown parameter 'alpah' for activation 'leaky_relu' (did you mean 'alpha'?)",
        ),
    ],
)
def test_problem_messages(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found
    assert all(p.startswith("s.yaml") for p in found)


def test_every_problem_is_reported_at_once_with_line_and_column() -> None:
    found = problems("""\
        name: my net
        input: 0
        layers:
          - units: 4
            activation: sigmod
        loss: binary_crossentropy
        """)
    assert found[0].startswith("s.yaml:1:7: name: ")
    assert found[1].startswith("s.yaml:2:8: input: ")
    assert found[2].startswith(
        "s.yaml:5:17: layers[0].activation: unknown activation 'sigmod'"
    )


def test_file_problems(tmp_path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1.yaml:1: not UTF-8"):
        load_spec(bad)


def test_alias_bomb_fails_fast() -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.perf_counter()
    found = problems("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 2
    assert any("expands to more than" in p for p in found)


def test_deep_nesting_fails_cleanly() -> None:
    found = problems("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert any("nested deeper" in p or "nested too deeply" in p for p in found)


def test_messages_do_not_echo_unbounded_input() -> None:
    found = problems(GOOD.replace("activation: tanh", "activation: " + "x" * 100_000))
    assert all(len(p) < 400 for p in found)
