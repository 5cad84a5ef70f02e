"""The contract every op of ``hrnet_fast.ops.OPS`` keeps, tested in one place (torchvision's ``test_ops.py``
``RoIOpTester`` style): one :class:`OpContract` subclass per op gives the op's data, and the tests below,
parametrized over the ops, hold each to the same rules:

- ``opcheck``: each compiled op (the C++ op and the Triton custom op; their backward ops where they have one)
  passes ``torch.library.opcheck`` (schema, fake kernel, autograd registration) on the op's samples;
- NaN-poisoned outputs: every launcher fills its outputs (and scratch buffers) with NaN under the poison hook
  (``conftest.poison_outputs``), so with a Triton kernel's launch skipped every output of every registry
  sample stays NaN: an element a kernel fails to write cannot pass a comparison;
- offsets beyond 2^31 elements (where the op has such a case): 64-bit indexing in every backend;
- the Triton kernels compile for sm_90 through ptxas (the interpreter does not type-check like the compiler).

Each op's own behaviour (golden data, references, errors) stays in its test file. A new OPS entry without a
contract here fails ``test_every_op_has_a_contract``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import pytest
import torch

import hrnet_fast
from hrnet_fast import _backends
from hrnet_fast.ops import OPS

from _golden import assert_close_rel
from _op_inputs import compare_decoded, make_inputs, random_box, random_boxes, random_heatmaps, random_images, with_fp32_params
from _support import needs_ext, needs_interp

pytestmark = pytest.mark.usefixtures("poison_outputs")

METHODS = ("argmax", "quarter", "dark", "udp")
Call = Tuple[object, tuple]  # (an OpOverload, its arguments)


class OpContract:
    """What an op gives the shared tests. Backends: ``cpp``/``triton`` on the CPU (triton under the
    interpreter), ``cuda``/``triton`` on a GPU."""

    op = ""
    #: the op's extra resolver key for a small float32 call (what the support table's reasons read)
    key: tuple = ()
    #: opcheck variants: ids per (device type, backend)
    opcheck_variants: Dict[Tuple[str, str], Tuple[str, ...]] = {}
    #: poison cases: id -> the Triton kernels (of ``kernels/<op>.py``) whose launches are skipped (() = all)
    poison_kernels: Dict[str, Tuple[str, ...]] = {"all": ()}
    #: offsets beyond 2^31: ids per (device type, backend)
    offsets_variants: Dict[Tuple[str, str], Tuple[str, ...]] = {}
    #: a script compiling the Triton kernels for sm_90 (run by _triton_compile.compile_script_or_skip)
    compile_script: Optional[str] = None
    compile_timeout = 300

    def opcheck_calls(self, backend: str, device: str, variant: str) -> List[Call]:
        raise NotImplementedError

    def check_offsets(self, backend: str, device: str, variant: str) -> None:
        raise NotImplementedError

    def check_compiled(self, stdout: str) -> None:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------------
# fused_exchange


def _exchange_opcheck_args(device, dtype, channels_last, fp32_weights=False):
    base, lows, ws, bs = make_inputs(2, 16, 8, 8, [(24, 2, True), (None, 4, False)], dtype=dtype, device=device,
                                     channels_last=channels_last)
    if fp32_weights:
        base, lows, ws, bs = with_fp32_params((base, lows, ws, bs))
    empty = base.new_empty((0,))
    ws = [empty if t is None else t for t in ws]
    bs = [empty if t is None else t for t in bs]
    for t in [base, *lows, ws[0], bs[0]]:
        t.requires_grad_(True)
    return base, lows, ws, bs


_GPU_EXCHANGE_VARIANTS = tuple(f"{dt}-{layout}" for dt in ("float32", "float16+fp32_params", "bfloat16+fp32_params")
                               for layout in ("nchw", "nhwc"))


class ExchangeContract(OpContract):
    op = "fused_exchange"
    opcheck_variants = {("cpu", "cpp"): ("nchw", "nhwc"), ("cpu", "triton"): ("float32", "float16+fp32_params"),
                        ("cuda", "cuda"): _GPU_EXCHANGE_VARIANTS, ("cuda", "triton"): _GPU_EXCHANGE_VARIANTS}
    # either forward kernel skipped alone leaves every element NaN (the fp32 buffer of the low-resolution
    # 1x1 convolution is poisoned too)
    poison_kernels = {"_upsample_sum_kernel": ("_upsample_sum_kernel",), "_conv1x1_kernel": ("_conv1x1_kernel",)}
    offsets_variants = {("cuda", "cuda"): ("far_corner",), ("cuda", "triton"): ("far_corner",)}

    def opcheck_calls(self, backend, device, variant):
        name = "fused_exchange" if backend in ("cpp", "cuda") else "fused_exchange_triton"
        fwd, bwd = getattr(torch.ops.hrnet_fast, name), getattr(torch.ops.hrnet_fast, name + "_backward")
        if device == "cpu":
            channels_last = variant == "nhwc"
            fp32_weights = variant == "float16+fp32_params"
            dtype = torch.float16 if fp32_weights else torch.float32
        else:
            dt, layout = variant.split("-")
            channels_last, fp32_weights, dtype = layout == "nhwc", "+" in dt, getattr(torch, dt.split("+")[0])
        base, lows, ws, bs = _exchange_opcheck_args(device, dtype, channels_last, fp32_weights)
        calls = [(fwd.default, (base, lows, ws, bs, True))]
        if device == "cpu":  # the backward op too (the GPU runs cover the forward in every dtype and layout)
            out = fwd(base, lows, ws, bs, True).detach()
            calls.append((bwd.default, (torch.randn_like(out), out, [t.detach() for t in lows], True)))
        return calls

    def check_offsets(self, backend, device, variant):
        # N*C*H*W > 2**31: compare the far corner (where 32-bit offsets would wrap) with the reference on a
        # crop; nearest upsampling by s commutes with cropping at multiples of s.
        n, c, h, w = 1, 32, 8192, 8256
        assert n * c * h * w > 2**31
        base = torch.randn(n, c, h, w, device=device, dtype=torch.float16)
        low = torch.randn(n, 16, h // 2, w // 2, device=device, dtype=torch.float16)
        wt = torch.randn(c, 16, device=device, dtype=torch.float16) / 4
        out = hrnet_fast.ops.fused_exchange(base, [low], [wt], None, backend=backend)
        crop = hrnet_fast.ops.fused_exchange_reference(base[..., -64:, -64:].float(), [low[..., -32:, -32:].float()],
                                                       [wt.float()])
        assert_close_rel(out[..., -64:, -64:], crop, 1e-2, f"{backend} far corner")
        del out
        torch.cuda.empty_cache()

    compile_script = r'''
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import hrnet_fast
kern = hrnet_fast._backends.triton_kernels("fused_exchange")

def signature(fn, dtype, consts, ptrs):
    # pointers: dtype unless named in ptrs; batch strides and flat counts may pass 2**31 (i64)
    wide = ("total_p", "total_q", "b_sn", "o_sn", "l_sn", "z_sn", "z0_sn", "z1_sn", "z2_sn", "g_sn", "d_sn", "p_sn")
    return {n: "constexpr" if n in consts else ptrs.get(n, dtype) if n.endswith("_ptr") else "i64" if n in wide
            else "i32" for n in fn.arg_names}

conv = dict(HAS_B=True, DENSE=True, BLOCK_Q=64, BLOCK_C=64, BLOCK_K=32, PRECISION="tf32")
up = dict(NUM_LOWS=3, LOG2S0=1, HAS_B0=False, LOG2S1=2, HAS_B1=False, LOG2S2=3, HAS_B2=True, RELU=True,
          BLOCK_X=16, BLOCK_C=128)
z = {"z_ptr": "*fp32"}
cases = [
    (kern._conv1x1_kernel, "*fp16", conv, z),
    (kern._conv1x1_kernel, "*fp16", dict(conv, DENSE=False), dict(z, w_ptr="*fp32", b_ptr="*fp32")),
    (kern._conv1x1_kernel, "*bf16", conv, z),
    (kern._conv1x1_kernel, "*bf16", dict(conv, HAS_B=False), dict(z, w_ptr="*fp32")),
    (kern._conv1x1_kernel, "*fp32", dict(conv, DENSE=False, BLOCK_Q=16, BLOCK_C=32, BLOCK_K=16, PRECISION="ieee"), z),
    # two fp32 1x1-conv buffers and a low without a weight (16-bit, with its bias)
    (kern._upsample_sum_kernel, "*fp16", up, {"z0_ptr": "*fp32", "z1_ptr": "*fp32"}),
    (kern._upsample_sum_kernel, "*bf16", dict(up, NUM_LOWS=1, BLOCK_X=64, BLOCK_C=64), {"z0_ptr": "*fp32"}),
    (kern._upsample_sum_kernel, "*fp32", dict(up, RELU=False, BLOCK_X=8, BLOCK_C=16), {}),
    # chained passes of a 16-bit output: 16-bit base into the fp32 partial sum, and back
    (kern._upsample_sum_kernel, "*fp16", dict(up, RELU=False), {"out_ptr": "*fp32", "z0_ptr": "*fp32", "z1_ptr": "*fp32"}),
    (kern._upsample_sum_kernel, "*fp16", dict(up, NUM_LOWS=1), {"base_ptr": "*fp32", "z0_ptr": "*fp32"}),
    (kern._relu_mask_kernel, "*fp16", dict(RELU=True, BLOCK_P=64, BLOCK_C=64), {}),
    (kern._block_sum_kernel, "*bf16", dict(S=4, BLOCK_Q=64, BLOCK_C=64), {}),
]
for fn, dtype, consts, ptrs in cases:
    compiled = triton.compile(ASTSource(fn=fn, signature=signature(fn, dtype, consts, ptrs), constexprs=consts),
                              target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert compiled.asm.get("cubin"), (fn.__name__, consts)
    print("compiled", fn.__name__, dtype)
'''

    def check_compiled(self, stdout):
        # the forward and backward kernels in fp16/bf16/fp32, fp32 weights beside 16-bit activations too
        assert stdout.count("compiled") == 12, stdout


# ----------------------------------------------------------------------------------------------------
# decode_heatmaps


class DecodeContract(OpContract):
    op = "decode_heatmaps"
    key = (1, 8, 8)  # quarter, 8x8
    opcheck_variants = {("cpu", "cpp"): ("samples",), ("cpu", "triton"): ("samples",),
                        ("cuda", "cuda"): ("samples",), ("cuda", "triton"): ("samples",)}
    # a strided view whose second heatmap lies past 2^31 elements (in dim 0 or 1), and a contiguous tensor
    # of more than 2^31 elements (the Triton interpreter would take minutes on it on the CPU)
    offsets_variants = {("cpu", "torch"): ("strided_dim0", "strided_dim1"),
                        ("cpu", "cpp"): ("strided_dim0", "strided_dim1", "contiguous"),
                        ("cpu", "triton"): ("strided_dim0", "strided_dim1"),
                        ("cuda", "cuda"): ("strided_dim0", "strided_dim1", "contiguous"),
                        ("cuda", "triton"): ("strided_dim0", "strided_dim1", "contiguous")}
    compile_timeout = 900

    def opcheck_calls(self, backend, device, variant):
        op = torch.ops.hrnet_fast.decode_heatmaps if backend in ("cpp", "cuda") else torch.ops.hrnet_fast.decode_heatmaps_triton
        hm, _ = random_heatmaps(2, 4, 16, 12, seed=17, device=device)
        fl, _ = random_heatmaps(2, 4, 16, 12, seed=18, device=device)
        center, scale = random_box(2, 19, device=device)
        perm = torch.tensor([0, 2, 1, 3], device=device)
        w = torch.tensor(OPS[self.op].module.gaussian_kernel1d(5), dtype=torch.float32, device=device)
        samples = [
            (hm, None, None, None, None, 1, True, None),
            (hm, fl, perm, center, scale, 0, True, None),
            (hm, fl, perm, center, scale, 2, False, w),
            (hm.half(), None, None, center, scale, 3, True, w),
        ]
        if backend == "triton" and device == "cpu":
            samples = samples[:3]  # the interpreter: UDP in fp16 takes long and adds no registration check
        return [(op.default, args) for args in samples]

    def check_offsets(self, backend, device, variant):
        if variant == "contiguous":
            return self._big_contiguous(backend, device)
        # A strided view into a (lazily mapped on the CPU, mostly untouched) fp16 storage of 2^31 + 256
        # elements: only the two heatmaps read are ever touched (4 GiB virtual, KiB real on the CPU).
        h, w = 16, 12
        jump = 2**31 + 64
        base = torch.empty(jump + h * w, dtype=torch.float16, device=device)
        shape = (2, 1, h, w) if variant == "strided_dim0" else (1, 2, h, w)
        strides = (jump, h * w, w, 1) if variant == "strided_dim0" else (2 * jump, jump, w, 1)
        x = base.as_strided(shape, strides)
        src, _ = random_heatmaps(*shape, seed=16, dtype=torch.float16, device=device)
        x.copy_(src)
        dec = hrnet_fast.decode_heatmaps
        for method in METHODS:
            compare_decoded(dec(x, method=method, backend=backend), dec(src, method=method, backend="torch"), method,
                            exact_coords=True)
        for method in ("quarter", "dark"):  # the same far view as the flipped input: the flip path's offsets too
            ours = dec(x, method=method, backend=backend, flipped=x, flip_pairs=())
            ref = dec(src, method=method, backend="torch", flipped=src, flip_pairs=())
            compare_decoded(ours, ref, method, exact_coords=True)

    @staticmethod
    def _big_contiguous(backend, device):
        """(41121, 17, 64, 48) fp16: N*K*H*W = 2^31 + 5376 elements (4.3 GB, of which only the first and last
        samples are written; on the CPU the rest stays lazily mapped zero pages, so reading it costs page
        faults, not memory). The first and last samples must decode as on their own."""
        n, k, h, w = 41121, 17, 64, 48
        assert n * k * h * w > 2**31
        x = torch.empty((n, k, h, w), dtype=torch.float16, device=device)
        src, _ = random_heatmaps(2, k, h, w, seed=27, dtype=torch.float16, device=device)
        x[0] = src[0]
        x[-1] = src[1]
        for method in ("quarter", "dark"):
            c, m = hrnet_fast.decode_heatmaps(x, method=method, backend=backend)
            ref = hrnet_fast.decode_heatmaps(src, method=method, backend="torch")
            compare_decoded((c[[0, -1]], m[[0, -1]]), ref, method, exact_coords=True)

    compile_script = r"""
from _triton_compile import Case, compile_all
import hrnet_fast
kern = hrnet_fast._backends.triton_kernels("decode_heatmaps")
NAMES = {0: "argmax", 1: "quarter", 2: "dark", 3: "udp"}
cases = []
for h, w, k in ((64, 48, 17), (96, 72, 17), (64, 64, 16)):  # COCO 256x192, COCO 384x288, MPII 256x256
    for method in (0, 1, 2, 3):
        for flip in (False, True):
            for dt in ("fp32", "fp16", "bf16"):
                # Flags that change a few instructions, not the code size, take turns instead of
                # multiplying the grid: heatmap coordinates (no box) at the MPII size; shift=False for
                # bf16 with flip; a strided (not flat) input for bf16 without flip.
                box = (h, w) != (64, 64)
                shift = not (flip and dt == "bf16")
                flat = not flip and dt != "bf16"
                hs_h = w if flat or flip else w + 8
                for ks in ((11, 17) if (method, flip, dt, h, w) == (2, True, "fp32", 64, 48) else (11,)):
                    name, consts, warps = kern.launch_config(method, h, w, ks, flip, shift, box, flat)
                    strides = dict(K=k, hs_n=k * h * hs_h, hs_k=h * hs_h, hs_h=hs_h)
                    strides.update(fs_n=strides["hs_n"], fs_k=strides["hs_k"], fs_h=strides["hs_h"])
                    sig = dict({n: "i32" for n in strides}, h_ptr="*" + dt, f_ptr="*" + dt,
                               perm_ptr="*i64" if flip else "*" + dt, center_ptr="*fp32", scale_ptr="*fp32",
                               w_ptr="*fp32", scratch_ptr="*fp32", coords_ptr="*fp32", maxv_ptr="*fp32")
                    aligned = tuple(n for n in sig if n.endswith("_ptr")) + tuple(n for n, v in strides.items() if v % 16 == 0)
                    label = (f"{NAMES[method]:7s} {dt} {h}x{w} flip={flip:d} box={box:d} shift={shift:d} flat={flat:d} "
                             f"ks={ks if method >= 2 else '-'} warps={warps} "
                             + " ".join(f"{c}={consts[c]}" for c in ("BLOCK", "TR", "BW") if c in consts))
                    cases.append(Case(label, "decode_heatmaps", name, sig, consts, aligned, warps))
print("cases", len(cases), flush=True)
compile_all(cases)
"""

    def check_compiled(self, stdout):
        """Every specialisation the launcher makes for inputs that ``auto`` can send to the Triton backend:
        each method, with and without flip, fp32/fp16/bf16 heatmaps, the 64x48, 96x72 and 64x64 heatmap sizes
        with their tile sizes, plus a 17-tap blur (two neighbourhood chunks). Each compile is timed (printed:
        ``pytest -s``) and must take at most 30 s (the H200 once spent more than 45 s in ptxas on one); one
        compile per core at a time (58 s for all 73 on a 2-core machine)."""
        from _triton_compile import parse_compiled

        print(stdout)
        times = parse_compiled(stdout)
        expected = int(stdout.split("cases ", 1)[1].split()[0])
        assert expected == 3 * 4 * 2 * 3 + 1 and len(times) == expected, stdout
        slow = {label: t for label, t in times.items() if t > 30.0}
        assert not slow, f"specialisations that took more than 30 s to compile: {slow}"


# ----------------------------------------------------------------------------------------------------
# crop_boxes


class CropContract(OpContract):
    op = "crop_boxes"
    opcheck_variants = {("cpu", "cpp"): ("samples",), ("cpu", "triton"): ("samples",),
                        ("cuda", "cuda"): ("samples",), ("cuda", "triton"): ("samples",)}
    offsets_variants = {("cuda", "cuda"): ("second_image",), ("cuda", "triton"): ("second_image",)}

    def opcheck_calls(self, backend, device, variant):
        C = OPS[self.op].module
        op = torch.ops.hrnet_fast.crop_boxes if backend in ("cpp", "cuda") else torch.ops.hrnet_fast.crop_boxes_triton
        imgs = [im.to(device) for im in random_images(11)]
        flat, meta = C._pack_images(imgs)
        shapes = [tuple(im.shape[:2]) for im in imgs]
        idx, center, scale, rot = random_boxes(12, 5, shapes, (8, 6))
        inv = C._inverse_affine(center.double().to(device), scale.double().to(device), rot.to(device), 8, 6, False)
        idx = idx.to(device)
        m, s = list(C.IMAGENET_MEAN), list(C.IMAGENET_STD)
        return [(op.default, args) for args in (
            (flat, meta, idx, inv, 8, 6, m, s, True, torch.float32, False),
            (flat, meta, idx, inv, 8, 6, m, s, False, torch.float16, True),
            (flat, meta, idx[:0], inv[:0], 8, 6, m, s, True, torch.float32, False),
        )]

    def check_offsets(self, backend, device, variant):
        """Two images whose buffer passes 2^31 bytes: the second image's pixels sit past 32-bit offsets."""
        big = torch.zeros(2**31 // (3 * 30000) + 1, 30000, 3, dtype=torch.uint8, device=device)
        small = random_images(18, shapes=((40, 50),))[0]
        c, s = torch.tensor([[25.0, 20.0]], device=device), torch.tensor([[0.2, 0.27]], device=device)
        crop = hrnet_fast.ops.crop_boxes
        ours = crop([big, small.to(device)], torch.tensor([1], device=device), c, s, (32, 24), backend=backend)
        ref = crop([small], torch.tensor([0]), c.cpu(), s.cpu(), (32, 24), backend="torch")
        torch.testing.assert_close(ours.cpu(), ref, rtol=0, atol=1e-5)

    compile_script = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import hrnet_fast
kern = hrnet_fast._backends.triton_kernels("crop_boxes")
fn = kern._crop_kernel
types = {"img_ptr": "*u8", "meta_ptr": "*i64", "index_ptr": "*i64", "aff_ptr": "*fp64",
         "m0": "i32", "N": "i32", "H": "i32", "W": "i32", "os_m": "i64", "os_c": "i32", "os_h": "i32", "os_w": "i32",
         "k0": "fp32", "k1": "fp32", "k2": "fp32", "b0": "fp32", "b1": "fp32", "b2": "fp32"}
for out, swap in (("*fp32", True), ("*fp16", False), ("*bf16", True)):
    consts = dict(S0=2 if swap else 0, S1=1, S2=0 if swap else 2, BH=8, BW=64)
    sig = {n: ("constexpr" if n in consts else dict(types, out_ptr=out)[n]) for n in fn.arg_names}
    compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts),
                              target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert compiled.asm.get("cubin"), out
    print("compiled", out)
"""

    def check_compiled(self, stdout):
        assert stdout.count("compiled") == 3, stdout  # one per output dtype


# ----------------------------------------------------------------------------------------------------
# heatmap_targets


class TargetsContract(OpContract):
    op = "heatmap_targets"
    key = (0, 8, 8)  # msra, 8x8
    opcheck_variants = {("cpu", "cpp"): ("samples",), ("cpu", "triton"): ("samples",),
                        ("cuda", "cuda"): ("samples",), ("cuda", "triton"): ("samples",)}
    # N*K*H*W > 2^31: the last heatmap sits past 32-bit offsets (8.6 GB of float32 targets: GPU only)
    offsets_variants = {("cuda", "cuda"): ("last_map",), ("cuda", "triton"): ("last_map",)}

    def opcheck_calls(self, backend, device, variant):
        T = OPS[self.op].module
        op = torch.ops.hrnet_fast.heatmap_targets if backend in ("cpp", "cuda") else torch.ops.hrnet_fast.heatmap_targets_triton
        g = torch.Generator().manual_seed(12)
        kp = (torch.rand(2, 5, 2, generator=g, dtype=torch.float64) * 240 - 20).to(device)
        vis = (torch.rand(2, 5, generator=g) > 0.2).float().to(device)
        jw = torch.rand(5, generator=g).to(device)
        table = torch.from_numpy(T.gaussian_table(2.0)).to(device)
        return [(op.default, args) for args in (
            (kp, vis, jw, table, 16, 12, 16.0, 16.0, 2.0, 0),
            (kp, vis, None, None, 16, 12, 15.0, 15.0, 1.5, 1),
            (kp[:0], vis[:0], None, table, 16, 12, 16.0, 16.0, 2.0, 0),
        )]

    def check_offsets(self, backend, device, variant):
        n, h, w = 2**31 // (64 * 48) + 1, 64, 48
        assert n * h * w > 2**31
        kp = torch.full((n, 1, 2), 100.0, dtype=torch.float64, device=device)
        kp[-1, 0] = torch.tensor([37.0, 81.0])
        vis = torch.ones(n, 1, device=device)
        t, wt = hrnet_fast.ops.heatmap_targets(kp, vis, (256, 192), (h, w), backend=backend)
        ref = hrnet_fast.ops.heatmap_targets(kp[-2:].cpu(), vis[-2:].cpu(), (256, 192), (h, w), backend="torch")
        torch.testing.assert_close(t[-2:].cpu(), ref[0], rtol=0, atol=0)
        torch.testing.assert_close(wt[-2:].cpu(), ref[1], rtol=0, atol=0)
        del t
        torch.cuda.empty_cache()

    compile_script = r"""
from _triton_compile import Case, compile_all
import hrnet_fast
kern = hrnet_fast._backends.triton_kernels("heatmap_targets")
sig = dict(kp_ptr="*fp64", vis_ptr="*fp32", jw_ptr="*fp32", table_ptr="*fp32", out_ptr="*fp32", wout_ptr="*fp32",
           K="i32", H="i32", W="i32", L="i32", stride_x="fp64", stride_y="fp64", tmp="fp64", center="fp64",
           two_sigma2="fp64")
aligned = tuple(n for n in sig if n.endswith("_ptr"))
cases = []
for msra in (True, False):
    for jw in (True, False):
        for w in (48, 72):  # COCO 64x48 (BW 64), 96x72 (BW 128)
            bh, bw, warps = kern.launch_config(w)
            consts = dict(MSRA=msra, HAS_JW=jw, BH=bh, BW=bw)
            cases.append(Case(f"msra={msra:d} jw={jw:d} BH={bh} BW={bw}", "heatmap_targets", "_targets_kernel", sig,
                              consts, aligned, warps))
print("cases", len(cases), flush=True)
compile_all(cases)
"""

    def check_compiled(self, stdout):
        from _triton_compile import parse_compiled

        assert len(parse_compiled(stdout)) == 8, stdout  # msra/udp x joint weights or not x two tile shapes


CONTRACTS: Dict[str, OpContract] = {c.op: c for c in (ExchangeContract(), DecodeContract(), CropContract(),
                                                      TargetsContract())}


# ----------------------------------------------------------------------------------------------------
# The shared tests


def _require(op: str, backend: str, device: str, dtype=torch.float32) -> None:
    """Skip (with the table's reasons) where ``backend`` cannot run ``op`` here."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    reasons = OPS[op].support.not_supported_reasons(backend, torch.device(device), dtype, CONTRACTS[op].key)
    if reasons:
        pytest.skip("; ".join(reasons))


def _marks(device: str, backend: str, slow: bool = False):
    marks = [pytest.mark.gpu] if device == "cuda" else [needs_ext] if backend == "cpp" else \
        [needs_interp] if backend == "triton" else []
    return marks + ([pytest.mark.slow] if slow else [])


def _params(attr: str, slow=lambda op, device: False):
    """``(op, device, backend, variant)`` of every contract's ``attr`` table, with the marks that skip them
    where they cannot run."""
    return [pytest.param(op, device, backend, v, marks=_marks(device, backend, slow(op, device)), id=f"{op}-{device}-{backend}-{v}")
            for op, c in CONTRACTS.items() for (device, backend), variants in getattr(c, attr).items() for v in variants]


@pytest.mark.parametrize("op", list(OPS))
def test_every_op_has_a_contract(op):
    assert op in CONTRACTS, f"{op} is in hrnet_fast.ops.OPS but has no contract in tests/test_op_contract.py"
    assert CONTRACTS[op].opcheck_variants and CONTRACTS[op].compile_script, op


@pytest.mark.parametrize(("op", "device", "backend", "variant"), _params("opcheck_variants"))
def test_opcheck(op, device, backend, variant):
    _require(op, backend, device)
    for overload, args in CONTRACTS[op].opcheck_calls(backend, device, variant):
        torch.library.opcheck(overload, args)


class _NoLaunch:
    """Stands in for a Triton kernel: ``kernel[grid](...)`` launches nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def _outputs(out) -> List[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)


@needs_interp
@pytest.mark.parametrize(("op", "case"), [(op, case) for op, c in CONTRACTS.items() for case in c.poison_kernels],
                         ids=lambda v: v)
def test_poisoned_outputs_show_unwritten_elements(monkeypatch, op, case):
    """The poison hook itself: with the case's kernels' launches skipped, every output element of every
    registry sample stays NaN, so the comparisons of every op test fail on any element a kernel does not
    write."""
    from triton.runtime.jit import KernelInterface  # a @triton.jit function, compiled or interpreted

    spec = OPS[op]
    mod = _backends.triton_kernels(op)
    names = CONTRACTS[op].poison_kernels[case] or tuple(
        n for n, v in vars(mod).items() if isinstance(v, KernelInterface) and n.endswith("_kernel"))
    assert names, f"kernels/{op}.py has no kernel"
    for name in names:
        monkeypatch.setattr(mod, name, _NoLaunch())
    for sample in spec.samples(torch.device("cpu"), torch.float32):
        for t in _outputs(spec.public(*sample.args, backend="triton", **sample.kwargs)):
            assert t.numel() and t.isnan().all(), (sample.label, t)


# slow: every CPU case (4 GiB of lazily mapped storage, or 2^31 elements read), and the 8 GiB exchange on a GPU
@pytest.mark.parametrize(("op", "device", "backend", "variant"),
                         _params("offsets_variants", slow=lambda op, device: device == "cpu" or op == "fused_exchange"))
def test_offsets_beyond_2_31(op, device, backend, variant):
    _require(op, backend, device, torch.float16)
    CONTRACTS[op].check_offsets(backend, device, variant)


@pytest.mark.slow
@pytest.mark.parametrize("op", [op for op, c in CONTRACTS.items() if c.compile_script])
def test_triton_kernels_compile_for_sm90(op):
    """Compile (not run) the op's Triton kernels for sm_90 through ptxas, in a subprocess without the
    interpreter and with an empty Triton cache, so a GPU-only compile error (tl.dot shapes, dtypes) shows on a
    machine without a GPU."""
    from _triton_compile import compile_script_or_skip

    contract = CONTRACTS[op]
    contract.check_compiled(compile_script_or_skip(contract.compile_script, timeout=contract.compile_timeout))


def test_contract_tables_name_real_backends_and_kernels():
    """The contracts' backends are backends of the op's table, and the poison cases name kernels of the op's
    Triton module (a renamed kernel must not turn a poison case into a no-op)."""
    pytest.importorskip("triton")
    for op, c in CONTRACTS.items():
        table = OPS[op].support.backends
        for device, backend in [*c.opcheck_variants, *c.offsets_variants]:
            assert backend in table and (table[backend].devices is None or device in table[backend].devices), (op, backend)
        mod = _backends.triton_kernels(op)
        for names in c.poison_kernels.values():
            assert all(hasattr(mod, n) for n in names), (op, names)

