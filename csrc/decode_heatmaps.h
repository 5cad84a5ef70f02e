// Shared declarations of the decode_heatmaps op: argument checks used by the CPU and CUDA bindings.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace hrnet_fast {

// Method codes, as hrnet_fast/ops/decode_heatmaps.py METHODS.
enum DecodeMethod : int64_t { kArgmax = 0, kQuarter = 1, kDark = 2, kUdp = 3 };

// Checks every argument (shapes, dtypes, devices, unit stride along W) with a message naming it.
// Values that would need a device read (flip_perm entries on CUDA) are checked by the Python wrapper.
void check_decode_inputs(const at::Tensor& heatmaps, const std::optional<at::Tensor>& flipped,
                         const std::optional<at::Tensor>& flip_perm, const std::optional<at::Tensor>& center,
                         const std::optional<at::Tensor>& scale, int64_t method,
                         const std::optional<at::Tensor>& blur_weights);

// Allocates (coords (N,K,2), maxvals (N,K,1)) float32 on the heatmaps' device; filled with NaN when the
// environment variable HRNET_FAST_DEBUG_POISON=1 (tests use it so unwritten elements show).
std::pair<at::Tensor, at::Tensor> alloc_decode_outputs(const at::Tensor& heatmaps);

}  // namespace hrnet_fast
