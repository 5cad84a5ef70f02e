"""Run every CUDA kernel once on small inputs (forward and backward), for compute-sanitizer.

    compute-sanitizer --tool memcheck --error-exitcode 7 python benchmarks/sanitize_cuda.py
    python benchmarks/sanitize_cuda.py --device cpu     # the same calls with the cpp backend, fp32 (a smoke run)
"""
import argparse
import sys

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cuda (default; the CUDA backend) or cpu (the cpp backend: runs the script without a GPU)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("sanitize_cuda: no GPU")
        return 0
    import hrnet_fast
    from hrnet_fast.ops import decode_heatmaps, fused_exchange

    dev = torch.device(args.device)
    backend = "cuda" if dev.type == "cuda" else "cpp"
    # the CPU exchange kernels compute in fp32/fp64 only
    dtypes = (torch.float32, torch.float16, torch.bfloat16) if dev.type == "cuda" else (torch.float32,)
    torch.manual_seed(0)
    ran = 0
    for dtype in dtypes:
        # odd channel counts and sizes so that masked tails run
        base = torch.randn(2, 48, 16, 12, device=dev, dtype=dtype, requires_grad=True)
        lows = [torch.randn(2, 96, 8, 6, device=dev, dtype=dtype, requires_grad=True),
                torch.randn(2, 192, 4, 3, device=dev, dtype=dtype, requires_grad=True)]
        weights = [torch.randn(48, 96, device=dev, dtype=dtype, requires_grad=True),
                   torch.randn(48, 192, device=dev, dtype=dtype, requires_grad=True)]
        biases = [torch.randn(48, device=dev, dtype=dtype, requires_grad=True), None]
        for memory_format in (torch.contiguous_format, torch.channels_last):
            b = base.detach().contiguous(memory_format=memory_format).requires_grad_(True)
            ls = [t.detach().contiguous(memory_format=memory_format).requires_grad_(True) for t in lows]
            out = fused_exchange(b, ls, weights, biases, relu=True, backend=backend)
            out.backward(torch.randn_like(out))
            ran += 1
        heatmaps = torch.randn(3, 17, 64, 48, device=dev, dtype=dtype)
        flipped = torch.randn(3, 17, 64, 48, device=dev, dtype=dtype)
        center = torch.rand(3, 2, device=dev) * 100
        scale = torch.rand(3, 2, device=dev) + 0.5
        for method in ("argmax", "quarter", "dark", "udp"):
            decode_heatmaps(heatmaps, center, scale, method=method, backend=backend)
            decode_heatmaps(heatmaps, center, scale, method=method, flipped=flipped,
                            flip_pairs=hrnet_fast.COCO_FLIP_PAIRS, backend=backend)
            ran += 2
        decode_heatmaps(heatmaps[:0], center[:0], scale[:0], backend=backend)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print(f"sanitize_cuda: {ran} {backend} kernel calls completed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
