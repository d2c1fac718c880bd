"""torch's autocast op table for the installed torch (2.13): the ONE source of the policy.

``TORCH_AUTOCAST_OPS[op] = (cpu_policy, cuda_policy)`` for every ATen operator with an
``AutocastCPU`` or ``AutocastCUDA`` kernel (``None``: no kernel on that device, the op runs in its
inputs' dtype). The op names and overloads are those of
``torch._C._dispatch_get_registrations_for_dispatch_key("AutocastCPU" / "AutocastCUDA")``; the
policies are those of aten/src/ATen/autocast_mode.cpp (CPU: ``TORCH_LIBRARY_IMPL(aten, AutocastCPU,
m)``; CUDA: the ``AT_FORALL_LOWER_PRECISION_FP`` / ``AT_FORALL_FP32`` / ``AT_FORALL_FP32_SET_OPT_DTYPE``
/ ``AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE`` / ``AT_FORALL_PROMOTE`` lists of
aten/src/ATen/autocast_mode.h, and ``binary_cross_entropy`` banned). parity_tests/test_amp.py checks
the names against the installed torch's dispatcher and runs a sample of ops under torch's
autocast (CPU tensors, and fake CUDA tensors) to check their policies; docs/amp.md's table is rendered
from this dict by :func:`markdown_table`.

Policies (``at::autocast::CastPolicy``):

* ``lower_precision_fp``: every floating input (not float64) cast to the autocast dtype; the op
  computes and returns in it;
* ``fp32``: every floating input cast to float32;
* ``fp32_set_opt_dtype``: ``dtype=float32`` passed when the caller gave none (softmax, sum, ...);
* ``fp32_append_dtype``: ``norm`` redispatched with an output dtype of float32;
* ``promote``: inputs cast to the widest floating dtype among them (float32 over the low dtype);
* ``banned``: raises (CUDA ``binary_cross_entropy``: use ``binary_cross_entropy_with_logits``).
"""
from __future__ import annotations

LOW = "lower_precision_fp"
FP32 = "fp32"
FP32_OPT = "fp32_set_opt_dtype"
FP32_APPEND = "fp32_append_dtype"
PROMOTE = "promote"
BANNED = "banned"

TORCH_VERSION = "2.13"
DEVICES = ("cpu", "cuda")
# torch.autocast's accepted dtypes per device (torch/amp/autocast_mode.py: ``device_supported_dtypes``)
# and its default (``torch.get_autocast_dtype``: CPU bfloat16, CUDA float16).
SUPPORTED_DTYPES = {"cpu": ("bfloat16", "float16"), "cuda": ("bfloat16", "float16")}
DEFAULT_DTYPE = {"cpu": "bfloat16", "cuda": "float16"}

TORCH_AUTOCAST_OPS: dict[str, tuple[str | None, str | None]] = {
    "_addmm_activation": (LOW, None),
    "_convolution": (None, LOW),
    "_convolution.deprecated": (LOW, LOW),
    "_grid_sampler_2d_cpu_fallback": (FP32, None),
    "_lu_with_info": (FP32, None),
    "_native_multi_head_attention": (LOW, None),
    "_scaled_dot_product_flash_attention": (None, LOW),
    "_thnn_fused_gru_cell": (None, LOW),
    "_thnn_fused_lstm_cell": (None, LOW),
    "_upsample_bicubic2d_aa": (None, FP32),
    "_upsample_bilinear2d_aa": (None, FP32),
    "_upsample_nearest_exact1d": (None, FP32),
    "_upsample_nearest_exact2d": (None, FP32),
    "_upsample_nearest_exact3d": (None, FP32),
    "acos": (None, FP32),
    "adaptive_avg_pool3d": (FP32, None),
    "adaptive_max_pool3d": (FP32, None),
    "addbmm": (LOW, LOW),
    "addcdiv": (None, PROMOTE),
    "addcmul": (None, PROMOTE),
    "addmm": (LOW, LOW),
    "addmv": (None, LOW),
    "addr": (None, LOW),
    "asin": (None, FP32),
    "atan2": (None, PROMOTE),
    "avg_pool3d": (FP32, None),
    "baddbmm": (LOW, LOW),
    "bilinear": (None, PROMOTE),
    "binary_cross_entropy": (FP32, BANNED),
    "binary_cross_entropy_with_logits": (FP32, FP32),
    "bmm": (LOW, LOW),
    "cat": (PROMOTE, None),
    "cdist": (FP32, FP32),
    "chain_matmul": (None, LOW),
    "cholesky": (FP32, None),
    "cholesky_inverse": (FP32, None),
    "cholesky_solve": (FP32, None),
    "conv1d": (LOW, LOW),
    "conv1d.padding": (LOW, None),
    "conv2d": (LOW, LOW),
    "conv2d.padding": (LOW, None),
    "conv3d": (LOW, LOW),
    "conv3d.padding": (LOW, None),
    "conv_tbc": (LOW, LOW),
    "conv_transpose1d": (LOW, LOW),
    "conv_transpose2d.input": (LOW, LOW),
    "conv_transpose3d.input": (LOW, LOW),
    "convolution": (None, LOW),
    "cosh": (None, FP32),
    "cosine_embedding_loss": (FP32, FP32),
    "cosine_similarity": (None, FP32),
    "cross": (None, PROMOTE),
    "cross_entropy_loss": (FP32, None),
    "ctc_loss.IntList": (FP32, None),
    "ctc_loss.Tensor": (FP32, None),
    "cudnn_convolution": (None, LOW),
    "cudnn_convolution_transpose": (None, LOW),
    "cumprod": (None, FP32_OPT),
    "cumsum": (None, FP32_OPT),
    "dist": (None, FP32),
    "dot": (None, PROMOTE),
    "einsum": (None, LOW),
    "erfinv": (None, FP32),
    "exp": (None, FP32),
    "expm1": (None, FP32),
    "fake_quantize_per_tensor_affine": (FP32, None),
    "fft_fft": (FP32, None),
    "fft_fft2": (FP32, None),
    "fft_fftn": (FP32, None),
    "fft_hfft": (FP32, None),
    "fft_ifft": (FP32, None),
    "fft_ifft2": (FP32, None),
    "fft_ifftn": (FP32, None),
    "fft_ihfft": (FP32, None),
    "fft_irfft": (FP32, None),
    "fft_irfft2": (FP32, None),
    "fft_irfftn": (FP32, None),
    "fft_rfft": (FP32, None),
    "fft_rfft2": (FP32, None),
    "fft_rfftn": (FP32, None),
    "fractional_max_pool2d": (FP32, None),
    "fractional_max_pool3d": (FP32, None),
    "frobenius_norm.dim": (None, FP32),
    "geqrf": (FP32, None),
    "grid_sampler": (FP32, PROMOTE),
    "grid_sampler_2d": (FP32, None),
    "grid_sampler_3d": (FP32, None),
    "group_norm": (None, FP32),
    "gru_cell": (None, LOW),
    "hinge_embedding_loss": (FP32, FP32),
    "huber_loss": (FP32, FP32),
    "index_copy": (PROMOTE, None),
    "index_put": (None, PROMOTE),
    "inverse": (FP32, None),
    "kl_div": (FP32, FP32),
    "l1_loss": (FP32, FP32),
    "layer_norm": (None, FP32),
    "linalg_cholesky": (FP32, None),
    "linalg_cholesky_ex": (FP32, None),
    "linalg_cond": (FP32, None),
    "linalg_cond.p_str": (FP32, None),
    "linalg_eig": (FP32, None),
    "linalg_eigh": (FP32, None),
    "linalg_eigvals": (FP32, None),
    "linalg_eigvalsh": (FP32, None),
    "linalg_householder_product": (FP32, None),
    "linalg_inv": (FP32, None),
    "linalg_inv_ex": (FP32, None),
    "linalg_lstsq": (FP32, None),
    "linalg_matrix_norm": (None, FP32_OPT),
    "linalg_matrix_norm.str_ord": (None, FP32_OPT),
    "linalg_matrix_rank": (FP32, None),
    "linalg_matrix_rank.atol_rtol_float": (FP32, None),
    "linalg_matrix_rank.atol_rtol_tensor": (FP32, None),
    "linalg_matrix_rank.tol_tensor": (FP32, None),
    "linalg_multi_dot": (None, LOW),
    "linalg_qr": (FP32, None),
    "linalg_solve": (FP32, None),
    "linalg_svd": (FP32, None),
    "linalg_svdvals": (FP32, None),
    "linalg_tensorinv": (FP32, None),
    "linalg_tensorsolve": (FP32, None),
    "linalg_vecdot": (LOW, LOW),
    "linalg_vector_norm": (None, FP32_OPT),
    "linear": (LOW, LOW),
    "log": (None, FP32),
    "log10": (None, FP32),
    "log1p": (None, FP32),
    "log2": (None, FP32),
    "log_softmax.int": (None, FP32_OPT),
    "logsumexp": (None, FP32),
    "lstm_cell": (None, LOW),
    "lu_solve": (FP32, None),
    "margin_ranking_loss": (FP32, FP32),
    "matmul": (LOW, LOW),
    "max_pool3d": (FP32, None),
    "max_unpool2d": (FP32, None),
    "max_unpool3d": (FP32, None),
    "mkldnn_rnn_layer": (LOW, None),
    "mm": (LOW, LOW),
    "mse_loss": (FP32, FP32),
    "multi_margin_loss": (FP32, FP32),
    "multilabel_margin_loss": (FP32, FP32),
    "multilabel_margin_loss_forward": (FP32, None),
    "mv": (None, LOW),
    "nanquantile": (FP32, None),
    "nanquantile.scalar": (FP32, None),
    "native_layer_norm": (None, FP32),
    "nll_loss": (FP32, FP32),
    "nll_loss2d": (FP32, FP32),
    "norm.Scalar": (None, FP32_APPEND),
    "norm.ScalarOpt_dim": (None, FP32_APPEND),
    "nuclear_norm": (None, FP32),
    "nuclear_norm.dim": (None, FP32),
    "orgqr": (FP32, None),
    "ormqr": (FP32, None),
    "pdist": (None, FP32),
    "pinverse": (FP32, None),
    "poisson_nll_loss": (FP32, FP32),
    "polar": (FP32, None),
    "pow.Scalar": (None, FP32),
    "pow.Tensor_Scalar": (None, FP32),
    "pow.Tensor_Tensor": (None, FP32),
    "prelu": (LOW, LOW),
    "prod": (FP32, FP32_OPT),
    "prod.dim_int": (FP32, FP32_OPT),
    "qr": (FP32, None),
    "quantile": (FP32, None),
    "quantile.scalar": (FP32, None),
    "reciprocal": (None, FP32),
    "reflection_pad1d": (FP32, None),
    "reflection_pad2d": (FP32, None),
    "renorm": (None, FP32),
    "replication_pad1d": (FP32, None),
    "replication_pad2d": (FP32, None),
    "replication_pad3d": (FP32, None),
    "rms_norm": (None, FP32),
    "rnn_relu_cell": (None, LOW),
    "rnn_tanh_cell": (None, LOW),
    "rsqrt": (None, FP32),
    "scaled_dot_product_attention": (LOW, LOW),
    "scatter_add": (None, PROMOTE),
    "sinh": (None, FP32),
    "smooth_l1_loss": (FP32, FP32),
    "soft_margin_loss": (FP32, FP32),
    "softmax.int": (None, FP32_OPT),
    "softplus": (None, FP32),
    "stack": (PROMOTE, None),
    "stft": (FP32, None),
    "stft.center": (FP32, None),
    "sum": (None, FP32_OPT),
    "sum.dim_IntList": (None, FP32_OPT),
    "svd": (FP32, None),
    "tan": (None, FP32),
    "tensordot": (None, PROMOTE),
    "trace": (FP32, None),
    "triangular_solve": (FP32, None),
    "triplet_margin_loss": (FP32, FP32),
    "upsample_bicubic2d": (None, FP32),
    "upsample_bilinear2d": (None, FP32),
    "upsample_linear1d": (None, FP32),
    "upsample_nearest1d": (None, FP32),
    "upsample_nearest2d": (None, FP32),
    "upsample_nearest3d": (None, FP32),
    "upsample_trilinear3d": (None, FP32),
    "vdot": (None, PROMOTE),
    "view_as_complex": (FP32, None),
}


# Composite ops with no autocast kernel on a device that reach one through their decomposition
# (the dispatcher autocasts the inner call): their effective policy is the inner op's.
COMPOSITES = {("einsum", "cpu"): "bmm", ("cross_entropy_loss", "cuda"): "log_softmax.int"}


def policy(op: str, device_type: str) -> str | None:
    """torch's cast policy of ``op`` (an ATen name, overload optional: ``"softmax"`` finds
    ``"softmax.int"``) under ``device_type`` autocast; ``None`` when torch's autocast leaves it alone.
    A composite of :data:`COMPOSITES` gets its inner op's policy."""
    col = DEVICES.index(device_type)
    if (op, device_type) in COMPOSITES:
        return policy(COMPOSITES[(op, device_type)], device_type)
    if op in TORCH_AUTOCAST_OPS:
        return TORCH_AUTOCAST_OPS[op][col]
    found = {v[col] for k, v in TORCH_AUTOCAST_OPS.items() if k.split(".")[0] == op}
    found.discard(None)
    if len(found) > 1:
        raise KeyError(f"{op}: overloads with different policies {sorted(str(f) for f in found)}; name the overload")
    return found.pop() if found else None


def markdown_table() -> str:
    """The table of docs/amp.md: one row per op, its policy on CPU and on CUDA."""
    rows = ["| ATen op | CPU (bfloat16 default) | CUDA (float16 default) |", "|---|---|---|"]
    for op, (cpu, cuda) in TORCH_AUTOCAST_OPS.items():
        rows.append(f"| `{op}` | {cpu or '-'} | {cuda or '-'} |")
    for (op, dev), inner in COMPOSITES.items():
        rows.append(f"| `{op}` ({dev}: no kernel, decomposes into `{inner}`) | "
                    f"{policy(op, 'cpu') or '-'} | {policy(op, 'cuda') or '-'} |")
    return "\n".join(rows)


# Agreement of one op under jaxinit.amp.Autocast with torch 2.13's CPU autocast, measured
# (parity_tests/test_amp.py::test_autocast_op_equals_torch_cpu): op -> {dtype: (largest share of output
# elements that differ, largest difference in ulps of that dtype)}. (0.0, 0.0): bitwise, both sides
# accumulate in float32 and round once. The budget twin_check / compare_layers judge a layer by.
OP_BUDGETS: dict[str, dict[str, tuple[float, float]]] = {
    "linear": {"bfloat16": (0.0, 0.0), "float16": (0.0, 0.0)},
    "bmm": {"bfloat16": (0.0, 0.0), "float16": (0.0, 0.0)},
    "conv2d": {"bfloat16": (0.0, 0.0), "float16": (0.0, 0.0)},
    "conv_transpose2d": {"bfloat16": (0.0, 0.0), "float16": (0.002, 1.0)},
    "softmax": {"bfloat16": (0.01, 1.0), "float16": (0.01, 1.0)},
    "layer_norm": {"bfloat16": (0.0, 0.0), "float16": (0.01, 1.0)},
    "batch_norm": {"bfloat16": (0.01, 1.0), "float16": (0.01, 2.0)},
    "group_norm": {"bfloat16": (0.01, 1.0), "float16": (0.01, 1.0)},
    "scaled_dot_product_attention": {"bfloat16": (0.05, 1.0)},
    "multi_head_attention": {"bfloat16": (0.0, 0.0), "float16": (0.0, 0.0)},
}
# A whole twin: its largest per-step training-loss difference must stay this many times below the same
# torch model's low-precision-vs-float32 gap (met by the MLP twin; docs/amp.md for the others).
TWIN_GAP_RATIO = 10.0


def budget(op: str, dtype: str) -> tuple[float, float]:
    """(largest share of differing elements, largest ulps) expected for ``op`` under autocast in ``dtype``
    ('bfloat16' or 'float16'); ``KeyError`` names the measured ops when ``op``/``dtype`` was not measured."""
    if op not in OP_BUDGETS or dtype not in OP_BUDGETS[op]:
        measured = sorted(f"{o}/{d}" for o, v in OP_BUDGETS.items() for d in v)
        raise KeyError(f"no measured autocast budget for {op!r} in {dtype!r}; measured: {measured}")
    return OP_BUDGETS[op][dtype]


BEGIN, END = "<!-- autocast-table:begin (python -m _jaxinit.autocast_table) -->", "<!-- autocast-table:end -->"


def write_docs(path: str = "docs/amp.md") -> bool:
    """Rewrite the table between :data:`BEGIN` and :data:`END` in ``path``; True when it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}"
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


if __name__ == "__main__":
    print("docs/amp.md", "updated" if write_docs() else "unchanged")
