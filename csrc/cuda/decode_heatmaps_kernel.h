// CUDA launcher of decode_heatmaps. Plain C++/CUDA signature (DecodeParams: raw pointers, 64-bit sizes;
// cuda::DType): the .cu file includes no torch headers, so CI compiles it with nvcc alone. The torch
// binding that calls it is csrc/cuda/decode_heatmaps_cuda.cpp.
#pragma once

#include <cuda_runtime.h>

#include "cuda/dtype.h"
#include "decode_heatmaps_common.h"

namespace hrnet_fast {
namespace cuda {

// Decodes the heatmaps of `p` (element type `dtype`: float32, float16 or bfloat16) on `stream`. Returns
// cudaSuccess, or an error with `*what` naming the failing step. Returns at once (cudaSuccess) when N*K == 0.
cudaError_t launch_decode_heatmaps(const DecodeParams& p, DType dtype, cudaStream_t stream, const char** what);

}  // namespace cuda
}  // namespace hrnet_fast
