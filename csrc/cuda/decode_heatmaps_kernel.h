// CUDA launchers of decode_heatmaps. Plain C++/CUDA signature (raw pointers, 64-bit sizes): the .cu
// file includes no torch headers, so CI compiles it with nvcc alone. The torch binding that calls these
// is csrc/cuda/decode_heatmaps_cuda.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace hrnet_fast {
namespace cuda {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

struct DecodeArgs {
  const void* heatmaps;  // (N, K, H, W), element strides hs_*, unit stride along W
  const void* flipped;   // same shape and dtype, strides fs_*; null: no flip merge
  const int64_t* perm;   // (K,) flipped channel feeding channel k; null with flipped == null
  const float* center;   // (N, 2) or null (heatmap coordinates)
  const float* scale;    // (N, 2) or null
  const float* weights;  // (ksize,) blur weights, DARK/UDP only
  float* coords;         // (N, K, 2) contiguous
  float* maxvals;        // (N, K) contiguous
  int64_t N, K, H, W;
  int64_t hs_n, hs_k, hs_h;
  int64_t fs_n, fs_k, fs_h;
  int64_t method;  // 0 argmax, 1 quarter, 2 dark, 3 udp
  int64_t ksize;
  bool shift;
  DType dtype;
};

// Launches on `stream`. Returns cudaSuccess, or an error with `*what` naming the failing step.
// Returns at once (cudaSuccess) when N*K == 0.
cudaError_t launch_decode_heatmaps(const DecodeArgs& args, cudaStream_t stream, const char** what);

}  // namespace cuda
}  // namespace hrnet_fast
