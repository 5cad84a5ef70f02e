// at::ScalarType -> cuda::DType for the torch bindings of the CUDA launchers (csrc/cuda/*_cuda.cpp).
// Includes torch headers: never include it from a .cu file (those compile with nvcc alone).
#pragma once

#include <ATen/ATen.h>

#include "cuda/dtype.h"

namespace hrnet_fast {
namespace cuda {

// The launcher type of `t`, or a TORCH_CHECK error naming `op` when `t` is not one of the four.
inline DType to_cuda_dtype(at::ScalarType t, const char* op) {
  switch (t) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kDouble:
      return DType::kFloat64;
    default:
      TORCH_CHECK(false, op, " (cuda backend): dtype must be float16, bfloat16, float32 or float64, got ", t);
  }
}

}  // namespace cuda
}  // namespace hrnet_fast
