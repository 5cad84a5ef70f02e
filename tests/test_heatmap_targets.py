"""heatmap_targets: every backend against the official target (bit-exact), mmpose's UDP target and the reference.

What is tested, per backend (torch, cpp, triton under the interpreter on CPU; cuda and triton on a GPU):
* msra: bit-exact (targets and weights) against the numpy port of the official ``generate_target``
  (``hrnet_fast/baselines/official_targets.py``) with sigma 2 (256x192 -> 64x48) and 3 (384x288 -> 96x72),
  joint weights on and off, joints outside the map, ``br = 0`` (weight kept, empty map), ``ul`` on the last
  column, truncation != floor (negative coordinates), visibilities 0, 0.5, 0.7 and 2; the cases are
  checked to be what they claim (e.g. a floor rule would give another map).
* udp: within 1e-6 of mmpose's ``UDPHeatmap`` encode (port), weights equal, sigma 2 and 3.
* fresh random inputs against the torch reference: keypoint dtypes, odd sizes, non-integer sigma, empty N or K,
  non-finite keypoints (the documented rule), keypoints that require grad.
* outputs are poisoned with NaN before each kernel runs (HRNET_FAST_POISON_OUTPUTS=1).
The contract every op keeps (opcheck of the C++ and Triton custom ops, the poison hook itself, offsets beyond
2^31 on a GPU, the sm_90 compile of the Triton kernel) is tested in test_op_contract.py.
"""
import math

import numpy as np
import pytest
import torch

import hrnet_fast
from hrnet_fast.baselines import official_targets as O
from hrnet_fast.ops import OPS, heatmap_targets
from _support import needs_ext

T = OPS["heatmap_targets"].module  # the op's module (hrnet_fast.ops.heatmap_targets is the op)
CPU_BACKENDS = ["torch", pytest.param("cpp", marks=needs_ext), "triton"]
CONFIGS = {2: ((256, 192), (64, 48)), 3: ((384, 288), (96, 72))}  # sigma -> (image_size, heatmap_size), (H, W)

pytestmark = pytest.mark.usefixtures("poison_outputs")  # conftest.py: NaN-filled outputs before every kernel


def _skip_unavailable(backend, device="cpu"):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    reasons = T.SUPPORT.not_supported_reasons(backend, torch.device(device), torch.float64, (0, 64, 48))
    if reasons:
        pytest.skip("; ".join(reasons))


def _edge_cases(sigma):
    """(keypoint, vis, what) rows whose outcome the official rules fix; stride 4 in both configurations."""
    (ih, iw), (hh, hw) = CONFIGS[sigma]
    t = 3 * sigma
    s = iw / hw
    return [
        ((-3.0, 10.0), 1.0, "trunc"),                          # x/4 + 0.5 = -0.25: int() gives 0, floor -1
        ((-2.1, 5.0), 1.0, "trunc"),
        ((s * (-t - 1 - 0.5), 20.0), 1.0, "br0"),              # mu = -(t + 1): br = 0, weight kept, empty map
        ((s * (-t - 1 - 0.5) - 0.1, 20.0), 1.0, "br0"),        # still mu = -(t + 1) (truncation)
        ((s * (-t - 2 - 0.5), 20.0), 1.0, "out"),              # br = -1
        ((s * (hw + t - 0.5), 20.0), 1.0, "out"),              # ul = W
        ((s * (hw + t - 0.5) - 0.1, 20.0), 1.0, "last"),       # ul = W - 1: one column
        ((20.0, s * (hh + t - 0.5)), 1.0, "out"),              # ul_y = H
        ((20.0, s * (-t - 1 - 0.5)), 1.0, "br0"),
        ((20.0, 30.0), 0.0, "vis0"),
        ((21.0, 31.0), 0.5, "vis0.5"),                         # w = 0.5: not pasted (w > 0.5)
        ((22.0, 32.0), 0.7, "vis0.7"),
        ((23.0, 33.0), 2.0, "vis2"),
        ((s * (hw + t + 10), 20.0), 0.0, "out"),               # invisible and outside: 0
    ]


def _batch(sigma, n=6, seed=0):
    """(N, 17, 2) float64 keypoints (row 0 holds the edge cases) and (N, 17) visibilities."""
    (ih, iw), _ = CONFIGS[sigma]
    rng = np.random.default_rng(seed)
    kp = rng.uniform(-0.2, 1.2, size=(n, 17, 2)) * np.array([iw, ih])
    vis = (rng.uniform(size=(n, 17)) > 0.25).astype(np.float64)
    cases = _edge_cases(sigma)
    for j, (p, v, _) in enumerate(cases):
        kp[0, j], vis[0, j] = p, v
    return kp, vis, [c[2] for c in cases]


def _official(kp, vis, sigma, jw=None, image_size=None, heatmap_size=None):
    (ih, iw), (hh, hw) = (image_size, heatmap_size) if image_size else CONFIGS[sigma]
    ts, ws = [], []
    for n in range(kp.shape[0]):
        joints = np.concatenate([kp[n], np.zeros((kp.shape[1], 1))], 1)
        t, w = O.generate_target(joints, np.repeat(vis[n][:, None], 3, 1), (iw, ih), (hw, hh), sigma,
                                 None if jw is None else jw[:, None], jw is not None)
        ts.append(t)
        ws.append(w)
    return np.stack(ts), np.stack(ws)


# ----------------------------------------------------------------------------------------------------
# Official targets (test 1 of the training issue)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("sigma", [2, 3])
@pytest.mark.parametrize("joint_weights", [False, True])
def test_msra_bit_exact_to_official(backend, sigma, joint_weights):
    _skip_unavailable(backend)
    kp, vis, _ = _batch(sigma, n=3 if backend == "triton" else 8, seed=sigma)
    jw = np.random.default_rng(7).uniform(0.5, 1.5, 17).astype(np.float32) if joint_weights else None
    image_size, heatmap_size = CONFIGS[sigma]
    t, w = heatmap_targets(torch.from_numpy(kp), torch.from_numpy(vis), image_size, heatmap_size, sigma=sigma,
                           joint_weights=None if jw is None else torch.from_numpy(jw), backend=backend)
    ot, ow = _official(kp, vis, sigma, jw)
    assert t.dtype == torch.float32 and w.dtype == torch.float32 and w.shape == (kp.shape[0], 17, 1)
    np.testing.assert_array_equal(t.numpy(), ot)
    np.testing.assert_array_equal(w.numpy(), ow)
    assert (ot > 0).sum() > 1000 and (ow == 0).any() and (ow > 0).any()


@pytest.mark.parametrize("sigma", [2, 3])
def test_edge_cases_are_what_they_claim(sigma):
    """The official rules on the edge rows, checked on the official port's output itself (so the bit-exact
    test covers them): br = 0 keeps the weight with an empty map, truncation differs from floor."""
    kp, vis, what = _batch(sigma, n=1)
    ot, ow = _official(kp, vis, sigma)
    t, w = heatmap_targets(torch.from_numpy(kp), torch.from_numpy(vis), *CONFIGS[sigma], sigma=sigma, backend="torch")
    np.testing.assert_array_equal(t.numpy(), ot)
    (ih, iw), (hh, hw) = CONFIGS[sigma]
    for j, kind in enumerate(what):
        tw, tm = ow[0, j, 0], ot[0, j]
        if kind == "br0":
            assert tw == 1.0 and not tm.any(), j
        elif kind == "out":
            assert tw == 0.0 and not tm.any(), j
        elif kind == "last":
            assert tw == 1.0 and tm[:, :-1].max() == 0 and tm[:, -1].max() > 0, j
        elif kind == "vis0.5":
            assert tw == 0.5 and not tm.any(), j
        elif kind in ("vis0.7", "vis2"):
            assert tw == np.float32(vis[0, j]) and tm.max() == 1.0, j
        elif kind == "trunc":
            # floor would centre the Gaussian one column left (mu = -1): its peak at column 0 is lower
            assert tw == 1.0 and tm[:, 0].max() == 1.0, j
            floor_kp = kp.copy()
            floor_kp[0, j, 0] = -iw / hw * 1.0 - 0.5 * iw / hw  # x/4 + 0.5 = -1: floor's mu
            ft, _ = _official(floor_kp[:, j:j + 1], vis[:, j:j + 1], sigma)
            assert not np.array_equal(ft[0, 0], tm)


def test_gaussian_table_is_the_official_one():
    """gaussian_table is the official window: pasted whole around a joint well inside the map."""
    for sigma in (2, 3, 1.5):
        g = T.gaussian_table(sigma)
        L = T.window_size(sigma)
        assert g.dtype == np.float32 and g.shape == (L, L)
        joints = np.array([[80.0, 120.0, 0.0]])  # stride 4: mu = (20, 30)
        t, _ = O.generate_target(joints, np.ones((1, 3)), (192, 256), (48, 64), sigma)
        ul_x, ul_y = int(20 - 3 * sigma), int(30 - 3 * sigma)
        np.testing.assert_array_equal(t[0, ul_y:ul_y + L, ul_x:ul_x + L], g)
        t[0, ul_y:ul_y + L, ul_x:ul_x + L] = 0
        assert not t.any()  # nothing outside the window


# ----------------------------------------------------------------------------------------------------
# UDP (mmpose)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("sigma", [2, 3])
def test_udp_matches_mmpose(backend, sigma):
    _skip_unavailable(backend)
    kp, vis, _ = _batch(sigma, n=3 if backend == "triton" else 8, seed=10 + sigma)
    kp = kp.astype(np.float32)  # mmpose's pipeline keeps keypoints in float32
    vis[1, :3] = 0.3  # w < 0.5: kept as it is, no map (inside and outside)
    kp[1, 2] = (-500.0, 3.0)
    vis = vis.astype(np.float32)
    (ih, iw), (hh, hw) = CONFIGS[sigma]
    t, w = heatmap_targets(torch.from_numpy(kp), torch.from_numpy(vis), *CONFIGS[sigma], sigma=sigma, method="udp",
                           backend=backend)
    for n in range(kp.shape[0]):
        mt, mw = O.udp_gaussian_heatmaps(kp[n:n + 1], vis[n:n + 1], (iw, ih), (hw, hh), sigma)
        np.testing.assert_allclose(t[n].numpy(), mt, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(w[n, :, 0].numpy(), mw[0])
    assert w[1, 2, 0] == np.float32(0.3) and not t[1, :3].any()
    assert (w == 0).any() and (t > 0).sum() > 1000


# ----------------------------------------------------------------------------------------------------
# Random inputs against the reference
# ----------------------------------------------------------------------------------------------------
def _random(n, k, image_size, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ih, iw = image_size
    kp = (torch.rand(n, k, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2) * torch.tensor([iw, ih], dtype=torch.float64)
    vis = (torch.rand(n, k, generator=g) * 1.5).round(decimals=1)
    return kp.to(dtype), vis


def _compare(ours, ref, exact=True):
    for o, r in zip(ours, ref):
        assert o.shape == r.shape and o.dtype == r.dtype == torch.float32
        torch.testing.assert_close(o, r, rtol=0, atol=0 if exact else 1e-6, equal_nan=True)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("method", ["msra", "udp"])
@pytest.mark.parametrize(("image_size", "heatmap_size", "sigma"), [
    ((256, 192), (64, 48), 2.0), ((37, 53), (9, 13), 1.5), ((20, 300), (5, 150), 0.7), ((64, 64), (3, 2), 4.0)])
def test_random_vs_reference(backend, method, image_size, heatmap_size, sigma):
    _skip_unavailable(backend)
    kp, vis = _random(4, 9, image_size, seed=int(sigma * 10))
    jw = torch.rand(9, generator=torch.Generator().manual_seed(5)) + 0.5
    for kw in ({}, dict(joint_weights=jw)):
        args = (kp, vis, image_size, heatmap_size)
        ours = heatmap_targets(*args, sigma=sigma, method=method, backend=backend, **kw)
        ref = heatmap_targets(*args, sigma=sigma, method=method, backend="torch", **kw)
        _compare(ours, ref, exact=method == "msra")
        assert ref[0].any()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_keypoint_dtypes_compute_as_float64(backend, dtype):
    _skip_unavailable(backend)
    kp, vis = _random(2, 17, (256, 192), seed=3, dtype=dtype)
    for method in ("msra", "udp"):
        ours = heatmap_targets(kp, vis, (256, 192), (64, 48), method=method, backend=backend)
        ref = heatmap_targets(kp.double(), vis, (256, 192), (64, 48), method=method, backend="torch")
        _compare(ours, ref, exact=method == "msra")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(0, 17), (3, 0)])
def test_empty(backend, shape):
    _skip_unavailable(backend)
    for method in ("msra", "udp"):
        t, w = heatmap_targets(torch.zeros(*shape, 2), torch.ones(shape), (256, 192), (64, 48), method=method,
                               backend=backend)
        assert t.shape == (*shape, 64, 48) and w.shape == (*shape, 1)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # udp rounds 1e300 to float32 (inf), in numpy too
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("method", ["msra", "udp"])
def test_non_finite_keypoints_are_outside(backend, method):
    """The documented rule: a NaN or infinite coordinate counts as outside the map (weight 0, or kept when
    udp's w < 0.5), with an empty map; the other joints are unaffected. Huge finite values are outside too."""
    _skip_unavailable(backend)
    kp, vis = _random(2, 8, (256, 192), seed=4)
    vis[:] = 1.0
    bad = [(0, 0, math.nan, 5.0), (0, 1, 5.0, math.inf), (0, 2, -math.inf, 5.0), (1, 3, 1e300, 5.0), (1, 4, -1e19, 9.0),
           (1, 5, 5.0, 4e18)]
    for n, k, x, y in bad:
        kp[n, k] = torch.tensor([x, y], dtype=torch.float64)
    vis[1, 5] = 0.25
    t, w = heatmap_targets(kp, vis, (256, 192), (64, 48), method=method, backend=backend)
    ref = heatmap_targets(kp, vis, (256, 192), (64, 48), method=method, backend="torch")
    _compare((t, w), ref, exact=method == "msra")
    for n, k, *_ in bad:
        assert not t[n, k].any()
        assert w[n, k, 0] == (0.25 if (method == "udp" and (n, k) == (1, 5)) else 0.0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_inputs_requiring_grad_are_detached(backend):
    _skip_unavailable(backend)
    kp, vis = _random(2, 5, (256, 192), seed=6)
    t, w = heatmap_targets(kp.requires_grad_(True), vis, (256, 192), (64, 48), backend=backend)
    assert not t.requires_grad and not w.requires_grad


def test_visible_and_joint_weights_take_arrays_bools_and_lists():
    kp, _ = _random(2, 3, (256, 192), seed=7)
    vis = np.array([[True, False, True], [True, True, False]])
    t, w = heatmap_targets(kp, vis, [256, 192], torch.Size([64, 48]), joint_weights=[1.0, 2.0, 0.5])
    ref = heatmap_targets(kp, torch.from_numpy(vis).float(), (256, 192), (64, 48), joint_weights=torch.tensor([1.0, 2.0, 0.5]),
                          backend="torch")
    _compare((t, w), ref)


def test_auto_backend_on_cpu():
    kp, vis = _random(2, 3, (256, 192), seed=8)
    expected = "cpp" if hrnet_fast.backends()["cpp"]["available"] else "torch"
    assert T.resolve_backend(kp, (64, 48)).name == expected
    _compare(heatmap_targets(kp, vis, (256, 192), (64, 48)), heatmap_targets(kp, vis, (256, 192), (64, 48), backend="torch"))


def test_triton_launches_inside_launch_device(monkeypatch):
    """The launcher switches to the tensors' GPU (kernels/_utils.launch_device) around its launch."""
    _skip_unavailable("triton")
    kern = hrnet_fast._backends.triton_kernels("heatmap_targets")
    seen = []
    real = kern.launch_device
    monkeypatch.setattr(kern, "launch_device", lambda t: seen.append(t.device) or real(t))
    kp, vis = _random(1, 2, (256, 192), seed=9)
    heatmap_targets(kp, vis, (256, 192), (64, 48), backend="triton")
    assert seen == [torch.device("cpu")]


def test_triton_unsupported_reason():
    pytest.importorskip("triton")
    kern = hrnet_fast._backends.triton_kernels("heatmap_targets")
    assert kern.unsupported_reason(64, 48) is None and kern.unsupported_reason(1, kern.MAX_PIXELS) is None
    assert "H*W" in kern.unsupported_reason(2, kern.MAX_PIXELS // 2 + 1)
    assert kern.launch_config(48) == (16, 64, 4) and kern.launch_config(1000) == (8, 128, 4)


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------
def test_bad_input_errors():
    kp, vis = _random(2, 3, (256, 192), seed=11)
    f = heatmap_targets
    with pytest.raises(TypeError, match=r"keypoints must be a torch.Tensor"):
        f(kp.numpy(), vis, (256, 192), (64, 48))
    with pytest.raises(ValueError, match=r"keypoints must have shape \(N, K, 2\), got \(2, 3, 3\)"):
        f(torch.zeros(2, 3, 3), vis, (256, 192), (64, 48))
    with pytest.raises(TypeError, match=r"keypoints must be float16, bfloat16, float32 or float64, got torch.int64"):
        f(kp.long(), vis, (256, 192), (64, 48))
    with pytest.raises(ValueError, match=r"visible must have shape \(2, 3\), got \(2, 4\)"):
        f(kp, torch.ones(2, 4), (256, 192), (64, 48))
    with pytest.raises(TypeError, match=r"visible must be a tensor or array of shape"):
        f(kp, "all", (256, 192), (64, 48))
    with pytest.raises(ValueError, match=r"joint_weights must have shape \(3,\), got \(3, 1\)"):
        f(kp, vis, (256, 192), (64, 48), joint_weights=torch.ones(3, 1))
    with pytest.raises(TypeError, match=r"image_size must be a pair of ints \(H, W\)"):
        f(kp, vis, (256.0, 192), (64, 48))
    with pytest.raises(ValueError, match=r"heatmap_size must be a pair of ints \(H, W\), got \(64, 48, 1\)"):
        f(kp, vis, (256, 192), (64, 48, 1))
    with pytest.raises(ValueError, match=r"heatmap_size must be positive, got \(H, W\) = \(0, 48\)"):
        f(kp, vis, (256, 192), (0, 48))
    with pytest.raises(TypeError, match=r"heatmap_size must be a pair of ints"):
        f(kp, vis, (256, 192), 64)
    for bad in (0, -1.0, math.nan, math.inf, 101):
        with pytest.raises(ValueError, match=r"sigma must be in \(0, 100\]"):
            f(kp, vis, (256, 192), (64, 48), sigma=bad)
    with pytest.raises(TypeError, match=r"sigma must be a real number, got str"):
        f(kp, vis, (256, 192), (64, 48), sigma="2")
    with pytest.raises(ValueError, match=r"method must be one of \['msra', 'udp'\], got 'dark'"):
        f(kp, vis, (256, 192), (64, 48), method="dark")
    with pytest.raises(ValueError, match=r"udp needs image_size and heatmap_size of at least 2"):
        f(kp, vis, (256, 192), (1, 48), method="udp")
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of"):
        f(kp, vis, (256, 192), (64, 48), backend="numpy")


@needs_ext
def test_cpp_checks():
    """The C++ op checks its own arguments (TORCH_CHECK) when called directly."""
    op = torch.ops.hrnet_fast.heatmap_targets
    kp, vis = torch.zeros(2, 3, 2, dtype=torch.float64), torch.ones(2, 3)
    table = torch.from_numpy(T.gaussian_table(2.0))
    with pytest.raises(RuntimeError, match="keypoints must be a contiguous float64 tensor of shape"):
        op(kp.float(), vis, None, table, 64, 48, 4.0, 4.0, 2.0, 0)
    with pytest.raises(RuntimeError, match=r"visible must be a contiguous float32 tensor of shape \(N, K\) = \(2, 3\)"):
        op(kp, vis[:, :2], None, table, 64, 48, 4.0, 4.0, 2.0, 0)
    with pytest.raises(RuntimeError, match=r"joint_weights must be a contiguous float32 tensor of shape \(K,\)"):
        op(kp, vis, torch.ones(4), table, 64, 48, 4.0, 4.0, 2.0, 0)
    with pytest.raises(RuntimeError, match=r"table must be a contiguous float32 tensor of shape \(L, L\) = \(19, 19\)"):
        op(kp, vis, None, table, 64, 48, 4.0, 4.0, 3.0, 0)
    with pytest.raises(RuntimeError, match="msra needs the Gaussian table"):
        op(kp, vis, None, None, 64, 48, 4.0, 4.0, 2.0, 0)
    with pytest.raises(RuntimeError, match="udp takes no table"):
        op(kp, vis, None, table, 64, 48, 4.0, 4.0, 2.0, 1)
    with pytest.raises(RuntimeError, match="method code must be 0"):
        op(kp, vis, None, table, 64, 48, 4.0, 4.0, 2.0, 5)
    with pytest.raises(RuntimeError, match="sigma must be in"):
        op(kp, vis, None, table, 64, 48, 4.0, 4.0, -2.0, 0)
    with pytest.raises(RuntimeError, match="stride_x and stride_y must be finite and positive"):
        op(kp, vis, None, table, 64, 48, 0.0, 4.0, 2.0, 0)
    with pytest.raises(RuntimeError, match="heatmap_h and heatmap_w must be positive"):
        op(kp, vis, None, table, 0, 48, 4.0, 4.0, 2.0, 0)


# ----------------------------------------------------------------------------------------------------
# GPU (skipped without one; nothing touches the GPU at import)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("sigma", [2, 3])
def test_gpu_official_and_reference(backend, sigma):
    _skip_unavailable(backend, "cuda")
    kp, vis, _ = _batch(sigma, n=32, seed=20 + sigma)
    jw = np.random.default_rng(8).uniform(0.5, 1.5, 17).astype(np.float32)
    t, w = heatmap_targets(torch.from_numpy(kp).cuda(), torch.from_numpy(vis).cuda(), *CONFIGS[sigma], sigma=sigma,
                           joint_weights=torch.from_numpy(jw).cuda(), backend=backend)
    ot, ow = _official(kp, vis, sigma, jw)
    np.testing.assert_array_equal(t.cpu().numpy(), ot)
    np.testing.assert_array_equal(w.cpu().numpy(), ow)
    kp32 = torch.from_numpy(kp).float()
    for args in ((kp32, torch.from_numpy(vis), (37, 53), (9, 13), 1.5), (kp32, torch.from_numpy(vis), *CONFIGS[sigma], sigma)):
        for method in ("msra", "udp"):
            ours = heatmap_targets(args[0].cuda(), args[1].cuda(), *args[2:4], sigma=args[4], method=method, backend=backend)
            ref = heatmap_targets(*args[:4], sigma=args[4], method=method, backend="torch")
            _compare([o.cpu() for o in ours], ref, exact=method == "msra")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_no_host_sync(backend):
    _skip_unavailable(backend, "cuda")
    kp, vis = _random(32, 17, (256, 192), seed=21)
    kp, vis, jw = kp.cuda(), vis.cuda(), torch.ones(17, device="cuda")
    for method in ("msra", "udp"):  # warm up (compilation, the table's upload) before checking for syncs
        heatmap_targets(kp, vis, (256, 192), (64, 48), method=method, joint_weights=jw, backend=backend)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for method in ("msra", "udp"):
            heatmap_targets(kp, vis, (256, 192), (64, 48), method=method, joint_weights=jw, backend=backend)
    finally:
        torch.cuda.set_sync_debug_mode("default")
