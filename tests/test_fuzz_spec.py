"""Property tests: random valid specs generate; random mutations generate or fail cleanly."""

from __future__ import annotations

import copy
import string

import harness
import pytest
import yaml
from harness import check_against_reference, generate_module, needs_jax
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symgrad import SpecError, SymgradError, derive, parse_spec
from symgrad.render import render

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

HIDDEN = [
    "identity",
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "softplus",
    "silu",
    "softsign",
    {"name": "leaky_relu", "alpha": 0.2},
    {"name": "elu", "alpha": 0.5},
    "gelu",
]
OUTPUTS = [
    ("sigmoid", "binary_crossentropy"),
    ("softmax", "categorical_crossentropy"),
    ("identity", "mse"),
    ("tanh", "mae"),
    ("identity", {"name": "huber", "delta": 0.5}),
    ("sigmoid", "mse"),
    ("softmax", "mse"),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**7),
    st.floats(allow_nan=True),
    st.text(string.printable, max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(
        st.text(string.ascii_lowercase, min_size=1, max_size=6),
        st.integers(),
        max_size=2,
    ),
)


@st.composite
def valid_specs(draw):
    depth = draw(st.integers(1, 6))
    out_act, loss = draw(st.sampled_from(OUTPUTS))
    layers = [
        {"units": draw(st.integers(1, 9)), "activation": draw(st.sampled_from(HIDDEN))}
        for _ in range(depth - 1)
    ]
    layers.append({"units": draw(st.integers(1, 5)), "activation": out_act})
    spec = {
        "name": "net",
        "input": draw(st.integers(1, 7)),
        "layers": layers,
        "loss": loss,
    }
    if draw(st.booleans()):
        spec["l2"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        spec["optimizer"] = draw(
            st.sampled_from(
                [
                    "sgd",
                    {"name": "momentum", "nesterov": True},
                    {"name": "adam", "beta1": 0.8},
                ]
            )
        )
    return spec


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


@st.composite
def mutated_texts(draw):
    spec = copy.deepcopy(draw(valid_specs()))  # the op dicts are shared constants
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from([p for p in paths(spec) if p]))
        parent = spec
        for key in where[:-1]:
            parent = parent[key]
        kind = draw(st.sampled_from(["replace", "delete", "rename"]))
        last = where[-1]
        if kind == "replace":
            parent[last] = draw(scalars)
        elif kind == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[
                draw(st.text(string.ascii_letters + "_", min_size=1, max_size=8))
            ] = parent.pop(last)
    text = yaml.safe_dump(spec, sort_keys=False)
    if draw(st.booleans()):  # raw text damage: YAML syntax errors, odd characters
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(":[]{}&*!|>'\"#%@`\t -", max_size=4)) + text[i:]
    return text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_random_valid_specs_generate(spec) -> None:
    harness.keep_within_budget()  # one test, many examples: each derives its rules
    loaded = parse_spec(yaml.safe_dump(spec, sort_keys=False), "fuzz.yaml")
    source = render(derive(loaded))
    compile(source, "generated.py", "exec")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_texts())
def test_mutations_generate_or_fail_cleanly(text) -> None:
    harness.keep_within_budget()
    try:
        loaded = parse_spec(text, "fuzz.yaml")
    except SpecError as exc:
        assert exc.problems, "a SpecError must carry its problems"
        for problem in exc.problems:
            assert str(problem).startswith("fuzz.yaml")
            assert "\n" not in str(problem)
        return
    try:
        compile(render(derive(loaded)), "generated.py", "exec")
    except SymgradError:
        pass


@needs_jax
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(valid_specs())
def test_random_valid_specs_match_jax(tmp_path_factory, spec) -> None:
    harness.keep_within_budget()  # each example compiles its own JAX reference
    module = generate_module(spec, tmp_path_factory.mktemp("fuzz"))
    check_against_reference(module, spec)
