// CPU kernel of crop_boxes (at::parallel_for over boxes x output rows).
#pragma once

#include <c10/core/ScalarType.h>

#include "crop_boxes_common.h"

namespace hrnet_fast {
namespace cpu {

// `p` from make_crop_params (inputs checked by check_crop_inputs, values included; M*H*W > 0); `dtype`,
// the output's (float32, float16 or bfloat16). p.out may have any strides (contiguous or channels_last).
void crop_boxes_kernel(const CropParams& p, at::ScalarType dtype);

}  // namespace cpu
}  // namespace hrnet_fast
