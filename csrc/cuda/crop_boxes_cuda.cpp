// Torch binding of the CUDA crop kernel (compiled only when torch is a CUDA build: setup.py adds
// csrc/cuda/*.cpp with HRNET_FAST_WITH_CUDA). Checks, device guard, current stream, launch check.
#ifdef HRNET_FAST_WITH_CUDA

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "crop_boxes.h"
#include "cuda/crop_boxes_kernel.h"

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

  const CropNorm norm = crop_norm(mean, std);
  cuda::CropArgs a{};
  a.images = images.data_ptr<uint8_t>();
  a.meta = image_meta.data_ptr<int64_t>();
  a.index = image_index.data_ptr<int64_t>();
  a.affine = inv_affine.data_ptr<double>();
  a.out = out.data_ptr();
  a.N = image_meta.size(0);
  a.M = out.size(0);
  a.H = out.size(2);
  a.W = out.size(3);
  a.os_m = out.stride(0);
  a.os_c = out.stride(1);
  a.os_h = out.stride(2);
  a.os_w = out.stride(3);
  for (int c = 0; c < 3; ++c) {
    a.scale[c] = norm.scale[c];
    a.bias[c] = norm.bias[c];
    a.src_c[c] = swap_rb ? 2 - c : c;
  }
  switch (dtype) {
    case at::kFloat:
      a.dtype = cuda::CropDType::kFloat32;
      break;
    case at::kHalf:
      a.dtype = cuda::CropDType::kFloat16;
      break;
    case at::kBFloat16:
      a.dtype = cuda::CropDType::kBFloat16;
      break;
    default:
      TORCH_CHECK(false, "crop_boxes (CUDA): unsupported dtype ", dtype);
  }
  const char* what = "";
  const cudaError_t err = cuda::launch_crop_boxes(a, at::cuda::getCurrentCUDAStream().stream(), &what);
  TORCH_CHECK(err == cudaSuccess, "crop_boxes (CUDA): ", what, ": ", cudaGetErrorString(err));
  return out;
}

}  // namespace
}  // namespace hrnet_fast

TORCH_LIBRARY_IMPL(hrnet_fast, CUDA, m) { m.impl("crop_boxes", &hrnet_fast::crop_boxes_cuda); }

#endif  // HRNET_FAST_WITH_CUDA
