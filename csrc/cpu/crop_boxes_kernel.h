// CPU kernel of crop_boxes (at::parallel_for over boxes x output rows).
#pragma once

#include <ATen/ATen.h>

#include "crop_boxes.h"

namespace hrnet_fast {
namespace cpu {

// Inputs checked by check_crop_inputs (values included); out is (M, 3, H, W) of any strides (contiguous or
// channels_last) and float32/float16/bfloat16.
void crop_boxes_kernel(const at::Tensor& images, const at::Tensor& image_meta, const at::Tensor& image_index,
                       const at::Tensor& inv_affine, const CropNorm& norm, bool swap_rb, at::Tensor& out);

}  // namespace cpu
}  // namespace hrnet_fast
