"""The side-by-side table of docs/examples.md: each real-data example trained by symgrad and by
scikit-learn's MLP with the same architecture, optimizer, epochs, batch size and seeds.

    python examples/compare_sklearn.py --seeds 10     # needs: pip install "symgrad[compare]"

For each example and seed s in 0..N-1, symgrad trains from init_params(s) with
fit(seed=s) and scikit-learn from random_state=s; the split is fixed. A difference is
"within noise" when it is under two standard errors of the difference of the means. The
lockstep column trains symgrad from scikit-learn's own initial weights through its batches
(seed 0) and gives the largest weight difference at the end.
"""

from __future__ import annotations

import argparse

import numpy as np
import realdata as rd
import train_breast_cancer
import train_diabetes
import train_iris

EXAMPLES = (train_iris.EXAMPLE, train_breast_cancer.EXAMPLE, train_diabetes.EXAMPLE)


def _mean_sd(values) -> str:
    values = np.asarray(values)
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def _difference(ours, theirs) -> str:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    diff = ours.mean() - theirs.mean()
    se = np.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs))
    verdict = "within noise" if abs(diff) <= 2 * se else "**outside noise**"
    return f"{diff:+.3f} ± {se:.3f} ({verdict})"


def _architecture(name: str) -> str:
    """`iris.yaml`: 4 → 16 relu → 3 softmax, categorical_crossentropy; adam, lr 0.01"""
    import symgrad

    spec = symgrad.load_spec(rd.EXAMPLES / f"{name}.yaml")
    layers = " → ".join(f"{la.units} {la.activation.name}" for la in spec.layers)
    opt = dict(spec.optimizer.params)
    optimizer = spec.optimizer.name
    if optimizer == "momentum":
        nesterov = "Nesterov " if opt.get("nesterov") else ""
        optimizer = f"{nesterov}momentum {opt.get('momentum', 0.9)}"
    l2 = f", l2 {spec.l2:g}" if spec.l2 else ""
    return (
        f"`{name}.yaml`: {spec.input} → {layers}, {spec.loss.name}{l2}; "
        f"{optimizer}, lr {opt['learning_rate']:g}"
    )


def table(seeds: int, epochs_scale: float = 1.0) -> str:
    lines = [
        "| data (train/test) | spec | epochs, batch | metric | symgrad | scikit-learn "
        "| symgrad − scikit-learn | lockstep max \\|Δw\\| |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for example in EXAMPLES:
        epochs = max(1, round(example.epochs * epochs_scale))
        results = rd.run(example, epochs=epochs, seeds=list(range(seeds)), compare=True)
        split = results.split
        data = (
            f"{example.title.split(' (')[0]} ({len(split.X_train)}/{len(split.X_test)})"
        )
        metric = "accuracy ↑" if results.classifier else "RMSE ↓"
        for i, (name, scores) in enumerate(results.symgrad.items()):
            if i == 0:
                theirs = _mean_sd(results.sklearn)
                diff = _difference(scores, results.sklearn)
                lockstep = f"{results.lockstep[0]:.0e}"
            else:
                theirs, diff, lockstep = "(no such loss)", "", ""
            lines.append(
                f"| {data} | {_architecture(name)} | {epochs}, {example.batch_size} "
                f"| {metric} | {_mean_sd(scores)} | {theirs} | {diff} | {lockstep} |"
            )
        if results.baseline is not None:
            label, value = results.baseline
            lines.append(f"| {data} | {label} | | {metric} | {value:.3f} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    p.add_argument(
        "--quick", action="store_true", help="2 seeds and a tenth of the epochs"
    )
    p.add_argument(
        "--init",
        choices=("glorot_uniform", "he_normal"),
        help="train every spec with this init instead of the one it names",
    )
    args = p.parse_args(argv)
    rd.INIT_OVERRIDE = args.init
    if not rd.have("sklearn"):
        raise SystemExit(
            'scikit-learn is not installed: pip install "symgrad[compare]"'
        )
    text = table(2, 0.1) if args.quick else table(args.seeds)
    print(text)
    return text


if __name__ == "__main__":
    main()
