// CPU kernels of the fused exchange unit (full-resolution passes; the low-resolution GEMMs are done by
// the caller with BLAS). Tensors are dense in NCHW (channels_last=false) or NHWC (channels_last=true).
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace hrnet_fast {
namespace cpu {

// out = [relu](base + sum_j z[j][nearest]), z[j] of shape (N, C, H >> log2s[j], W >> log2s[j]).
void exchange_forward(const at::Tensor& base, const std::vector<at::Tensor>& z, const std::vector<int64_t>& log2s,
                      bool relu, bool channels_last, at::Tensor& out);

// grad_base = (out <= 0 ? 0 : grad) (or grad when !relu; a NaN output passes the gradient); pooled[j] = the 2^log2s[j] block sums of grad_base.
void exchange_backward(const at::Tensor& grad, const at::Tensor& out, const std::vector<int64_t>& log2s, bool relu,
                       bool channels_last, at::Tensor& grad_base, std::vector<at::Tensor>& pooled);

}  // namespace cpu
}  // namespace hrnet_fast
