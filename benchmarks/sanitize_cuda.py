"""Run every CUDA kernel once on small inputs (forward and backward), for compute-sanitizer.

    compute-sanitizer --tool memcheck --error-exitcode 7 python benchmarks/sanitize_cuda.py
    compute-sanitizer --tool racecheck --error-exitcode 7 python benchmarks/sanitize_cuda.py --only dark_udp
    compute-sanitizer --tool synccheck --error-exitcode 7 python benchmarks/sanitize_cuda.py --only dark_udp
    python benchmarks/sanitize_cuda.py --device cpu     # the same calls with the cpp backend, fp32 (a smoke run)

Groups (``--only``, comma-separated; default all):
  exchange   fused_exchange forward and backward, NCHW and channels_last, 2 lows and 6 lows (more than one
             CUDA launch takes: the partial sums chain through an fp32 buffer)
  decode     argmax and quarter decoding, with and without the flip test, and an empty batch
  dark_udp   DARK and UDP decoding: the only kernel with shared memory and barriers (racecheck, synccheck),
             at 64x48 and at 128x96 (dynamic shared memory above the 48 KiB default)
  crop       crop_boxes: several images of different sizes, boxes inside, across the border and outside,
             rotation, both colours, NCHW and channels_last, every output dtype
  <op>       every other op of hrnet_fast.ops.OPS (none today): its registry samples, one group per op, so an op
             added to the registry is sanitized without a change here

The dtypes of a group are those its op's support table gives the backend (float32, float16, bfloat16 on
CUDA; float32 on the CPU).
"""
import argparse
import sys

import torch

#: the hand-written groups and the op each covers; every other OPS entry gets a group of its own
GROUP_OPS = {"exchange": "fused_exchange", "decode": "decode_heatmaps", "dark_udp": "decode_heatmaps", "crop": "crop_boxes"}
MAX_LOWS_PER_CUDA_LAUNCH = 4  # csrc/cuda/fused_exchange_kernel.h kMaxLowsPerLaunch


def groups():
    """Every group, in run order: the hand-written ones, then one per OPS entry that none of them covers."""
    from hrnet_fast.ops import OPS

    return tuple(GROUP_OPS) + tuple(op for op in OPS if op not in GROUP_OPS.values())


def _exchange(dev, dtype, backend):
    from hrnet_fast.ops import fused_exchange
    ran = 0
    # odd channel counts and sizes so that masked tails run
    for n_lows in (2, MAX_LOWS_PER_CUDA_LAUNCH + 2):
        base = torch.randn(2, 48, 16, 12, device=dev, dtype=dtype)
        lows, weights, biases = [], [], []
        for i in range(n_lows):
            f = 2 ** (1 + i % 2)  # upsampling factors 2 and 4
            c_in = 96 if i % 2 == 0 else 192 - i
            lows.append(torch.randn(2, c_in, 16 // f, 12 // f, device=dev, dtype=dtype))
            weights.append(torch.randn(48, c_in, device=dev, dtype=dtype, requires_grad=True))
            biases.append(torch.randn(48, device=dev, dtype=dtype, requires_grad=True) if i % 2 == 0 else None)
        for memory_format in (torch.contiguous_format, torch.channels_last):
            b = base.contiguous(memory_format=memory_format).requires_grad_(True)
            ls = [t.contiguous(memory_format=memory_format).requires_grad_(True) for t in lows]
            out = fused_exchange(b, ls, weights, biases, relu=True, backend=backend)
            out.backward(torch.randn_like(out))
            ran += 1
    return ran


def _decode(dev, dtype, backend, methods, shapes):
    import hrnet_fast
    from hrnet_fast.ops import decode_heatmaps
    ran = 0
    for h, w in shapes:
        heatmaps = torch.randn(3, 17, h, w, device=dev, dtype=dtype)
        flipped = torch.randn(3, 17, h, w, device=dev, dtype=dtype)
        center = torch.rand(3, 2, device=dev) * 100
        scale = torch.rand(3, 2, device=dev) + 0.5
        for method in methods:
            decode_heatmaps(heatmaps, center, scale, method=method, backend=backend)
            decode_heatmaps(heatmaps, center, scale, method=method, flipped=flipped,
                            flip_pairs=hrnet_fast.COCO_FLIP_PAIRS, backend=backend)
            ran += 2
    return ran


def _crop(dev, dtype, backend):
    from hrnet_fast.ops import crop_boxes
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g).to(dev) for h, w in ((37, 53), (64, 48))]
    # inside, across the border, far outside
    center = torch.tensor([[20.0, 18.0], [0.0, 60.0], [500.0, -300.0], [24.0, 32.0]])
    scale = torch.tensor([[0.2, 0.25], [0.3, 0.4], [0.1, 0.1], [0.24, 0.32]])
    index = torch.tensor([0, 1, 0, 1])
    rotation = torch.tensor([0.0, 30.0, -45.0, 90.0])
    ran = 0
    for color, channels_last, rot in (("bgr", False, None), ("rgb", True, rotation)):
        crop_boxes(images, index, center, scale, (16, 12), rotation=rot, color=color, dtype=dtype,
                   channels_last=channels_last, backend=backend)
        ran += 1
    crop_boxes(images, index[:0], center[:0], scale[:0], (16, 12), dtype=dtype, backend=backend)  # no box
    return ran + 1


def _registry_samples(op, dev, dtype, backend):
    """Every registry sample of ``op`` (hrnet_fast.ops.OPS), forward only."""
    from hrnet_fast.ops import OPS
    spec = OPS[op]
    samples = spec.samples(dev, dtype)
    for sample in samples:
        spec.public(*sample.args, backend=backend, **sample.kwargs)
    return len(samples)


def _run_group(group, dev, dtype, backend):
    if group == "exchange":
        return _exchange(dev, dtype, backend)
    if group == "decode":
        from hrnet_fast.ops import decode_heatmaps
        decode_heatmaps(torch.zeros(0, 17, 64, 48, device=dev, dtype=dtype), torch.zeros(0, 2, device=dev),
                        torch.ones(0, 2, device=dev), backend=backend)  # an empty batch
        return _decode(dev, dtype, backend, ("argmax", "quarter"), ((64, 48),)) + 1
    if group == "dark_udp":
        return _decode(dev, dtype, backend, ("dark", "udp"), ((64, 48), (128, 96)))
    if group == "crop":
        return _crop(dev, dtype, backend)
    return _registry_samples(group, dev, dtype, backend)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cuda (default; the CUDA backend) or cpu (the cpp backend: runs the script without a GPU)")
    all_groups = groups()
    p.add_argument("--only", default=",".join(all_groups),
                   help=f"comma-separated groups to run, of {', '.join(all_groups)} (default: all)")
    args = p.parse_args(argv)
    selected = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in selected if g not in all_groups]
    if unknown or not selected:
        p.error(f"--only: unknown group(s) {unknown or args.only!r}; expected some of {', '.join(all_groups)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("sanitize_cuda: no GPU")
        return 0

    from hrnet_fast.ops import OPS

    dev = torch.device(args.device)
    backend = "cuda" if dev.type == "cuda" else "cpp"
    wanted = (torch.float32, torch.float16, torch.bfloat16) if dev.type == "cuda" else (torch.float32,)
    torch.manual_seed(0)
    ran = {g: 0 for g in selected}
    for dtype in wanted:
        for g in selected:
            # the op's table says which dtypes the backend runs (the CPU exchange kernels: fp32/fp64 only)
            if dtype in OPS[GROUP_OPS.get(g, g)].dtypes(dev.type, (backend,)):
                ran[g] += _run_group(g, dev, dtype, backend)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    detail = ", ".join(f"{g} {n}" for g, n in ran.items())
    print(f"sanitize_cuda: {sum(ran.values())} {backend} kernel calls completed ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
