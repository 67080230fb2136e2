"""The built-in layer kinds, one module each, registered in layer_registry on import:
dense (residual or not; the output layer), the norms, dropout, and the image kinds:
conv2d, maxpool2d and avgpool2d, flatten. A kind is found here by
its name; see layer_registry for what an entry holds and docs/extending.md for adding one.
"""

from . import conv, dense, dropout, flatten, norm, pool  # noqa: F401 - each registers

__all__ = ["conv", "dense", "dropout", "flatten", "norm", "pool"]
