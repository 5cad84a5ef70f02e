// CUDA launcher of heatmap_targets. Plain C++/CUDA signature (TargetParams: raw pointers, 64-bit sizes): the
// .cu file includes no torch headers, so CI compiles it with nvcc alone. The torch binding that calls it is
// csrc/cuda/heatmap_targets_cuda.cpp.
#pragma once

#include <cuda_runtime.h>

#include "heatmap_targets_common.h"

namespace hrnet_fast {
namespace cuda {

// Writes p.targets and p.weights on `stream`. Returns cudaSuccess, or an error with `*what` naming the
// failing step. Returns at once (cudaSuccess) when N*K == 0.
cudaError_t launch_heatmap_targets(const targets::TargetParams& p, cudaStream_t stream, const char** what);

}  // namespace cuda
}  // namespace hrnet_fast
