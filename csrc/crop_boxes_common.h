// What the CPU and CUDA crop kernels share: the one parameter struct of a crop_boxes call. Torch-free plain
// C++ (no ATen, no CUDA headers): csrc/cpu/crop_boxes_kernel.cpp and csrc/cuda/crop_boxes_kernel.cu (which
// CI compiles with nvcc alone) include it; the op-level csrc/crop_boxes.h includes it for the bindings,
// whose make_crop_params fills it. Rules and the torch reference: hrnet_fast/ops/crop_boxes.py.
#pragma once

#include <cstdint>

namespace hrnet_fast {

// One crop call: raw pointers and 64-bit sizes, filled by make_crop_params (csrc/crop_boxes.cpp) from
// checked tensors. The output's element type travels beside it (at::ScalarType on the CPU, cuda::DType
// on the GPU). Every output pixel (x, y) of box m samples the point affine[m] @ (x, y, 1) of image
// index[m] (bilinear, zero outside the image) and writes v * scale[c] + bias[c] per output channel c.
struct CropParams {
  const uint8_t* images;  // every image's H_i * W_i * 3 bytes (HWC), one after the other
  const int64_t* meta;    // (N, 3): element offset into images, H_i, W_i
  const int64_t* index;   // (M,) image of each box; outside [0, N): the box's crop is NaN
  const double* affine;   // (M, 2, 3) output pixel -> source point
  void* out;              // (M, 3, H, W) with element strides os_* (contiguous or channels_last)
  int64_t N, M, H, W;     // images, boxes, output height and width
  int64_t os_m, os_c, os_h, os_w;
  float scale[3], bias[3];  // from mean/std (RGB, 0..1 scale), computed in double and rounded to float
  int src_c[3];             // source channel of output channel c (2 - c when swapping BGR to RGB)
};

}  // namespace hrnet_fast
