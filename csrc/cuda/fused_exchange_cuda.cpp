// CUDA registration of hrnet_fast::fused_exchange and its backward (compiled only in CUDA builds, where
// setup.py defines HRNET_FAST_WITH_CUDA). The 1x1 convolutions run at low resolution through ATen
// (cuBLAS); the full-resolution passes are the kernels of fused_exchange_kernel.cu.
#ifdef HRNET_FAST_WITH_CUDA

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "cuda/fused_exchange_kernel.h"
#include "cuda/torch_dtype.h"
#include "fused_exchange.h"

namespace hrnet_fast {
namespace {

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "fused_exchange (cuda backend): launching ", what, " failed: ", cudaGetErrorString(err));
}

at::Tensor fused_exchange_cuda(const at::Tensor& base, at::TensorList lows, at::TensorList weight_list,
                               at::TensorList bias_list, bool relu) {
  const auto weights = exchange_optional_list(weight_list), biases = exchange_optional_list(bias_list);
  const std::vector<int64_t> log2s = check_fused_exchange_args(base, lows, weights, biases);
  TORCH_CHECK(base.is_cuda(), "fused_exchange (cuda backend): base must be a CUDA tensor, got ", base.device());
  const cuda::DType dtype = cuda::to_cuda_dtype(base.scalar_type(), "fused_exchange");
  const c10::cuda::CUDAGuard guard(base.device());
  const at::MemoryFormat fmt = exchange_memory_format(base);
  const bool cl = fmt == at::MemoryFormat::ChannelsLast;
  const at::Tensor b = base.contiguous(fmt);
  // float32 contributions for 16-bit inputs (see ExchangeLows), the inputs' dtype otherwise
  const at::ScalarType acc = base.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  std::vector<at::Tensor> z;
  for (size_t j = 0; j < lows.size(); ++j) {
    z.push_back(exchange_low_contribution(lows[j], weights.get(j), biases.get(j), base.size(1), fmt, acc));
  }
  at::Tensor out = at::empty_like(b, at::TensorOptions(), fmt);
  if (out.numel() == 0) return out;
  if (poison_outputs()) out.fill_(std::numeric_limits<double>::quiet_NaN());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(base.device().index()).stream();
  const int64_t n = b.size(0), c = b.size(1), h = b.size(2), w = b.size(3);
  const size_t per_launch = cuda_kernels::kMaxLowsPerLaunch;
  // More lows than one launch takes (HRNet needs at most 3): the partial sums go through an
  // accumulation-type buffer, so a 16-bit output is rounded once, at the end, like a single launch.
  const bool chained = z.size() > per_launch;
  const bool acc_is_t = acc == base.scalar_type();
  at::Tensor partial = chained && !acc_is_t ? at::empty_like(b, b.options().dtype(acc), fmt) : out;
  size_t j = 0;
  do {
    cuda_kernels::ExchangeLows args{};
    const bool first = j == 0;
    const size_t end = std::min(z.size(), j + per_launch);
    for (; j < end; ++j) {
      args.z[args.count] = z[j].const_data_ptr();
      args.log2s[args.count] = static_cast<int>(log2s[j]);
      ++args.count;
    }
    const bool last = j == z.size();
    const void* src = first ? b.const_data_ptr() : partial.const_data_ptr();
    void* dst = last ? out.mutable_data_ptr() : partial.mutable_data_ptr();
    const bool src_acc = !first && !acc_is_t, dst_acc = !last && !acc_is_t;
    check_launch(cuda_kernels::launch_exchange_forward(dtype, src_acc, dst_acc, src, dst, args, n, c, h, w, cl,
                                                       relu && last, stream),
                 "the forward kernel");
  } while (j < z.size());
  return out;
}

std::tuple<at::Tensor, std::vector<at::Tensor>> fused_exchange_backward_cuda(const at::Tensor& grad_out,
                                                                             const at::Tensor& out, at::TensorList lows,
                                                                             bool relu) {
  check_fused_exchange_backward_args(grad_out, out);
  TORCH_CHECK(out.is_cuda() && grad_out.device() == out.device(),
              "fused_exchange_backward (cuda backend): grad_out and out must be on one CUDA device, got ",
              grad_out.device(), " and ", out.device());
  const cuda::DType dtype = cuda::to_cuda_dtype(out.scalar_type(), "fused_exchange_backward");
  const c10::cuda::CUDAGuard guard(out.device());
  ExchangeBackwardBuffers buf = exchange_backward_buffers(grad_out, out, lows);
  const at::Tensor& o = buf.out;
  const at::Tensor& g = buf.grad_out;
  at::Tensor& grad_base = buf.grad_base;
  std::vector<at::Tensor>& pooled = buf.pooled;
  if (o.numel() == 0) return {grad_base, pooled};
  const bool cl = buf.fmt == at::MemoryFormat::ChannelsLast;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(out.device().index()).stream();
  check_launch(cuda_kernels::launch_exchange_relu_mask(dtype, g.const_data_ptr(), o.const_data_ptr(),
                                                       grad_base.mutable_data_ptr(), o.numel(), relu, stream),
               "the ReLU-mask kernel");
  for (size_t j = 0; j < pooled.size(); ++j) {
    check_launch(cuda_kernels::launch_exchange_block_sum(dtype, grad_base.const_data_ptr(), pooled[j].mutable_data_ptr(),
                                                         o.size(0), o.size(1), o.size(2), o.size(3),
                                                         static_cast<int>(buf.log2s[j]), cl, stream),
                 "the block-sum kernel");
  }
  return {grad_base, pooled};
}

}  // namespace
}  // namespace hrnet_fast

TORCH_LIBRARY_IMPL(hrnet_fast, CUDA, m) {
  m.impl("fused_exchange", &hrnet_fast::fused_exchange_cuda);
  m.impl("fused_exchange_backward", &hrnet_fast::fused_exchange_backward_cuda);
}

#endif  // HRNET_FAST_WITH_CUDA
