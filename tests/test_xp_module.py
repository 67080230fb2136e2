"""The array-API module (`symgrad generate --target array-api`) on every backend here.

A table of networks covers every activation family (identity, sigmoid, tanh, ReLU,
leaky ReLU, ELU, softplus, SiLU, GELU with its erf, softsign, softmax, a custom one),
every loss (mse, mae, Huber, binary and categorical cross-entropy, a custom one), every
optimizer (sgd, momentum, Nesterov, adam; l2 on and off) and the v2 layer kinds
(layernorm, rmsnorm, batchnorm with its running statistics, a custom norm, dropout,
residual). Each network is generated twice by symgrad: the NumPy module is the
reference, the array-API module is checked against it with tests/xp_backends.py on
NumPy, array-api-strict (2023.12 and the latest standard), PyTorch CPU, JAX (eager and
the whole train_step under jax.jit), Dask, and CuPy / CUDA tensors when there is a GPU
(else those skip with the reason). Then the module's text (black, ruff, what it
imports and prints), generate's API and command line, and data-parallel training on a
dask.distributed LocalCluster.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xp_backends as xb

import symgrad
from symgrad.cli import main

pytestmark = pytest.mark.slow  # not in the quick subset: docs/development.md

ROOT = Path(__file__).resolve().parent.parent
LEAKY = {"name": "leaky_relu", "alpha": 0.1}
CUSTOM_ACT = {"name": "soft_clip", "expr": "z/(1 + abs(z)) + k*erf(z)", "k": 0.3}
CUSTOM_LOSS = {"name": "log_cosh", "expr": "log(cosh(yhat - y))"}


def _dense(units: int, activation, **extra) -> dict:
    return {"units": units, "activation": activation, **extra}


SPECS = {
    "mlp": {  # as tests/test_xp_harness.py's
        "input": 2,
        "layers": [_dense(8, "tanh"), _dense(3, "softmax")],
        "loss": "categorical_crossentropy",
        "l2": 0.001,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
    },
    "relu_bce": {
        "input": 3,
        "layers": [_dense(6, "relu"), _dense(2, "sigmoid")],
        "loss": "binary_crossentropy",
        "optimizer": {"name": "momentum", "learning_rate": 0.05, "nesterov": True},
    },
    "acts_mae": {
        "input": 3,
        "layers": [
            _dense(5, "elu"),
            _dense(4, "silu"),
            _dense(4, "softsign"),
            _dense(4, LEAKY),
            _dense(2, "tanh"),
        ],
        "loss": "mae",
        "optimizer": {"name": "momentum", "learning_rate": 0.05, "momentum": 0.8},
    },
    "gelu_softplus_huber": {
        "input": 3,
        "layers": [_dense(5, "gelu"), _dense(4, "softplus"), _dense(2, "identity")],
        "loss": {"name": "huber", "delta": 0.5},
        "l2": 0.01,
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
    },
    "sigmoid_softmax_mse": {  # softmax without cross-entropy: its Jacobian product
        "input": 3,
        "layers": [_dense(5, "sigmoid"), _dense(3, "softmax")],
        "loss": "mse",
        "optimizer": {"name": "sgd", "learning_rate": 0.5},
    },
    "custom": {
        "input": 3,
        "layers": [_dense(5, CUSTOM_ACT), _dense(2, "linear")],
        "loss": CUSTOM_LOSS,
        "l2": 0.05,
        "optimizer": {"name": "momentum", "learning_rate": 0.05},
    },
    "norms": {
        "input": 4,
        "layers": [
            _dense(6, "relu"),
            {"type": "layernorm"},
            _dense(6, "tanh", residual=True),
            {"type": "batchnorm", "momentum": 0.2},
            {"type": "rmsnorm"},
            {
                "type": "norm",
                "name": "centered",
                "expr": "(x - mean(x)) / sqrt(mean((x - mean(x))**2) + eps)",
                "eps": 1e-5,
            },
            _dense(3, "softmax"),
        ],
        "loss": "categorical_crossentropy",
        "l2": 0.01,
        "optimizer": {"name": "adam", "learning_rate": 0.01},
    },
    "dropout": {
        "input": 4,
        "layers": [
            _dense(6, "relu"),
            {"type": "dropout", "rate": 0.25},
            _dense(6, "tanh", residual=True),
            {"type": "batchnorm"},
            {"type": "dropout", "rate": 0.5},
            _dense(2, "sigmoid"),
        ],
        "loss": "binary_crossentropy",
        "optimizer": {"name": "momentum", "learning_rate": 0.05, "nesterov": True},
    },
}
for _name, _spec in SPECS.items():
    _spec["name"] = f"xpt_{_name}"

ALL = xb.pytest_params()
# Every network's gradients are checked on every backend. The other checks run on
# every backend for these networks, and on the backends that are quick to run for the
# others: JAX eager compiles each operation for each new shape (seconds a network;
# jax-jit is JAX as one uses it), and a Dask graph costs a second a training run.
EVERYWHERE = ("mlp", "norms", "dropout")
QUICK = ("numpy", "array-api-strict", "torch-cpu", "jax-jit", "torch-cuda", "cupy")


def _some(names):
    return xb.pytest_params(lambda b: b.name in names)


def _table(where) -> list:
    """(backend, network) params where where(backend name, network name)."""
    return [
        pytest.param(b, name, id=f"{b.name}-{name}", marks=p.marks)
        for name in SPECS
        for p in ALL
        for b in p.values
        if where(b.name, name)
    ]


# --- the modules --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def xp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the array-API modules go: out of reach of the Dask workers' imports."""
    return tmp_path_factory.mktemp("xp_modules")


_modules: dict = {}


@pytest.fixture
def pair(generate, xp_dir):
    """``pair(name) -> (xp_module, np_module)``, both generated from SPECS[name]."""

    def make(name: str):
        if name not in _modules:
            np_module = generate(SPECS[name])
            path = symgrad.generate(SPECS[name], xp_dir / name, target="array-api")
            assert path.name == f"xpt_{name}_xp.py"
            _modules[name] = (xb.load_module(path, f"_xpt_{name}_xp"), np_module)
        return _modules[name]

    return make


def data(name: str, m: int = 24, *, scale: float = 1.0, seed: int = 3):
    """X and targets valid for the network's loss (class labels for softmax + CCE)."""
    spec = SPECS[name]
    rng = np.random.default_rng([seed, len(name)])
    X = scale * rng.standard_normal((m, spec["input"]))
    n = spec["layers"][-1]["units"]
    loss = spec["loss"] if isinstance(spec["loss"], str) else spec["loss"]["name"]
    if loss == "categorical_crossentropy":
        return X, rng.integers(0, n, m)
    if loss == "binary_crossentropy":
        return X, rng.integers(0, 2, (m, n)).astype(np.float64)
    if spec["layers"][-1]["activation"] == "softmax":
        return X, rng.dirichlet(np.ones(n), m)
    return X, rng.standard_normal((m, n))


# --- numbers: gradients, float32, init, training, fit ------------------------------------


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("backend", ALL)
def test_gradients_equal_the_numpy_module(backend, name, pair):
    X, Y = data(name)
    xb.check_gradients(*pair(name), backend, X, Y)


LARGE = ("mlp", "relu_bce", "acts_mae", "sigmoid_softmax_mse", "dropout")


@pytest.mark.parametrize("name", LARGE)
@pytest.mark.parametrize("backend", ALL)
def test_gradients_at_large_pre_activations(backend, name, pair):
    """Inputs ×300: pre-activations in the hundreds, where naive sigmoid, softplus,
    softmax and ELU overflow; the stable forms agree with the NumPy module's (and the
    suite turns any overflow warning into an error). mlp's targets are one-hot rows
    here (class labels elsewhere)."""
    X, Y = data(name, scale=300.0)
    if name == "mlp":
        Y = np.eye(3)[Y]
    xb.check_gradients(*pair(name), backend, X, Y)


@pytest.mark.parametrize("backend", ALL)
def test_gradients_with_dropout_equal_the_numpy_module(backend, pair):
    """Dropout on: the NumPy module draws its masks from default_rng(7), the array-API
    module gets the same uniform numbers as noise (also through jax.jit and Dask)."""
    X, Y = data("dropout")
    xp_module, np_module = pair("dropout")
    error = xb.check_gradients(xp_module, np_module, backend, X, Y, noise_seed=7)
    assert error <= xb.GRAD_RTOL
    # and the masks make a difference: without them the gradients differ
    params = xb.perturbed_params(np_module)
    _, off = np_module.loss_and_grad(params, X, Y)
    _, on = np_module.loss_and_grad(params, X, Y, rng=np.random.default_rng(7))
    assert xb.relative_error(on["W1"], off["W1"]) > 1e-3


@pytest.mark.parametrize("backend", _some(("numpy", "array-api-strict", "torch-cpu")))
def test_rng_draws_the_numpy_modules_masks(backend, pair):
    """rng= (a NumPy Generator) on an eager backend: the same loss as the NumPy module's
    with the same generator, for forward, loss and loss_and_grad."""
    X, Y = data("dropout")
    xp_module, np_module = pair("dropout")
    params = xb.perturbed_params(np_module)
    want = np_module.loss(params, X, Y, training=True, rng=np.random.default_rng(1))
    want_f = np_module.forward(params, X, training=True, rng=np.random.default_rng(2))
    with backend.context():
        p, Xb, Yb = backend.to(params), backend.data(X), backend.data(Y)
        got = xp_module.loss(p, Xb, Yb, training=True, rng=np.random.default_rng(1))
        got_f = xp_module.forward(p, Xb, training=True, rng=np.random.default_rng(2))
        got, got_f = backend.back((got, got_f))
        with pytest.raises(ValueError, match="noise or rng, not both"):
            xp_module.loss_and_grad(p, Xb, Yb, noise={}, rng=np.random.default_rng())
        with pytest.raises(ValueError, match="noise must be a dict with keys"):
            xp_module.loss_and_grad(p, Xb, Yb, noise={"K9": Xb})
    assert xb.relative_error(got, want) <= xb.GRAD_RTOL
    assert xb.relative_error(got_f, want_f) <= xb.GRAD_RTOL


@pytest.mark.parametrize(
    "backend, name",
    _table(lambda b, name: b != "jax" and (b != "jax-jit" or name in EVERYWHERE)),
)
def test_float32_stays_float32(backend, name, pair):
    X, Y = data(name)
    xb.check_float32(*pair(name), backend, X, Y, rtol=1e-3)


@pytest.mark.parametrize("name", ("mlp", "norms"))
@pytest.mark.parametrize("backend", ALL)
def test_init_params_equal_the_numpy_module(backend, name, pair):
    xb.check_init(*pair(name), backend)


@pytest.mark.parametrize(
    "backend, name", _table(lambda b, name: name in EVERYWHERE or b in QUICK)
)
def test_training_equals_the_numpy_module(backend, name, pair):
    """train_step on the same batches as the NumPy module's in-place step (its
    optimizer, l2, running statistics and dropout masks): parameters equal to 1e-10."""
    X, Y = data(name, m=30)
    xb.check_training(*pair(name), backend, X, Y, batch_size=10, epochs=2)


@pytest.mark.parametrize(
    "backend, name",
    _table(
        lambda b, name: b == "numpy"
        or (name in EVERYWHERE and (b in QUICK or b == "dask"))
    ),
)
def test_fit_equals_the_numpy_module(backend, name, pair):
    """fit against the NumPy module's fit: the same shuffles, and with batchnorm the
    last batch of one example left out (25 = 3 × 8 + 1)."""
    X, Y = data(name, m=25)
    xb.check_fit(*pair(name), backend, X, Y, batch_size=8, epochs=2)


def test_fit_history_and_validation(pair):
    xp_module, np_module = pair("norms")
    X, Y = data("norms", m=40)
    kwargs = {"epochs": 2, "batch_size": 16, "validation_data": (X[:10], Y[:10])}
    p_np = np_module.init_params(0)
    want = np_module.fit(p_np, X, Y, **kwargs)
    params = xp_module.init_params(0)
    before = dict(params)  # the arrays themselves
    copy = {k: v.copy() for k, v in params.items()}
    new, state, got = xp_module.fit(params, X, Y, **kwargs)
    assert (
        list(got)
        == list(want)
        == ["loss", "lr", "accuracy", "val_loss", "val_accuracy"]
    )
    for key in want:
        assert xb.relative_error(got[key], want[key]) <= xb.TRAIN_RTOL, key
    for k in p_np:  # the running statistics too
        assert xb.relative_error(new[k], p_np[k]) <= xb.TRAIN_RTOL, k
    # as the NumPy module's fit: the trained arrays in the caller's dict; none written
    assert new is params
    assert all(np.array_equal(before[k], copy[k]) for k in params)
    assert int(state["t"]) == 6  # 40 = 16 + 16 + 8: three steps an epoch


def test_predict_and_running_statistics_in_inference(pair):
    """After training, forward/predict use the running statistics (batchnorm) as the
    NumPy module does; loss(training=True) uses the batch's."""
    xp_module, np_module = pair("norms")
    X, Y = data("norms", m=30)
    p_np = np_module.init_params(0)
    np_module.fit(p_np, X, Y, epochs=1, batch_size=10)
    params, _, _ = xp_module.fit(
        xp_module.init_params(0), X, Y, epochs=1, batch_size=10
    )
    assert np.array_equal(xp_module.predict(params, X), np_module.predict(p_np, X))
    for training in (False, True):
        got = xp_module.loss(params, X, Y, training=training)
        want = np_module.loss(p_np, X, Y, training=training)
        assert xb.relative_error(got, want) <= xb.TRAIN_RTOL, training
    assert (
        xb.relative_error(xp_module.forward(params, X), np_module.forward(p_np, X))
        <= xb.TRAIN_RTOL
    )
    with pytest.raises(ValueError, match="at least 2 examples"):
        xp_module.loss_and_grad(params, X[:1], Y[:1])


# --- the module's text ---------------------------------------------------------------------


@pytest.fixture
def texts(tmp_path) -> dict[str, str]:
    """Every network's array-API module, as written (generated here, formatted: the
    modules `pair` shares were generated by tests that skip black)."""
    return {
        name: symgrad.generate(
            SPECS[name], tmp_path / name, target="array-api"
        ).read_text()
        for name in SPECS
    }


@pytest.mark.formatted  # black's layout is what is tested
def test_modules_are_black_and_ruff_clean(texts, tmp_path):
    files = []
    for name, text in texts.items():
        path = tmp_path / f"{name}_xp.py"
        path.write_text(text)
        files.append(str(path))
    for tool in (
        ["black", "--check", "--quiet"],
        ["ruff", "check", "--quiet", "--no-cache"],  # the project's rules
        ["ruff", "check", "--quiet", "--no-cache", "--isolated"],  # ruff's defaults
    ):
        result = subprocess.run(
            [sys.executable, "-m", *tool, *files],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_modules_import_no_array_library_at_the_top(texts):
    """Only array_api_compat, guarded; NumPy and Dask only inside the functions that
    need the host generator or persist, and the standard library's sys and time
    inside fit's progress line."""
    for name, text in texts.items():
        tree = ast.parse(text)
        top = [
            n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.Try))
        ]
        assert len(top) == 1 and isinstance(top[0], ast.Try), name
        (imp,) = top[0].body
        assert [a.name for a in imp.names] == ["array_api_compat"], name
        inside = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        allowed = {"array_api_compat", "numpy", "dask", "dask.array", "sys", "time"}
        assert inside <= allowed, inside


def test_printed_code_is_functional_and_standard(texts):
    """No out=, no in-place operator or item assignment, no NumPy names: the derived
    part is the standard's functions and Python operators."""
    for name, text in texts.items():
        derived = text[: text.index("# The runtime:")]
        tree = ast.parse(derived)
        for node in ast.walk(tree):
            assert not isinstance(node, ast.AugAssign), (name, ast.unparse(node))
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Subscript):
                        # only the new dicts of _update: new_params[k] = p
                        assert ast.unparse(target.value).startswith("new_"), name
            if isinstance(node, ast.keyword):
                assert node.arg != "out", name
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert node.value.id not in ("np", "numpy", "torch", "jnp"), name
        assert "np." not in derived.split('"""', 2)[2], name


def test_docstring_says_what_and_how_to_regenerate(texts, tmp_path, monkeypatch):
    doc = ast.get_docstring(ast.parse(texts["dropout"]))
    assert doc.startswith("xpt_dropout_xp: an array-API training module generated")
    assert "array API standard (2023.12)" in doc
    assert "noise=" in doc and "rng=" in doc
    assert "running statistics" in doc
    assert 'symgrad.generate(spec, target="array-api")' in doc  # a dict, not a file
    spec = tmp_path / "net.yaml"
    spec.write_text("name: net\ninput: 2\nlayers: [{units: 1, activation: sigmoid}]\n")
    spec.write_text(spec.read_text() + "loss: binary_crossentropy\n")
    monkeypatch.chdir(tmp_path)
    path = symgrad.generate("net.yaml", "out", target="array-api")
    assert path == Path("out", "net_xp.py")
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert "Regenerate with: symgrad generate net.yaml -o out --target array-api" in doc


# --- generate's API and command line -------------------------------------------------------


@pytest.mark.formatted  # black's layout is what is tested
def test_cli_target_writes_both_modules_and_keeps_the_numpy_one(tmp_path, capsys):
    spec = ROOT / "examples" / "xor.yaml"
    out = tmp_path / "out"
    assert main(["generate", str(spec), "-o", str(out), "-q"]) == 0
    numpy_text = (out / "xor.py").read_text()
    committed = (ROOT / "generated" / "xor.py").read_text()

    def body(text: str) -> str:
        # all but the regenerate command (it names the output directory, and a long
        # one spans lines), which ends the docstring
        start = text.index("Regenerate with:")
        return text[:start] + text[text.index('"""', start) :]

    assert body(numpy_text) == body(committed)  # the default target: as before
    assert main(["generate", str(spec), "-o", str(out), "--target", "array-api"]) == 0
    assert f"wrote {out / 'xor_xp.py'}" in capsys.readouterr().out
    assert (out / "xor.py").read_text() == numpy_text  # untouched
    module = xb.load_module(out / "xor_xp.py", "_xpt_cli_xor_xp")
    assert module.NAME == "xor" and module.PARAM_NAMES == ("W1", "b1", "W2", "b2")
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        main(["generate", str(spec), "--target", "cuda"])


def test_generate_refuses_an_unknown_target(tmp_path):
    with pytest.raises(symgrad.SymgradError, match="unknown target 'jax'"):
        symgrad.generate(SPECS["mlp"], tmp_path, target="jax")
    assert not any(tmp_path.iterdir())


def test_a_failed_render_leaves_the_old_module(tmp_path, monkeypatch):
    from symgrad import render_xp

    path = symgrad.generate(SPECS["mlp"], tmp_path, target="array-api")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("symgrad bug: planted")

    monkeypatch.setattr(render_xp, "render", broken)
    with pytest.raises(RuntimeError, match="planted"):
        symgrad.generate(SPECS["mlp"], tmp_path, target="array-api")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --- without array-api-compat --------------------------------------------------------------


def test_without_array_api_compat_numpy_and_strict_still_work(pair, monkeypatch):
    """The namespace from x.__array_namespace__() (NumPy 2, array-api-strict, JAX);
    PyTorch tensors are refused with the extra to install."""
    xp_module, np_module = pair("relu_bce")
    monkeypatch.setitem(sys.modules, "array_api_compat", None)  # import fails
    path = Path(xp_module.__file__)
    bare = xb.load_module(path, "_xpt_relu_bce_without_compat")
    assert bare._compat is None
    X, Y = data("relu_bce")
    for name in ("numpy", "array-api-strict"):
        xb.check_gradients(bare, np_module, xb.backend(name), X, Y)
    torch = pytest.importorskip("torch")
    params = {k: torch.asarray(v) for k, v in bare.init_params(0).items()}
    with pytest.raises(TypeError, match=r"symgrad\[array-api\]"):
        bare.loss_and_grad(params, torch.asarray(X), torch.asarray(Y))


# --- data-parallel on a dask.distributed LocalCluster --------------------------------------


def test_cluster_steps_are_one_computation_each_on_both_workers(dask_cluster, pair):
    """X and Y chunked by rows over the 2 worker processes; each step's loss_and_grad
    on Dask arrays is one computation (forward pass, backward pass, and the sums of Xᵀδ
    over the chunks by Dask's tree reduction) and runs on both workers; the update
    runs on the client. After 2 epochs of 2 batches the parameters equal the NumPy
    module's steps in one process on the same batches."""
    import dask.array as da
    from dask.distributed import get_task_stream, wait

    _, client = dask_cluster
    xp_module, np_module = pair("mlp")
    X, Y = data("mlp", m=48)
    Xd = client.persist(da.from_array(X, chunks=(12, 2)))  # 2 chunks per batch of 24
    Yd = client.persist(da.from_array(Y, chunks=12))
    with client.as_current():
        wait([Xd, Yd], timeout=xb.CLUSTER_TIMEOUT)
    p_np = np_module.init_params(0)
    s_np = np_module.init_state(p_np)
    params = xp_module.init_params(0)  # NumPy arrays, on the client
    state = xp_module.init_state(params)
    workers = set(client.scheduler_info()["workers"])
    for start in (0, 24, 0, 24):
        rows = slice(start, start + 24)
        on_dask = {k: da.from_array(v) for k, v in params.items()}
        L, grads = xp_module.loss_and_grad(on_dask, Xd[rows], Yd[rows])
        assert any("matmul" in str(key) for key in grads["W1"].__dask_graph__())
        with get_task_stream(client) as tasks:
            # one submission, one graph: the forward pass they share runs once
            futures = client.compute([L, *grads.values()])
            L, *values = (f.result(timeout=xb.CLUSTER_TIMEOUT) for f in futures)
            grads = dict(zip(grads, values, strict=True))
        assert {t["worker"] for t in tasks.data} == workers  # both did their share
        params, state = xp_module.update(params, grads, state)
        want = np_module.step(p_np, s_np, X[rows], Y[rows])
        assert xb.relative_error(L, want) <= xb.TRAIN_RTOL
    for k in p_np:
        assert xb.relative_error(params[k], p_np[k]) <= xb.TRAIN_RTOL, k


def test_cluster_train_step_with_batchnorm_and_dropout(dask_cluster, pair):
    """The whole train_step on the cluster (params and state stay on the workers,
    persisted each step): batch statistics over row chunks, running statistics,
    dropout's noise in X's chunks; equal to the NumPy module's steps to 1e-10 (adam
    on the cluster: test_xp_harness.py's mlp)."""
    _, client = dask_cluster
    X, Y = data("dropout", m=32)
    backend = xb.cluster_backend(client)
    xb.check_training(*pair("dropout"), backend, X, Y, batch_size=16, epochs=1)


def test_example_dask_train_equals_numpy_fit(dask_cluster, tmp_path, generate):
    """examples/dask_train.py's train() on this file's cluster: data made on the
    workers, the module's fit on Dask arrays; the same as the NumPy module's fit on
    the same data, computed into this process."""
    import dask

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import dask_train
    finally:
        sys.path.remove(str(ROOT / "examples"))
    _, client = dask_cluster
    params, history, per_step = dask_train.train(
        client, rows=1200, batch_size=400, epochs=1, directory=tmp_path, verbose=False
    )
    X, Y = dask_train.make_data(1200, 100)
    with dask.config.set(scheduler=client):
        X, Y = dask.compute(X, Y)
    np_module = generate(dask_train.SPEC)
    p_np = np_module.init_params(0)
    h_np = np_module.fit(p_np, X, Y, epochs=1, batch_size=400)
    assert xb.relative_error(history["loss"], h_np["loss"]) <= xb.TRAIN_RTOL
    for k in p_np:
        assert xb.relative_error(params[k], p_np[k]) <= xb.TRAIN_RTOL, k
    assert per_step > 0


# --- packaging -------------------------------------------------------------------------------


def test_a_wheel_holds_every_package_the_runtime_and_the_templates():
    """pip install . (not editable) must generate both targets: every package with an
    __init__.py is listed, runtime_xp.py is in symgrad, the templates are data."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = config["tool"]["setuptools"]
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "symgrad").rglob("__init__.py")
    }
    assert found | {"symgrad.templates"} == set(tool["packages"])
    assert tool["package-dir"]["symgrad.templates"] == "templates"
    assert tool["package-data"]["symgrad.templates"] == ["*.jinja"]
    assert (ROOT / "templates" / "module_xp.py.jinja").is_file()
    extras = config["project"]["optional-dependencies"]
    assert extras["array-api"] == ["array-api-compat>=1.11"]
    assert {"array-api-strict>=2.2", "dask[array]>=2024.8"} <= set(extras["test"])
    # PyTorch's CPU build is a reference of the tests; CuPy needs a GPU: not installed
    assert not any(name.startswith("cupy") for name in extras["test"])
    assert "torch>=2.4,<=2.13.0" in extras["test"]
