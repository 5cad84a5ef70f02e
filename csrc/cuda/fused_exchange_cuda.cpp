// CUDA registration of hrnet_fast::fused_exchange and its backward (compiled only in CUDA builds, where
// setup.py defines HRNET_FAST_WITH_CUDA). The 1x1 convolutions run at low resolution in cuBLAS; the
// full-resolution passes are the kernels of fused_exchange_kernel.cu (which include no torch headers, so
// the cuBLAS call lives here).
#ifdef HRNET_FAST_WITH_CUDA

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <limits>

#include "cuda/fused_exchange_kernel.h"
#include "cuda/torch_dtype.h"
#include "fused_exchange.h"

namespace hrnet_fast {
namespace {

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "fused_exchange (cuda backend): launching ", what, " failed: ", cudaGetErrorString(err));
}

cudaDataType_t cublas_type(at::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return CUDA_R_16F;
    case at::kBFloat16:
      return CUDA_R_16BF;
    default:
      return CUDA_R_32F;
  }
}

// Z = W @ low (no bias) at low resolution for 16-bit `low`: (N, C, h, w) float32, dense in `fmt`. One cuBLAS
// GEMM reads the 16-bit low and weight as they are and writes float32 with float32 compute: every 16-bit
// product is exact in float32 and the sums are float32, the accuracy of converting both to float32 first
// (what this backend did before), without the conversions. A float32 weight beside 16-bit inputs is
// rounded to the inputs' dtype first, as the torch reference does (cuBLAS has no GEMM that mixes 16-bit
// and 32-bit inputs; the inference plan prepares 16-bit weights, so it converts nothing per call).
at::Tensor exchange_low_gemm_cuda(const at::Tensor& low, const at::Tensor& weight, int64_t channels,
                                  at::MemoryFormat fmt) {
  const int64_t n = low.size(0), cj = low.size(1), h = low.size(2), w = low.size(3);
  const at::ScalarType t = low.scalar_type();
  at::Tensor z = at::empty({n, channels, h, w}, low.options().dtype(at::kFloat), fmt);
  if (z.numel() == 0) return z;
  if (cj == 0) return z.zero_();  // no input channels: the 1x1 conv contributes zeros
  const at::Tensor lo = low.contiguous(fmt);
  const at::Tensor wt = weight.reshape({channels, cj}).to(t).contiguous();  // no copy when already so
  const bool cl = fmt == at::MemoryFormat::ChannelsLast;
  const int64_t pixels = h * w;
  TORCH_CHECK(channels <= INT_MAX && cj <= INT_MAX && (cl || (pixels <= INT_MAX && n <= INT_MAX)),
              "fused_exchange (cuda backend): lows sizes ", low.sizes(), " exceed cuBLAS's 32-bit dimensions");
  // torch's handle for the current device (the caller's guard), already set to the current stream and to
  // torch's workspace for that stream (what keeps cuBLAS usable under CUDA-graph capture). No
  // cublasSetStream of our own: cuBLAS documents that it resets the workspace to its default pool.
  cublasHandle_t handle = at::cuda::getCurrentCUDABlasHandle();
  const float alpha = 1.f, beta = 0.f;
  const cudaDataType_t it = cublas_type(t);
  if (cl) {
    // NHWC: rows (n*h*w, C_j) times W^T -> (n*h*w, C) rows of z, straight into NHWC memory. Column-major
    // cuBLAS sees z^T (C x rows) = op(W) (C x C_j, W's row-major storage read transposed) @ rows^T. The
    // rows go in chunks that keep cuBLAS's int dimensions in range.
    const int64_t rows = n * pixels;
    const int64_t chunk = INT_MAX;
    const auto esize = static_cast<int64_t>(lo.element_size());
    const char* a = static_cast<const char*>(lo.const_data_ptr());
    float* zp = z.mutable_data_ptr<float>();
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int r = static_cast<int>(std::min(chunk, rows - r0));
      TORCH_CUDABLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(channels), r,
                                        static_cast<int>(cj), &alpha, wt.const_data_ptr(), it, static_cast<int>(cj),
                                        a + r0 * cj * esize, it, static_cast<int>(cj), &beta, zp + r0 * channels,
                                        CUDA_R_32F, static_cast<int>(channels), CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
    }
  } else {
    // NCHW: per sample z_n (C, h*w) = W @ low_n (C_j, h*w). Column-major cuBLAS sees z_n^T (h*w x C) =
    // low_n^T (h*w x C_j) @ W^T (C_j x C): one strided-batched GEMM, W shared (stride 0).
    TORCH_CUDABLAS_CHECK(cublasGemmStridedBatchedEx(
        handle, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(pixels), static_cast<int>(channels), static_cast<int>(cj),
        &alpha, lo.const_data_ptr(), it, static_cast<int>(pixels), static_cast<long long>(cj * pixels),
        wt.const_data_ptr(), it, static_cast<int>(cj), 0LL, &beta, z.mutable_data_ptr(), CUDA_R_32F,
        static_cast<int>(pixels), static_cast<long long>(channels * pixels), static_cast<int>(n), CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
  }
  return z;
}

// The contribution of one low without its bias (the forward kernel adds that), in the accumulation type
// `acc`, dense in `fmt`: 16-bit inputs through exchange_low_gemm_cuda (no conversions), float32/float64
// through ATen's GEMM as the CPU backend (which follows torch's TF32 setting for float32).
at::Tensor exchange_low_cuda(const at::Tensor& low, const std::optional<at::Tensor>& weight, int64_t channels,
                             at::MemoryFormat fmt, at::ScalarType acc) {
  const bool half = low.scalar_type() == at::kHalf || low.scalar_type() == at::kBFloat16;
  if (half && weight.has_value()) return exchange_low_gemm_cuda(low, *weight, channels, fmt);
  return exchange_low_contribution(low, weight, std::nullopt, channels, fmt, acc);
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
  at::Tensor out = at::empty_like(b, at::TensorOptions(), fmt);
  if (out.numel() == 0) return out;
  // float32 contributions for 16-bit inputs (see ExchangeLows), the inputs' dtype otherwise
  const at::ScalarType acc = base.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  std::vector<at::Tensor> z, bias;
  for (size_t j = 0; j < lows.size(); ++j) {
    z.push_back(exchange_low_cuda(lows[j], weights.get(j), base.size(1), fmt, acc));
    const std::optional<at::Tensor> bj = biases.get(j);
    // a bias already in the accumulation type (float32 beside 16-bit inputs, as the inference plan
    // prepares it) is used as it is; a 16-bit one is converted (C values)
    bias.push_back(bj.has_value() ? bj->to(acc).contiguous() : at::Tensor());
  }
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
      args.bias[args.count] = bias[j].defined() ? bias[j].const_data_ptr() : nullptr;
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
