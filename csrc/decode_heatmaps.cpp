// decode_heatmaps: schema, argument checks, outputs and kernel parameters, CPU registration. See
// hrnet_fast/ops/decode_heatmaps.py for the rules (argmax / quarter / DARK / UDP, flip merge,
// back-transform) and the torch reference.
#include "decode_heatmaps.h"

#include <torch/library.h>

#include <limits>

#include "common.h"
#include "cpu/decode_heatmaps_kernel.h"

namespace hrnet_fast {

void check_decode_inputs(const at::Tensor& heatmaps, const std::optional<at::Tensor>& flipped,
                         const std::optional<at::Tensor>& flip_perm, const std::optional<at::Tensor>& center,
                         const std::optional<at::Tensor>& scale, int64_t method,
                         const std::optional<at::Tensor>& blur_weights) {
  TORCH_CHECK(heatmaps.dim() == 4, "decode_heatmaps: heatmaps must be a 4-D tensor (N, K, H, W), got ",
              heatmaps.dim(), "-D");
  const auto dt = heatmaps.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16,
              "decode_heatmaps: heatmaps must be float32, float16 or bfloat16, got ", dt);
  const int64_t N = heatmaps.size(0), K = heatmaps.size(1), H = heatmaps.size(2), W = heatmaps.size(3);
  TORCH_CHECK(H >= 1 && W >= 1, "decode_heatmaps: heatmaps must have H >= 1 and W >= 1, got ", heatmaps.sizes());
  TORCH_CHECK(W == 1 || heatmaps.stride(3) == 1, "decode_heatmaps: heatmaps must have unit stride along W");
  TORCH_CHECK(method >= kArgmax && method <= kUdp, "decode_heatmaps: method code must be 0..3, got ", method);
  TORCH_CHECK(flipped.has_value() == flip_perm.has_value(),
              "decode_heatmaps: flipped and flip_perm must be given together");
  if (flipped.has_value()) {
    const auto& f = *flipped;
    TORCH_CHECK(f.sizes() == heatmaps.sizes(), "decode_heatmaps: flipped must have the shape of heatmaps ",
                heatmaps.sizes(), ", got ", f.sizes());
    TORCH_CHECK(f.scalar_type() == dt, "decode_heatmaps: flipped must have the dtype of heatmaps");
    TORCH_CHECK(f.device() == heatmaps.device(), "decode_heatmaps: flipped must be on the device of heatmaps");
    TORCH_CHECK(W == 1 || f.stride(3) == 1, "decode_heatmaps: flipped must have unit stride along W");
    const auto& p = *flip_perm;
    TORCH_CHECK(p.scalar_type() == at::kLong && p.dim() == 1 && p.size(0) == K && p.is_contiguous(),
                "decode_heatmaps: flip_perm must be a contiguous int64 tensor of shape (K,) = (", K, ",)");
    TORCH_CHECK(p.device() == heatmaps.device(), "decode_heatmaps: flip_perm must be on the device of heatmaps");
    if (p.device().is_cpu()) {
      const int64_t* pp = p.data_ptr<int64_t>();
      for (int64_t k = 0; k < K; ++k) {
        TORCH_CHECK(pp[k] >= 0 && pp[k] < K, "decode_heatmaps: flip_perm[", k, "] = ", pp[k],
                    " is out of range for K = ", K);
      }
    }
  }
  TORCH_CHECK(center.has_value() == scale.has_value(), "decode_heatmaps: center and scale must be given together");
  for (const auto* t : {&center, &scale}) {
    if (!t->has_value()) continue;
    const char* name = (t == &center) ? "center" : "scale";
    const auto& v = **t;
    TORCH_CHECK(v.dim() == 2 && v.size(0) == N && v.size(1) == 2, "decode_heatmaps: ", name,
                " must have shape (N, 2) = (", N, ", 2), got ", v.sizes());
    TORCH_CHECK(v.scalar_type() == at::kFloat && v.is_contiguous(), "decode_heatmaps: ", name,
                " must be a contiguous float32 tensor");
    TORCH_CHECK(v.device() == heatmaps.device(), "decode_heatmaps: ", name, " must be on the device of heatmaps");
  }
  if (method >= kDark) {
    TORCH_CHECK(blur_weights.has_value(), "decode_heatmaps: dark and udp need blur_weights");
    const auto& w = *blur_weights;
    TORCH_CHECK(w.dim() == 1 && w.size(0) % 2 == 1 && w.scalar_type() == at::kFloat && w.is_contiguous(),
                "decode_heatmaps: blur_weights must be a contiguous float32 1-D tensor of odd length, got ",
                w.sizes());
    TORCH_CHECK(w.device() == heatmaps.device(), "decode_heatmaps: blur_weights must be on the device of heatmaps");
  }
}

std::pair<at::Tensor, at::Tensor> alloc_decode_outputs(const at::Tensor& heatmaps) {
  const auto opts = heatmaps.options().dtype(at::kFloat);
  auto coords = at::empty({heatmaps.size(0), heatmaps.size(1), 2}, opts);
  auto maxvals = at::empty({heatmaps.size(0), heatmaps.size(1), 1}, opts);
  if (poison_outputs()) {
    coords.fill_(std::numeric_limits<float>::quiet_NaN());
    maxvals.fill_(std::numeric_limits<float>::quiet_NaN());
  }
  return {coords, maxvals};
}

DecodeParams make_decode_params(const at::Tensor& heatmaps, const std::optional<at::Tensor>& flipped,
                                const std::optional<at::Tensor>& flip_perm, const std::optional<at::Tensor>& center,
                                const std::optional<at::Tensor>& scale, int64_t method, bool shift,
                                const std::optional<at::Tensor>& blur_weights, at::Tensor& coords,
                                at::Tensor& maxvals) {
  DecodeParams p{};
  p.heatmaps = heatmaps.data_ptr();
  p.N = heatmaps.size(0);
  p.K = heatmaps.size(1);
  p.H = heatmaps.size(2);
  p.W = heatmaps.size(3);
  p.hs_n = heatmaps.stride(0);
  p.hs_k = heatmaps.stride(1);
  p.hs_h = heatmaps.stride(2);
  if (flipped.has_value()) {
    p.flipped = flipped->data_ptr();
    p.perm = flip_perm->data_ptr<int64_t>();
    p.fs_n = flipped->stride(0);
    p.fs_k = flipped->stride(1);
    p.fs_h = flipped->stride(2);
  }
  p.center = center.has_value() ? center->data_ptr<float>() : nullptr;
  p.scale = scale.has_value() ? scale->data_ptr<float>() : nullptr;
  p.method = method;
  if (method >= kDark) {
    p.weights = blur_weights->data_ptr<float>();
    p.ksize = blur_weights->size(0);
  }
  p.shift = shift;
  p.coords = coords.data_ptr<float>();
  p.maxvals = maxvals.data_ptr<float>();
  return p;
}

static std::tuple<at::Tensor, at::Tensor> decode_heatmaps_cpu(
    const at::Tensor& heatmaps, const std::optional<at::Tensor>& flipped, const std::optional<at::Tensor>& flip_perm,
    const std::optional<at::Tensor>& center, const std::optional<at::Tensor>& scale, int64_t method, bool shift,
    const std::optional<at::Tensor>& blur_weights) {
  check_decode_inputs(heatmaps, flipped, flip_perm, center, scale, method, blur_weights);
  TORCH_CHECK(heatmaps.device().is_cpu(), "decode_heatmaps (CPU): heatmaps must be a CPU tensor");
  auto outs = alloc_decode_outputs(heatmaps);
  if (heatmaps.size(0) * heatmaps.size(1) > 0) {
    const DecodeParams p = make_decode_params(heatmaps, flipped, flip_perm, center, scale, method, shift,
                                              blur_weights, outs.first, outs.second);
    cpu::decode_heatmaps_kernel(p, heatmaps.scalar_type());
  }
  return {outs.first, outs.second};
}

}  // namespace hrnet_fast

TORCH_LIBRARY_FRAGMENT(hrnet_fast, m) {
  m.def(
      "decode_heatmaps(Tensor heatmaps, Tensor? flipped, Tensor? flip_perm, Tensor? center, Tensor? scale, "
      "int method, bool shift, Tensor? blur_weights) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(hrnet_fast, CPU, m) { m.impl("decode_heatmaps", &hrnet_fast::decode_heatmaps_cpu); }
