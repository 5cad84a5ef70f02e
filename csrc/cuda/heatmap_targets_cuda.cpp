// Torch binding of the CUDA heatmap_targets kernel (compiled only when torch is a CUDA build: setup.py adds
// csrc/cuda/*.cpp with HRNET_FAST_WITH_CUDA). Checks, device guard, current stream, launch check.
#ifdef HRNET_FAST_WITH_CUDA

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cuda/heatmap_targets_kernel.h"
#include "heatmap_targets.h"

namespace hrnet_fast {
namespace {

std::tuple<at::Tensor, at::Tensor> heatmap_targets_cuda(const at::Tensor& keypoints, const at::Tensor& visible,
                                                        const std::optional<at::Tensor>& joint_weights,
                                                        const std::optional<at::Tensor>& table, int64_t heatmap_h,
                                                        int64_t heatmap_w, double stride_x, double stride_y,
                                                        double sigma, int64_t method) {
  check_target_inputs(keypoints, visible, joint_weights, table, heatmap_h, heatmap_w, stride_x, stride_y, sigma,
                      method);
  TORCH_CHECK(keypoints.is_cuda(), "heatmap_targets (CUDA): keypoints must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(keypoints.device());
  auto outs = alloc_target_outputs(keypoints, heatmap_h, heatmap_w);
  if (keypoints.size(0) * keypoints.size(1) == 0) return {outs.first, outs.second};

  const targets::TargetParams p = make_target_params(keypoints, visible, joint_weights, table, stride_x, stride_y,
                                                     sigma, method, outs.first, outs.second);
  const char* what = "";
  const cudaError_t err = cuda::launch_heatmap_targets(p, at::cuda::getCurrentCUDAStream().stream(), &what);
  TORCH_CHECK(err == cudaSuccess, "heatmap_targets (CUDA): ", what, ": ", cudaGetErrorString(err));
  return {outs.first, outs.second};
}

}  // namespace
}  // namespace hrnet_fast

TORCH_LIBRARY_IMPL(hrnet_fast, CUDA, m) { m.impl("heatmap_targets", &hrnet_fast::heatmap_targets_cuda); }

#endif  // HRNET_FAST_WITH_CUDA
