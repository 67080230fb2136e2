"""Messages at the edges (issue 19): each class of mistake gets one located line that
says what was found and how to fix it, never a traceback or a misleading value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import symgrad
from symgrad import check
from symgrad.cli import main
from symgrad.errors import number

ROOT = Path(__file__).resolve().parent.parent
XOR = ROOT / "examples" / "xor.yaml"


def problems(text: str) -> str:
    with pytest.raises(symgrad.SpecError) as info:
        symgrad.parse_spec(text, "s.yaml")
    return str(info.value)


def test_a_tab_in_the_indentation_says_indent_with_spaces() -> None:
    text = (
        "name: t\ninput: 2\nlayers:\n\t- {units: 1, activation: sigmoid}\nloss: mse\n"
    )
    message = problems(text)
    assert message.startswith("s.yaml:4:1: malformed YAML")
    assert "(indent with spaces: YAML allows no tabs there)" in message


def test_a_name_in_another_case_is_suggested_before_a_near_one() -> None:
    text = "name: t\ninput: 2\nlayers:\n  - {units: 1, activation: Relu}\nloss: mse\n"
    assert "unknown activation 'Relu' (did you mean 'relu'?)" in problems(text)
    text = text.replace("Relu", "Sigmoid").replace("mse", "BCE")
    message = problems(text)
    assert "(did you mean 'sigmoid'?)" in message
    assert "(did you mean 'binary_crossentropy'?)" in message


def test_an_expression_where_a_name_goes_is_shown_as_the_mapping_that_works() -> None:
    spec = (
        "name: t\ninput: 2\nlayers:\n  - units: 1\n"
        "    activation: {act}\nloss: {loss}\n"
    )
    text = spec.format(act="(1 + tanh(z))/2", loss="'(yhat - y)**2'")
    message = problems(text)
    shown = []
    for kind in ("activation", "loss"):
        head = f"(a custom {kind} is a mapping with its expression: "
        assert head in message
        shown.append(message.split(head, 1)[1].split(")\n")[0].rstrip(")"))
    # the mapping the message shows, pasted into the spec, is a valid spec
    fixed = symgrad.parse_spec(spec.format(act=shown[0], loss=shown[1]), "s.yaml")
    assert fixed.layers[0].activation.name == "my_activation"
    assert fixed.loss.name == "my_loss"


@pytest.mark.parametrize(
    ("layer", "found"),
    [
        ("{type: batchnorm, momentum: 1.0000001}", "found 1.0000001"),
        ("{type: layernorm, eps: -1.0000001e-5}", "found -1.0000001e-05"),
        ("{type: dropout, rate: 0.99999999999}", None),  # in range: no message
        ("{type: dropout, rate: 1.0000000001}", "found 1.0000000001"),
    ],
)
def test_a_value_just_out_of_range_is_shown_as_it_was_written(layer, found) -> None:
    text = (
        "name: t\ninput: 2\nlayers:\n  - {units: 3, activation: tanh}\n"
        f"  - {layer}\n  - {{units: 1, activation: sigmoid}}\nloss: mse\n"
    )
    if found is None:
        symgrad.parse_spec(text, "s.yaml")
        return
    message = problems(text)
    assert found in message, message
    assert "found 1\n" not in message + "\n" and "found 1 " not in message


def test_number_is_short_only_where_short_is_exact() -> None:
    assert number(0.1) == "0.1" and number(2.0) == "2" and number(1e-5) == "1e-05"
    assert number(1.0000001) == "1.0000001"
    assert float(number(0.30000000000000004)) == 0.30000000000000004


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "symgrad", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("loop", ["self", "pair"])
def test_generate_into_a_symlink_loop_is_one_message(tmp_path, loop) -> None:
    if loop == "self":
        (tmp_path / "LOOP").symlink_to("LOOP")
        target = "LOOP"
    else:
        (tmp_path / "a").symlink_to("b")
        (tmp_path / "b").symlink_to("a")
        target = "a"
    proc = run("generate", str(XOR), "-o", target, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"{target}/xor.py: cannot follow its links" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["LOOP"] if loop == "self" else ["a", "b"]
    )


def test_render_report_takes_a_spec_like_every_entry_point() -> None:
    from_path = symgrad.render_report(str(XOR), "text")
    assert from_path == symgrad.render_report(symgrad.derive(XOR), "text")
    assert from_path.startswith("The derivation of xor\n")


def test_check_counts_each_layer_kind_as_it_is() -> None:
    """A norm keeps a gain and a shift (and batchnorm two running statistics), not a
    dense layer's (n + 1)·n weights: the memory budget counts what the module keeps."""
    spec = symgrad.as_spec(
        {
            "name": "wide",
            "input": 4000,
            "layers": [
                {"units": 4000, "activation": "relu"},
                {"type": "batchnorm"},
                {"type": "layernorm"},
                {"type": "dropout", "rate": 0.5},
                {"units": 1, "activation": "sigmoid"},
            ],
            "loss": "binary_crossentropy",
        }
    )
    dense = 4001 * 4000 + 4001
    norms = 4 * 4000 + 4 * 4000  # at most: gains, shifts, running statistics
    assert check._parameters(spec) == dense + norms
    assert check.memory_estimate(spec, 8) < check.MAX_MEMORY


def test_a_numba_module_without_numba_says_what_is_missing_and_how_to_fix_it(
    tmp_path: Path,
) -> None:
    # the module is imported where numba is hidden (None in sys.modules: `import
    # numba` raises ModuleNotFoundError, as where it is not installed); the error is an
    # ImportError, so `except ImportError` still works, and one message says it all
    path = symgrad.generate(XOR, tmp_path / "out", target="numba")
    script = (
        "import sys, traceback\n"
        "sys.modules['numba'] = None\n"
        f"sys.path.insert(0, {str(path.parent)!r})\n"
        "try:\n"
        "    import xor_numba\n"
        "except ImportError as error:\n"
        "    print(type(error).__name__, error.name, error.__cause__ is None)\n"
        "    print(error)\n"
        "    traceback.print_exc()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    kind, message = done.stdout.splitlines()
    assert kind == "ModuleNotFoundError numba True"
    assert message.startswith("import of numba halted; None in sys.modules: ")
    for part in (
        "xor_numba.py was generated with --target numba",
        "pip install 'symgrad[numba]' (or pip install numba)",
        "without --target numba",
    ):
        assert part in message
    # the traceback shows this message only, not a second one before it
    assert done.stderr.count("ModuleNotFoundError: ") == 1, done.stderr
    assert "During handling" not in done.stderr
    # the command it names writes the NumPy module, which imports without numba
    command = message[message.rindex(": ") + 2 :].split()
    assert command[:2] == ["symgrad", "generate"]
    assert main([*command[1:], "-q"]) == 0
    done = subprocess.run(
        [sys.executable, "-c", script.replace("xor_numba", "xor")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
