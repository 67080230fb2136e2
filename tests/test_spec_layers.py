"""Spec v2 keys: valid layer types parse; each wrong key or value is one located problem.

The location is computed here from the text (the line of the mistake and the column of
the token it names), not taken from the validator.
"""

from __future__ import annotations

import textwrap

import pytest

from symgrad import SpecError, as_spec, parse_spec
from symgrad.spec import DropoutSpec, LayerSpec, NormSpec

BASE = """\
name: net
input: 3
layers:
  - {units: 4, activation: tanh}
  - LAYER
  - {units: 2, activation: softmax}
loss: categorical_crossentropy
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "s.yaml")
    return [str(p) for p in info.value.problems]


def where(text: str, line: int, token: str) -> str:
    """'s.yaml:LINE:COL' of the first `token` on the 1-based line."""
    col = text.splitlines()[line - 1].index(token) + 1
    return f"s.yaml:{line}:{col}"


def test_a_v2_spec_parses() -> None:
    text = textwrap.dedent("""\
        name: resnet
        input: 8
        layers:
          - {units: 16, activation: relu}
          - {type: layernorm}
          - {type: dropout, rate: 0.1}
          - {units: 16, activation: relu, residual: true}
          - {type: batchnorm, momentum: 0.2, eps: 1.0e-3}
          - {type: rmsnorm}
          - {type: norm, name: mynorm, expr: "x / (mean(abs(x)) + eps)", eps: 0.01}
          - {type: norm, name: shift, expr: "x - max(x)", affine: false}
          - {type: dense, units: 3, activation: softmax}
        loss: categorical_crossentropy
        """)
    spec = parse_spec(text, "s.yaml")
    kinds = [type(layer) for layer in spec.layers]
    assert kinds == [LayerSpec, NormSpec, DropoutSpec, LayerSpec] + [NormSpec] * 4 + [
        LayerSpec
    ]
    assert spec.sizes == (8, 16, 16, 16, 16, 16, 16, 16, 16, 3)
    assert spec.layers[3].residual and not spec.layers[0].residual
    assert spec.layers[2].rate == 0.1
    batchnorm = spec.layers[4]
    assert batchnorm.name == "batchnorm" and not batchnorm.custom
    assert batchnorm.param("momentum") == 0.2 and batchnorm.param("eps") == 1e-3
    mine, shift = spec.layers[6], spec.layers[7]
    assert mine.custom and mine.expr == "x / (mean(abs(x)) + eps)" and mine.affine
    assert mine.param("eps") == 0.01
    assert shift.custom and not shift.affine


@pytest.mark.parametrize("momentum", ["0", "1", "0.5"])
def test_momentum_bounds_are_inclusive(momentum: str) -> None:
    text = BASE.replace("LAYER", f"{{type: batchnorm, momentum: {momentum}}}")
    assert parse_spec(text, "s.yaml").layers[1].param("momentum") == float(momentum)


def test_a_rate_of_zero_is_allowed() -> None:
    spec = parse_spec(BASE.replace("LAYER", "{type: dropout, rate: 0}"), "s.yaml")
    assert spec.layers[1].rate == 0


# (the layer's text, the token the message points at, what it says)
PROBLEMS = [
    (
        "{type: layernrom}",
        "layernrom",
        "layers[1].type: unknown layer type 'layernrom' (did you mean 'layernorm'?)",
    ),
    (
        "{type: batchnrom, momentum: 0.1}",
        "batchnrom",
        "layers[1].type: unknown layer type 'batchnrom' (did you mean 'batchnorm'?)",
    ),
    ("{type: 3}", "3", "layers[1].type: unknown layer type 3"),
    (
        "{units: 5, activation: relu, residual: true}",
        "true",
        "layers[1].residual: a residual layer adds its input to its output: its units"
        " (5) must equal its input width (4)",
    ),
    (
        "{units: 4, activation: relu, residual: 1}",
        "1}",
        "layers[1].residual: expected true or false",
    ),
    (
        "{type: dropout, rate: 1}",
        "1}",
        "layers[1].rate: rate is the probability of dropping a value: expected a number"
        " in [0, 1), found 1",
    ),
    (
        "{type: dropout, rate: 1.5}",
        "1.5",
        "layers[1].rate: rate is the probability of dropping a value: expected a number"
        " in [0, 1), found 1.5",
    ),
    (
        "{type: dropout, rate: -0.1}",
        "-0.1",
        "layers[1].rate: rate is the probability of dropping a value: expected a number"
        " in [0, 1), found -0.1",
    ),
    ("{type: dropout}", "{", "layers[1]: missing required key 'rate'"),
    ("{type: dropout, rate: 0.1, p: 2}", "p:", "layers[1].p: unknown key 'p'"),
    (
        "{type: batchnorm, momentum: 1.5}",
        "1.5",
        "layers[1].momentum: momentum must be in [0, 1], found 1.5",
    ),
    (
        "{type: batchnorm, momentum: -0.1}",
        "-0.1",
        "layers[1].momentum: momentum must be in [0, 1], found -0.1",
    ),
    ("{type: layernorm, eps: 0}", "0}", "layers[1].eps: eps must be positive, found 0"),
    ("{type: rmsnorm, eps: -1.0e-6}", "-1.0e-6", "layers[1].eps: eps must be positive"),
    ("{type: batchnorm, eps: 0}", "0}", "layers[1].eps: eps must be positive"),
    (
        "{type: norm, name: mine, expr: 'x / (mean(abs(x)) + eps)', eps: 0}",
        "0}",
        "layers[1].eps: eps must be positive",
    ),
    (
        "{type: layernorm, epsilon: 1.0e-5}",
        "epsilon",
        "layers[1].epsilon: unknown key 'epsilon' (did you mean 'eps'?)",
    ),
    (
        "{type: layernorm, momentum: 0.1}",
        "momentum",
        "layers[1].momentum: unknown key 'momentum'",
    ),
    ("{type: rmsnorm, beta: 1}", "beta", "layers[1].beta: unknown key 'beta'"),
    (
        "{type: norm, name: layernorm, expr: 'x - mean(x)'}",
        "layernorm",
        "layers[1].name: 'layernorm' is a built-in norm; a custom expression needs its"
        " own name",
    ),
    (
        "{type: norm, name: batchnorm, expr: 'x'}",
        "batchnorm",
        "layers[1].name: 'batchnorm' is a built-in norm",
    ),
    (
        "{type: norm, name: mine, expr: 'x - mean(x'}",
        "'x - mean(x'",
        "layers[1].expr: expression rejected: ",
    ),
    (
        "{type: norm, name: mine, expr: '__import__(\"os\")'}",
        "'__import__",
        "layers[1].expr: expression rejected: unknown function '__import__'",
    ),
    (
        "{type: norm, name: mine, expr: 'mean(x) + sum(x)'}",
        "'mean(x)",
        "layers[1].expr: expression rejected: the norm gives every element of the group"
        " the same value",
    ),
    (
        "{type: norm, name: mine, expr: 'x / (mean(abs(x)) + eps)'}",
        "'x / ",
        "layers[1].expr: expression rejected: unknown name 'eps'",
    ),
    (
        "{type: norm, name: mine, expr: 'x - mean(y)'}",
        "'x - mean(y)'",
        "layers[1].expr: expression rejected: unknown name 'y'",
    ),
    (
        "{type: norm, name: mine, expr: 'x * k', k: 2, affine: maybe}",
        "maybe",
        "layers[1].affine: expected true or false",
    ),
    (
        "{type: norm, name: 'my norm', expr: 'x'}",
        "'my norm'",
        "layers[1].name: custom norm name 'my norm' is not an identifier",
    ),
    (
        "{type: norm, name: mine, expr: 'x - mean(x)', k: 2}",
        "k:",
        "layers[1].k: parameter 'k' is not used in expr 'x - mean(x)' (use k in expr,"
        " or remove the key)",
    ),
    ("{type: norm, name: mine}", "{", "layers[1]: missing required key 'expr'"),
]


@pytest.mark.parametrize(
    ("layer", "token", "message"), PROBLEMS, ids=[p[0] for p in PROBLEMS]
)
def test_each_wrong_key_is_one_located_problem(layer, token, message) -> None:
    text = BASE.replace("LAYER", layer)
    found = problems(text)
    assert len(found) == 1, found
    # the column of the token within the layer's line (line 5)
    col = 5 + layer.index(token)  # "  - " is four characters, columns count from 1
    assert found[0].startswith(f"s.yaml:5:{col}: {message}"), found[0]


def test_residual_on_the_output_layer() -> None:
    text = BASE.replace("  - LAYER\n", "").replace(
        "{units: 2, activation: softmax}",
        "{units: 4, activation: softmax, residual: true}",
    )
    assert problems(text) == [
        f"{where(text, 5, 'true')}: layers[1].residual: the output layer cannot be"
        " residual: its output is the prediction (put the residual connection on a"
        " hidden layer)"
    ]


def test_residual_width_is_the_input_width_on_the_first_layer() -> None:
    text = BASE.replace("  - LAYER\n", "").replace(
        "{units: 4, activation: tanh}", "{units: 4, activation: tanh, residual: true}"
    )
    found = problems(text)
    assert len(found) == 1
    assert found[0].startswith(
        f"{where(text, 4, 'true')}: layers[0].residual: a residual layer adds its input"
        " to its output: its units (4) must equal its input width (3)"
    )
    ok = text.replace("input: 3", "input: 4")
    assert parse_spec(ok, "s.yaml").layers[0].residual


def test_the_width_through_norms_and_dropout_is_the_last_dense_layer() -> None:
    layers = "{type: layernorm}\n  - {type: dropout, rate: 0.5}\n  - {type: rmsnorm}"
    layers += "\n  - {units: 4, activation: relu, residual: true}"
    spec = parse_spec(BASE.replace("LAYER", layers), "s.yaml")
    assert spec.sizes == (3, 4, 4, 4, 4, 4, 2)


@pytest.mark.parametrize(
    "last", ["{type: layernorm}", "{type: dropout, rate: 0.1}", "{type: batchnorm}"]
)
def test_the_last_layer_must_be_dense(last: str) -> None:
    text = BASE.replace("  - {units: 2, activation: softmax}\n", "").replace(
        "LAYER", last
    )
    kind = last.split()[1].rstrip(",}")
    assert problems(text) == [
        f"{where(text, 5, '{')}: layers[1]: the last layer is the output layer: it must"
        f" be dense, found {kind} (end with {{units: N, activation: NAME}})"
    ]


def test_every_v2_problem_is_reported_at_once() -> None:
    text = textwrap.dedent("""\
        name: net
        input: 3
        layers:
          - {units: 4, activation: tanh, residual: true}
          - {type: dropout, rate: 1}
          - {type: layernrom}
          - {type: batchnorm, momentum: 2}
          - {type: norm, name: rmsnorm, expr: "x"}
          - {units: 2, activation: softmax}
        loss: categorical_crossentropy
        """)
    found = problems(text)
    assert [p.split(": ")[0] for p in found] == [
        where(text, 4, "true"),
        where(text, 5, "1}"),
        where(text, 6, "layernrom"),
        where(text, 7, "2}"),
        where(text, 8, "rmsnorm"),
    ]


def test_a_dict_spec_gets_the_same_v2_checks() -> None:
    data = {
        "name": "net",
        "input": 3,
        "layers": [
            {"units": 4, "activation": "tanh", "residual": True},
            {"type": "dropout", "rate": 1.0},
            {"type": "layernrom"},
            {"units": 2, "activation": "softmax"},
        ],
        "loss": "categorical_crossentropy",
    }
    with pytest.raises(SpecError) as info:
        as_spec(data)
    found = [str(p) for p in info.value.problems]
    assert len(found) == 3
    assert found[0].startswith("<dict>: layers[0].residual: a residual layer")
    assert found[1].startswith("<dict>: layers[1].rate: ")
    assert found[2] == (
        "<dict>: layers[2].type: unknown layer type 'layernrom' (did you mean"
        " 'layernorm'?)"
    )
