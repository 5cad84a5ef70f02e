// CUDA launchers of the fused exchange unit. Plain C++ (no torch headers): the .cu compiles with nvcc
// alone; the torch binding (csrc/cuda/fused_exchange_cuda.cpp) passes raw pointers and sizes.
//
// Tensors are dense, either NCHW (channels_last = false) or NHWC (channels_last = true), all in the same
// layout. Every launcher returns the launch status (cudaGetLastError) for the caller to check.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace hrnet_fast {
namespace cuda_kernels {

enum class ExchangeDType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

// Low-resolution contributions handled by one forward launch (HRNet needs at most 3).
constexpr int kMaxLowsPerLaunch = 4;

struct ExchangeLows {
  const void* z[kMaxLowsPerLaunch];  // z[k]: (N, C, H >> log2s[k], W >> log2s[k]), the layout of base
  int log2s[kMaxLowsPerLaunch];
  int count;
};

// out = [relu](base + sum_k z[k][nearest]); base may equal out (in-place accumulation).
cudaError_t launch_exchange_forward(ExchangeDType dtype, const void* base, void* out, const ExchangeLows& lows,
                                    int64_t n, int64_t c, int64_t h, int64_t w, bool channels_last, bool relu,
                                    cudaStream_t stream);

// grad_base = relu ? grad * (out > 0) : grad, over numel elements of one layout.
cudaError_t launch_exchange_relu_mask(ExchangeDType dtype, const void* grad, const void* out, void* grad_base,
                                      int64_t numel, bool relu, cudaStream_t stream);

// pooled (N, C, H >> log2s, W >> log2s) = the 2^log2s x 2^log2s block sums of grad_base (N, C, H, W).
cudaError_t launch_exchange_block_sum(ExchangeDType dtype, const void* grad_base, void* pooled, int64_t n, int64_t c,
                                      int64_t h, int64_t w, int log2s, bool channels_last, cudaStream_t stream);

}  // namespace cuda_kernels
}  // namespace hrnet_fast
