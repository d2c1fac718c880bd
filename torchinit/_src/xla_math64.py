"""XLA's CPU float64 math, ported to torch bit for bit: ``log``, ``log1p``, ``sqrt``, ``erf_inv``.

The float64 half of :mod:`torchinit._src.xla_math` (which holds the fused multiply-add these
build on, :func:`~torchinit._src.xla_math.fma`, and the float32 ports). Read from glibc's
``log`` (``sysdeps/ieee754/dbl-64/e_log.c``, which XLA's CPU code calls for float64),
``ElementalIrEmitter::EmitLog1p`` and chlo's float64 ``erf_inv`` decomposition, and checked
against ``jax.lax`` on 2**20 + 3 draws x 3 keys and the boundary uniforms
(``parity_tests/test_random.py``).

- :func:`log_f64` (glibc's), :func:`log1p_f64`, :func:`sqrt_f64` (correctly rounded),
  :func:`erfinv_f64`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from torchinit._src.xla_math import fma

Tensor = torch.Tensor


# glibc's double-precision log (sysdeps/ieee754/dbl-64/e_log.c and e_log_data.c, glibc 2.28+,
# from ARM's optimized-routines): XLA's CPU backend lowers float64 ``log`` to a call of the C
# library's ``log``, and glibc's is not correctly rounded (about 4 in 10**4 results differ from
# the correctly rounded log), so the algorithm is reproduced, table and all, with the fused
# multiply-adds of glibc's FMA build (``__log_fma``, the one x86-64 CPUs with FMA run).
_LOG_TAB_HEX = """
    0x1.734f0c3e0de9fp+0 -0x1.7cc7f79e69000p-2
    0x1.713786a2ce91fp+0 -0x1.76feec20d0000p-2
    0x1.6f26008fab5a0p+0 -0x1.713e31351e000p-2
    0x1.6d1a61f138c7dp+0 -0x1.6b85b38287800p-2
    0x1.6b1490bc5b4d1p+0 -0x1.65d5590807800p-2
    0x1.69147332f0cbap+0 -0x1.602d076180000p-2
    0x1.6719f18224223p+0 -0x1.5a8ca86909000p-2
    0x1.6524f99a51ed9p+0 -0x1.54f4356035000p-2
    0x1.63356aa8f24c4p+0 -0x1.4f637c36b4000p-2
    0x1.614b36b9ddc14p+0 -0x1.49da7fda85000p-2
    0x1.5f66452c65c4cp+0 -0x1.445923989a800p-2
    0x1.5d867b5912c4fp+0 -0x1.3edf439b0b800p-2
    0x1.5babccb5b90dep+0 -0x1.396ce448f7000p-2
    0x1.59d61f2d91a78p+0 -0x1.3401e17bda000p-2
    0x1.5805612465687p+0 -0x1.2e9e2ef468000p-2
    0x1.56397cee76bd3p+0 -0x1.2941b3830e000p-2
    0x1.54725e2a77f93p+0 -0x1.23ec58cda8800p-2
    0x1.52aff42064583p+0 -0x1.1e9e129279000p-2
    0x1.50f22dbb2bddfp+0 -0x1.1956d2b48f800p-2
    0x1.4f38f4734ded7p+0 -0x1.141679ab9f800p-2
    0x1.4d843cfde2840p+0 -0x1.0edd094ef9800p-2
    0x1.4bd3ec078a3c8p+0 -0x1.09aa518db1000p-2
    0x1.4a27fc3e0258ap+0 -0x1.047e65263b800p-2
    0x1.4880524d48434p+0 -0x1.feb224586f000p-3
    0x1.46dce1b192d0bp+0 -0x1.f474a7517b000p-3
    0x1.453d9d3391854p+0 -0x1.ea4443d103000p-3
    0x1.43a2744b4845ap+0 -0x1.e020d44e9b000p-3
    0x1.420b54115f8fbp+0 -0x1.d60a22977f000p-3
    0x1.40782da3ef4b1p+0 -0x1.cc00104959000p-3
    0x1.3ee8f5d57fe8fp+0 -0x1.c202956891000p-3
    0x1.3d5d9a00b4ce9p+0 -0x1.b81178d811000p-3
    0x1.3bd60c010c12bp+0 -0x1.ae2c9ccd3d000p-3
    0x1.3a5242b75dab8p+0 -0x1.a45402e129000p-3
    0x1.38d22cd9fd002p+0 -0x1.9a877681df000p-3
    0x1.3755bc5847a1cp+0 -0x1.90c6d69483000p-3
    0x1.35dce49ad36e2p+0 -0x1.87120a645c000p-3
    0x1.34679984dd440p+0 -0x1.7d68fb4143000p-3
    0x1.32f5cceffcb24p+0 -0x1.73cb83c627000p-3
    0x1.3187775a10d49p+0 -0x1.6a39a9b376000p-3
    0x1.301c8373e3990p+0 -0x1.60b3154b7a000p-3
    0x1.2eb4ebb95f841p+0 -0x1.5737d76243000p-3
    0x1.2d50a0219a9d1p+0 -0x1.4dc7b8fc23000p-3
    0x1.2bef9a8b7fd2ap+0 -0x1.4462c51d20000p-3
    0x1.2a91c7a0c1babp+0 -0x1.3b08abc830000p-3
    0x1.293726014b530p+0 -0x1.31b996b490000p-3
    0x1.27dfa5757a1f5p+0 -0x1.2875490a44000p-3
    0x1.268b39b1d3bbfp+0 -0x1.1f3b9f879a000p-3
    0x1.2539d838ff5bdp+0 -0x1.160c8252ca000p-3
    0x1.23eb7aac9083bp+0 -0x1.0ce7f57f72000p-3
    0x1.22a012ba940b6p+0 -0x1.03cdc49fea000p-3
    0x1.2157996cc4132p+0 -0x1.f57bdbc4b8000p-4
    0x1.201201dd2fc9bp+0 -0x1.e370896404000p-4
    0x1.1ecf4494d480bp+0 -0x1.d17983ef94000p-4
    0x1.1d8f5528f6569p+0 -0x1.bf9674ed8a000p-4
    0x1.1c52311577e7cp+0 -0x1.adc79202f6000p-4
    0x1.1b17c74cb26e9p+0 -0x1.9c0c3e7288000p-4
    0x1.19e010c2c1ab6p+0 -0x1.8a646b372c000p-4
    0x1.18ab07bb670bdp+0 -0x1.78d01b3ac0000p-4
    0x1.1778a25efbcb6p+0 -0x1.674f145380000p-4
    0x1.1648d354c31dap+0 -0x1.55e0e6d878000p-4
    0x1.151b990275fddp+0 -0x1.4485cdea1e000p-4
    0x1.13f0ea432d24cp+0 -0x1.333d94d6aa000p-4
    0x1.12c8b7210f9dap+0 -0x1.22079f8c56000p-4
    0x1.11a3028ecb531p+0 -0x1.10e4698622000p-4
    0x1.107fbda8434afp+0 -0x1.ffa6c6ad20000p-5
    0x1.0f5ee0f4e6bb3p+0 -0x1.dda8d4a774000p-5
    0x1.0e4065d2a9fcep+0 -0x1.bbcece4850000p-5
    0x1.0d244632ca521p+0 -0x1.9a1894012c000p-5
    0x1.0c0a77ce2981ap+0 -0x1.788583302c000p-5
    0x1.0af2f83c636d1p+0 -0x1.5715e67d68000p-5
    0x1.09ddb98a01339p+0 -0x1.35c8a49658000p-5
    0x1.08cabaf52e7dfp+0 -0x1.149e364154000p-5
    0x1.07b9f2f4e28fbp+0 -0x1.e72c082eb8000p-6
    0x1.06ab58c358f19p+0 -0x1.a55f152528000p-6
    0x1.059eea5ecf92cp+0 -0x1.63d62cf818000p-6
    0x1.04949cdd12c90p+0 -0x1.228fb8caa0000p-6
    0x1.038c6c6f0ada9p+0 -0x1.c317b20f90000p-7
    0x1.02865137932a9p+0 -0x1.419355daa0000p-7
    0x1.0182427ea7348p+0 -0x1.81203c2ec0000p-8
    0x1.008040614b195p+0 -0x1.0040979240000p-9
    0x1.fe01ff726fa1ap-1 0x1.feff384900000p-9
    0x1.fa11cc261ea74p-1 0x1.7dc41353d0000p-7
    0x1.f6310b081992ep-1 0x1.3cea3c4c28000p-6
    0x1.f25f63ceeadcdp-1 0x1.b9fc114890000p-6
    0x1.ee9c8039113e7p-1 0x1.1b0d8ce110000p-5
    0x1.eae8078cbb1abp-1 0x1.58a5bd001c000p-5
    0x1.e741aa29d0c9bp-1 0x1.95c8340d88000p-5
    0x1.e3a91830a99b5p-1 0x1.d276aef578000p-5
    0x1.e01e009609a56p-1 0x1.07598e598c000p-4
    0x1.dca01e577bb98p-1 0x1.253f5e30d2000p-4
    0x1.d92f20b7c9103p-1 0x1.42edd8b380000p-4
    0x1.d5cac66fb5ccep-1 0x1.606598757c000p-4
    0x1.d272caa5ede9dp-1 0x1.7da76356a0000p-4
    0x1.cf26e3e6b2ccdp-1 0x1.9ab434e1c6000p-4
    0x1.cbe6da2a77902p-1 0x1.b78c7bb0d6000p-4
    0x1.c8b266d37086dp-1 0x1.d431332e72000p-4
    0x1.c5894bd5d5804p-1 0x1.f0a3171de6000p-4
    0x1.c26b533bb9f8cp-1 0x1.067152b914000p-3
    0x1.bf583eeece73fp-1 0x1.147858292b000p-3
    0x1.bc4fd75db96c1p-1 0x1.2266ecdca3000p-3
    0x1.b951e0c864a28p-1 0x1.303d7a6c55000p-3
    0x1.b65e2c5ef3e2cp-1 0x1.3dfc33c331000p-3
    0x1.b374867c9888bp-1 0x1.4ba366b7a8000p-3
    0x1.b094b211d304ap-1 0x1.5933928d1f000p-3
    0x1.adbe885f2ef7ep-1 0x1.66acd2418f000p-3
    0x1.aaf1d31603da2p-1 0x1.740f8ec669000p-3
    0x1.a82e63fd358a7p-1 0x1.815c0f51af000p-3
    0x1.a5740ef09738bp-1 0x1.8e92954f68000p-3
    0x1.a2c2a90ab4b27p-1 0x1.9bb3602f84000p-3
    0x1.a01a01393f2d1p-1 0x1.a8bed1c2c0000p-3
    0x1.9d79f24db3c1bp-1 0x1.b5b515c01d000p-3
    0x1.9ae2505c7b190p-1 0x1.c2967ccbcc000p-3
    0x1.9852ef297ce2fp-1 0x1.cf635d5486000p-3
    0x1.95cbaeea44b75p-1 0x1.dc1bd3446c000p-3
    0x1.934c69de74838p-1 0x1.e8c01b8cfe000p-3
    0x1.90d4f2f6752e6p-1 0x1.f5509c0179000p-3
    0x1.8e6528effd79dp-1 0x1.00e6c121fb800p-2
    0x1.8bfce9fcc007cp-1 0x1.071b80e93d000p-2
    0x1.899c0dabec30ep-1 0x1.0d46b9e867000p-2
    0x1.87427aa2317fbp-1 0x1.13687334bd000p-2
    0x1.84f00acb39a08p-1 0x1.1980d67234800p-2
    0x1.82a49e8653e55p-1 0x1.1f8ffe0cc8000p-2
    0x1.8060195f40260p-1 0x1.2595fd7636800p-2
    0x1.7e22563e0a329p-1 0x1.2b9300914a800p-2
    0x1.7beb377dcb5adp-1 0x1.3187210436000p-2
    0x1.79baa679725c2p-1 0x1.377266dec1800p-2
    0x1.77907f2170657p-1 0x1.3d54ffbaf3000p-2
    0x1.756cadbd6130cp-1 0x1.432eee32fe000p-2
"""
_LOG_TAB = np.array([[float.fromhex(v) for v in line.split()] for line in _LOG_TAB_HEX.split("\n") if line.strip()])
_LOG_INVC, _LOG_LOGC = _LOG_TAB[:, 0].copy(), _LOG_TAB[:, 1].copy()
_LN2HI, _LN2LO = float.fromhex("0x1.62e42fefa3800p-1"), float.fromhex("0x1.ef35793c76730p-45")
_LOG_A = [float.fromhex(h) for h in ("-0x1.0000000000001p-1", "0x1.555555551305bp-2", "-0x1.fffffffeb459p-3",
                                     "0x1.999b324f10111p-3", "-0x1.55575e506c89fp-3")]
_LOG_B = [float.fromhex(h) for h in (
    "-0x1p-1", "0x1.5555555555577p-2", "-0x1.ffffffffffdcbp-3", "0x1.999999995dd0cp-3", "-0x1.55555556745a7p-3",
    "0x1.24924a344de3p-3", "-0x1.fffffa4423d65p-4", "0x1.c7184282ad6cap-4", "-0x1.999eb43b068ffp-4",
    "0x1.78182f7afd085p-4", "-0x1.5521375d145cdp-4")]
_LOG_OFF = 0x3FE6000000000000
_LOG_NEAR1_LO, _LOG_NEAR1_HI = 1.0 - 2.0**-4, 1.0 + float.fromhex("0x1.09p-4")
_TABLES: dict = {}


def _log_tables(device) -> tuple[Tensor, Tensor]:
    key = str(device)
    if key not in _TABLES:
        _TABLES[key] = (torch.from_numpy(_LOG_INVC).to(device), torch.from_numpy(_LOG_LOGC).to(device))
    return _TABLES[key]


def _log_table_path(x: Tensor) -> Tensor:
    """glibc's log for positive normal ``x`` off ``[1 - 2**-4, 1 + 0x1.09p-4)``: ``x = 2**k z``,
    ``log(x) = k ln2 + log(c) + log1p(z / c - 1)`` with ``c`` from a 128-entry table."""
    invc_t, logc_t = _log_tables(x.device)
    ix = x.view(torch.int64)
    tmp = ix - _LOG_OFF
    i = (tmp >> 45) & 127
    kd = (tmp >> 52).double()
    z = (ix - (tmp & -(1 << 52))).view(torch.float64)
    r = fma(z, invc_t[i], -1.0)
    w = fma(kd, _LN2HI, logc_t[i])
    hi = w + r
    lo = fma(kd, _LN2LO, (w - hi) + r)
    r2 = r * r
    a = _LOG_A
    t = fma(r2, fma(r, a[4], a[3]), fma(r, a[2], a[1]))
    return fma(r * r2, t, fma(r2, a[0], lo)) + hi


def _log_near_one(x: Tensor) -> Tensor:
    """glibc's log on ``[1 - 2**-4, 1 + 0x1.09p-4)``: a degree-11 polynomial in ``r = x - 1``
    with ``-r**2 / 2`` in double-double."""
    b = _LOG_B
    r = x - 1.0
    r2 = r * r
    r3 = r * r2
    inner = fma(r3, b[10], fma(r2, b[9], fma(r, b[8], b[7])))
    inner = fma(r3, inner, fma(r2, b[6], fma(r, b[5], b[4])))
    poly = fma(r3, inner, fma(r2, b[3], fma(r, b[2], b[1])))
    w = r * 2.0**27
    rhi = (r + w) - w
    rlo = r - rhi
    w = rhi * rhi * b[0]  # exact: rhi has 26 bits, b[0] = -0.5
    hi = r + w
    lo = (r - hi) + w
    lo = fma(b[0] * rlo, rhi + r, lo)
    return fma(r3, poly, lo) + hi  # y = r3 * poly; y += lo: GCC contracts the two


def log_f64(x: Tensor) -> Tensor:
    """float64 log as XLA's CPU backend computes it (glibc's ``log``), for ``x >= 0`` normal or zero.

    ``log(0) = -inf``; ``x == 1`` gives ``+0``. Subnormal, negative, inf and NaN inputs are
    outside what the samplers produce and are not reproduced.
    """
    out = _log_table_path(x)
    near = (x >= _LOG_NEAR1_LO) & (x < _LOG_NEAR1_HI)
    if bool(near.any()):  # uniform draws in [15/16, 1.065): the polynomial branch, on those only
        out = out.masked_scatter(near, _log_near_one(x[near]))
    return torch.where(x == 0, -math.inf, torch.where(x == 1, 0.0, out))


def _next_up(y: Tensor) -> Tensor:
    """The next float64 above a finite ``y >= 0`` (its bit pattern plus one)."""
    return (y.view(torch.int64) + 1).view(torch.float64)


def sqrt_f64(x: Tensor) -> Tensor:
    """Correctly rounded float64 square root of ``x >= 0`` (XLA's ``sqrt`` is the IEEE operation).

    ``torch.sqrt`` on CPU is not correctly rounded in float64 (about 1 result in 100 is one ulp
    off), so its result ``y`` is corrected by Tuckerman's test, exact with a fused multiply-add:
    ``sqrt(x)`` rounds to ``y`` iff ``y * pred(y) < x <= y * succ(y)``.
    """
    y = torch.sqrt(x)
    up = _next_up(y)
    dn = (y.view(torch.int64) - 1).view(torch.float64)  # used only where y > 0
    y_up = fma(y, up, -x) < 0  # x > y * succ(y): the root rounds above y
    y_dn = (fma(y, dn, -x) >= 0) & (x > 0)  # x <= y * pred(y): the root rounds below y
    return torch.where(y_up, up, torch.where(y_dn, dn, y))


# XLA's float64 log1p (ElementalIrEmitter::EmitLog1p): Cephes' rational approximation for
# |x| < sqrt(2) - 1, else log(1 + x) with the C library's log; the coefficients in float64.
_L1P_NUM64 = [4.5270000862445199635215E-5, 4.9854102823193375972212E-1, 6.5787325942061044846969E0,
              2.9911919328553073277375E1, 6.0949667980987787057556E1, 5.7112963590585538103336E1,
              2.0039553499201281259648E1]
_L1P_DEN64 = [1., 1.5062909083469192043167E1, 8.3047565967967209469434E1, 2.2176239823732856465394E2,
              3.0909872225312059774938E2, 2.1642788614495947685003E2, 6.0118660497603843919306E1]


def log1p_f64(x: Tensor) -> Tensor:
    """XLA CPU's float64 ``log1p`` for ``x`` in [-1, 1) (every multiply-add fused, as compiled).

    Both branches run on every element and a select keeps one (as XLA's code does): ``1 + x``
    on the large branch is never within glibc's near-1 interval, so its table path serves.
    """
    x2 = x * x
    num = torch.full_like(x, _L1P_NUM64[0])
    den = torch.full_like(x, _L1P_DEN64[0])
    for cn, cd in zip(_L1P_NUM64[1:], _L1P_DEN64[1:]):
        num = fma(num, x, cn)
        den = fma(den, x, cd)
    small = x + fma(x2, -0.5, (x * x2) * (num / den))
    x1 = x + 1.0
    large = torch.where(x1 == 0, -math.inf, _log_table_path(x1))
    return torch.where(x.abs() < 0.41421356237309504880, small, large)


# XLA's float64 erf_inv (chlo.erf_inv's float64 decomposition in stablehlo, Giles' "Approximating
# the erfinv function", GPU Computing Gems): w = -log1p(-x*x); three polynomials, in w - 3.125
# (w < 6.25), sqrt(w) - 3.25 (w < 16) and sqrt(w) - 5, each coefficient list highest degree first.
_EI64 = (
    [-3.6444120640178196996e-21, -1.685059138182016589e-19, 1.2858480715256400167e-18,
     1.115787767802518096e-17, -1.333171662854620906e-16, 2.0972767875968561637e-17,
     6.6376381343583238325e-15, -4.0545662729752068639e-14, -8.1519341976054721522e-14,
     2.6335093153082322977e-12, -1.2975133253453532498e-11, -5.4154120542946279317e-11,
     1.051212273321532285e-09, -4.1126339803469836976e-09, -2.9070369957882005086e-08,
     4.2347877827932403518e-07, -1.3654692000834678645e-06, -1.3882523362786468719e-05,
     0.0001867342080340571352, -0.00074070253416626697512, -0.0060336708714301490533,
     0.24015818242558961693, 1.6536545626831027356],
    [2.2137376921775787049e-09, 9.0756561938885390979e-08, -2.7517406297064545428e-07,
     1.8239629214389227755e-08, 1.5027403968909827627e-06, -4.013867526981545969e-06,
     2.9234449089955446044e-06, 1.2475304481671778723e-05, -4.7318229009055733981e-05,
     6.8284851459573175448e-05, 2.4031110387097893999e-05, -0.0003550375203628474796,
     0.00095328937973738049703, -0.0016882755560235047313, 0.0024914420961078508066,
     -0.0037512085075692412107, 0.005370914553590063617, 1.0052589676941592334,
     3.0838856104922207635],
    [-2.7109920616438573243e-11, -2.5556418169965252055e-10, 1.5076572693500548083e-09,
     -3.7894654401267369937e-09, 7.6157012080783393804e-09, -1.4960026627149240478e-08,
     2.9147953450901080826e-08, -6.7711997758452339498e-08, 2.2900482228026654717e-07,
     -9.9298272942317002539e-07, 4.5260625972231537039e-06, -1.9681778105531670567e-05,
     7.5995277030017761139e-05, -0.00021503011930044477347, -0.00013871931833623122026,
     1.0103004648645343977, 4.8499064014085844221],
)


def erfinv_f64(u: Tensor) -> Tensor:
    """XLA CPU's float64 erf_inv, bit for bit: ``w = -log1p(-u*u)``, Giles' three polynomials
    (Horner steps fused into multiply-adds, as XLA's CPU backend compiles them), times ``u``;
    ``erf_inv(+-1) = +-inf``. The central polynomial (``w < 6.25``, ``|u| < 0.99999...``, all
    but about 2 draws in 1000) runs on every element, the two tail ones on the tail elements only.
    """
    w = -log1p_f64(u * -u)
    t = w - 3.125
    p = torch.full_like(t, _EI64[0][0])
    for c in _EI64[0][1:]:
        p = fma(p, t, c)
    tail = w >= 6.25
    if bool(tail.any()):
        wt = w[tail]
        mid = wt < 16.0
        tt = sqrt_f64(wt) - torch.where(mid, 3.25, 5.0)
        pm = torch.full_like(tt, _EI64[1][0])
        for c in _EI64[1][1:]:
            pm = fma(pm, tt, c)
        pf = torch.full_like(tt, _EI64[2][0])
        for c in _EI64[2][1:]:
            pf = fma(pf, tt, c)
        p = p.masked_scatter(tail, torch.where(mid, pm, pf))
    return torch.where(u.abs() == 1, u * math.inf, p * u)
