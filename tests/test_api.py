"""The Python API: a Spec, a path, YAML text or a dict everywhere; a short repr; a clean
namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

import symgrad

ROOT = Path(__file__).resolve().parent.parent
XOR = ROOT / "examples" / "xor.yaml"
XOR_DICT = {
    "name": "xor",
    "input": 2,
    "layers": [
        {"units": 8, "activation": "tanh"},
        {"units": 1, "activation": "sigmoid"},
    ],
    "loss": "binary_crossentropy",
    "optimizer": {"name": "adam", "learning_rate": 0.05},
}


@pytest.mark.parametrize(
    "source",
    [XOR, str(XOR), XOR.read_text(), XOR_DICT, symgrad.load_spec(XOR)],
    ids=["Path", "str", "yaml-text", "dict", "Spec"],
)
def test_derive_and_generate_take_every_kind_of_source(tmp_path, source) -> None:
    d = symgrad.derive(source)
    assert d.spec.sizes == (2, 8, 1) and d.output.collapsed
    out = symgrad.generate(source, tmp_path)
    assert out == tmp_path / "xor.py" and out.is_file()


def test_yaml_text_errors_name_the_string_not_a_path() -> None:
    with pytest.raises(symgrad.SpecError) as info:
        symgrad.derive("name: xor\ninput: 2\n")
    assert str(info.value).startswith("<string>:1:1: (top level): missing required key")


def test_derivation_repr_is_one_short_line() -> None:
    assert repr(symgrad.derive(XOR)) == (
        "<Derivation xor: 2 → 8 (tanh) → 1 (sigmoid); binary cross-entropy,"
        " δ = ŷ − y (collapsed)>"
    )
    deep = symgrad.derive(ROOT / "examples" / "iris_mlp.yaml")
    assert len(repr(deep)) < 200 and "\n" not in repr(deep)


def test_namespace_is_the_api() -> None:
    public = {n for n in dir(symgrad) if not n.startswith("_")}
    assert not public & {"os", "Path", "annotations", "TYPE_CHECKING"}
    modules = {n for n in public if type(getattr(symgrad, n)).__name__ == "module"}
    assert public - modules == set(symgrad.__all__) - {"__version__"}
    for name in symgrad.__all__:
        assert hasattr(symgrad, name)


def test_the_version_is_pyprojects() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert (
        re.search(r'^version = "([^"]+)"', text, re.M).group(1) == symgrad.__version__
    )
