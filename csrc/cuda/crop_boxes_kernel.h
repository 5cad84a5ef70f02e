// CUDA launcher of crop_boxes. Plain C++/CUDA signature (raw pointers, 64-bit sizes): the .cu file includes
// no torch headers, so CI compiles it with nvcc alone. The torch binding is csrc/cuda/crop_boxes_cuda.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace hrnet_fast {
namespace cuda {

enum class CropDType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

struct CropArgs {
  const uint8_t* images;  // every image's H_i * W_i * 3 bytes (HWC), one after the other
  const int64_t* meta;    // (N, 3): element offset into images, H_i, W_i
  const int64_t* index;   // (M,) image of each box; outside [0, N): the box's crop is NaN
  const double* affine;   // (M, 2, 3) output pixel -> source point
  void* out;              // (M, 3, H, W) with element strides os_*
  int64_t N, M, H, W;
  int64_t os_m, os_c, os_h, os_w;
  float scale[3], bias[3];  // out = v * scale[c] + bias[c]
  int src_c[3];             // source channel of output channel c
  CropDType dtype;
};

// Launches on `stream`. Returns cudaSuccess, or an error with `*what` naming the failing step. Returns at
// once (cudaSuccess) when M * H * W == 0.
cudaError_t launch_crop_boxes(const CropArgs& args, cudaStream_t stream, const char** what);

}  // namespace cuda
}  // namespace hrnet_fast
