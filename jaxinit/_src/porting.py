"""Porting a model: twin_check, compare_layers, audit (both frameworks at call time) and
suggest_mapping. The first three are the one implementation in ``_initcore.jax_and_torch``,
shared with the mirror package; importing this module imports neither framework."""
from _initcore.jax_and_torch import twin_check as twin_check
