// heatmap_targets: shared declarations of the schema file (CPU registration) and the CUDA binding: argument
// checks, output allocation and the kernels' parameters. TargetParams lives in the torch-free
// csrc/heatmap_targets_common.h, which the kernels include instead of this header.
//
// Rules and the torch reference: hrnet_fast/ops/heatmap_targets.py (official msra target, mmpose's UDP).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <utility>

#include "common.h"
#include "heatmap_targets_common.h"

namespace hrnet_fast {

// Checks every argument (dtypes, shapes, devices, sizes, sigma, strides, method, the table's shape) with a
// message naming it.
void check_target_inputs(const at::Tensor& keypoints, const at::Tensor& visible,
                         const std::optional<at::Tensor>& joint_weights, const std::optional<at::Tensor>& table,
                         int64_t heatmap_h, int64_t heatmap_w, double stride_x, double stride_y, double sigma,
                         int64_t method);

// (targets (N, K, H, W), weights (N, K, 1)) float32 on the keypoints' device; NaN-filled under the poison test
// hook (hrnet_fast::poison_outputs, csrc/common.h), so that an element a kernel fails to write shows.
std::pair<at::Tensor, at::Tensor> alloc_target_outputs(const at::Tensor& keypoints, int64_t heatmap_h,
                                                       int64_t heatmap_w);

// The kernels' parameters for checked inputs and the outputs of alloc_target_outputs (pointers into the
// tensors: they must outlive the kernel call).
targets::TargetParams make_target_params(const at::Tensor& keypoints, const at::Tensor& visible,
                                         const std::optional<at::Tensor>& joint_weights,
                                         const std::optional<at::Tensor>& table, double stride_x, double stride_y,
                                         double sigma, int64_t method, at::Tensor& targets, at::Tensor& weights);

}  // namespace hrnet_fast
