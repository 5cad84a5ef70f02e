// Torch binding of the CUDA decode kernels (compiled only when torch is a CUDA build: setup.py adds
// csrc/cuda/*.cpp with HRNET_FAST_WITH_CUDA). Checks, device guard, current stream, launch check.
#ifdef HRNET_FAST_WITH_CUDA

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/decode_heatmaps_kernel.h"
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

  cuda::DecodeArgs a{};
  a.heatmaps = heatmaps.data_ptr();
  a.flipped = flipped.has_value() ? flipped->data_ptr() : nullptr;
  a.perm = flipped.has_value() ? flip_perm->data_ptr<int64_t>() : nullptr;
  a.center = center.has_value() ? center->data_ptr<float>() : nullptr;
  a.scale = scale.has_value() ? scale->data_ptr<float>() : nullptr;
  a.weights = method >= kDark ? blur_weights->data_ptr<float>() : nullptr;
  a.coords = outs.first.data_ptr<float>();
  a.maxvals = outs.second.data_ptr<float>();
  a.N = heatmaps.size(0);
  a.K = heatmaps.size(1);
  a.H = heatmaps.size(2);
  a.W = heatmaps.size(3);
  a.hs_n = heatmaps.stride(0);
  a.hs_k = heatmaps.stride(1);
  a.hs_h = heatmaps.stride(2);
  if (flipped.has_value()) {
    a.fs_n = flipped->stride(0);
    a.fs_k = flipped->stride(1);
    a.fs_h = flipped->stride(2);
  }
  a.method = method;
  a.ksize = method >= kDark ? blur_weights->size(0) : 0;
  a.shift = shift;
  switch (heatmaps.scalar_type()) {
    case at::kFloat:
      a.dtype = cuda::DType::kFloat32;
      break;
    case at::kHalf:
      a.dtype = cuda::DType::kFloat16;
      break;
    case at::kBFloat16:
      a.dtype = cuda::DType::kBFloat16;
      break;
    default:
      TORCH_CHECK(false, "decode_heatmaps (CUDA): unsupported dtype ", heatmaps.scalar_type());
  }
  const char* what = "";
  const cudaError_t err = cuda::launch_decode_heatmaps(a, at::cuda::getCurrentCUDAStream().stream(), &what);
  TORCH_CHECK(err == cudaSuccess, "decode_heatmaps (CUDA): ", what, ": ", cudaGetErrorString(err));
  return {outs.first, outs.second};
}

}  // namespace
}  // namespace hrnet_fast

TORCH_LIBRARY_IMPL(hrnet_fast, CUDA, m) { m.impl("decode_heatmaps", &hrnet_fast::decode_heatmaps_cuda); }

#endif  // HRNET_FAST_WITH_CUDA
