r"""Flax's dropout keys in torch, and a torch model bound to them (mirror: jaxinit.rngs).

A Flax Linen model gets its dropout keys from ``apply(..., rngs={'dropout': key})``: each
``make_rng('dropout')`` call folds the calling module's path and its call count into ``key``
(:func:`linen_key`; ``_jaxinit.rng_calls`` has the algorithm). :func:`bind_rngs` makes every
dropout a torch model runs in training mode draw the mask its Flax twin draws:

- ``torch.nn.Dropout``/``Dropout1d/2d/3d`` modules and ``torch.nn.functional.dropout*`` calls
  made inside ``forward`` (Hugging Face's attention calls ``nn.functional.dropout`` on the
  attention weights) are routed, while the bound model's ``forward`` runs, to the keyed
  functions of :mod:`torchinit._src.dropout`;
- :mod:`torchinit.nn`'s keyed layers take their key from the binding;
- each call is paired with the Flax twin's ``make_rng`` call of the same rank (the torch calls
  and the Flax calls in the order they run), or through ``mapping`` (torch module path ->
  Flax scope path), and applies the formula that Flax call applies (``flax.linen.Dropout``'s
  select, or attention's multiply) with its mask shape, rate and mask dtype.

Not bindable (a clear error, at bind time or at the call): ``scaled_dot_product_attention``
with ``dropout_p > 0`` (its mask is drawn inside the fused kernel: use the eager attention,
``attn_implementation="eager"`` in Hugging Face), ``alpha_dropout``, and stochastic-depth
modules from other libraries (timm ``DropPath``, torchvision ``StochasticDepth``: use
:class:`torchinit.nn.DropPath` / :class:`torchinit.nn.StochasticDepth`).
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Any, Iterator, Mapping, Sequence

import torch

import torchinit.random as _rnd
from _jaxinit.errors import InitError
from _jaxinit.rng_calls import RngCall, check_count, norm_path, static_fold_data
from torchinit._src import dropout as _d

Tensor = torch.Tensor
_F = torch.nn.functional


def linen_key(key: Any, path: str | Sequence[str] = "", count: int = 1, separator: bool | None = None) -> Tensor:
    """The key ``self.make_rng(stream)`` returns on its ``count``-th call in the Linen scope at
    ``path`` when the apply got ``rngs={stream: key}`` (bitwise ``jaxinit.rngs.linen_key``).

    ``separator``: Flax's ``flax_fix_rng_separator`` (default False; None means False here, as
    torchinit cannot read Flax's config).

    >>> import torchinit.random as tr, torchinit.rngs as trn
    >>> k = trn.linen_key(tr.key(0), "Dropout_0", 1)
    """
    who = "torchinit.rngs.linen_key"
    parts = norm_path(path, who)
    data = static_fold_data(parts + (check_count(count, who),), bool(separator))
    k = _rnd.as_key(key)
    return k if data is None else _rnd.fold_in(k, data)


def nnx_key(key: Any, count: int = 0) -> Tensor:
    """The key an ``nnx.RngStream(key)`` returns on its call number ``count`` (0 first):
    ``fold_in(key, count)`` (bitwise ``jaxinit.rngs.nnx_key``)."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 0 <= int(count) < 2 ** 32:
        raise InitError(f"torchinit.rngs.nnx_key: `count` is the stream's call number in [0, 2**32), got {count!r}")
    return _rnd.fold_in(_rnd.as_key(key), int(count))


def rng_calls(module: Any, *args: Any, variables: Any = None, rngs: Any = None, method: Any = None,
              **kwargs: Any) -> list[RngCall]:
    """``jaxinit.rngs.rng_calls`` (it traces the Flax module, so it needs jax and flax at call time)."""
    from jaxinit._src.rngs import rng_calls as _calls

    return _calls(module, *args, variables=variables, rngs=rngs, method=method, **kwargs)


# --------------------------------------------------------------------------- binding
_FUNCTIONAL = ("dropout", "dropout1d", "dropout2d", "dropout3d")
_REFUSED_FUNCTIONAL = ("alpha_dropout", "feature_alpha_dropout")
_FOREIGN_STOCHASTIC = ("DropPath", "StochasticDepth", "DropBlock2d", "DropBlock")


def _as_calls(calls: Any, who: str) -> list[RngCall]:
    if isinstance(calls, (str, bytes)) or not isinstance(calls, Sequence):
        raise InitError(f"{who}: `flax_calls` must be the list jaxinit.rngs.rng_calls(flax_module, *inputs, ...) "
                        f"returns (or a Flax module with flax_inputs=...), got {type(calls).__name__}")
    out = []
    for c in calls:
        if isinstance(c, RngCall):
            out.append(c)
        elif isinstance(c, (tuple, list)) and len(c) >= 4:
            out.append(RngCall(*c))
        else:
            raise InitError(f"{who}: each entry of `flax_calls` is an RngCall (jaxinit.rngs.rng_calls), got {c!r}")
    return [c for c in out if c.kind != "other" and c.rate is not None and 0.0 < c.rate < 1.0]


def _mask_dtype(call: RngCall) -> torch.dtype:
    return torch.float64 if call.mask_dtype == "float64" else torch.float32


def _place_mask(mask: Tensor, shape: tuple, who: str, site: str, call: RngCall) -> Tensor:
    """Flax's mask (its shape: broadcast axes 1) laid over the torch input: the same layout,
    or the torch input channels-first where Flax's is channels-last (axis 1 <-> last)."""
    ms = tuple(mask.shape)

    def fits(a, b):
        return len(a) == len(b) and all(x in (1, y) for x, y in zip(a, b))

    if fits(ms, shape):
        return mask
    if len(shape) >= 3:
        cl = (shape[0],) + shape[2:] + (shape[1],)
        if fits(ms, cl):
            return torch.movedim(mask, -1, 1)
    raise InitError(
        f"{who}: torch dropout at {site!r} has input shape {shape} but the paired Flax call "
        f"({call.path or '<top>'}, count {call.number}) draws a mask of shape {ms}: neither the same layout nor "
        "channels-first vs channels-last. Pair them differently with mapping={torch_module_path: flax_scope_path}, "
        "or check that the twins apply dropout to the same tensors.")


class RngBinding:
    """A torch model bound to its Flax twin's dropout keys (made by :func:`bind_rngs`).

    ``set_key(key)`` gives the root key of the next forward passes (what the Flax loop passes as
    ``rngs={'dropout': key}``); ``with binding.key(k):`` does the same for a block;
    ``unbind()`` removes the hooks (``with bind_rngs(...):`` unbinds at the end of the block).
    Each call of the bound model's ``forward`` is one Flax apply: the pairing restarts at the
    first Flax call.
    """

    def __init__(self, model: torch.nn.Module, key: Any, calls: list[RngCall], mapping: Mapping[str, str] | None):
        self.model = model
        self.calls = calls
        self.mapping = {str(k): "/".join(norm_path(v, "bind_rngs")) for k, v in (mapping or {}).items()}
        self._root: Tensor | None = None if key is None else _rnd.as_key(key)
        self._stack: list[str] = []
        self._events: list[tuple[str, RngCall]] = []
        self._used: set[int] = set()
        self._per_site: dict[str, int] = {}
        self._saved: dict[str, Any] = {}
        self._active = False
        self._handles: list[Any] = []
        names = {m: n for n, m in model.named_modules()}
        self._names = names
        for mod, name in names.items():
            if isinstance(mod, _d.Keyed):
                mod.rng_source = self._keyed_source
            self._handles.append(mod.register_forward_pre_hook(self._push(name, mod is model)))
            self._handles.append(mod.register_forward_hook(self._pop(mod is model), always_call=True))

    # ---- keys
    def set_key(self, key: Any) -> None:
        """The root key of the following forward passes (``rngs={'dropout': key}`` in Flax)."""
        self._root = _rnd.as_key(key)

    @contextlib.contextmanager
    def key(self, key: Any) -> Iterator["RngBinding"]:
        old, self._root = self._root, _rnd.as_key(key)
        try:
            yield self
        finally:
            self._root = old

    def __enter__(self) -> "RngBinding":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unbind()

    def unbind(self) -> None:
        """Remove the hooks and the keyed layers' key source; the model draws torch's masks again."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for mod in self._names:
            if isinstance(mod, _d.Keyed) and mod.rng_source == self._keyed_source:
                mod.rng_source = None

    # ---- forward scoping
    def _push(self, name: str, is_root: bool):
        def hook(mod, args):
            if is_root and not self._active:
                self._start()
            self._stack.append(name)
        return hook

    def _pop(self, is_root: bool):
        def hook(mod, args, out):
            if self._stack:
                self._stack.pop()
            if is_root and self._active and not self._stack:
                self._finish()
        return hook

    def _start(self) -> None:
        self._active = True
        self._stack.clear()
        self._used.clear()
        self._per_site.clear()
        self._events.clear()
        for n in _FUNCTIONAL:
            self._saved[n] = getattr(_F, n)
            setattr(_F, n, self._functional(n))
        for n in _REFUSED_FUNCTIONAL:
            self._saved[n] = getattr(_F, n)
            setattr(_F, n, self._refused(n))
        self._saved["scaled_dot_product_attention"] = _F.scaled_dot_product_attention
        _F.scaled_dot_product_attention = self._sdpa(_F.scaled_dot_product_attention)

    def _finish(self) -> None:
        for n, f in self._saved.items():
            setattr(_F, n, f)
        self._saved.clear()
        self._active = False
        if 0 < len(self._used) < len(self.calls):
            left = [(c.path or "<top>", c.number) for i, c in enumerate(self.calls) if i not in self._used]
            raise InitError(
                f"torchinit.rngs.bind_rngs: the forward ran {len(self._used)} dropout calls but the Flax twin makes "
                f"{len(self.calls)}; unpaired Flax calls (scope, count): {left}. The twins differ in their dropouts; "
                "check rates of 0 on one side, or pair with mapping={torch_module_path: flax_scope_path}.")

    # ---- pairing
    def _next_call(self, site: str, p: float, who: str) -> RngCall:
        if self._root is None:
            raise InitError(f"{who}: the binding has no key: pass one to bind_rngs(model, key, ...) or call "
                            "binding.set_key(key) (the key the Flax apply gets as rngs={'dropout': key})")
        if site in self.mapping or any(site.startswith(k + ".") for k in self.mapping):
            tpath = max((k for k in self.mapping if site == k or site.startswith(k + ".")), key=len)
            fpath = self.mapping[tpath]
            n = self._per_site.get(tpath, 0)
            cands = [i for i, c in enumerate(self.calls) if c.path == fpath]
            if n >= len(cands):
                raise InitError(f"{who}: torch dropout call {n + 1} inside {tpath!r} has no Flax call left in scope "
                                f"{fpath!r} (it makes {len(cands)} mask-drawing make_rng calls); check `mapping`")
            self._per_site[tpath] = n + 1
            idx = cands[n]
        else:
            unmapped = [i for i, c in enumerate(self.calls)
                        if i not in self._used and not any(c.path == v for v in self.mapping.values())]
            if not unmapped:
                raise InitError(
                    f"{who}: torch runs more dropout calls than its Flax twin ({len(self.calls)} mask-drawing "
                    f"make_rng calls: {[c.path for c in self.calls]}); the extra one is in {site or '<root>'!r} "
                    f"(p={p}). Is the Flax twin traced with dropout on (deterministic=False / train=True)? "
                    "Or pair explicitly with mapping={torch_module_path: flax_scope_path}.")
            # a Flax call in the scope of the same name (torch "a.b" == Flax "a/b") pairs by name; the
            # others in call order (names that differ: pass mapping=)
            named = [i for i in unmapped if self.calls[i].path.replace("/", ".") == site]
            idx = named[0] if named else unmapped[0]
        self._used.add(idx)
        call = self.calls[idx]
        if abs(call.rate - p) > 1e-12:  # type: ignore[operator]
            raise InitError(
                f"{who}: torch dropout at {site or '<root>'!r} has p={p} but the paired Flax call "
                f"({call.path or '<top>'}, count {call.number}) has rate={call.rate}; the masks cannot agree. "
                "Fix the rate on one side, or pair differently with mapping={torch_module_path: flax_scope_path}.")
        return call

    def _key_for(self, call: RngCall) -> Tensor:
        assert self._root is not None
        return linen_key(self._root, call.path, call.number)

    def _site(self) -> str:
        return self._stack[-1] if self._stack else ""

    def _keyed_source(self, mod: torch.nn.Module, x: Tensor) -> Tensor:
        """A bound torchinit.nn layer called without a key: its paired Flax call's key, mask and formula."""
        raw: Any = getattr(mod, "p") if hasattr(mod, "p") else getattr(mod, "drop_prob")
        p, who = float(raw), f"torchinit.rngs.bind_rngs ({type(mod).__name__})"
        call = self._next_call(self._names.get(mod, self._site()), p, who)
        return self._apply(x, p, call, bool(getattr(mod, "inplace", False)), who)

    def _apply(self, x: Tensor, p: float, call: RngCall, inplace: bool, who: str) -> Tensor:
        mask = _d.keep_mask(self._key_for(call), 1.0 - p, call.mask_shape or (), _mask_dtype(call), x.device)
        mask = _place_mask(mask, tuple(x.shape), who, self._site(), call)
        if call.kind == "attention":
            out = x * (mask.to(x.dtype) / torch.tensor(1.0 - p, dtype=torch.float64).to(x.dtype).to(x.device))
        else:
            out = _d.select_scaled(x, mask, 1.0 - p)
        return x.copy_(out) if inplace else out

    def _functional(self, name: str):
        orig = getattr(_F, name)
        who = f"torch.nn.functional.{name} (bound by torchinit.rngs.bind_rngs)"

        def bound(input, p=0.5, training=True, inplace=False):
            p = _d.check_rate(p, who)
            if not training or p == 0.0 or p == 1.0:
                return orig(input, p, training, inplace)
            call = self._next_call(self._site(), p, who)
            return self._apply(input, p, call, inplace, who)
        return bound

    def _refused(self, name: str):
        orig = getattr(_F, name)

        def refused(input, p=0.5, training=False, inplace=False):
            if training and 0.0 < p:
                raise InitError(f"torchinit.rngs.bind_rngs: {name} in {self._site()!r} has no Flax twin to bind to; "
                                "remove it or run the model in eval mode")
            return orig(input, p, training, inplace)
        return refused

    def _sdpa(self, orig):
        def sdpa(*args, **kwargs):
            dp = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
            if dp and float(dp) > 0.0:
                raise InitError(
                    f"torchinit.rngs.bind_rngs: scaled_dot_product_attention in {self._site()!r} has dropout_p={dp}: "
                    "its mask is drawn inside the fused kernel and cannot be bound. Use the eager attention path "
                    "(Hugging Face: attn_implementation='eager'; torch.nn.MultiheadAttention: need_weights=True).")
            return orig(*args, **kwargs)
        return sdpa


def bind_rngs(torch_model: torch.nn.Module, key: Any, flax_calls: Any, *,
              mapping: Mapping[str, str] | None = None, flax_inputs: Sequence[Any] | None = None,
              flax_kwargs: Mapping[str, Any] | None = None) -> RngBinding:
    r"""Make ``torch_model``'s training-mode dropout draw the masks its Flax Linen twin draws.

    ``flax_calls``: ``jaxinit.rngs.rng_calls(flax_module, *inputs, deterministic=False)`` (the
    twin's ``make_rng`` calls, in order), or the Flax module itself with ``flax_inputs`` (and
    ``flax_kwargs``, e.g. ``{"deterministic": False}``), traced here (needs jax).
    ``key``: the key the Flax apply gets as ``rngs={'dropout': key}`` (``None``: set it later
    with :meth:`RngBinding.set_key`). ``mapping``: {torch module path: Flax scope path} for the
    dropouts whose order differs between the twins; the others pair by name where the torch module
    path equals the Flax scope path ("a.b" and "a/b"), else in call order.

    >>> binding = bind_rngs(torch_model, key, jaxinit.rngs.rng_calls(flax_model, x, train=True))  # doctest: +SKIP
    >>> for step in range(n):                                                                    # doctest: +SKIP
    ...     key, dkey = torchinit.random.split(key)
    ...     binding.set_key(dkey)       # Flax: model.apply(..., rngs={'dropout': dkey})
    ...     loss = loss_fn(torch_model(x))
    """
    who = "torchinit.rngs.bind_rngs"
    if not isinstance(torch_model, torch.nn.Module):
        raise InitError(f"{who}: `torch_model` must be a torch.nn.Module, got {type(torch_model).__name__}")
    for name, mod in torch_model.named_modules():
        cls = type(mod).__name__
        if cls in _FOREIGN_STOCHASTIC and not isinstance(mod, _d.Keyed):
            raise InitError(
                f"{who}: {name!r} is a {type(mod).__module__}.{cls}, which draws its mask with torch.bernoulli_ "
                f"and cannot be bound; replace it with torchinit.nn.{'StochasticDepth' if 'Stochastic' in cls else 'DropPath'} "
                "(same arguments), whose mask is Flax's")
    mod_name = type(flax_calls).__module__ or ""
    if mod_name.startswith(("flax", "transformers")) or hasattr(flax_calls, "apply") or hasattr(flax_calls, "module"):
        if flax_inputs is None:
            raise InitError(f"{who}: given a Flax module, pass `flax_inputs` (a tuple of its call's inputs) and "
                            "`flax_kwargs` that switch its dropout on (e.g. {'deterministic': False}), or pass "
                            "jaxinit.rngs.rng_calls(...)'s result")
        flax_calls = rng_calls(flax_calls, *flax_inputs, **dict(flax_kwargs or {}))
    calls = _as_calls(flax_calls, who)
    return RngBinding(torch_model, key, calls, mapping)
