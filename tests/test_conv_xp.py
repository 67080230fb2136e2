"""Convolutional networks in the array-API module (`<name>_xp.py`): the same numbers as
the NumPy module (itself checked against PyTorch in test_conv.py) on every backend this
machine has: NumPy, array-api-strict (2023.12 and the latest), PyTorch, JAX (also under
jax.jit), Dask. The windows are index arrays and `take`, the contractions matmul, the
scatter per kernel offset with stack, reshape and concat: standard functions only.
"""

from __future__ import annotations

import numpy as np
import pytest
import xp_backends as xb
from test_conv import BATCHNORM_CNN, LAYERNORM_CNN, SMALL_CNN

import symgrad

_modules: dict = {}


@pytest.fixture
def pair(generate, tmp_path_factory):
    """``pair(spec) -> (xp_module, np_module)``, both generated from spec."""

    def make(spec: dict):
        name = spec["name"]
        if name not in _modules:
            np_module = generate(spec)
            out = tmp_path_factory.mktemp("conv_xp")
            path = symgrad.generate(spec, out, target="array-api")
            _modules[name] = (xb.load_module(path, f"_conv_xp_{name}"), np_module)
        return _modules[name]

    return make


def data(spec: dict, m: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, int(np.prod(spec["input"]))))
    return X, rng.integers(0, spec["layers"][-1]["units"], m)


@pytest.mark.parametrize("backend", xb.pytest_params())
def test_a_cnns_gradients_on_every_backend(pair, backend) -> None:
    X, Y = data(SMALL_CNN)
    xb.check_gradients(*pair(SMALL_CNN), backend, X, Y)


FEW = ("array-api-strict", "jax-jit", "dask")


@pytest.mark.parametrize("backend", xb.pytest_params(lambda b: b.name in FEW))
@pytest.mark.parametrize(
    "spec", [BATCHNORM_CNN, LAYERNORM_CNN], ids=lambda s: s["name"]
)
def test_norms_on_images_on_the_strict_backends(pair, spec, backend) -> None:
    X, Y = data(spec)
    xb.check_gradients(*pair(spec), backend, X, Y)


@pytest.mark.parametrize(
    "backend", xb.pytest_params(lambda b: b.name in ("array-api-strict", "jax-jit"))
)
def test_training_and_float32_agree_with_the_numpy_step(pair, backend) -> None:
    X, Y = data(SMALL_CNN, m=12, seed=1)
    xb.check_training(*pair(SMALL_CNN), backend, X, Y, batch_size=4, epochs=2)
    xb.check_float32(*pair(SMALL_CNN), backend, X, Y)


def test_an_image_batch_is_taken_as_rows(pair) -> None:
    xp_module, np_module = pair(SMALL_CNN)
    X, _ = data(SMALL_CNN)
    params = np_module.init_params(seed=0)
    images = X.reshape(len(X), *SMALL_CNN["input"])
    got = np.asarray(xp_module.forward(params, images))
    np.testing.assert_array_equal(got, np.asarray(xp_module.forward(params, X)))
    np.testing.assert_allclose(got, np_module.forward(params, X), rtol=1e-12)


class _Recording:
    """An array namespace that records the size of every array its functions return."""

    def __init__(self, xp) -> None:
        self.xp, self.sizes = xp, []

    def __getattr__(self, name: str):
        attr = getattr(self.xp, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            out = attr(*args, **kwargs)
            for a in out if isinstance(out, (list, tuple)) else (out,):
                if hasattr(a, "shape"):
                    self.sizes.append(int(np.prod(a.shape)))
            return out

        return call


@pytest.mark.parametrize(
    "geometry",
    [(11, 9, 3, 2, 2, 3), (8, 8, 2, 2, 2, 2), (7, 6, 3, 3, 1, 1)],
    ids=["overlapping-strided", "pooling", "stride-1"],
)
def test_the_scatter_is_torch_fold_and_makes_no_matrix_of_positions(
    pair, geometry
) -> None:
    """_scatter_windows against torch's fold (col2im), with every array the namespace
    makes at most s_h·s_w times the result: no (H'W'kh kw) × (hw) matrix."""
    import array_api_strict as strict
    import torch

    h, w, kh, kw, sh, sw = geometry
    m, c = 2, 3
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = np.random.default_rng(0).standard_normal((m, c, ho, wo, kh, kw))
    xp_module, _ = pair(SMALL_CNN)
    recording = _Recording(strict)
    got = xp_module._scatter_windows(
        recording, strict.asarray(cols), h, w, kh, kw, sh, sw
    )
    blocks = torch.from_numpy(cols).permute(0, 1, 4, 5, 2, 3)
    want = torch.nn.functional.fold(
        blocks.reshape(m, c * kh * kw, ho * wo), (h, w), (kh, kw), stride=(sh, sw)
    )
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-12, atol=1e-12)
    assert max(recording.sizes) <= sh * sw * m * c * h * w
    assert max(recording.sizes) < ho * wo * kh * kw * h * w
