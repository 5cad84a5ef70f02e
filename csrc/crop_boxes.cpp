// crop_boxes: schema, argument checks, CPU registration. See hrnet_fast/ops/crop_boxes.py for the rules
// (official crop geometry, bilinear with a zero border, BGR->RGB, mean/std) and the torch reference.
#include "crop_boxes.h"

#include <torch/library.h>

#include <cmath>
#include <limits>

#include "cpu/crop_boxes_kernel.h"

namespace hrnet_fast {

void check_crop_inputs(const at::Tensor& images, const at::Tensor& image_meta, const at::Tensor& image_index,
                       const at::Tensor& inv_affine, int64_t out_h, int64_t out_w, at::ArrayRef<double> mean,
                       at::ArrayRef<double> std, at::ScalarType dtype) {
  TORCH_CHECK(images.scalar_type() == at::kByte && images.dim() == 1 && images.is_contiguous(),
              "crop_boxes: images must be a contiguous 1-D uint8 tensor (every image's H*W*3 pixels), got ",
              images.scalar_type(), " of shape ", images.sizes());
  TORCH_CHECK(image_meta.scalar_type() == at::kLong && image_meta.dim() == 2 && image_meta.size(1) == 3 &&
                  image_meta.is_contiguous(),
              "crop_boxes: image_meta must be a contiguous int64 tensor of shape (N, 3) (offset, height, width), got ",
              image_meta.scalar_type(), " of shape ", image_meta.sizes());
  TORCH_CHECK(image_index.scalar_type() == at::kLong && image_index.dim() == 1 && image_index.is_contiguous(),
              "crop_boxes: image_index must be a contiguous int64 tensor of shape (M,), got ", image_index.scalar_type(),
              " of shape ", image_index.sizes());
  const int64_t M = image_index.size(0);
  TORCH_CHECK(inv_affine.scalar_type() == at::kDouble && inv_affine.dim() == 3 && inv_affine.size(0) == M &&
                  inv_affine.size(1) == 2 && inv_affine.size(2) == 3 && inv_affine.is_contiguous(),
              "crop_boxes: inv_affine must be a contiguous float64 tensor of shape (M, 2, 3) = (", M, ", 2, 3), got ",
              inv_affine.scalar_type(), " of shape ", inv_affine.sizes());
  for (const auto* t : {&image_meta, &image_index, &inv_affine}) {
    const char* name = t == &image_meta ? "image_meta" : (t == &image_index ? "image_index" : "inv_affine");
    TORCH_CHECK(t->device() == images.device(), "crop_boxes: ", name, " must be on the device of images (",
                images.device(), "), got ", t->device());
  }
  TORCH_CHECK(out_h >= 1 && out_w >= 1, "crop_boxes: out_h and out_w must be positive, got ", out_h, " and ", out_w);
  TORCH_CHECK(mean.size() == 3 && std.size() == 3, "crop_boxes: mean and std must have 3 values each, got ",
              mean.size(), " and ", std.size());
  for (int c = 0; c < 3; ++c) {
    TORCH_CHECK(std::isfinite(mean[c]) && std::isfinite(std[c]) && std[c] != 0.0,
                "crop_boxes: mean must be finite and std finite and non-zero, got mean ", mean, ", std ", std);
  }
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "crop_boxes: dtype must be float32, float16 or bfloat16, got ", dtype);
  if (images.device().is_cpu()) {
    const int64_t N = image_meta.size(0), total = images.numel();
    const int64_t* meta = image_meta.data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i) {
      const int64_t off = meta[3 * i], h = meta[3 * i + 1], w = meta[3 * i + 2];
      // h * w * 3 <= total - off, without overflow
      const bool ok = off >= 0 && off <= total && h >= 1 && w >= 1 && w <= (total - off) / 3 &&
                      h <= (total - off) / 3 / w;
      TORCH_CHECK(ok, "crop_boxes: image_meta[", i, "] = (", off, ", ", h, ", ", w,
                  ") does not describe an image inside images (", total, " bytes)");
    }
    const int64_t* idx = image_index.data_ptr<int64_t>();
    for (int64_t m = 0; m < M; ++m) {
      TORCH_CHECK(idx[m] >= 0 && idx[m] < N, "crop_boxes: image_index[", m, "] = ", idx[m],
                  " is out of range for ", N, " image(s)");
    }
  }
}

at::Tensor alloc_crop_output(const at::Tensor& images, int64_t m, int64_t out_h, int64_t out_w, at::ScalarType dtype,
                             bool channels_last) {
  auto out = at::empty({m, 3, out_h, out_w}, images.options().dtype(dtype),
                       channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  if (out.numel() > 0 && poison_outputs()) out.fill_(std::numeric_limits<double>::quiet_NaN());
  return out;
}

CropParams make_crop_params(const at::Tensor& images, const at::Tensor& image_meta, const at::Tensor& image_index,
                            const at::Tensor& inv_affine, at::ArrayRef<double> mean, at::ArrayRef<double> std,
                            bool swap_rb, at::Tensor& out) {
  CropParams p{};
  p.images = images.data_ptr<uint8_t>();
  p.meta = image_meta.data_ptr<int64_t>();
  p.index = image_index.data_ptr<int64_t>();
  p.affine = inv_affine.data_ptr<double>();
  p.out = out.data_ptr();
  p.N = image_meta.size(0);
  p.M = out.size(0);
  p.H = out.size(2);
  p.W = out.size(3);
  p.os_m = out.stride(0);
  p.os_c = out.stride(1);
  p.os_h = out.stride(2);
  p.os_w = out.stride(3);
  for (int c = 0; c < 3; ++c) {
    p.scale[c] = static_cast<float>(1.0 / (255.0 * std[c]));
    p.bias[c] = static_cast<float>(-mean[c] / std[c]);
    p.src_c[c] = swap_rb ? 2 - c : c;
  }
  return p;
}

namespace {

at::Tensor crop_boxes_cpu(const at::Tensor& images, const at::Tensor& image_meta, const at::Tensor& image_index,
                          const at::Tensor& inv_affine, int64_t out_h, int64_t out_w, at::ArrayRef<double> mean,
                          at::ArrayRef<double> std, bool swap_rb, at::ScalarType dtype, bool channels_last) {
  check_crop_inputs(images, image_meta, image_index, inv_affine, out_h, out_w, mean, std, dtype);
  TORCH_CHECK(images.device().is_cpu(), "crop_boxes (CPU): images must be a CPU tensor");
  at::Tensor out = alloc_crop_output(images, image_index.size(0), out_h, out_w, dtype, channels_last);
  if (out.numel() > 0) {
    cpu::crop_boxes_kernel(make_crop_params(images, image_meta, image_index, inv_affine, mean, std, swap_rb, out),
                           dtype);
  }
  return out;
}

}  // namespace
}  // namespace hrnet_fast

TORCH_LIBRARY_FRAGMENT(hrnet_fast, m) {
  m.def(
      "crop_boxes(Tensor images, Tensor image_meta, Tensor image_index, Tensor inv_affine, int out_h, int out_w, "
      "float[] mean, float[] std, bool swap_rb, ScalarType dtype, bool channels_last) -> Tensor");
}

TORCH_LIBRARY_IMPL(hrnet_fast, CPU, m) { m.impl("crop_boxes", &hrnet_fast::crop_boxes_cpu); }
