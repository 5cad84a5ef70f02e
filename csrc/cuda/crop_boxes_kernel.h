// CUDA launcher of crop_boxes. Plain C++/CUDA signature (CropParams: raw pointers, 64-bit sizes;
// cuda::DType): the .cu file includes no torch headers, so CI compiles it with nvcc alone. The torch
// binding that calls it is csrc/cuda/crop_boxes_cuda.cpp.
#pragma once

#include <cuda_runtime.h>

#include "crop_boxes_common.h"
#include "cuda/dtype.h"

namespace hrnet_fast {
namespace cuda {

// Crops on `stream` into p.out (element type `dtype`: float32, float16 or bfloat16). Returns cudaSuccess,
// or an error with `*what` naming the failing step. Returns at once (cudaSuccess) when M * H * W == 0.
cudaError_t launch_crop_boxes(const CropParams& p, DType dtype, cudaStream_t stream, const char** what);

}  // namespace cuda
}  // namespace hrnet_fast
