"""What every stage shares about SymPy, one of each:

- parse.py: the safe parser of custom expressions and norms (ast with a whitelist and
  bounds; nothing from a spec is evaluated);
- functions.py: the stable functions (sigmoid, softplus, log_softmax, ...) and the
  rewrite into them, and the coefficients that keep inexact numbers exact;
- arrays.py: the array nodes of plan statements (products, transposes, reductions,
  dropout's mask);
- code.py: SymPy -> NumPy code (derive's stability checks print candidate forms the way
  the module will, so this sits below the derivation);
- text.py: SymPy -> readable unicode, for comments, summaries and the report;
- cost.py: the operation count that picks among equal forms.
- lazy.py: NumPy for the numeric checks, imported on first use.
"""
