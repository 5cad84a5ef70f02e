// Shared declarations of the decode_heatmaps op for the CPU and CUDA bindings: argument checks, output
// allocation, and the kernels' parameters. The method codes and DecodeParams live in the torch-free
// csrc/decode_heatmaps_common.h, which the kernels include instead of this header.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <utility>

#include "decode_heatmaps_common.h"

namespace hrnet_fast {

// Checks every argument (shapes, dtypes, devices, unit stride along W) with a message naming it.
// Values that would need a device read (flip_perm entries on CUDA) are checked by the Python wrapper.
void check_decode_inputs(const at::Tensor& heatmaps, const std::optional<at::Tensor>& flipped,
                         const std::optional<at::Tensor>& flip_perm, const std::optional<at::Tensor>& center,
                         const std::optional<at::Tensor>& scale, int64_t method,
                         const std::optional<at::Tensor>& blur_weights);

// Allocates (coords (N,K,2), maxvals (N,K,1)) float32 on the heatmaps' device; filled with NaN when the
// test hook HRNET_FAST_POISON_OUTPUTS=1 is on (hrnet_fast::poison_outputs, csrc/common.h), so that an
// element a kernel fails to write shows.
std::pair<at::Tensor, at::Tensor> alloc_decode_outputs(const at::Tensor& heatmaps);

// The kernels' parameters for checked inputs and the outputs of alloc_decode_outputs (pointers into the
// tensors: they must outlive the kernel call).
DecodeParams make_decode_params(const at::Tensor& heatmaps, const std::optional<at::Tensor>& flipped,
                                const std::optional<at::Tensor>& flip_perm, const std::optional<at::Tensor>& center,
                                const std::optional<at::Tensor>& scale, int64_t method, bool shift,
                                const std::optional<at::Tensor>& blur_weights, at::Tensor& coords,
                                at::Tensor& maxvals);

}  // namespace hrnet_fast
