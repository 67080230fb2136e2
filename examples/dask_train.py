"""Data-parallel training on a Dask cluster with symgrad's array-API module.

    python examples/dask_train.py                    # a LocalCluster on this machine
    python examples/dask_train.py --scheduler tcp://10.0.0.5:8786   # a real cluster
    python examples/dask_train.py --rows 400000 --batch-size 100000 --epochs 2

symgrad writes the network's array-API module (`--target array-api`), the same derived
math as the NumPy module, in the array API standard. Given Dask arrays it builds Dask
graphs instead of computing: X and Y are chunked by rows over the workers, so each
training step is one graph in which every worker runs the forward and backward pass on
its own rows, and the sums over the batch (Xᵀδ, Σδ, the loss) are combined by Dask's
tree reduction. The module's fit persists parameters and optimizer state on the
workers after every step, and reads the losses once per epoch.

The data here is made on the workers (dask.array's random generator: nothing goes
through the client) — a teacher network's labels for Gaussian inputs. With your own
data, load it on the workers too (dask.array.from_zarr, dask.dataframe.read_parquet
(...).to_dask_array(lengths=True), ...), chunked by rows, a few chunks per worker.

A real cluster: start a scheduler and workers (`dask scheduler`, then `dask worker
tcp://SCHEDULER:8786` on each machine; or dask-jobqueue, dask-kubernetes, Coiled), and
pass --scheduler. The workers need NumPy and Dask (the versions the client has), not
symgrad and not the generated module: the graphs hold only NumPy's and Dask's functions.
Keep the scheduler's port off the internet (it runs what any client sends it).

Dask pays a fixed cost per step (the graph: ~50 tasks for a two-layer net, a few ms each
through the scheduler, plus building it on the client): a step needs enough rows per
worker to amortise it — on one machine, one NumPy process is faster (see
benchmarks/xp.py for this machine's numbers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

SPEC = {  # 20 features → 64 ReLU → 64 ReLU → 4 classes (softmax), adam
    "name": "dask_mlp",
    "input": 20,
    "layers": [
        {"units": 64, "activation": "relu"},
        {"units": 64, "activation": "relu"},
        {"units": 4, "activation": "softmax"},
    ],
    "loss": "categorical_crossentropy",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
}


def build_module(directory: str | Path):
    """Generate SPEC's array-API module into directory and import it."""
    import importlib.util

    import symgrad

    path = symgrad.generate(SPEC, directory, target="array-api")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def make_data(rows: int, chunk_rows: int, seed: int = 0):
    """X (rows, 20) and class labels (rows,), made on the workers, chunked by rows:
    the classes a random teacher network gives Gaussian inputs."""
    import dask.array as da
    import numpy as np

    rng = da.random.default_rng(seed)
    X = rng.standard_normal((rows, SPEC["input"]), chunks=(chunk_rows, -1))
    teacher = np.random.default_rng(seed + 1)
    W1 = teacher.standard_normal((SPEC["input"], 32))
    W2 = teacher.standard_normal((32, SPEC["layers"][-1]["units"]))
    Y = da.argmax(da.tanh(X @ W1) @ W2, axis=1)
    return X, Y


def train(client, *, rows: int, batch_size: int, epochs: int, directory, verbose=True):
    """Train SPEC's network on the cluster of `client`; returns (params, history,
    seconds per step). The batches are contiguous row ranges of each epoch's shuffle,
    so a batch keeps its chunks on their workers: chunk the data so that a batch spans
    every worker (here: two chunks per worker per batch)."""
    import dask
    import dask.array as da
    from dask.distributed import wait

    module = build_module(directory)
    workers = max(1, len(client.scheduler_info()["workers"]))
    chunk_rows = max(1, batch_size // (2 * workers))
    X, Y = make_data(rows, chunk_rows)
    X, Y = client.persist([X, Y])
    with client.as_current():
        wait([X, Y])
    with dask.config.set(scheduler=client):
        # the parameters as one-chunk Dask arrays: fit keeps them on the workers
        params = module.init_params(0, xp=da)
        start = time.perf_counter()
        params, state, history = module.fit(
            params, X, Y, epochs=epochs, batch_size=batch_size, verbose=verbose
        )
        seconds = time.perf_counter() - start
        # NumPy arrays, on the client
        params, steps = dask.compute(params, state["t"])
    return params, history, seconds / max(int(steps), 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scheduler", help="address of a running scheduler (default: a LocalCluster)"
    )
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    from dask.distributed import Client, LocalCluster

    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
    else:  # worker processes on this machine, every socket on loopback
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )
        client = Client(cluster)
    try:
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        with tempfile.TemporaryDirectory() as tmp:
            _, history, per_step = train(
                client,
                rows=args.rows,
                batch_size=args.batch_size,
                epochs=args.epochs,
                directory=tmp,
            )
        print(
            f"{per_step * 1e3:.0f} ms per step, "
            f"{args.batch_size / per_step:,.0f} examples/s; "
            f"final loss {history['loss'][-1]:.4f}, "
            f"accuracy {history['accuracy'][-1]:.3f}"
        )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
