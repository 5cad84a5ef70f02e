// CUDA launchers of the fused exchange unit. Plain C++ (no torch headers): the .cu compiles with nvcc
// alone; the torch binding (csrc/cuda/fused_exchange_cuda.cpp) passes raw pointers and sizes.
//
// Tensors are dense, either NCHW (channels_last = false) or NHWC (channels_last = true), all in the same
// layout. Every launcher returns the launch status (cudaGetLastError) for the caller to check.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/dtype.h"

namespace hrnet_fast {
namespace cuda_kernels {

// Low-resolution contributions handled by one forward launch (HRNet needs at most 3).
constexpr int kMaxLowsPerLaunch = 4;

// The low-resolution contributions z[k], (N, C, H >> log2s[k], W >> log2s[k]) in the layout of base, are
// in the accumulation type: float32 for float16/bfloat16/float32 tensors, float64 for float64. Rounding
// them to 16 bits before the sum (as a GEMM in the input dtype would) moves outputs near zero across it,
// and the backward's ReLU mask with them. bias[k] is (C,) in the accumulation type, or null; the kernel
// adds z + bias (rounded once, as a GEMM's bias epilogue) before the sum, so a GEMM without a bias
// writes z and no per-call bias pass is needed.
struct ExchangeLows {
  const void* z[kMaxLowsPerLaunch];
  const void* bias[kMaxLowsPerLaunch];
  int log2s[kMaxLowsPerLaunch];
  int count;
};

// out = [relu](base + sum_k (z[k] + bias[k])[nearest]); base may equal out (in-place accumulation). dtype is the
// tensor type T; base_is_acc / out_is_acc say that base / out hold T's accumulation type instead (float32
// for the 16-bit types, else T): more lows than one launch takes chain through an accumulation-type
// buffer, so partial sums are not rounded to 16 bits between launches.
cudaError_t launch_exchange_forward(cuda::DType dtype, bool base_is_acc, bool out_is_acc, const void* base, void* out,
                                    const ExchangeLows& lows, int64_t n, int64_t c, int64_t h, int64_t w,
                                    bool channels_last, bool relu, cudaStream_t stream);

// grad_base = relu ? (out <= 0 ? 0 : grad) : grad (a NaN output passes the gradient, as torch's ReLU
// backward does), over numel elements of one layout.
cudaError_t launch_exchange_relu_mask(cuda::DType dtype, const void* grad, const void* out, void* grad_base,
                                      int64_t numel, bool relu, cudaStream_t stream);

// pooled (N, C, H >> log2s, W >> log2s) = the 2^log2s x 2^log2s block sums of grad_base (N, C, H, W).
cudaError_t launch_exchange_block_sum(cuda::DType dtype, const void* grad_base, void* pooled, int64_t n, int64_t c,
                                      int64_t h, int64_t w, int log2s, bool channels_last, cudaStream_t stream);

}  // namespace cuda_kernels
}  // namespace hrnet_fast
