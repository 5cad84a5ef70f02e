// What the CPU and CUDA decode kernels share: the method codes, the one parameter struct, and the
// arithmetic both must do alike (quarter offset, DARK and UDP Taylor steps, back-transform).
// Torch-free plain C++ (no ATen, no CUDA headers): csrc/cpu/decode_heatmaps_kernel.cpp and
// csrc/cuda/decode_heatmaps_kernel.cu (which CI compiles with nvcc alone) include it; the op-level
// csrc/decode_heatmaps.h includes it for the bindings. Rules and the torch reference:
// hrnet_fast/ops/decode_heatmaps.py.
#pragma once

#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define HRNET_FAST_HOST_DEVICE __host__ __device__
#else
#define HRNET_FAST_HOST_DEVICE
#endif

namespace hrnet_fast {

// Method codes, as hrnet_fast/ops/decode_heatmaps.py METHODS.
enum DecodeMethod : int64_t { kArgmax = 0, kQuarter = 1, kDark = 2, kUdp = 3 };

// One decode call: raw pointers and 64-bit sizes, filled by make_decode_params (csrc/decode_heatmaps.cpp)
// from checked tensors. The heatmaps' element type travels beside it (at::ScalarType on the CPU,
// cuda::DType on the GPU).
struct DecodeParams {
  const void* heatmaps;  // (N, K, H, W), element strides hs_*, unit stride along W
  const void* flipped;   // same shape and dtype, strides fs_*; null: no flip merge
  const int64_t* perm;   // (K,): channel perm[k] of flipped merges into channel k; null when flipped is
  const float* center;   // (N, 2), or null: coordinates stay in heatmap pixels
  const float* scale;    // (N, 2), given with center
  const float* weights;  // (ksize,) blur weights for DARK/UDP; null otherwise
  float* coords;         // (N, K, 2) contiguous
  float* maxvals;        // (N, K) contiguous
  int64_t N, K, H, W;
  int64_t hs_n, hs_k, hs_h;  // element strides, 64-bit: offsets may pass 2^31
  int64_t fs_n, fs_k, fs_h;  // unset without flipped
  int64_t method;            // a DecodeMethod
  int64_t ksize;             // 0 for argmax/quarter
  bool shift;                // the flip merge shifts the flipped map one pixel right (column 0 keeps its value)
};

namespace decode {

// The CUDA DARK/UDP kernel (csrc/cuda/decode_heatmaps_kernel.cu) runs one block of kDarkUdpThreads threads
// per heatmap. Its shared memory per block is H*W floats of dynamic memory (the row-blurred heatmap) plus
// one DarkUdpShared of static memory (the per-warp argmax partials), and both count against the GPU's
// per-block limit. The Python support table reads this figure from the extension
// (hrnet_fast._C.dark_udp_static_shared_bytes(), used by _cuda_reasons in hrnet_fast/ops/decode_heatmaps.py)
// and the launcher checks it against the compiled kernel's own (cudaFuncGetAttributes) when it opts in
// to more than the default 48 KiB.
constexpr int kDarkUdpThreads = 256;
struct DarkUdpShared {
  float val[kDarkUdpThreads / 32];
  int64_t idx[kDarkUdpThreads / 32];
  int nan[kDarkUdpThreads / 32];
};
constexpr int64_t kDarkUdpStaticSharedBytes = static_cast<int64_t>(sizeof(DarkUdpShared));

// The shared memory one DARK/UDP block needs for an H x W heatmap, static and dynamic, in bytes.
HRNET_FAST_HOST_DEVICE inline int64_t dark_udp_shared_bytes(int64_t H, int64_t W) {
  return H * W * static_cast<int64_t>(sizeof(float)) + kDarkUdpStaticSharedBytes;
}

// a * b rounded on its own, never contracted with a neighbouring add into an FMA, so that the CPU and the
// GPU compute what numpy computes in mmpose. It matters for mmpose's fp32 test det == 0 (dxx*dyy - dxy*dxy:
// fused, a singular Hessian's determinant is almost never exactly 0 and the skip would not fire) and for
// UDP's fp64 solve, whose eps-shifted operands make the products inexact. Device pass: the intrinsics,
// which nvcc never fuses (it fuses a plain a*b + c by default, --fmad=true). Host: GCC fuses a plain
// a*b + c wherever the target has FMA (its default -ffp-contract=fast; it ignores #pragma STDC
// FP_CONTRACT), so a volatile forces the rounded product; on x86-64 without -mfma, this project's CPU
// build, there is no FMA and it changes no result.
template <typename Float>  // float or double
HRNET_FAST_HOST_DEVICE inline Float mul_unfused(Float a, Float b) {
  static_assert(std::is_same<Float, float>::value || std::is_same<Float, double>::value, "float or double");
#ifdef __CUDA_ARCH__
  if constexpr (std::is_same<Float, float>::value) {
    return __fmul_rn(a, b);
  } else {
    return __dmul_rn(a, b);
  }
#else
  volatile Float p = a * b;
  return p;
#endif
}

HRNET_FAST_HOST_DEVICE inline float sign(float v) { return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f); }

// Official quarter offset at the argmax (iy, ix) of the (merged) heatmap M(y, x) -> float: strictly
// inside (1 < ix < W-1 and 1 < iy < H-1) the point moves 0.25 px towards the larger neighbour, in x and
// in y (sign(0) = 0).
template <typename Heatmap>
HRNET_FAST_HOST_DEVICE inline void quarter_step(const Heatmap& M, int64_t iy, int64_t ix, int64_t H, int64_t W,
                                                double& px, double& py) {
  if (ix > 1 && ix < W - 1 && iy > 1 && iy < H - 1) {
    px += 0.25 * sign(M(iy, ix + 1) - M(iy, ix - 1));
    py += 0.25 * sign(M(iy + 1, ix) - M(iy - 1, ix));
  }
}

// Whether DARK/UDP refine the argmax (iy, ix) (given maxval > 0): DARK only where 1 < ix < W-2 and
// 1 < iy < H-2 (mmpose), UDP everywhere. The caller blurs the heatmap only where this holds.
HRNET_FAST_HOST_DEVICE inline bool taylor_applies(bool dark, int64_t iy, int64_t ix, int64_t H, int64_t W) {
  return !dark || (ix > 1 && ix < W - 2 && iy > 1 && iy < H - 2);
}

// (px, py) -= inv([[a, b], [b, d]]) @ (gx, gy) in fp64, as mmpose; nothing when the determinant is 0.
HRNET_FAST_HOST_DEVICE inline void solve_step(double a, double b, double d, double gx, double gy, double& px,
                                              double& py) {
  const double det = mul_unfused(a, d) - mul_unfused(b, b);
  if (det != 0.0) {
    px -= (mul_unfused(d, gx) - mul_unfused(b, gy)) / det;
    py -= (mul_unfused(-b, gx) + mul_unfused(a, gy)) / det;
  }
}

// The Taylor steps below take the log-heatmap L(y, x) -> float: each kernel's own sampling of
// log(clamp(blurred * maxval / max(blurred))) (mmpose's clamps: DARK [1e-10, inf), UDP [1e-3, 50]).
// Derivatives in fp32 and the 2x2 solve in fp64, as mmpose. A "2 * c" is exact, so a compiler that
// fuses it into an FMA changes no result; the products that matter go through mul_unfused.
// For DARK every fp64 product is of two floats, exact with or without FMA; for UDP the operands carry
// the eps shift, so the fp64 solve goes through mul_unfused on both sides, as numpy computes it. The
// gpu-marked golden tests of tests/test_decode_heatmaps.py (test_gpu_golden[dark-cuda], [udp-cuda]) check
// the CUDA kernel's use of these steps.

// DARK (mmpose refine_keypoints_dark) at the argmax (iy, ix), where taylor_applies: moves (px, py) by
// -inv(Hessian) @ gradient; skipped when mmpose's fp32 determinant or the fp64 one is 0.
template <typename LogHeatmap>
HRNET_FAST_HOST_DEVICE inline void dark_step(const LogHeatmap& L, int64_t iy, int64_t ix, double& px, double& py) {
  const float c = L(iy, ix);
  const float dx = 0.5f * (L(iy, ix + 1) - L(iy, ix - 1));
  const float dy = 0.5f * (L(iy + 1, ix) - L(iy - 1, ix));
  const float dxx = 0.25f * (L(iy, ix + 2) - 2.f * c + L(iy, ix - 2));
  const float dxy = 0.25f * (L(iy + 1, ix + 1) - L(iy - 1, ix + 1) - L(iy + 1, ix - 1) + L(iy - 1, ix - 1));
  const float dyy = 0.25f * (L(iy + 2, ix) - 2.f * c + L(iy - 2, ix));
  if (mul_unfused(dxx, dyy) - mul_unfused(dxy, dxy) != 0.f) solve_step(dxx, dxy, dyy, dx, dy, px, py);
}

// UDP (mmpose refine_keypoints_dark_udp) at the argmax (iy, ix) of an H x W map, edge-padded (samples
// outside the map take the nearest edge pixel): moves (px, py) by -inv(Hessian + eps*I) @ gradient.
template <typename LogHeatmap>
HRNET_FAST_HOST_DEVICE inline void udp_step(const LogHeatmap& L, int64_t iy, int64_t ix, int64_t H, int64_t W,
                                            double& px, double& py) {
  auto E = [&](int64_t y, int64_t x) -> float {
    y = y < 0 ? 0 : (y > H - 1 ? H - 1 : y);
    x = x < 0 ? 0 : (x > W - 1 ? W - 1 : x);
    return L(y, x);
  };
  const float i_ = E(iy, ix), ix1 = E(iy, ix + 1), ix1_ = E(iy, ix - 1);
  const float iy1 = E(iy + 1, ix), iy1_ = E(iy - 1, ix);
  const float ix1y1 = E(iy + 1, ix + 1), ix1_y1_ = E(iy - 1, ix - 1);
  const float dx = 0.5f * (ix1 - ix1_), dy = 0.5f * (iy1 - iy1_);
  const float dxx = ix1 - 2.f * i_ + ix1_, dyy = iy1 - 2.f * i_ + iy1_;
  const float dxy = 0.5f * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_);
  constexpr double kEps = 1.1920928955078125e-07;  // np.finfo(np.float32).eps, added in fp64 by mmpose
  solve_step(double(dxx) + kEps, dxy, double(dyy) + kEps, dx, dy, px, py);
}

// Writes heatmap i = n*K + k: coords from (px, py) in heatmap pixels, back-transformed in fp64 when
// p.center is set (official transform_preds, rotation 0; UDP divides by (W-1, H-1)), and maxval.
// Plain fp64 arithmetic: nvcc may fuse it (the CPU build cannot), a difference far below the fp32 output.
HRNET_FAST_HOST_DEVICE inline void write_point(const DecodeParams& p, int64_t i, int64_t n, double px, double py,
                                               float maxval) {
  if (p.center != nullptr) {
    const double cx = p.center[2 * n], cy = p.center[2 * n + 1];
    const double s0 = p.scale[2 * n], s1 = p.scale[2 * n + 1];
    if (p.method == kUdp) {
      px = px / double(p.W > 1 ? p.W - 1 : 1) * 200.0 * s0 + cx - 100.0 * s0;
      py = py / double(p.H > 1 ? p.H - 1 : 1) * 200.0 * s1 + cy - 100.0 * s1;
    } else {
      const double fct = 200.0 * s0 / double(p.W);
      px = cx + (px - p.W * 0.5) * fct;
      py = cy + (py - p.H * 0.5) * fct;
    }
  }
  p.coords[2 * i] = static_cast<float>(px);
  p.coords[2 * i + 1] = static_cast<float>(py);
  p.maxvals[i] = maxval;
}

}  // namespace decode
}  // namespace hrnet_fast
