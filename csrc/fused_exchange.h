// The fused exchange unit: shared declarations for the schema file, the CPU kernels and the CUDA binding.
//
// out = relu(base + sum_j nearest_upsample(W_j @ low_j + b_j, s_j)), see hrnet_fast/ops/fused_exchange.py.
// Every backend first computes the low-resolution contributions Z_j = W_j @ low_j + b_j (a GEMM at low
// resolution, where it is s_j^2 times cheaper than at full resolution), then runs one full-resolution
// pass. The backward op returns grad_base = (out <= 0 ? 0 : grad) and the s_j x s_j block sums G_j of it; the
// low-resolution products (W_j^T G_j, G_j low_j^T, sum G_j) are GEMMs done by the autograd formula.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "common.h"

namespace hrnet_fast {

// Validates the op's arguments (TORCH_CHECK with the argument's name) and returns log2(s_j) per low.
std::vector<int64_t> check_fused_exchange_args(const at::Tensor& base, at::TensorList lows,
                                               const c10::List<std::optional<at::Tensor>>& weights,
                                               const c10::List<std::optional<at::Tensor>>& biases);

// Whether weights/biases of dtype `param` may go with inputs of dtype `base`: the same dtype, or float32
// beside float16/bfloat16 (prepared once, e.g. by the inference plan: the CUDA backend then converts
// nothing per call, see exchange_low_contribution).
bool exchange_param_dtype_ok(at::ScalarType param, at::ScalarType base);

// The schema's weights/biases lists use an empty 1-d tensor (shape (0,)) for "None"; this maps them back.
c10::List<std::optional<at::Tensor>> exchange_optional_list(at::TensorList ts);

// log2 of the scale factor base/low (a power of two >= 2, the same in height and width), checked.
int64_t exchange_scale_log2(const char* op, const at::Tensor& base, const at::Tensor& low, size_t j);

// The memory format the op computes and returns in: channels_last when base is (strictly) channels_last
// contiguous, else contiguous. The Python fake kernel applies the same rule.
at::MemoryFormat exchange_memory_format(const at::Tensor& t);

// Z_j = W_j @ low_j + b_j at low resolution, (N, C, h_j, w_j), dense in memory format `fmt`, computed and
// returned in `acc_dtype` (the kernels' accumulation type: float32 for 16-bit inputs, so the contribution
// is not rounded to 16 bits before the sum; the inputs' own dtype otherwise) through ATen, converting
// what is not in `acc_dtype` first. The CPU backend's path; the CUDA backend reads 16-bit inputs without
// converting them (exchange_low_gemm_cuda, csrc/cuda/fused_exchange_cuda.cpp) and adds the bias in its
// kernel. The GEMM follows torch's matmul precision setting: IEEE float32 unless the user allows TF32 for
// matmuls (torch.backends.cuda.matmul.allow_tf32); 16-bit values are exact in TF32 either way.
at::Tensor exchange_low_contribution(const at::Tensor& low, const std::optional<at::Tensor>& weight,
                                     const std::optional<at::Tensor>& bias, int64_t channels, at::MemoryFormat fmt,
                                     at::ScalarType acc_dtype);

// The backward op's checks shared by every backend: out's rank, grad_out's shape and dtype.
void check_fused_exchange_backward_args(const at::Tensor& grad_out, const at::Tensor& out);

// What the backward kernels read and write, in out's memory format: dense copies of out and grad_out
// (autograd may hand over expanded or transposed grads), grad_base (N, C, H, W) and, per low input, its
// block sums (N, C, h_j, w_j); log2(s_j) per low (checked). Zero-size outputs come zeroed; under the
// poison test hook, NaN-filled.
struct ExchangeBackwardBuffers {
  at::MemoryFormat fmt;
  std::vector<int64_t> log2s;
  at::Tensor out, grad_out, grad_base;
  std::vector<at::Tensor> pooled;
};
ExchangeBackwardBuffers exchange_backward_buffers(const at::Tensor& grad_out, const at::Tensor& out,
                                                  at::TensorList lows);

}  // namespace hrnet_fast
