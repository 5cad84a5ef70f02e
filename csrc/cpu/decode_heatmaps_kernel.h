// CPU kernels of decode_heatmaps (parallel over N*K with at::parallel_for).
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace hrnet_fast {
namespace cpu {

// Inputs already checked by check_decode_inputs; coords (N,K,2) and maxvals (N,K,1) float32, contiguous.
void decode_heatmaps_kernel(const at::Tensor& heatmaps, const std::optional<at::Tensor>& flipped,
                            const std::optional<at::Tensor>& flip_perm, const std::optional<at::Tensor>& center,
                            const std::optional<at::Tensor>& scale, int64_t method, bool shift,
                            const std::optional<at::Tensor>& blur_weights, at::Tensor& coords, at::Tensor& maxvals);

}  // namespace cpu
}  // namespace hrnet_fast
