// crop_boxes: shared declarations of the schema file (CPU registration) and the CUDA binding: argument
// checks, output allocation and the kernels' parameters. CropParams lives in the torch-free
// csrc/crop_boxes_common.h, which the kernels include instead of this header.
//
// Rules and the torch reference: hrnet_fast/ops/crop_boxes.py. The op samples, for every output pixel
// (x, y) of box m, the point inv_affine[m] @ (x, y, 1) of image image_index[m] (bilinear, zero outside the
// image), swaps BGR to RGB when asked, normalises with mean/std and writes dtype.
#pragma once

#include <ATen/ATen.h>

#include "common.h"
#include "crop_boxes_common.h"

namespace hrnet_fast {

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

// The kernels' parameters for checked inputs and the output of alloc_crop_output (pointers into the
// tensors: they must outlive the kernel call). Per output channel c: out = v * scale[c] + bias[c], v the
// interpolated 0..255 value, scale and bias computed in double from mean/std and rounded to float, as every
// backend does.
CropParams make_crop_params(const at::Tensor& images, const at::Tensor& image_meta, const at::Tensor& image_index,
                            const at::Tensor& inv_affine, at::ArrayRef<double> mean, at::ArrayRef<double> std,
                            bool swap_rb, at::Tensor& out);

}  // namespace hrnet_fast
