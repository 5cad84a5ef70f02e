// crop_boxes: shared declarations of the schema file (CPU registration) and the CUDA binding.
//
// Rules and the torch reference: hrnet_fast/ops/crop_boxes.py. The op samples, for every output pixel
// (x, y) of box m, the point inv_affine[m] @ (x, y, 1) of image image_index[m] (bilinear, zero outside the
// image), swaps BGR to RGB when asked, normalises with mean/std and writes dtype.
#pragma once

#include <ATen/ATen.h>

#include <array>

#include "common.h"

namespace hrnet_fast {

// Per output channel: out = v * scale[c] + bias[c], v the interpolated 0..255 value. Computed in double from
// mean/std (RGB, 0..1 scale) and rounded to float, as every backend does.
struct CropNorm {
  std::array<float, 3> scale, bias;
};
CropNorm crop_norm(at::ArrayRef<double> mean, at::ArrayRef<double> std);

// Checks every argument (dtypes, shapes, devices, out size, mean/std) with a message naming it. On CPU
// tensors it also checks the values of image_meta (each image inside `images`) and image_index (in
// [0, N)); on a GPU that would need a host read: the Python wrapper builds image_meta itself and checks
// image_index where it is on the CPU, and the CUDA kernel writes NaN for a box whose index is out of range.
void check_crop_inputs(const at::Tensor& images, const at::Tensor& image_meta, const at::Tensor& image_index,
                       const at::Tensor& inv_affine, int64_t out_h, int64_t out_w, at::ArrayRef<double> mean,
                       at::ArrayRef<double> std, at::ScalarType dtype);

// The (M, 3, out_h, out_w) output on the images' device, contiguous or channels_last; NaN-filled under
// the poison test hook.
at::Tensor alloc_crop_output(const at::Tensor& images, int64_t m, int64_t out_h, int64_t out_w, at::ScalarType dtype,
                             bool channels_last);

}  // namespace hrnet_fast
