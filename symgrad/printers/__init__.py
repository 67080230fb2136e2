"""Printers of the plan: the NumPy module's allocating `_loss_and_grad` and in-place
`_step` (numpy_module.py, with inplace.py: a statement as `out=` calls; with fused.py,
for the numba target: runs of elementwise statements as numba kernels), the array-API
module (xp_module.py), the walker of the plan's blocks both share (blocks.py), and
`learning_rate(t)`, the schedule's rate as plain Python, in both modules
(learning_rate.py).

They print what the plan says, with the expression printers of symgrad/sym/ (code.py:
SymPy -> NumPy, text.py: SymPy -> unicode): no regrouping, no rewriting, no calculus.
"""
