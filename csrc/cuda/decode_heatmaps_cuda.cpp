// Torch binding of the CUDA decode kernels (compiled only when torch is a CUDA build: setup.py adds
// csrc/cuda/*.cpp with HRNET_FAST_WITH_CUDA). Checks, device guard, current stream, launch check.
#ifdef HRNET_FAST_WITH_CUDA

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/decode_heatmaps_kernel.h"
#include "cuda/torch_dtype.h"
#include "decode_heatmaps.h"

namespace hrnet_fast {
namespace {

std::tuple<at::Tensor, at::Tensor> decode_heatmaps_cuda(const at::Tensor& heatmaps,
                                                        const std::optional<at::Tensor>& flipped,
                                                        const std::optional<at::Tensor>& flip_perm,
                                                        const std::optional<at::Tensor>& center,
                                                        const std::optional<at::Tensor>& scale, int64_t method,
                                                        bool shift, const std::optional<at::Tensor>& blur_weights) {
  check_decode_inputs(heatmaps, flipped, flip_perm, center, scale, method, blur_weights);
  TORCH_CHECK(heatmaps.is_cuda(), "decode_heatmaps (CUDA): heatmaps must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  auto outs = alloc_decode_outputs(heatmaps);
  if (heatmaps.size(0) * heatmaps.size(1) == 0) return {outs.first, outs.second};

  const DecodeParams p = make_decode_params(heatmaps, flipped, flip_perm, center, scale, method, shift, blur_weights,
                                            outs.first, outs.second);
  // float64 maps to kFloat64, which the decode launcher refuses (the Python side never sends it)
  const cuda::DType dtype = cuda::to_cuda_dtype(heatmaps.scalar_type(), "decode_heatmaps");
  const char* what = "";
  const cudaError_t err = cuda::launch_decode_heatmaps(p, dtype, at::cuda::getCurrentCUDAStream().stream(), &what);
  TORCH_CHECK(err == cudaSuccess, "decode_heatmaps (CUDA): ", what, ": ", cudaGetErrorString(err));
  return {outs.first, outs.second};
}

}  // namespace
}  // namespace hrnet_fast

TORCH_LIBRARY_IMPL(hrnet_fast, CUDA, m) { m.impl("decode_heatmaps", &hrnet_fast::decode_heatmaps_cuda); }

#endif  // HRNET_FAST_WITH_CUDA
