"""Every backend of each op agrees where a user or an adversarial tester looked for disagreement: double
backward, NaN outputs under the ReLU mask, gradients through decoding, degenerate quarter offsets, zero
channels, and sizes a backend cannot run (which ``auto`` must then not pick)."""
from __future__ import annotations

import math

import pytest
import torch

import hrnet_fast
from hrnet_fast.ops import OPS, fused_exchange

D = OPS["decode_heatmaps"].module  # the op's module (hrnet_fast.ops.decode_heatmaps is the op)

from _support import needs_ext, needs_interp


def cpu_exchange_backends(dtype=torch.float64):
    out = ["torch"]
    out.append(pytest.param("cpp", marks=needs_ext))
    if dtype != torch.float64:
        out.append(pytest.param("triton", marks=needs_interp))
    return out


def cpu_decode_backends():
    return ["torch",
            pytest.param("cpp", marks=needs_ext),
            pytest.param("triton", marks=needs_interp)]


# ------------------------------------------------------------------------------------ fused_exchange


@pytest.mark.parametrize("backend", cpu_exchange_backends(torch.float32))
def test_double_backward_matches_torch(backend):
    # The example: d/db of sum(d/dl sum(out^2)) is 2 per base element (64 here) in torch; the cpp
    # backward op once returned 0 after a warning. (float64 where the backend has it; the values are exact.)
    dtype = torch.float32 if backend == "triton" else torch.float64
    g = torch.Generator().manual_seed(0)
    b = torch.randn(1, 2, 4, 4, dtype=torch.float64, generator=g).to(dtype).requires_grad_(True)
    low = torch.randn(1, 2, 2, 2, dtype=torch.float64, generator=g).to(dtype).requires_grad_(True)
    (gl,) = torch.autograd.grad((fused_exchange(b, [low], relu=False, backend=backend) ** 2).sum(), low, create_graph=True)
    (gb,) = torch.autograd.grad(gl.sum(), b)
    assert torch.equal(gb, torch.full_like(b, 2.0)) and gb.sum().item() == 64.0


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("backend", [pytest.param("cpp", marks=needs_ext)])
def test_double_backward_gradgradcheck(backend, relu):
    g = torch.Generator().manual_seed(1)
    mk = lambda *s: torch.randn(*s, dtype=torch.float64, generator=g).requires_grad_(True)  # noqa: E731
    base, low, w, b = mk(1, 3, 4, 4), mk(1, 5, 2, 2), mk(3, 5), mk(3)
    fn = lambda base, low, w, b: fused_exchange(base, [low], [w], [b], relu=relu, backend=backend)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (base, low, w, b))


@pytest.mark.parametrize("backend", cpu_exchange_backends(torch.float32))
def test_nan_output_passes_gradient_like_torch_relu(backend):
    g = torch.Generator().manual_seed(2)
    base = torch.randn(1, 4, 4, 4, generator=g)
    base[0, 1, 2, 3] = math.nan
    base[0, 2, 0, 0] = -5.0  # a masked element beside it
    low = torch.randn(1, 4, 2, 2, generator=g)
    grads = []
    for be in ("torch", backend):
        b = base.clone().requires_grad_(True)
        out = fused_exchange(b, [low], relu=True, backend=be)
        assert math.isnan(out[0, 1, 2, 3].item())
        up = torch.ones_like(out)
        (gb,) = torch.autograd.grad(out, b, up)
        grads.append(gb)
    ref, got = grads
    assert ref[0, 1, 2, 3].item() == 1.0 and ref[0, 2, 0, 0].item() == 0.0  # torch's rule
    assert torch.equal(got, ref)


@pytest.mark.parametrize("backend", cpu_exchange_backends(torch.float32))
@pytest.mark.parametrize("shape", ["zero_in_channels", "zero_out_channels", "zero_batch"])
def test_zero_channels_same_in_every_backend(backend, shape):
    g = torch.Generator().manual_seed(3)
    n, c, cj = {"zero_in_channels": (2, 4, 0), "zero_out_channels": (2, 0, 3), "zero_batch": (0, 4, 3)}[shape]
    base = torch.randn(n, c, 4, 4, generator=g)
    low = torch.randn(n, cj, 2, 2, generator=g)
    w = torch.randn(c, cj, generator=g)
    b = torch.randn(c, generator=g)
    out = fused_exchange(base, [low], [w], [b], relu=True, backend=backend)
    ref = torch.relu(base + b.view(1, -1, 1, 1))  # no input channels: the 1x1 conv adds nothing but its bias
    assert out.shape == (n, c, 4, 4) and torch.allclose(out, ref, atol=1e-6)


# ------------------------------------------------------------------------------------ decode_heatmaps


@pytest.mark.parametrize("backend", cpu_decode_backends())
@pytest.mark.parametrize("method", ["argmax", "quarter", "dark", "udp"])
def test_decode_is_not_differentiable_in_any_backend(backend, method):
    g = torch.Generator().manual_seed(4)
    hm = torch.rand(2, 3, 16, 12, generator=g, requires_grad=True)
    center = (torch.rand(2, 2, generator=g) * 100).requires_grad_(True)
    scale = (torch.rand(2, 2, generator=g) + 0.5).requires_grad_(True)
    coords, maxvals = hrnet_fast.decode_heatmaps(hm, center, scale, method=method, blur_kernel=3, backend=backend)
    assert not coords.requires_grad and not maxvals.requires_grad
    assert coords.grad_fn is None and maxvals.grad_fn is None


@pytest.mark.parametrize("backend", cpu_decode_backends())
def test_quarter_with_minus_inf_neighbours_is_pinned(backend):
    # Documented deviation (README, "Differences from the official code"): -inf on both opposite
    # neighbours of the peak makes right - left NaN; numpy's sign(NaN) is NaN, so the official code returns
    # a NaN coordinate; torch.sign(NaN) is 0 and every backend here keeps the unrefined pixel on that axis.
    hm = torch.zeros(1, 1, 8, 8)
    hm[0, 0, 4, 4] = 1.0
    hm[0, 0, 4, 3] = -math.inf
    hm[0, 0, 4, 5] = -math.inf  # x neighbours: -inf - -inf = NaN
    hm[0, 0, 5, 4] = 0.5  # y: below > above -> +0.25
    coords, maxvals = hrnet_fast.decode_heatmaps(hm, method="quarter", backend=backend)
    assert coords[0, 0].tolist() == [4.0, 4.25] and maxvals.item() == 1.0


def test_blur_kernel_is_bounded_by_the_heatmap_size():
    hm = torch.rand(1, 2, 16, 12, generator=torch.Generator().manual_seed(5))
    hrnet_fast.decode_heatmaps(hm, method="dark", blur_kernel=33)  # 2 * 16 + 1: allowed
    with pytest.raises(ValueError, match=r"blur_kernel must be <= 2 \* max\(H, W\) \+ 1 = 33"):
        hrnet_fast.decode_heatmaps(hm, method="dark", blur_kernel=35)
    with pytest.raises(ValueError, match="blur_kernel"):
        hrnet_fast.decode_heatmaps(hm, method="udp", blur_kernel=10**7)


def test_flip_merge_names_itself_in_errors():
    hm = torch.rand(1, 17, 8, 8)
    with pytest.raises(ValueError, match=r"^flip_merge: flipped must have the shape"):
        hrnet_fast.flip_merge(hm, hm[:, :16], hrnet_fast.COCO_FLIP_PAIRS)
    with pytest.raises(ValueError, match=r"^flip_merge: flip_pairs index 17"):
        hrnet_fast.flip_merge(hm, hm, [(0, 17)])


class _FakeProps:
    shared_memory_per_block_optin = 227 * 1024  # an H100's opt-in limit


def test_cuda_decode_support_table_has_the_shared_memory_limit(monkeypatch):
    # auto must only pick a backend that can run the inputs: the CUDA DARK/UDP kernel keeps H*W floats in
    # shared memory, so heatmaps beyond the GPU's per-block limit are declared unsupported in the table.
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: _FakeProps())
    reasons = D.SUPPORT.backends["cuda"].reasons
    dev = torch.device("cuda", 0)
    assert reasons(dev, torch.float32, D.METHODS["dark"], 64, 48) == []
    assert reasons(dev, torch.float32, D.METHODS["quarter"], 1024, 1024) == []  # no shared memory
    (why,) = reasons(dev, torch.float32, D.METHODS["udp"], 256, 256)
    assert "shared memory" in why and "262144 bytes" in why
