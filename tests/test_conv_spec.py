"""Spec v3, images: an image input, the conv2d, pooling and flatten keys; every shape
mistake is one located problem naming the shapes computed, before anything is derived.

The location is computed here from the text (the line of the mistake and the column of
the token it names), not taken from the validator; the shapes in the messages are
worked out by hand from PyTorch's formula ⌊(H + 2p − k)/s⌋ + 1.
"""

from __future__ import annotations

import textwrap

import pytest

import symgrad
from symgrad import SpecError, parse_spec


def spec_text(*layers: str, input: str = "[1, 8, 8]") -> str:
    items = "\n".join(f"  - {layer}" for layer in layers)
    return (
        f"name: net\ninput: {input}\nlayers:\n{items}\n"
        "  - {units: 3, activation: softmax}\nloss: categorical_crossentropy\n"
    )


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "s.yaml")
    return [str(p) for p in info.value.problems]


def where(text: str, line: int, token: str) -> str:
    """'s.yaml:LINE:COL' of the first `token` on the 1-based line."""
    col = text.splitlines()[line - 1].index(token) + 1
    return f"s.yaml:{line}:{col}"


def one(text: str, line: int, token: str, *words: str) -> str:
    """The one problem of text: at `token` on `line`, with each of `words`."""
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith(where(text, line, token)), found[0]
    for w in words:
        assert w in found[0], (w, found[0])
    return found[0]


def test_the_contracts_example_parses_with_its_shapes() -> None:
    text = textwrap.dedent("""\
        name: digits_cnn
        input: [1, 8, 8]
        layers:
          - {type: conv2d, filters: 8, kernel: 3, padding: 1, activation: relu}
          - {type: maxpool2d, size: 2}
          - {type: conv2d, filters: 16, kernel: 3, stride: 1, padding: same, activation: relu}
          - {type: avgpool2d, size: 2, stride: 2}
          - {type: flatten}
          - {units: 10, activation: softmax}
        loss: categorical_crossentropy
        """)
    spec = parse_spec(text, "s.yaml")
    assert spec.input == (1, 8, 8)
    assert spec.shapes == (
        (1, 8, 8),
        (8, 8, 8),
        (8, 4, 4),
        (16, 4, 4),
        (16, 2, 2),
        64,
        10,
    )
    assert spec.sizes == (64, 512, 128, 256, 64, 64, 10)


def test_rectangular_kernels_strides_and_padding_give_torchs_shapes() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: [3, 2], stride: [2, 1], padding: [1, 0],"
        " activation: tanh}",
        "{type: maxpool2d, size: [2, 1], stride: 1}",
        "{type: conv2d, filters: 1, kernel: 1, padding: valid, activation: relu}",
        "{type: flatten}",
        input="[3, 9, 7]",
    )
    spec = parse_spec(text, "s.yaml")
    # rows (9 + 2 − 3)//2 + 1 = 5, columns (7 − 2)//1 + 1 = 6; then 4 × 6
    assert spec.shapes[1:5] == ((2, 5, 6), (2, 4, 6), (1, 4, 6), 24)


def test_an_int_input_stays_a_feature_vector() -> None:
    spec = parse_spec(spec_text("{units: 4, activation: tanh}", input="5"), "s.yaml")
    assert spec.input == 5 and spec.shapes == (5, 4, 3)


@pytest.mark.parametrize(
    "value, words",
    [
        ("[1, 8]", ["[channels, height, width]", "found 2 numbers"]),
        ("[1, 0, 8]", ["expected an integer from 1"]),
        ("[1, 8, 8.5]", ["expected an integer"]),
    ],
)
def test_a_wrong_image_input_is_one_problem(value: str, words: list[str]) -> None:
    text = spec_text("{type: flatten}", input=value)
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith("s.yaml:2:"), found[0]
    for w in words:
        assert w in found[0]


def test_kernel_larger_than_the_padded_input() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: [3, 5], padding: [0, 1], activation: relu}",
        "{type: flatten}",
        input="[1, 4, 2]",
    )
    # the padded input is 4×4: the kernel's width 5 does not fit
    one(text, 4, "[3, 5]", "larger than the padded input", "1×4×2", "4×4", "3×5")


def test_a_residual_conv_that_changes_the_shape() -> None:
    text = spec_text(
        "{type: conv2d, filters: 4, kernel: 3, padding: 1, activation: relu,"
        " residual: true}",
        "{type: flatten}",
        input="[2, 6, 6]",
    )
    one(text, 4, "true", "residual", "2×6×6 into 4×6×6", "filters: 2")


def test_a_residual_conv_that_keeps_the_shape_parses() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 3, padding: same, activation: relu,"
        " residual: true}",
        "{type: flatten}",
        input="[2, 6, 6]",
    )
    assert parse_spec(text, "s.yaml").layers[0].residual


def test_dense_after_an_image_layer_without_flatten() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 3, activation: relu}",
        input="[1, 5, 5]",
    )
    # the output layer (line 5) reads the 2×3×3 image
    one(text, 5, "{units", "needs a vector", "2×3×3", "flatten", "18 features")


def test_dense_on_an_image_input() -> None:
    text = spec_text("{units: 4, activation: relu}", input="[1, 5, 5]")
    one(text, 4, "{units", "needs a vector", "1×5×5", "flatten")


def test_same_padding_with_a_stride() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 3, stride: 2, padding: same,"
        " activation: relu}",
        "{type: flatten}",
    )
    one(text, 4, "same", "stride 1", "found stride 2")


def test_same_padding_with_an_even_kernel() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: [2, 3], padding: same, activation: relu}",
        "{type: flatten}",
    )
    one(text, 4, "same", "odd kernel", "2×3")


@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
def test_a_pooling_window_that_does_not_fit(kind: str) -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 3, activation: relu}",
        f"{{type: {kind}, size: [2, 4]}}",
        "{type: flatten}",
        input="[1, 6, 5]",
    )
    # the conv gives 2×4×3: a window 4 wide does not fit 3 columns
    one(text, 5, "[2, 4]", "does not fit", "2×4×3", "height 4, width 3")


def test_flatten_on_a_vector() -> None:
    text = spec_text("{type: flatten}", input="12")
    one(text, 4, "{type", "already a vector of 12 values", "remove")


@pytest.mark.parametrize(
    "layer", ["{type: conv2d, filters: 2, kernel: 1, activation: relu}",
              "{type: maxpool2d, size: 2}"]
)  # fmt: skip
def test_an_image_layer_on_a_vector(layer: str) -> None:
    text = spec_text(
        "{units: 4, activation: relu}", layer, "{type: flatten}", input="6"
    )
    found = problems(text)
    assert found[0].startswith(where(text, 5, "{type")), found
    assert "needs an image input" in found[0] and "vector of 4 values" in found[0]


@pytest.mark.parametrize(
    "key, token, words",
    [
        ("padding: full", "full", ["same or valid", "'full'"]),
        ("padding: -1", "-1", ["from 0"]),
        ("stride: 0", "0", ["from 1"]),
        ("kernel: [3, 3, 3]", "[3, 3, 3]", ["pair", "found 3 numbers"]),
        ("filters: 0", "0", ["from 1"]),
        ("activation: softmax", "softmax", ["output (last) layer"]),
        ("dilation: 2", "dilation", ["unknown key"]),
    ],
)
def test_a_wrong_conv_key_is_one_problem(
    key: str, token: str, words: list[str]
) -> None:
    base = {"filters": "2", "kernel": "3", "activation": "relu"}
    k = key.split(":")[0]
    base[k] = key.split(": ", 1)[1]
    fields = ", ".join(f"{a}: {b}" for a, b in base.items())
    text = spec_text(f"{{type: conv2d, {fields}}}", "{type: flatten}")
    line = text.splitlines()[3]
    col = line.index(token, line.index(k))
    found = problems(text)
    assert len(found) == 1, found
    assert found[0].startswith(f"s.yaml:4:{col + 1}") or found[0].startswith(
        f"s.yaml:4:{line.index(k) + 1}"
    ), found[0]
    for w in words:
        assert w in found[0], (w, found[0])


def test_a_missing_key_and_the_last_layer() -> None:
    text = spec_text("{type: conv2d, kernel: 3, activation: relu}", "{type: flatten}")
    found = problems(text)
    assert len(found) == 1 and "filters" in found[0]
    text = "name: n\ninput: [1, 4, 4]\nlayers:\n  - {type: flatten}\nloss: mse\n"
    found = problems(text)
    assert len(found) == 1 and "must be dense" in found[0]


def test_batchnorm_on_an_image_is_per_channel() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 3, activation: relu}",
        "{type: batchnorm}",
        "{type: flatten}",
    )
    spec = parse_spec(text, "s.yaml")
    assert spec.shapes[1:4] == ((2, 6, 6), (2, 6, 6), 72)
    assert symgrad.derive(spec).layer(2).image == (2, 6, 6)


def test_layernorm_on_an_image_keeps_its_shape_with_gains_of_that_shape() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 3, activation: relu}",
        "{type: layernorm}",
        "{type: flatten}",
    )
    spec = parse_spec(text, "s.yaml")
    assert spec.shapes[1:4] == ((2, 6, 6), (2, 6, 6), 72)
    d = symgrad.derive(spec)
    assert d.layer(2).image == (2, 6, 6)


def test_dropout_on_an_image_keeps_its_shape() -> None:
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 3, activation: relu}",
        "{type: dropout, rate: 0.25}",
        "{type: flatten}",
    )
    assert parse_spec(text, "s.yaml").shapes[1:4] == ((2, 6, 6), (2, 6, 6), 72)


def test_problems_after_a_broken_layer_are_still_found() -> None:
    # the first conv's kernel is wrong; the pooling after it is still checked
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 9, activation: relu}",
        "{type: maxpool2d, size: 0}",
        "{type: flatten}",
    )
    found = problems(text)
    assert len(found) == 2, found
    assert found[0].startswith(where(text, 4, "9"))
    assert found[1].startswith(where(text, 5, "0"))


# ------------------------------------------------ after a broken layer, what is known


def test_a_missing_flatten_after_a_failed_conv_is_still_found() -> None:
    # the conv's output size is unknown (its kernel does not fit), but it is an image:
    # the dense output layer after the pooling still needs a flatten, and says why it
    # cannot give the size
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 9, activation: relu}",
        "{type: maxpool2d, size: 2}",
    )
    found = problems(text)
    assert len(found) == 2, found
    assert found[0].startswith(where(text, 4, "9") + ": layers[0].kernel: ")
    dense = found[1]
    assert dense.startswith(where(text, 6, "{units") + ": layers[2]: "), dense
    for words in (
        "a dense layer needs a vector",  # expected
        "its input is an image",  # found
        "its size is unknown until the error at layers[0] is fixed",  # why no size
        "(put {type: flatten} before it)",  # the fix
    ):
        assert words in dense, (words, dense)
    # a wrong input hides the size as a layer does
    text = spec_text("{type: conv2d, filters: 2, kernel: 3, activation: relu}")
    found = problems(text.replace("[1, 8, 8]", "[1, 8, -8]"))
    assert len(found) == 2 and found[0].startswith("s.yaml:2:"), found
    assert found[1].startswith(where(text, 5, "{units") + ": layers[1]: ")
    assert (
        "an image (its size is unknown until the error at input is fixed)" in found[1]
    )


def test_a_wrong_activation_leaves_the_conv_shape_known() -> None:
    # the activation has nothing to do with the shape: the layers after are checked
    # with it, the pooling's window against the conv's 2×6×6 output
    text = spec_text(
        "{type: conv2d, filters: 2, kernel: 3, activation: relux}",
        "{type: maxpool2d, size: 7}",
        "{type: flatten}",
    )
    found = problems(text)
    assert len(found) == 2, found
    assert found[0].startswith(where(text, 4, "relux") + ": layers[0].activation: ")
    assert "did you mean 'relu'" in found[0]
    one_more = found[1]
    assert one_more.startswith(where(text, 5, "7") + ": layers[1].size: "), one_more
    assert "does not fit the 2×6×6 input" in one_more
    assert "use a size of at most 6" in one_more


def test_after_a_failed_dense_layer_its_input_is_still_a_vector() -> None:
    # units: 0 leaves the width unknown, not the form: a flatten or a conv after it
    # is still refused, each saying where the size was lost; and the conv gives an
    # image, whatever its input: the dense output layer after it needs a flatten
    text = spec_text(
        "{units: 0, activation: relu}",
        "{type: flatten}",
        "{type: conv2d, filters: 2, kernel: 1, activation: relu}",
        input="6",
    )
    found = problems(text)
    assert len(found) == 4, found
    assert found[0].startswith(where(text, 4, "0") + ": layers[0].units: ")
    unknown = "(its size is unknown until the error at layers[0] is fixed)"
    assert found[1].startswith(where(text, 5, "{type") + ": layers[1]: ")
    assert f"its input is already a vector {unknown} (remove" in found[1]
    assert found[2].startswith(where(text, 6, "{type") + ": layers[2]: ")
    assert (
        f"needs an image input (channels, height, width), but its input is a vector {unknown}"
        in found[2]
    )
    assert found[3].startswith(where(text, 7, "{units") + ": layers[3]: ")
    assert f"needs a vector, but its input is an image {unknown}" in found[3]
