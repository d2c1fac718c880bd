"""Loss scaling (``torch.amp.GradScaler``): the framework-free part shared by both packages.

Argument checks with the errors both packages raise, and the layout of
``torch.amp.GradScaler.state_dict()`` (torch/amp/grad_scaler.py, ``state_dict`` /
``load_state_dict``), the neutral format a scaler's state travels in between the frameworks.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

from _jaxinit.errors import InitError

# torch.amp.GradScaler.state_dict() of an enabled scaler: these five keys, since torch 1.6
# (torch/cuda/amp/grad_scaler.py then, torch/amp/grad_scaler.py since 2.3), unchanged through 2.13.
STATE_DICT_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
KNOWN_TORCH = "torch 1.6 to 2.13"

_INT32_MAX = 2 ** 31 - 1


def _real(who, name, value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or math.isinf(value):
        raise InitError(f"{who}: {name} must be a finite real number ({what}), got {value!r}.")
    return float(value)


def check_config(who: str, init_scale: Any, growth_factor: Any, backoff_factor: Any, growth_interval: Any,
                 enabled: Any) -> dict[str, Any]:
    """Validate GradScaler's arguments; returns them as Python floats / int / bool.

    torch checks ``growth_factor > 1`` and ``backoff_factor < 1`` (AssertionError, and only when
    enabled); a non-positive scale or backoff factor and a growth interval below 1 are accepted
    by torch but give a scale of 0 (every gradient unscaled to inf), a negative scale, or a
    scale that never grows: refused here with the fix.
    """
    if not isinstance(enabled, bool):
        raise InitError(f"{who}: enabled must be True or False, got {enabled!r}.")
    init_scale = _real(who, "init_scale", init_scale, "the first loss scale, torch's default 2.**16")
    growth_factor = _real(who, "growth_factor", growth_factor, "> 1, torch's default 2.0")
    backoff_factor = _real(who, "backoff_factor", backoff_factor, "in (0, 1), torch's default 0.5")
    if init_scale <= 0:
        raise InitError(f"{who}: init_scale must be > 0 (the loss is multiplied by it), got {init_scale!r}; "
                        "torch's default is 2.**16.")
    if growth_factor <= 1.0:
        raise InitError(f"{who}: growth_factor must be > 1.0 (torch: 'The growth factor must be > 1.0.'), "
                        f"got {growth_factor!r}; torch's default is 2.0.")
    if not 0.0 < backoff_factor < 1.0:
        raise InitError(f"{who}: backoff_factor must be in (0, 1) (torch: 'The backoff factor must be < 1.0.'; "
                        f"0 or below would zero or negate the scale), got {backoff_factor!r}; torch's default is 0.5.")
    if isinstance(growth_interval, bool) or not isinstance(growth_interval, numbers.Integral) \
            or not 1 <= int(growth_interval) <= _INT32_MAX:
        raise InitError(f"{who}: growth_interval must be an int in [1, 2**31 - 1] (the number of consecutive "
                        f"finite steps before the scale grows; below 1 it never grows), got {growth_interval!r}; "
                        "torch's default is 2000.")
    return {"init_scale": init_scale, "growth_factor": growth_factor, "backoff_factor": backoff_factor,
            "growth_interval": int(growth_interval), "enabled": enabled}


def check_state_dict(who: str, state_dict: Any) -> dict[str, Any]:
    """Validate a ``GradScaler.state_dict()``; returns it with Python types.

    Raises for an empty dict (torch's own message: a disabled scaler saved it) and for any other
    key set than torch's five (a scaler state from an unknown torch version or another class).
    """
    if not isinstance(state_dict, Mapping):
        raise InitError(f"{who}: state_dict must be the dict of torch.amp.GradScaler.state_dict(), "
                        f"got {type(state_dict).__name__}.")
    if len(state_dict) == 0:
        raise InitError(f"{who}: The source state dict is empty, possibly because it was saved from a disabled "
                        "instance of GradScaler (torch's message). Build the scaler with enabled=False instead, "
                        "or load a state saved from an enabled scaler.")
    keys = set(state_dict)
    if keys != set(STATE_DICT_KEYS):
        missing = sorted(set(STATE_DICT_KEYS) - keys)
        extra = sorted(keys - set(STATE_DICT_KEYS))
        raise InitError(f"{who}: state_dict is not the layout of torch.amp.GradScaler.state_dict() in {KNOWN_TORCH} "
                        f"(keys {list(STATE_DICT_KEYS)}): missing {missing}, unknown {extra}. A scaler state from "
                        "another torch version or another scaler class (e.g. a sharded or apex scaler) must be "
                        "converted to these five keys first.")
    cfg = check_config(who, state_dict["scale"], state_dict["growth_factor"], state_dict["backoff_factor"],
                       state_dict["growth_interval"], True)
    tracker = state_dict["_growth_tracker"]
    if isinstance(tracker, bool) or not isinstance(tracker, numbers.Integral) or not 0 <= int(tracker) <= _INT32_MAX:
        raise InitError(f"{who}: state_dict['_growth_tracker'] must be an int in [0, 2**31 - 1] (torch keeps it "
                        f"as an int32 tensor), got {tracker!r}.")
    return {"scale": cfg["init_scale"], "growth_factor": cfg["growth_factor"],
            "backoff_factor": cfg["backoff_factor"], "growth_interval": cfg["growth_interval"],
            "_growth_tracker": int(tracker)}
