"""Build symgrad/builtin_rules.pickle, the built-in rules shipped derived with symgrad.

    python scripts/build_rules.py           # derive them all and write the file
    python scripts/build_rules.py --check   # derive them all; exit 1 if the file differs

Every rule a spec of built-ins needs (each activation in a hidden layer, each loss on
each output activation it accepts, each norm on features and on an image, conv2d and the
poolings, and every spec in examples/) is derived as a cold cache derives it: with an
empty disk cache in a temporary directory and the shipped file turned off, in this
process. The entries the derivation stored there, key and bytes as the disk cache writes
them, make the table (symgrad/cache.py reads it with the disk cache's checks). Their keys
hold symgrad's code digest, so any change to symgrad's code leaves the file stale: the
rules are derived again at run time (same bytes, only slower) and tests/test_shipped_rules.py
fails until this script is run again. Run it after changing symgrad, as `generated/` is
regenerated (docs/development.md).

Each entry is pickled without pickle's memo (`canonical`): a subexpression that occurs
twice is written twice, whether or not SymPy's caches made the two one object (which
varies with the hash seed), so two builds of the same code write the same bytes.
`--check` compares the rules unpickled, as the cache compares them, and then their bytes.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _spec(name: str, inputs: Any, layers: list, loss: Any) -> dict:  # noqa: ANN401
    return {
        "name": name,
        "input": inputs,
        "layers": layers,
        "loss": loss,
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
    }


def specs() -> list[tuple[str, Any]]:
    """(a label, a spec source) for every spec whose rules are shipped."""
    from symgrad import activations, losses
    from symgrad.norms import NORMS

    hidden = [a for a in activations.ACTIVATIONS if a != activations.SOFTMAX]
    out: list[tuple[str, Any]] = [
        (path.name, path) for path in sorted((ROOT / "examples").glob("*.yaml"))
    ]
    for act in hidden:
        layers = [
            {"units": 3, "activation": act},
            {"units": 1, "activation": "identity"},
        ]
        out.append((f"hidden {act}", _spec("h", 2, layers, "mse")))
    for loss in losses.LOSSES:
        for act in activations.ACTIVATIONS:
            layers = [
                {"units": 3, "activation": "tanh"},
                {"units": 2, "activation": act},
            ]
            out.append((f"{loss} on {act}", _spec("o", 2, layers, loss)))
    for norm in NORMS:
        dense = [{"units": 4, "activation": "tanh"}, {"type": norm}]
        dense.append({"units": 1, "activation": "identity"})
        out.append((f"{norm} on features", _spec("n", 3, dense, "mse")))
        image = [
            {"type": "conv2d", "filters": 2, "kernel": 3, "activation": "relu"},
            {"type": norm},
            {"type": "maxpool2d", "size": 2},
            {"type": "avgpool2d", "size": 1},
            {"type": "flatten"},
            {"units": 2, "activation": "softmax"},
        ]
        out.append(
            (
                f"{norm} on an image",
                _spec("i", [1, 6, 6], image, "categorical_crossentropy"),
            )
        )
    return out


def derive_all(directory: Path) -> dict[str, bytes]:
    """Every shipped rule derived afresh, stored in `directory` (empty): entry bytes by
    key."""
    os.environ["SYMGRAD_CACHE_DIR"] = str(directory)
    from symgrad import cache
    from symgrad.errors import DerivationError, SpecError

    cache._state.update(enabled=True, shipped=False)
    derive = importlib.import_module("symgrad.derive")
    for label, source in specs():
        try:
            derive.derive(source)
        except SpecError:
            continue  # a pair the spec rejects (a loss its output activation cannot feed)
        except DerivationError as exc:
            print(f"not shipped: {label}: {exc}", file=sys.stderr)
    table = {}
    for path in sorted(directory.rglob("*.pickle")):
        key, value = pickle.loads(path.read_bytes())
        table[key] = canonical(key, value)
    return dict(sorted(table.items()))


def canonical(key: str, value: Any) -> bytes:  # noqa: ANN401
    """The entry as the disk cache pickles it, without pickle's memo: every
    subexpression written out where it occurs, so that the bytes do not depend on which
    equal subexpressions SymPy's caches made one object (that varies with the hash
    seed). Two builds of the same code write the same file."""
    from symgrad import cache

    buffer = io.BytesIO()
    pickler = cache._Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True  # no memo: a tree, not a graph (rules hold no cycles)
    pickler.dump((key, value))
    data = buffer.getvalue()
    if pickle.loads(data) != (key, value):
        raise SystemExit(f"does not read back equal: {key[:160]}")
    return data


def dumps(table: dict[str, bytes]) -> bytes:
    return pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL)


def differences(shipped: dict[str, bytes], fresh: dict[str, bytes]) -> list[str]:
    """How the shipped table differs from a fresh one: keys, then values (compared
    unpickled: the same rule, as the disk cache compares it), then bytes (a build
    writes the same bytes whatever the hash seed)."""
    out = [f"missing: {k[:160]}" for k in fresh if k not in shipped]
    out += [f"not derived now (stale): {k[:160]}" for k in shipped if k not in fresh]
    for key in fresh.keys() & shipped.keys():
        if pickle.loads(fresh[key]) != pickle.loads(shipped[key]):
            out.append(f"another value: {key[:160]}")
        elif fresh[key] != shipped[key]:
            out.append(f"the same value in other bytes: {key[:160]}")
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the file; write nothing"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from symgrad import cache

    with tempfile.TemporaryDirectory(prefix="symgrad-rules-") as tmp:
        fresh = derive_all(Path(tmp))
    if args.check:
        try:
            shipped = pickle.loads(cache.SHIPPED.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            print(f"{cache.SHIPPED}: unreadable ({exc})", file=sys.stderr)
            return 1
        found = differences(shipped, fresh)
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print(
                f"{cache.SHIPPED.name} is stale: run python scripts/build_rules.py",
                file=sys.stderr,
            )
        return 1 if found else 0
    cache.SHIPPED.write_bytes(dumps(fresh))
    print(f"wrote {cache.SHIPPED} ({len(fresh)} rules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
