"""The recipes: one module per config, each with `get_config()` and its run command.

`--config NAME` (train.py, eval.py, gon-train, gon-eval) finds `NAME.py` here.
"""
