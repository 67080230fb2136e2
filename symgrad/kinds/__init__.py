"""The built-in layer kinds, one module each, registered in layer_registry on import:
dense (residual or not; the output layer), the norms, dropout. A kind is found here by
its name; see layer_registry for what an entry holds and docs/extending.md for adding one.
"""

from . import dense, dropout, norm  # noqa: F401 - each registers its kind

__all__ = ["dense", "dropout", "norm"]
