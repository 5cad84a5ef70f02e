// CUDA decode kernels (rules: hrnet_fast/ops/decode_heatmaps.py; CPU twin: csrc/cpu/decode_heatmaps_kernel.cpp;
// the refinement steps and the back-transform both run are in csrc/decode_heatmaps_common.h).
//
// argmax/quarter: one warp per (n, k) heatmap, eight heatmaps per block; each lane keeps a running
// first-index maximum over its strided elements, then a shuffle reduction; lane 0 applies the quarter
// step and the back-transform. No shared memory, no __syncthreads.
// DARK/UDP: one block per heatmap. Block argmax; then (only when the point is refined) the row pass of
// the zero-padded separable blur goes to shared memory (H*W floats), the column pass is reduced to the
// blurred maximum without being stored, and thread 0 recomputes the few blurred values it needs.
// The flip merge is computed where a value is read; the merged heatmap is never stored.
// All offsets are int64 (N*K*H*W may pass 2^31).
#include "cuda/decode_heatmaps_kernel.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cmath>
#include <cstdint>

namespace hrnet_fast {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kDarkThreads = decode::kDarkUdpThreads;
constexpr int kDarkWarps = kDarkThreads / 32;
// The default per-block shared-memory limit; beyond it a kernel must opt in (cudaFuncSetAttribute).
constexpr int64_t kDefaultSharedPerBlock = 48 * 1024;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

struct View {
  int64_t H, W, hs_h, fs_h;
  bool flip, shift;
};

// Value of the (merged) heatmap at (y, x), fp32, as the official merge: (h + f) * 0.5.
template <typename T>
__device__ __forceinline__ float merged_at(const T* h, const T* f, const View& v, int64_t y, int64_t x) {
  const float hv = to_float(h[y * v.hs_h + x]);
  if (!v.flip) return hv;
  const int64_t xf = v.shift ? (x == 0 ? v.W - 1 : v.W - x) : v.W - 1 - x;
  return (hv + to_float(f[y * v.fs_h + xf])) * 0.5f;
}

// (value, index) pair: larger value wins, the smaller index wins a tie.
__device__ __forceinline__ void take_better(float& bv, int64_t& bi, float v, int64_t i) {
  if (v > bv || (v == bv && i < bi)) {
    bv = v;
    bi = i;
  }
}

__device__ __forceinline__ void warp_argmax(float& bv, int64_t& bi, bool& nan) {
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_down_sync(0xffffffffu, bv, off);
    const int64_t oi = __shfl_down_sync(0xffffffffu, bi, off);
    take_better(bv, bi, ov, oi);
  }
  nan = __any_sync(0xffffffffu, nan);
}

__device__ __forceinline__ void consider(float x, int64_t i, float& bv, int64_t& bi, bool& nan) {
  nan |= isnan(x);
  if (x > bv) {  // strict, with each thread's indices increasing: its first maximum wins
    bv = x;
    bi = i;
  }
}

// Scan one heatmap with `lane` of `nlanes` threads; returns this thread's running (max, first index).
// Contiguous heatmaps whose start is 16-byte aligned and whose size is a multiple of 16 bytes take
// 16-byte loads, four in flight per thread (the loads of one heatmap are few: latency, not bandwidth,
// bounds a warp).
template <typename T>
__device__ void scan(const T* h, const T* f, const View& v, int lane, int nlanes, float& bv, int64_t& bi,
                     bool& nan) {
  bv = -INFINITY;
  bi = INT64_MAX;
  nan = false;
  const int64_t HW = v.H * v.W;
  constexpr int kVec = 16 / sizeof(T);
  if (!v.flip && (v.hs_h == v.W || v.H == 1)) {
    if (HW % kVec == 0 && (reinterpret_cast<uintptr_t>(h) & 15u) == 0) {
      const uint4* hv = reinterpret_cast<const uint4*>(h);
      const int64_t nv = HW / kVec;
      int64_t j = lane;
      for (; j + 3 * nlanes < nv; j += 4 * nlanes) {
        uint4 pk[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) pk[u] = __ldg(hv + j + u * nlanes);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const T* e = reinterpret_cast<const T*>(&pk[u]);
#pragma unroll
          for (int q = 0; q < kVec; ++q) consider(to_float(e[q]), (j + u * nlanes) * kVec + q, bv, bi, nan);
        }
      }
      for (; j < nv; j += nlanes) {
        const uint4 pk = __ldg(hv + j);
        const T* e = reinterpret_cast<const T*>(&pk);
#pragma unroll
        for (int q = 0; q < kVec; ++q) consider(to_float(e[q]), j * kVec + q, bv, bi, nan);
      }
    } else {
      for (int64_t i = lane; i < HW; i += nlanes) consider(to_float(h[i]), i, bv, bi, nan);
    }
  } else {
    for (int64_t y = 0; y < v.H; ++y) {
      for (int64_t x = lane; x < v.W; x += nlanes) consider(merged_at(h, f, v, y, x), y * v.W + x, bv, bi, nan);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) argmax_quarter_kernel(DecodeParams a) {
  const int lane = threadIdx.x & 31;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (i >= a.N * a.K) return;  // whole warps exit together: the shuffles below stay full-warp
  const int64_t n = i / a.K, k = i % a.K;
  const T* h = static_cast<const T*>(a.heatmaps) + n * a.hs_n + k * a.hs_k;
  const T* f = a.flipped != nullptr ? static_cast<const T*>(a.flipped) + n * a.fs_n + a.perm[k] * a.fs_k : nullptr;
  const View v{a.H, a.W, a.hs_h, a.fs_h, f != nullptr, a.shift};
  float best;
  int64_t idx;
  bool nan;
  scan(h, f, v, lane, 32, best, idx, nan);
  warp_argmax(best, idx, nan);
  if (lane != 0) return;
  if (nan) best = NAN;
  if (idx >= a.H * a.W) idx = 0;  // all -inf: take pixel 0
  const bool pos = best > 0.f;    // false for NaN, as in the official code
  const int64_t ix = pos ? idx % a.W : 0, iy = pos ? idx / a.W : 0;
  double px = double(ix), py = double(iy);
  if (a.method == kQuarter) {
    decode::quarter_step([&](int64_t y, int64_t x) { return merged_at(h, f, v, y, x); }, iy, ix, a.H, a.W, px, py);
  }
  decode::write_point(a, i, n, px, py, best);
}

template <typename T>
__global__ void __launch_bounds__(kDarkThreads) dark_udp_kernel(DecodeParams a) {
  extern __shared__ float rowblur[];  // H*W floats
  // The kernel's only static shared memory: its size is decode::kDarkUdpStaticSharedBytes, which the
  // Python support table counts (see decode_heatmaps_common.h); the launcher checks the compiled size.
  __shared__ decode::DarkUdpShared part;
  const int64_t i = blockIdx.x;
  const int64_t n = i / a.K, k = i % a.K;
  const int64_t H = a.H, W = a.W, HW = H * W;
  const T* h = static_cast<const T*>(a.heatmaps) + n * a.hs_n + k * a.hs_k;
  const T* f = a.flipped != nullptr ? static_cast<const T*>(a.flipped) + n * a.fs_n + a.perm[k] * a.fs_k : nullptr;
  const View v{H, W, a.hs_h, a.fs_h, f != nullptr, a.shift};
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // 1. Block argmax (first index wins ties).
  float best;
  int64_t idx;
  bool nan;
  scan(h, f, v, tid, kDarkThreads, best, idx, nan);
  warp_argmax(best, idx, nan);
  if (lane == 0) {
    part.val[warp] = best;
    part.idx[warp] = idx;
    part.nan[warp] = nan;
  }
  __syncthreads();
  if (tid == 0) {
    for (int w = 1; w < kDarkWarps; ++w) {
      take_better(part.val[0], part.idx[0], part.val[w], part.idx[w]);
      part.nan[0] |= part.nan[w];
    }
  }
  __syncthreads();
  best = part.nan[0] ? NAN : part.val[0];
  idx = part.idx[0] < HW ? part.idx[0] : 0;
  const bool pos = best > 0.f;
  const int64_t ix = pos ? idx % W : 0, iy = pos ? idx / W : 0;
  const bool dark = a.method == kDark;
  const bool refine = pos && decode::taylor_applies(dark, iy, ix, H, W);
  if (!refine) {  // uniform across the block
    if (tid == 0) decode::write_point(a, i, n, double(ix), double(iy), best);
    return;
  }

  // 2. Row pass of the zero-padded blur into shared memory.
  const int64_t r = a.ksize / 2;
  const float* wt = a.weights;
  for (int64_t e = tid; e < HW; e += kDarkThreads) {
    const int64_t y = e / W, x = e - y * W;
    const int64_t t0 = r - x > 0 ? r - x : 0, t1 = W + r - x < a.ksize ? W + r - x : a.ksize;
    float acc = 0.f;
    for (int64_t t = t0; t < t1; ++t) acc += __ldg(wt + t) * merged_at(h, f, v, y, x + t - r);
    rowblur[e] = acc;
  }
  __syncthreads();

  // 3. Column pass reduced to the blurred maximum.
  auto blurred = [&](int64_t y, int64_t x) -> float {
    const int64_t t0 = r - y > 0 ? r - y : 0, t1 = H + r - y < a.ksize ? H + r - y : a.ksize;
    float acc = 0.f;
    for (int64_t t = t0; t < t1; ++t) acc += __ldg(wt + t) * rowblur[(y + t - r) * W + x];
    return acc;
  };
  float bmax = -INFINITY;
  for (int64_t e = tid; e < HW; e += kDarkThreads) {
    const int64_t y = e / W, x = e - y * W;
    bmax = fmaxf(bmax, blurred(y, x));
  }
  for (int off = 16; off > 0; off >>= 1) bmax = fmaxf(bmax, __shfl_down_sync(0xffffffffu, bmax, off));
  if (lane == 0) part.val[warp] = bmax;
  __syncthreads();
  if (tid != 0) return;
  for (int w = 1; w < kDarkWarps; ++w) bmax = fmaxf(bmax, part.val[w]);

  // 4. Taylor step (thread 0): csrc/decode_heatmaps_common.h, as the CPU kernel.
  double px = double(ix), py = double(iy);
  // IEEE division and fp64 log, whatever the compile flags (the log-heatmap's differences are what
  // DARK/UDP step on; setup.py does not pass --use_fast_math, and these stay exact if anyone does).
  const float ratio = __fdiv_rn(best, bmax);
  if (isfinite(ratio) && ratio > 0.f) {
    auto L = [&](int64_t y, int64_t x) -> float {
      const float b = blurred(y, x) * ratio;  // then mmpose's clamp, DARK [1e-10, inf), UDP [1e-3, 50]
      return static_cast<float>(log(double(dark ? fmaxf(b, 1e-10f) : fminf(fmaxf(b, 1e-3f), 50.f))));
    };
    if (dark) {
      decode::dark_step(L, iy, ix, px, py);
    } else {
      decode::udp_step(L, iy, ix, H, W, px, py);
    }
  }
  decode::write_point(a, i, n, px, py, best);
}

template <typename T>
cudaError_t launch_typed(const DecodeParams& a, cudaStream_t stream, const char** what) {
  const int64_t total = a.N * a.K;
  if (a.method >= kDark) {
    if (total > 0x7fffffffLL) {
      *what = "N*K exceeds the CUDA grid limit (2^31 - 1 heatmaps) for dark/udp";
      return cudaErrorInvalidConfiguration;
    }
    const size_t smem = static_cast<size_t>(a.H * a.W) * sizeof(float);  // dynamic
    // The block also holds the kernel's static shared memory: the launch needs the opt-in as soon as
    // both together pass the default limit (128x96 heatmaps: exactly 48 KiB dynamic, plus 128 static).
    const int64_t block_smem = decode::dark_udp_shared_bytes(a.H, a.W);
    if (block_smem > kDefaultSharedPerBlock) {
      cudaFuncAttributes attr{};
      cudaError_t err = cudaFuncGetAttributes(&attr, dark_udp_kernel<T>);
      if (err != cudaSuccess) {
        *what = "querying the dark/udp kernel's attributes";
        return err;
      }
      if (static_cast<int64_t>(attr.sharedSizeBytes) > decode::kDarkUdpStaticSharedBytes) {
        // the figure the Python support table counts would be too small: auto could pick failing launches
        *what = "dark/udp: the compiled kernel uses more static shared memory than decode::kDarkUdpStaticSharedBytes "
                "(csrc/decode_heatmaps_common.h) says";
        return cudaErrorInvalidValue;
      }
      int device = 0, optin = 0;
      err = cudaGetDevice(&device);
      if (err == cudaSuccess) err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
      if (err != cudaSuccess) {
        *what = "querying the shared-memory limit";
        return err;
      }
      if (block_smem > static_cast<int64_t>(optin)) {
        *what = "dark/udp: H*W*4 bytes of shared memory plus the kernel's static ones exceed this GPU's per-block "
                "limit (heatmap too large)";
        return cudaErrorInvalidValue;
      }
      err = cudaFuncSetAttribute(dark_udp_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
      if (err != cudaSuccess) {
        *what = "setting the dark/udp kernel's dynamic shared memory size";
        return err;
      }
    }
    dark_udp_kernel<T><<<static_cast<unsigned int>(total), kDarkThreads, smem, stream>>>(a);
    *what = "launching dark_udp_kernel";
  } else {
    const int64_t blocks = (total + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > 0x7fffffffLL) {
      *what = "N*K exceeds the CUDA grid limit";
      return cudaErrorInvalidConfiguration;
    }
    argmax_quarter_kernel<T><<<static_cast<unsigned int>(blocks), kWarpsPerBlock * 32, 0, stream>>>(a);
    *what = "launching argmax_quarter_kernel";
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_decode_heatmaps(const DecodeParams& p, DType dtype, cudaStream_t stream, const char** what) {
  *what = "no error";
  if (p.N * p.K == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kFloat32:
      return launch_typed<float>(p, stream, what);
    case DType::kFloat16:
      return launch_typed<__half>(p, stream, what);
    case DType::kBFloat16:
      return launch_typed<__nv_bfloat16>(p, stream, what);
    case DType::kFloat64:
      break;
  }
  *what = "the decode kernels run float32, float16 and bfloat16 heatmaps only";
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace hrnet_fast
