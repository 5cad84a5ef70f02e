// Torch binding of the CUDA crop kernel (compiled only when torch is a CUDA build: setup.py adds
// csrc/cuda/*.cpp with HRNET_FAST_WITH_CUDA). Checks, device guard, current stream, launch check.
#ifdef HRNET_FAST_WITH_CUDA

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "crop_boxes.h"
#include "cuda/crop_boxes_kernel.h"
#include "cuda/torch_dtype.h"

namespace hrnet_fast {
namespace {

at::Tensor crop_boxes_cuda(const at::Tensor& images, const at::Tensor& image_meta, const at::Tensor& image_index,
                           const at::Tensor& inv_affine, int64_t out_h, int64_t out_w, at::ArrayRef<double> mean,
                           at::ArrayRef<double> std, bool swap_rb, at::ScalarType dtype, bool channels_last) {
  check_crop_inputs(images, image_meta, image_index, inv_affine, out_h, out_w, mean, std, dtype);
  TORCH_CHECK(images.is_cuda(), "crop_boxes (CUDA): images must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(images.device());
  at::Tensor out = alloc_crop_output(images, image_index.size(0), out_h, out_w, dtype, channels_last);
  if (out.numel() == 0) return out;

  const CropParams p = make_crop_params(images, image_meta, image_index, inv_affine, mean, std, swap_rb, out);
  // float64 maps to kFloat64, which the crop launcher refuses (check_crop_inputs never lets it through)
  const cuda::DType dt = cuda::to_cuda_dtype(dtype, "crop_boxes");
  const char* what = "";
  const cudaError_t err = cuda::launch_crop_boxes(p, dt, at::cuda::getCurrentCUDAStream().stream(), &what);
  TORCH_CHECK(err == cudaSuccess, "crop_boxes (CUDA): ", what, ": ", cudaGetErrorString(err));
  return out;
}

}  // namespace
}  // namespace hrnet_fast

TORCH_LIBRARY_IMPL(hrnet_fast, CUDA, m) { m.impl("crop_boxes", &hrnet_fast::crop_boxes_cuda); }

#endif  // HRNET_FAST_WITH_CUDA
