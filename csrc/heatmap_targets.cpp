// heatmap_targets: schema, argument checks, outputs and kernel parameters, CPU registration. See
// hrnet_fast/ops/heatmap_targets.py for the rules (official msra target, mmpose's UDP target) and the torch
// reference. Not differentiable: no autograd kernel is registered (the Python wrapper detaches its inputs).
#include "heatmap_targets.h"

#include <torch/library.h>

#include <cmath>
#include <limits>

#include "cpu/heatmap_targets_kernel.h"

namespace hrnet_fast {

void check_target_inputs(const at::Tensor& keypoints, const at::Tensor& visible,
                         const std::optional<at::Tensor>& joint_weights, const std::optional<at::Tensor>& table,
                         int64_t heatmap_h, int64_t heatmap_w, double stride_x, double stride_y, double sigma,
                         int64_t method) {
  TORCH_CHECK(keypoints.scalar_type() == at::kDouble && keypoints.dim() == 3 && keypoints.size(2) == 2 &&
                  keypoints.is_contiguous(),
              "heatmap_targets: keypoints must be a contiguous float64 tensor of shape (N, K, 2), got ",
              keypoints.scalar_type(), " of shape ", keypoints.sizes());
  const int64_t N = keypoints.size(0), K = keypoints.size(1);
  TORCH_CHECK(visible.scalar_type() == at::kFloat && visible.dim() == 2 && visible.size(0) == N &&
                  visible.size(1) == K && visible.is_contiguous(),
              "heatmap_targets: visible must be a contiguous float32 tensor of shape (N, K) = (", N, ", ", K,
              "), got ", visible.scalar_type(), " of shape ", visible.sizes());
  TORCH_CHECK(visible.device() == keypoints.device(), "heatmap_targets: visible must be on the device of keypoints (",
              keypoints.device(), "), got ", visible.device());
  if (joint_weights.has_value()) {
    const auto& w = *joint_weights;
    TORCH_CHECK(w.scalar_type() == at::kFloat && w.dim() == 1 && w.size(0) == K && w.is_contiguous(),
                "heatmap_targets: joint_weights must be a contiguous float32 tensor of shape (K,) = (", K, ",), got ",
                w.scalar_type(), " of shape ", w.sizes());
    TORCH_CHECK(w.device() == keypoints.device(), "heatmap_targets: joint_weights must be on the device of keypoints");
  }
  TORCH_CHECK(heatmap_h >= 1 && heatmap_w >= 1, "heatmap_targets: heatmap_h and heatmap_w must be positive, got ",
              heatmap_h, " and ", heatmap_w);
  TORCH_CHECK(method == targets::kMsra || method == targets::kUdp, "heatmap_targets: method code must be 0 (msra) or 1 (udp), got ",
              method);
  TORCH_CHECK(std::isfinite(sigma) && sigma > 0.0 && sigma <= targets::kMaxSigma,
              "heatmap_targets: sigma must be in (0, ", targets::kMaxSigma, "], got ", sigma);
  TORCH_CHECK(std::isfinite(stride_x) && std::isfinite(stride_y) && stride_x > 0.0 && stride_y > 0.0,
              "heatmap_targets: stride_x and stride_y must be finite and positive, got ", stride_x, " and ", stride_y);
  if (method == targets::kMsra) {
    const int64_t L = targets::window_side(sigma);
    TORCH_CHECK(table.has_value(), "heatmap_targets: msra needs the Gaussian table");
    const auto& t = *table;
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.dim() == 2 && t.size(0) == L && t.size(1) == L && t.is_contiguous(),
                "heatmap_targets: table must be a contiguous float32 tensor of shape (L, L) = (", L, ", ", L,
                ") for sigma ", sigma, ", got ", t.scalar_type(), " of shape ", t.sizes());
    TORCH_CHECK(t.device() == keypoints.device(), "heatmap_targets: table must be on the device of keypoints");
  } else {
    TORCH_CHECK(!table.has_value(), "heatmap_targets: udp takes no table (pass None)");
  }
}

std::pair<at::Tensor, at::Tensor> alloc_target_outputs(const at::Tensor& keypoints, int64_t heatmap_h,
                                                       int64_t heatmap_w) {
  const auto opts = keypoints.options().dtype(at::kFloat);
  auto targets = at::empty({keypoints.size(0), keypoints.size(1), heatmap_h, heatmap_w}, opts);
  auto weights = at::empty({keypoints.size(0), keypoints.size(1), 1}, opts);
  if (poison_outputs()) {
    targets.fill_(std::numeric_limits<float>::quiet_NaN());
    weights.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  return {targets, weights};
}

targets::TargetParams make_target_params(const at::Tensor& keypoints, const at::Tensor& visible,
                                         const std::optional<at::Tensor>& joint_weights,
                                         const std::optional<at::Tensor>& table, double stride_x, double stride_y,
                                         double sigma, int64_t method, at::Tensor& targets, at::Tensor& weights) {
  targets::TargetParams p{};
  p.keypoints = keypoints.data_ptr<double>();
  p.visible = visible.data_ptr<float>();
  p.joint_weights = joint_weights.has_value() ? joint_weights->data_ptr<float>() : nullptr;
  p.table = table.has_value() ? table->data_ptr<float>() : nullptr;
  p.targets = targets.data_ptr<float>();
  p.weights = weights.data_ptr<float>();
  p.N = keypoints.size(0);
  p.K = keypoints.size(1);
  p.H = targets.size(2);
  p.W = targets.size(3);
  p.L = targets::window_side(sigma);
  p.stride_x = stride_x;
  p.stride_y = stride_y;
  p.sigma = sigma;
  p.tmp = sigma * 3.0;
  p.center = std::floor((2.0 * p.tmp + 1.0) / 2.0);  // Python's size // 2
  p.two_sigma2 = 2.0 * (sigma * sigma);             // Python's 2 * sigma ** 2
  p.method = method;
  return p;
}

namespace {

std::tuple<at::Tensor, at::Tensor> heatmap_targets_cpu(const at::Tensor& keypoints, const at::Tensor& visible,
                                                       const std::optional<at::Tensor>& joint_weights,
                                                       const std::optional<at::Tensor>& table, int64_t heatmap_h,
                                                       int64_t heatmap_w, double stride_x, double stride_y,
                                                       double sigma, int64_t method) {
  check_target_inputs(keypoints, visible, joint_weights, table, heatmap_h, heatmap_w, stride_x, stride_y, sigma,
                      method);
  TORCH_CHECK(keypoints.device().is_cpu(), "heatmap_targets (CPU): keypoints must be a CPU tensor");
  auto outs = alloc_target_outputs(keypoints, heatmap_h, heatmap_w);
  if (keypoints.size(0) * keypoints.size(1) > 0) {
    cpu::heatmap_targets_kernel(make_target_params(keypoints, visible, joint_weights, table, stride_x, stride_y, sigma,
                                                   method, outs.first, outs.second));
  }
  return {outs.first, outs.second};
}

}  // namespace
}  // namespace hrnet_fast

TORCH_LIBRARY_FRAGMENT(hrnet_fast, m) {
  m.def(
      "heatmap_targets(Tensor keypoints, Tensor visible, Tensor? joint_weights, Tensor? table, int heatmap_h, "
      "int heatmap_w, float stride_x, float stride_y, float sigma, int method) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(hrnet_fast, CPU, m) { m.impl("heatmap_targets", &hrnet_fast::heatmap_targets_cpu); }
