// CPU kernel of heatmap_targets (parallel over the N*K heatmaps with at::parallel_for, OpenMP underneath).
#pragma once

#include "heatmap_targets_common.h"

namespace hrnet_fast {
namespace cpu {

// `p` from make_target_params (inputs checked by check_target_inputs, N*K > 0). Writes every element of
// p.targets and p.weights.
void heatmap_targets_kernel(const targets::TargetParams& p);

}  // namespace cpu
}  // namespace hrnet_fast
