// CPU kernels of decode_heatmaps (parallel over N*K with at::parallel_for).
#pragma once

#include <c10/core/ScalarType.h>

#include "decode_heatmaps_common.h"

namespace hrnet_fast {
namespace cpu {

// `p` from make_decode_params (inputs checked by check_decode_inputs, N*K > 0); `dtype`, the heatmaps'
// (float32, float16 or bfloat16). Writes p.coords and p.maxvals.
void decode_heatmaps_kernel(const DecodeParams& p, at::ScalarType dtype);

}  // namespace cpu
}  // namespace hrnet_fast
