// CUDA crop kernel (rules: hrnet_fast/ops/crop_boxes.py; CPU twin: csrc/cpu/crop_boxes_kernel.cpp).
//
// One thread per output pixel (its three channels); a 32 x 8 block covers 32 columns of 8 rows of one box
// (blockIdx.z, grid-strided), so the box's index, image size and matrix are uniform across the block, and
// the stores of a warp are consecutive along W (coalesced for contiguous output). The source point is in
// double (a handful of operations per pixel), the blend in float as the reference. Offsets are int64.
#include "cuda/crop_boxes_kernel.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

namespace hrnet_fast {
namespace cuda {
namespace {

constexpr int kBlockX = 32;
constexpr int kBlockY = 8;
constexpr unsigned int kMaxGridYZ = 65535;

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float tap(const uint8_t* img, bool ok, int64_t pos) {
  return ok ? static_cast<float>(__ldg(img + pos)) : 0.f;
}

template <typename T>
__global__ void __launch_bounds__(kBlockX * kBlockY) crop_boxes_kernel(CropParams a) {
  const int64_t x = static_cast<int64_t>(blockIdx.x) * kBlockX + threadIdx.x;
  T* out = static_cast<T*>(a.out);
  for (int64_t m = blockIdx.z; m < a.M; m += gridDim.z) {
    const int64_t idx = a.index[m];
    const bool valid = idx >= 0 && idx < a.N;
    const uint8_t* img = a.images + (valid ? a.meta[3 * idx] : 0);
    const int64_t ih = valid ? a.meta[3 * idx + 1] : 0, iw = valid ? a.meta[3 * idx + 2] : 0;
    const double* A = a.affine + 6 * m;
    const double a0 = A[0], a1 = A[1], a2 = A[2], a3 = A[3], a4 = A[4], a5 = A[5];
    const double wd = static_cast<double>(iw), hd = static_cast<double>(ih);
    const int64_t row = iw * 3;
    for (int64_t y = static_cast<int64_t>(blockIdx.y) * kBlockY + threadIdx.y; y < a.H;
         y += static_cast<int64_t>(gridDim.y) * kBlockY) {
      if (x >= a.W) continue;
      T* o = out + m * a.os_m + y * a.os_h + x * a.os_w;
      const double dx = static_cast<double>(x), dy = static_cast<double>(y);
      const double sx = a0 * dx + a1 * dy + a2;
      const double sy = a3 * dx + a4 * dy + a5;
      if (!valid || isnan(sx) || isnan(sy)) {
        for (int c = 0; c < 3; ++c) store(o + c * a.os_c, __int_as_float(0x7fc00000));
        continue;
      }
      if (!(sx > -1.0 && sx < wd && sy > -1.0 && sy < hd)) {
        for (int c = 0; c < 3; ++c) store(o + c * a.os_c, a.bias[c]);  // 0 * scale + bias
        continue;
      }
      const double fx0 = floor(sx), fy0 = floor(sy);
      const int64_t x0 = static_cast<int64_t>(fx0), y0 = static_cast<int64_t>(fy0);
      const float fx = static_cast<float>(sx - fx0), fy = static_cast<float>(sy - fy0);
      const bool xin0 = x0 >= 0, xin1 = x0 + 1 < iw, yin0 = y0 >= 0, yin1 = y0 + 1 < ih;
      const int64_t p00 = y0 * row + x0 * 3;
#pragma unroll
      for (int c = 0; c < 3; ++c) {
        const int64_t s = p00 + a.src_c[c];
        const float v00 = tap(img, yin0 && xin0, s), v01 = tap(img, yin0 && xin1, s + 3);
        const float v10 = tap(img, yin1 && xin0, s + row), v11 = tap(img, yin1 && xin1, s + row + 3);
        const float top = v00 + fx * (v01 - v00);
        const float bot = v10 + fx * (v11 - v10);
        const float v = top + fy * (bot - top);
        store(o + c * a.os_c, v * a.scale[c] + a.bias[c]);
      }
    }
  }
}

template <typename T>
cudaError_t launch_typed(const CropParams& a, cudaStream_t stream, const char** what) {
  const int64_t gx = (a.W + kBlockX - 1) / kBlockX;
  if (gx > 0x7fffffffLL) {
    *what = "the output width exceeds the CUDA grid limit";
    return cudaErrorInvalidConfiguration;
  }
  const int64_t gy = (a.H + kBlockY - 1) / kBlockY;
  const dim3 grid(static_cast<unsigned int>(gx), static_cast<unsigned int>(gy < kMaxGridYZ ? gy : kMaxGridYZ),
                  static_cast<unsigned int>(a.M < kMaxGridYZ ? a.M : kMaxGridYZ));
  crop_boxes_kernel<T><<<grid, dim3(kBlockX, kBlockY), 0, stream>>>(a);
  *what = "launching crop_boxes_kernel";
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_crop_boxes(const CropParams& p, DType dtype, cudaStream_t stream, const char** what) {
  *what = "no error";
  if (p.M * p.H * p.W == 0) return cudaSuccess;
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
  *what = "the crop kernel writes float32, float16 and bfloat16 only";
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace hrnet_fast
