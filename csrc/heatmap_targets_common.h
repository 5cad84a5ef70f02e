// What the CPU and CUDA heatmap_targets kernels share: the method codes, the one parameter struct, and the
// per-joint arithmetic both must do alike (the window of a joint, its weight, the value of a window pixel).
// Torch-free plain C++ (no ATen, no CUDA headers): csrc/cpu/heatmap_targets_kernel.cpp and
// csrc/cuda/heatmap_targets_kernel.cu (which CI compiles with nvcc alone) include it; the op-level
// csrc/heatmap_targets.h includes it for the bindings. Rules and the torch reference:
// hrnet_fast/ops/heatmap_targets.py.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define HRNET_FAST_TARGETS_HD __host__ __device__
#else
#define HRNET_FAST_TARGETS_HD
#endif

namespace hrnet_fast {
namespace targets {

// Method codes, as hrnet_fast/ops/heatmap_targets.py METHODS.
enum TargetMethod : int64_t { kMsra = 0, kUdp = 1 };

// sigma is at most this (the Python wrapper's MAX_SIGMA): the table has at most 601 x 601 entries.
constexpr double kMaxSigma = 100.0;

// One call: raw pointers and 64-bit sizes, filled by make_target_params (csrc/heatmap_targets.cpp) from
// checked tensors. Every tensor is contiguous.
struct TargetParams {
  const double* keypoints;     // (N, K, 2) (x, y) in crop pixels
  const float* visible;        // (N, K)
  const float* joint_weights;  // (K,), or null
  const float* table;          // (L, L) the official float32 Gaussian (msra); null for udp
  float* targets;              // (N, K, H, W)
  float* weights;              // (N, K)
  int64_t N, K, H, W;
  int64_t L;                   // window side: ceil(6 sigma + 1)
  double stride_x, stride_y;   // msra: image / heatmap (float64); udp: float32 (image - 1) / (heatmap - 1)
  double sigma;
  double tmp;                  // 3 sigma
  double center;               // floor((6 sigma + 1) / 2): the window's centre (udp)
  double two_sigma2;           // 2 sigma^2
  int64_t method;              // a TargetMethod
};

// ceil(6 sigma + 1) = len(np.arange(0, 2 * (sigma * 3) + 1, 1)), the window side.
HRNET_FAST_TARGETS_HD inline int64_t window_side(double sigma) {
  return static_cast<int64_t>(::ceil(2.0 * (sigma * 3.0) + 1.0));
}

// a * b rounded on its own, never contracted with a neighbouring add into an FMA (as the torch reference and
// numpy compute). Device: the intrinsic, which nvcc never fuses. Host: a volatile forces the rounded product
// where GCC would fuse (-ffp-contract=fast with FMA targets); x86-64 without -mfma has no FMA anyway.
HRNET_FAST_TARGETS_HD inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  volatile double p = a * b;
  return p;
#endif
}

// One joint's window and weight. Pixels x in [x_begin, x_end) and y in [y_begin, y_end) are pasted when
// `paste`; window index i = x - ul_x, j = y - ul_y (both < L).
struct Window {
  int64_t ul_x, ul_y;
  int64_t x_begin, x_end, y_begin, y_end;
  double x0, y0;  // udp: the Gaussian's centre in window coordinates
  float weight;
  bool paste;
};

HRNET_FAST_TARGETS_HD inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
HRNET_FAST_TARGETS_HD inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// The window of joint `nk` (= n * K + k), as hrnet_fast/ops/heatmap_targets.py: heatmap_targets_reference.
HRNET_FAST_TARGETS_HD inline Window joint_window(const TargetParams& p, int64_t nk) {
  const double x = p.keypoints[2 * nk], y = p.keypoints[2 * nk + 1];
  double ux, uy, mx, my;
  if (p.method == kMsra) {  // float64, as the official: int(x / stride + 0.5)
    ux = x / p.stride_x;
    uy = y / p.stride_y;
    mx = ::trunc(ux + 0.5);
    my = ::trunc(uy + 0.5);
  } else {  // float32, as mmpose: one division or addition of floats in double, rounded, is the float result
    ux = static_cast<double>(static_cast<float>(static_cast<double>(static_cast<float>(x)) / p.stride_x));
    uy = static_cast<double>(static_cast<float>(static_cast<double>(static_cast<float>(y)) / p.stride_y));
    mx = ::trunc(static_cast<double>(static_cast<float>(ux + 0.5)));
    my = ::trunc(static_cast<double>(static_cast<float>(uy + 0.5)));
  }
  const double ulx = ::trunc(mx - p.tmp), uly = ::trunc(my - p.tmp);
  const double brx = ::trunc(mx + p.tmp + 1.0), bry = ::trunc(my + p.tmp + 1.0);
  // NaN compares false: a non-finite keypoint is outside
  const bool inside = ulx < static_cast<double>(p.W) && uly < static_cast<double>(p.H) && brx >= 0.0 && bry >= 0.0;
  const float v = p.visible[nk];
  Window w{};
  if (p.method == kMsra) {
    w.paste = inside && v > 0.5f;
    w.weight = inside ? v : 0.f;
  } else {
    const bool low = v < 0.5f;
    w.paste = inside && !low;
    w.weight = (low || inside) ? v : 0.f;
  }
  if (p.joint_weights != nullptr) w.weight *= p.joint_weights[nk % p.K];
  if (!inside) {
    w.paste = false;
    return w;
  }
  // inside: ul > -(2 * tmp + 2) and ul < W, so the casts are in range
  w.ul_x = static_cast<int64_t>(ulx);
  w.ul_y = static_cast<int64_t>(uly);
  const int64_t br_x = static_cast<int64_t>(brx), br_y = static_cast<int64_t>(bry);
  w.x_begin = max64(0, w.ul_x);
  w.x_end = min64(min64(br_x, p.W), w.ul_x + p.L);
  w.y_begin = max64(0, w.ul_y);
  w.y_end = min64(min64(br_y, p.H), w.ul_y + p.L);
  w.x0 = p.center + (ux - mx);
  w.y0 = p.center + (uy - my);
  return w;
}

// The value of window pixel (i, j) (udp): float32(exp(-((i - x0)^2 + (j - y0)^2) / (2 sigma^2))) in float64.
HRNET_FAST_TARGETS_HD inline float udp_value(const TargetParams& p, const Window& w, int64_t i, int64_t j) {
  const double dx = static_cast<double>(i) - w.x0, dy = static_cast<double>(j) - w.y0;
  return static_cast<float>(::exp(-(mul_rn(dx, dx) + mul_rn(dy, dy)) / p.two_sigma2));
}

}  // namespace targets
}  // namespace hrnet_fast
