"""decode_heatmaps / flip_merge: every backend against the golden file and the torch reference.

What is tested, per backend (torch, cpp, triton under the interpreter on CPU; cuda and triton on a GPU
when present):
* the golden file (official HRNet / mmpose outputs): argmax and quarter decode to the same pixel and the
  same +-0.25 steps (checked exactly in heatmap coordinates) and within 1e-4 px after the transform;
  DARK and UDP within 1e-3 px (fp32); ``maxvals`` exactly; the flip merge within 1e-6.
* fresh random heatmaps (noisy Gaussians, never zeros) against the torch reference, with and without
  flip, strided inputs, odd sizes; fp16/bf16 inputs decode exactly as the fp32 decode of the upcast
  tensor (the documented rule: kernels convert on load and compute in fp32), and fp16-rounded golden
  heatmaps give the golden argmax pixel wherever their fp16 maximum is unique.
* outputs are poisoned with NaN before each kernel runs (HRNET_FAST_POISON_OUTPUTS=1), so an unwritten
  element shows as a mismatch.
The contract every op keeps (opcheck, the poison hook itself, offsets beyond 2^31, the sm_90 compile of the
Triton kernels) is tested for all ops in test_op_contract.py.
"""
import math
import types

import numpy as np
import pytest
import torch

import hrnet_fast
from _op_inputs import compare_decoded, random_box, random_heatmaps
from _support import DATA, needs_ext

D = hrnet_fast.ops.OPS["decode_heatmaps"].module  # the op's module (hrnet_fast.ops.decode_heatmaps is the op)
GOLDEN = np.load(f"{DATA}/decode_golden.npz")
METHODS = ["argmax", "quarter", "dark", "udp"]


def _backend_params():
    out = ["torch"]
    out.append(pytest.param("cpp", marks=needs_ext))
    out.append("triton")
    return out


CPU_BACKENDS = _backend_params()
GPU_BACKENDS = [pytest.param(b, marks=pytest.mark.gpu) for b in ("cuda", "triton", "torch")]


pytestmark = pytest.mark.usefixtures("poison_outputs")  # conftest.py: NaN-filled outputs before every kernel


def _skip_unavailable(backend, device="cpu", dtype=torch.float32):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    reasons = D.SUPPORT.not_supported_reasons(backend, torch.device(device), dtype, (D.METHODS["quarter"], 8, 8))
    if reasons:
        pytest.skip("; ".join(reasons))


def _golden_tensors(device="cpu"):
    t = lambda k: torch.from_numpy(GOLDEN[k]).to(device)  # noqa: E731
    return t("heatmaps"), t("center"), t("scale")


def _to_heatmap_coords(img, center, scale, h, w, udp=False):
    """Invert the documented back-transforms (float64) to compare pixels and quarter steps exactly."""
    img, c, s = img.astype(np.float64), center.astype(np.float64)[:, None], scale.astype(np.float64)[:, None]
    if udp:
        x = (img[..., 0] - c[..., 0] + 100 * s[..., 0]) / (200 * s[..., 0]) * (w - 1)
        y = (img[..., 1] - c[..., 1] + 100 * s[..., 1]) / (200 * s[..., 1]) * (h - 1)
    else:
        f = 200 * s[..., 0] / w
        x = (img[..., 0] - c[..., 0]) / f + w / 2
        y = (img[..., 1] - c[..., 1]) / f + h / 2
    return np.stack([x, y], -1)


# ----------------------------------------------------------------------------------------------------
# Golden file
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_golden(backend, method):
    _skip_unavailable(backend)
    hm, center, scale = _golden_tensors()
    n, k, h, w = hm.shape
    coords, maxvals = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend=backend)
    assert coords.shape == (n, k, 2) and maxvals.shape == (n, k, 1)
    assert coords.dtype == torch.float32 and maxvals.dtype == torch.float32
    assert torch.isfinite(coords).all(), "every point is finite, including UDP's all-zero heatmap"
    np.testing.assert_array_equal(maxvals.numpy(), GOLDEN["maxvals"])
    gold = GOLDEN[f"{method}_coords"]
    valid = ~np.isnan(gold).any(-1)
    assert valid.sum() == n * k - (1 if method == "udp" else 0)  # only mmpose's NaN entry [0, 0] is skipped
    if method in ("argmax", "quarter"):
        # Same pixel and same quarter steps: exact in heatmap coordinates.
        ours_hm, _ = hrnet_fast.decode_heatmaps(hm, method=method, backend=backend)
        gold_hm = _to_heatmap_coords(gold, GOLDEN["center"], GOLDEN["scale"], h, w)
        steps = np.round(gold_hm * 4) / 4
        assert np.abs(gold_hm - steps).max() < 1e-3  # the golden points are on the quarter grid
        np.testing.assert_array_equal(ours_hm.numpy().astype(np.float64), steps)
        tol = 1e-4
    else:
        tol = 1e-3
    err = np.abs(coords.numpy() - gold)[valid]
    assert err.max() <= tol, f"{method}/{backend}: max error {err.max()} px at {np.argwhere(np.abs(coords.numpy() - gold) > tol)[:5]}"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_golden_udp_all_zero_entry_is_the_unrefined_point(backend):
    _skip_unavailable(backend)
    hm, center, scale = _golden_tensors()
    assert float(hm[0, 0].abs().max()) == 0.0
    coords, _ = hrnet_fast.decode_heatmaps(hm[:1], center[:1], scale[:1], method="udp", backend=backend)
    s = GOLDEN["scale"][0].astype(np.float64)
    expected = GOLDEN["center"][0] - 100 * s  # pixel (0, 0) through the UDP back-transform
    np.testing.assert_allclose(coords[0, 0].numpy(), expected, atol=1e-4)


def test_flip_pairs_constants():
    np.testing.assert_array_equal(np.array(hrnet_fast.COCO_FLIP_PAIRS), GOLDEN["flip_pairs"])
    assert hrnet_fast.MPII_FLIP_PAIRS == ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))


def test_flip_merge_golden():
    hm, _, _ = _golden_tensors()
    fl = torch.from_numpy(GOLDEN["heatmaps_flipped"])
    merged = hrnet_fast.flip_merge(hm, fl, hrnet_fast.COCO_FLIP_PAIRS)
    np.testing.assert_allclose(merged.numpy(), GOLDEN["flip_merged"], rtol=0, atol=1e-6)
    # Without the shift the flipped map is reversed only; an explicit numpy check of that rule:
    merged_ns = hrnet_fast.flip_merge(hm, fl, GOLDEN["flip_pairs"], shift=False)
    f = GOLDEN["heatmaps_flipped"][..., ::-1].copy()
    for a, b in GOLDEN["flip_pairs"]:
        f[:, [a, b]] = f[:, [b, a]]
    np.testing.assert_allclose(merged_ns.numpy(), (GOLDEN["heatmaps"] + f) * 0.5, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_flip_fused_golden(backend):
    _skip_unavailable(backend)
    hm, center, scale = _golden_tensors()
    fl = torch.from_numpy(GOLDEN["heatmaps_flipped"])
    coords, maxvals = hrnet_fast.decode_heatmaps(
        hm, center, scale, flipped=fl, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS, backend=backend
    )
    np.testing.assert_allclose(maxvals.numpy(), GOLDEN["flip_maxvals"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(coords.numpy(), GOLDEN["flip_quarter_coords"], rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------------------------------
# Fresh random inputs against the torch reference
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("flip", [None, "shift", "noshift"])
def test_random_vs_reference(backend, method, flip):
    _skip_unavailable(backend)
    n, k, h, w = (3, 17, 32, 24) if backend == "triton" else (6, 17, 64, 48)
    hm, _ = random_heatmaps(n, k, h, w, seed=1)
    kw = {}
    if flip is not None:
        kw = dict(flipped=random_heatmaps(n, k, h, w, seed=2)[0], flip_pairs=hrnet_fast.COCO_FLIP_PAIRS,
                  shift=flip == "shift")
    center, scale = random_box(n, 3)
    for box in ((None, None), (center, scale)):
        ours = hrnet_fast.decode_heatmaps(hm, *box, method=method, backend=backend, **kw)
        ref = hrnet_fast.decode_heatmaps(hm, *box, method=method, backend="torch", **kw)
        compare_decoded(ours, ref, method, exact_coords=box[0] is None)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 1, 9), (2, 1, 9, 1), (1, 4, 3, 3), (2, 16, 20, 17)])
def test_odd_shapes(backend, shape):
    _skip_unavailable(backend)
    hm, _ = random_heatmaps(*shape, seed=4)
    kw = {}
    if shape[1] == 16:
        kw = dict(flipped=random_heatmaps(*shape, seed=5)[0], flip_pairs=hrnet_fast.MPII_FLIP_PAIRS)
    for method in METHODS:
        ours = hrnet_fast.decode_heatmaps(hm, method=method, backend=backend, blur_kernel=3, **kw)
        ref = D.decode_heatmaps(hm, method=method, backend="torch", blur_kernel=3, **kw)
        compare_decoded(ours, ref, method, exact_coords=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_strided_inputs(backend):
    """Non-contiguous N/K/H strides are read in place; a non-unit W stride is copied first."""
    _skip_unavailable(backend)
    big, _ = random_heatmaps(4, 20, 40, 30, seed=6)
    hm = big[::2, 1:18, 3:35, 2:26]  # (2, 17, 32, 24), strided
    fl = random_heatmaps(2, 17, 32, 24, seed=7)[0].permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    assert not hm.is_contiguous() and fl.stride(3) != 1
    for method in METHODS:
        ours = hrnet_fast.decode_heatmaps(hm, method=method, backend=backend, flipped=fl, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)
        ref = hrnet_fast.decode_heatmaps(hm.contiguous(), method=method, backend="torch", flipped=fl.contiguous(),
                                         flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)
        compare_decoded(ours, ref, method, exact_coords=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_decode_as_their_fp32_upcast(backend, dtype):
    _skip_unavailable(backend, dtype=dtype)
    hm, _ = random_heatmaps(2, 17, 32, 24, seed=8, dtype=dtype)
    fl, _ = random_heatmaps(2, 17, 32, 24, seed=9, dtype=dtype)
    center, scale = random_box(2, 10)
    for method in METHODS:
        for kw in ({}, dict(flipped=fl, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)):
            ours = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend=backend, **kw)
            kw32 = {**kw, "flipped": fl.float()} if kw else {}
            ref = hrnet_fast.decode_heatmaps(hm.float(), center, scale, method=method, backend="torch", **kw32)
            compare_decoded(ours, ref, method, exact_coords=False)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fp16_golden_argmax_where_unique(backend):
    """fp16-rounded golden heatmaps give the golden pixel wherever their fp16 maximum is unique."""
    _skip_unavailable(backend, dtype=torch.float16)
    hm, center, scale = _golden_tensors()
    h16 = hm.half()
    flat = h16.float().flatten(2)
    unique = (flat == flat.amax(2, keepdim=True)).sum(2) == 1
    assert unique.float().mean() > 0.9
    coords, _ = hrnet_fast.decode_heatmaps(h16, method="argmax", backend=backend)
    gold = _to_heatmap_coords(GOLDEN["argmax_coords"], GOLDEN["center"], GOLDEN["scale"], 64, 48)
    np.testing.assert_array_equal(coords.numpy()[unique.numpy()], np.round(gold)[unique.numpy()])


# ----------------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["cpp", "torch", "triton"])
def test_dark_error_well_below_quarter(backend):
    """Noise-free Gaussians (sigma 2) with known sub-pixel centres away from the border."""
    _skip_unavailable(backend)
    g = torch.Generator().manual_seed(11)
    n, k, h, w = (2 if backend == "triton" else 16), 17, 64, 48
    true = torch.stack([torch.rand(n, k, generator=g) * (w - 16) + 8, torch.rand(n, k, generator=g) * (h - 16) + 8], -1)
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    hm = torch.exp(-((xs - true[..., :1, None]) ** 2 + (ys - true[..., 1:, None]) ** 2) / 8.0)
    err = {}
    for method in ("argmax", "quarter", "dark", "udp"):
        c, _ = hrnet_fast.decode_heatmaps(hm, method=method, backend=backend)
        err[method] = (c - true).norm(dim=-1).mean().item()
    print(backend, err)
    assert err["quarter"] < err["argmax"]
    assert err["dark"] < 0.05 * err["quarter"] and err["dark"] < 0.01, err  # measured: ~2e-4 vs ~0.19 px
    assert err["udp"] < 0.05 * err["quarter"] and err["udp"] < 0.01, err


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_ties_first_index_wins(backend):
    _skip_unavailable(backend)
    hm, _ = random_heatmaps(1, 3, 12, 10, seed=12)
    hm = hm.abs() * 0.1
    hm[0, 0, 4, 7] = hm[0, 0, 6, 2] = 2.0  # row-major: (y=4, x=7) comes first
    hm[0, 1, 5, 3] = hm[0, 1, 5, 8] = 2.0
    hm[0, 2] = 0.5  # constant: pixel (0, 0)
    c, m = hrnet_fast.decode_heatmaps(hm, method="argmax", backend=backend)
    assert c[0].tolist() == [[7.0, 4.0], [3.0, 5.0], [0.0, 0.0]]
    assert m[0, :, 0].tolist() == [2.0, 2.0, 0.5]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_nan_rule(backend, method):
    """A heatmap with a NaN: maxval NaN, pixel (0, 0) back-transformed; the others are unaffected."""
    _skip_unavailable(backend)
    hm, _ = random_heatmaps(2, 4, 16, 12, seed=13)
    hm[0, 1, 7, 5] = float("nan")
    hm[1, 3, 0, 0] = float("nan")
    fl, _ = random_heatmaps(2, 4, 16, 12, seed=14)
    fl[1, 0, 3, 3] = float("nan")  # lands in channel 0 (no pairs) of the merged map
    center, scale = random_box(2, 15)
    c, m = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend=backend, flipped=fl, flip_pairs=())
    nan_at = [(0, 1), (1, 3), (1, 0)]
    assert torch.isfinite(c).all()
    for n, k in nan_at:
        assert math.isnan(m[n, k, 0].item())
        zero, _ = hrnet_fast.decode_heatmaps(torch.zeros(1, 1, 16, 12), center[n:n + 1], scale[n:n + 1],
                                             method="argmax" if method != "udp" else "udp", backend="torch")
        torch.testing.assert_close(c[n, k], zero[0, 0], rtol=0, atol=1e-4)
    clean = torch.ones(2, 4, dtype=torch.bool)
    for n, k in nan_at:
        clean[n, k] = False
    ref = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend="torch", flipped=fl, flip_pairs=())
    torch.testing.assert_close(c[clean], ref[0][clean], rtol=0, atol=1e-3)
    torch.testing.assert_close(m, ref[1], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(0, 17, 64, 48), (3, 0, 8, 8)])
def test_empty(backend, shape):
    _skip_unavailable(backend)
    hm = torch.randn(shape)
    center = torch.randn(shape[0], 2)
    for method in METHODS:
        c, m = hrnet_fast.decode_heatmaps(hm, center, center.abs(), method=method, backend=backend)
        assert c.shape == (shape[0], shape[1], 2) and m.shape == (shape[0], shape[1], 1)


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------
def test_bad_input_errors():
    hm = torch.rand(2, 17, 8, 6)
    dec = hrnet_fast.decode_heatmaps
    with pytest.raises(ValueError, match=r"heatmaps must be a 4-D tensor"):
        dec(hm[0])
    with pytest.raises(TypeError, match=r"heatmaps must be a torch.Tensor"):
        dec(hm.numpy())
    with pytest.raises(TypeError, match=r"heatmaps must be float32, float16 or bfloat16"):
        dec(hm.double())
    with pytest.raises(ValueError, match=r"flip_pairs index 16 .* out of range for K=16"):
        dec(hm[:, :16], flipped=hm[:, :16], flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)
    with pytest.raises(ValueError, match=r"flip_pairs index -1 .* out of range"):
        dec(hm, flipped=hm, flip_pairs=[(-1, 2)])
    with pytest.raises(ValueError, match=r"joint 2 appears in more than one flip pair"):
        dec(hm, flipped=hm, flip_pairs=[(1, 2), (2, 3)])
    with pytest.raises(TypeError, match=r"every flip pair must be two ints"):
        dec(hm, flipped=hm, flip_pairs=[(1, 2, 3)])
    with pytest.raises(ValueError, match=r"flip_pairs is required with flipped"):
        dec(hm, flipped=hm)
    with pytest.raises(ValueError, match=r"flip_pairs was given without flipped"):
        dec(hm, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)
    with pytest.raises(ValueError, match=r"flipped must have the shape of heatmaps"):
        dec(hm, flipped=hm[:1], flip_pairs=())
    with pytest.raises(ValueError, match=r"center must have shape \(N, 2\) = \(2, 2\), got \(2, 3\)"):
        dec(hm, torch.zeros(2, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"scale must have shape \(N, 2\) = \(2, 2\), got \(2,\)"):
        dec(hm, torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match=r"center and scale must be given together"):
        dec(hm, torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"method must be one of \['argmax', 'quarter', 'dark', 'udp'\], got 'median'"):
        dec(hm, method="median")
    for bad in (4, 0, -3):
        with pytest.raises(ValueError, match=rf"blur_kernel must be a positive odd int, got {bad}"):
            dec(hm, method="dark", blur_kernel=bad)
    with pytest.raises(TypeError, match=r"blur_kernel must be an int"):
        dec(hm, method="dark", blur_kernel=3.0)
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of"):
        dec(hm, backend="numpy")
    with pytest.raises(ValueError, match=r"flip_pairs index 17"):
        hrnet_fast.flip_merge(hm, hm, [(0, 17)])


@needs_ext
def test_cpp_checks():
    """The C++ op checks its own arguments (TORCH_CHECK) when called directly."""
    op = torch.ops.hrnet_fast.decode_heatmaps
    hm = torch.rand(2, 3, 8, 6)
    with pytest.raises(RuntimeError, match="heatmaps must be a 4-D tensor"):
        op(hm[0], None, None, None, None, 1, True, None)
    with pytest.raises(RuntimeError, match=r"flip_perm\[1\] = 7 is out of range for K = 3"):
        op(hm, hm, torch.tensor([0, 7, 2]), None, None, 1, True, None)
    with pytest.raises(RuntimeError, match="center must have shape"):
        op(hm, None, None, torch.zeros(3, 2), torch.zeros(3, 2), 1, True, None)
    with pytest.raises(RuntimeError, match="method code must be 0..3"):
        op(hm, None, None, None, None, 9, True, None)
    with pytest.raises(RuntimeError, match="blur_weights must be a contiguous float32 1-D tensor of odd length"):
        op(hm, None, None, None, None, 2, True, torch.ones(4))


# ----------------------------------------------------------------------------------------------------
# opcheck and backend selection
# ----------------------------------------------------------------------------------------------------


def _triton_kernels():
    return hrnet_fast._backends.triton_kernels("decode_heatmaps")


@pytest.mark.parametrize(("shape", "blur_kernels"), [
    ((1, 2, 20, 130), (11,)),       # wider than MAX_STRIP: 3 column strips of 64, 5 row tiles of 4
    ((1, 2, 70, 20), (11,)),        # 9 row tiles of 8
    ((2, 3, 12, 10), (1, 3, 23)),   # no zero rows (R = 0); 4-tap chunks; R = 11 rows, two neighbourhood chunks
])
def test_triton_dark_udp_tiling(shape, blur_kernels):
    """The Triton DARK/UDP kernel's tiling edges (several strips, several row tiles, blur widths from 1
    to two neighbourhood chunks), with and without flip, against the torch reference."""
    _skip_unavailable("triton")
    hm, _ = random_heatmaps(*shape, seed=30)
    fl, _ = random_heatmaps(*shape, seed=31)
    kern = _triton_kernels()
    h, w = shape[2], shape[3]
    tiles = kern.dark_config(h, w, 11)
    if w == 130:  # the edges meant
        assert -(-w // tiles.BW) > 1
    if h == 70:
        assert -(-h // tiles.TR) > 1
    for ks in blur_kernels:
        for kw in ({}, dict(flipped=fl, flip_pairs=())):
            for method in ("dark", "udp"):
                ours = hrnet_fast.decode_heatmaps(hm, method=method, backend="triton", blur_kernel=ks, **kw)
                ref = hrnet_fast.decode_heatmaps(hm, method=method, backend="torch", blur_kernel=ks, **kw)
                compare_decoded(ours, ref, method, exact_coords=True)


def test_triton_dark_udp_batch_in_several_launches(monkeypatch):
    """A batch whose scratch passes SCRATCH_BUDGET is decoded in several launches (here one sample each)."""
    _skip_unavailable("triton")
    monkeypatch.setattr(_triton_kernels(), "SCRATCH_BUDGET", 1)
    hm, _ = random_heatmaps(3, 2, 16, 12, seed=32)
    fl, _ = random_heatmaps(3, 2, 16, 12, seed=33)
    center, scale = random_box(3, 34)
    for kw in ({}, dict(flipped=fl, flip_pairs=[(0, 1)])):
        for method in ("dark", "udp"):
            ours = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend="triton", **kw)
            ref = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend="torch", **kw)
            compare_decoded(ours, ref, method, exact_coords=False)


def test_triton_unsupported_reason():
    """The size limits the Triton kernels declare to the backend table (method codes 0..3)."""
    pytest.importorskip("triton")
    kern = _triton_kernels()
    for method in range(4):
        for h, w in ((64, 48), (96, 72), (64, 64), (1, 1), (20, 130), (512, 1024)):
            assert kern.unsupported_reason(h, w, method) is None
    # int32 pixel indices, every method
    for method in range(4):
        assert "H*W" in kern.unsupported_reason(2, kern.MAX_PIXELS // 2 + 1, method)
    assert kern.unsupported_reason(1, kern.MAX_PIXELS, 1) is None
    # dark/udp: int32 scratch indices, sized for the widest blur kernel the op accepts (2*max(H, W)+1)
    assert kern.unsupported_reason(25000, 25000, 0) is None
    for method in (2, 3):
        assert "scratch" in kern.unsupported_reason(25000, 25000, method)
        assert kern.unsupported_reason(20000, 20000, method) is None
    assert "unknown decode method" in kern.unsupported_reason(64, 48, 4)


def test_auto_backend_on_cpu():
    hm, _ = random_heatmaps(2, 3, 8, 6, seed=20)
    expected = "cpp" if hrnet_fast.backends()["cpp"]["available"] else "torch"
    assert D.resolve_backend(hm, "quarter").name == expected
    compare_decoded(hrnet_fast.decode_heatmaps(hm), hrnet_fast.decode_heatmaps(hm, backend="torch"), "quarter", True)


@needs_ext
def test_cuda_reasons_count_the_kernels_static_shared_memory(monkeypatch):
    """The cuda DARK/UDP size limit, with stand-in device properties (no GPU needed): a block holds H*W*4
    bytes of row-blurred heatmap plus the kernel's static shared memory, both within the opt-in limit.
    128x96 heatmaps (512x384 inputs) are exactly 48 KiB of the first: over a 48 KiB limit once the static
    bytes count (the check that ignored them let auto pick a launch that fails)."""
    static = hrnet_fast._backends.extension().dark_udp_static_shared_bytes()
    assert static == 128  # decode::DarkUdpShared: 8 warps x (float + int64 + int32); ptxas reports the same

    def limit(nbytes):
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda device: types.SimpleNamespace(shared_memory_per_block_optin=nbytes))

    dev = torch.device("cuda", 0)
    for code in (D.METHODS["dark"], D.METHODS["udp"]):
        limit(48 * 1024)
        why = D._cuda_reasons(dev, torch.float16, code, 128, 96)
        assert len(why) == 1 and "128x96 needs 49152 bytes plus the kernel's 128 static bytes" in why[0]
        assert D._cuda_reasons(dev, torch.float16, code, 127, 96) == []  # 48768 + 128 fits
        limit(128 * 96 * 4 + static)  # 128x96 fits exactly, 136x96 does not
        assert D._cuda_reasons(dev, torch.float32, code, 128, 96) == []
        assert "136x96" in D._cuda_reasons(dev, torch.float32, code, 136, 96)[0]
        limit(136 * 96 * 4 + static - 1)
        assert D._cuda_reasons(dev, torch.bfloat16, code, 136, 96) != []
        limit(136 * 96 * 4 + static)
        assert D._cuda_reasons(dev, torch.bfloat16, code, 136, 96) == []
        limit(227 * 1024)  # sm_90's opt-in limit: both sizes run
        assert D._cuda_reasons(dev, torch.float16, code, 128, 96) == []
        assert D._cuda_reasons(dev, torch.float16, code, 136, 96) == []
    # argmax/quarter keep nothing in shared memory: no limit, no device query
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: pytest.fail("queried the device"))
    for code in (D.METHODS["argmax"], D.METHODS["quarter"]):
        assert D._cuda_reasons(dev, torch.float32, code, 4096, 4096) == []


# ----------------------------------------------------------------------------------------------------
# GPU (skipped without one; nothing touches the GPU at import)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_vs_reference(backend, dtype):
    _skip_unavailable(backend, "cuda")
    hm, _ = random_heatmaps(8, 17, 96, 72, seed=21, dtype=dtype, device="cuda")
    fl, _ = random_heatmaps(8, 17, 96, 72, seed=22, dtype=dtype, device="cuda")
    center, scale = random_box(8, 23, device="cuda")
    for method in METHODS:
        for kw in ({}, dict(flipped=fl, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)):
            ours = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend=backend, **kw)
            kw32 = {**kw, "flipped": fl.float()} if kw else {}
            ref = hrnet_fast.decode_heatmaps(hm.float(), center, scale, method=method, backend="torch", **kw32)
            compare_decoded(ours, ref, method, exact_coords=False)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("method", METHODS)
def test_gpu_golden(backend, method):
    _skip_unavailable(backend, "cuda")
    hm, center, scale = _golden_tensors("cuda")
    coords, maxvals = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend=backend)
    gold = GOLDEN[f"{method}_coords"]
    valid = ~np.isnan(gold).any(-1)
    tol = 1e-4 if method in ("argmax", "quarter") else 1e-3
    assert np.abs(coords.cpu().numpy() - gold)[valid].max() <= tol
    np.testing.assert_array_equal(maxvals.cpu().numpy(), GOLDEN["maxvals"])
    fl = torch.from_numpy(GOLDEN["heatmaps_flipped"]).cuda()
    c, m = hrnet_fast.decode_heatmaps(hm, center, scale, flipped=fl, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS, backend=backend)
    np.testing.assert_allclose(c.cpu().numpy(), GOLDEN["flip_quarter_coords"], rtol=0, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_no_host_sync(backend):  # its opcheck: test_op_contract.py
    _skip_unavailable(backend, "cuda")
    hm, _ = random_heatmaps(4, 17, 64, 48, seed=24, device="cuda")
    center, scale = random_box(4, 25, device="cuda")
    for method in METHODS:  # warm up (compilation, caches) before checking for syncs
        hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend=backend,
                                   flipped=hm, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for method in METHODS:
            hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend=backend,
                                       flipped=hm, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["dark", "udp"])
@pytest.mark.parametrize(("h", "w"), [(128, 96), (136, 96)])
def test_gpu_cuda_dark_udp_at_the_shared_memory_boundary(method, h, w):
    """128x96 heatmaps fill exactly the default 48 KiB of dynamic shared memory, so with the kernel's
    static bytes the launch must opt in to more (it failed before); 136x96 is past the boundary. Where the
    support table accepts the size, the kernel must run it and match the reference."""
    _skip_unavailable("cuda", "cuda")
    code = D.METHODS[method]
    reasons = D.SUPPORT.not_supported_reasons("cuda", torch.device("cuda"), torch.float16, (code, h, w))
    if reasons:  # a GPU whose opt-in limit is below the need: the table must say so, not the launch
        optin = getattr(torch.cuda.get_device_properties(0), "shared_memory_per_block_optin", 48 * 1024)
        assert h * w * 4 + hrnet_fast._backends.extension().dark_udp_static_shared_bytes() > optin
        pytest.skip("; ".join(reasons))
    hm, _ = random_heatmaps(3, 17, h, w, seed=27, dtype=torch.float16, device="cuda")
    fl, _ = random_heatmaps(3, 17, h, w, seed=28, dtype=torch.float16, device="cuda")
    center, scale = random_box(3, 29, device="cuda")
    assert D.resolve_backend(hm, method).name == "cuda"
    for kw in ({}, dict(flipped=fl, flip_pairs=hrnet_fast.COCO_FLIP_PAIRS)):
        ours = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, backend="cuda", **kw)
        torch.cuda.synchronize()  # a failed launch shows here, not in a later test
        kw32 = {**kw, "flipped": fl.float()} if kw else {}
        ref = hrnet_fast.decode_heatmaps(hm.float(), center, scale, method=method, backend="torch", **kw32)
        compare_decoded(ours, ref, method, exact_coords=False)


