// Schema, argument checks and CPU registration of hrnet_fast::fused_exchange and its backward.
//
// The backward is its own op so autograd stays visible to the dispatcher (torch.compile, opcheck); the
// autograd formula itself is registered from Python (hrnet_fast/ops/fused_exchange.py).
#include "fused_exchange.h"

#include <torch/library.h>

#include <limits>

#include "cpu/fused_exchange_kernel.h"

namespace hrnet_fast {

namespace {

bool is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

int64_t ilog2(int64_t v) {
  int64_t l = 0;
  while ((int64_t{1} << l) < v) ++l;
  return l;
}

}  // namespace

bool exchange_param_dtype_ok(at::ScalarType param, at::ScalarType base) {
  return param == base || (param == at::kFloat && (base == at::kHalf || base == at::kBFloat16));
}

int64_t exchange_scale_log2(const char* op, const at::Tensor& base, const at::Tensor& low, size_t j) {
  const int64_t n = base.size(0), h = base.size(2), w = base.size(3);
  TORCH_CHECK(low.dim() == 4, op, ": lows[", j, "] must have shape (N, C_j, H/s, W/s), got ", low.sizes());
  TORCH_CHECK(low.size(0) == n, op, ": lows[", j, "] has batch size ", low.size(0), " but base has ", n);
  TORCH_CHECK(low.size(2) > 0 && low.size(3) > 0 && h % low.size(2) == 0 && w % low.size(3) == 0, op, ": lows[", j,
              "] spatial size ", low.size(2), "x", low.size(3), " times its scale must equal the base size ", h, "x", w);
  const int64_t sh = h / low.size(2), sw = w / low.size(3);
  TORCH_CHECK(sh == sw, op, ": lows[", j, "] must be scaled by the same factor in height and width, got ", sh, " and ", sw);
  TORCH_CHECK(sh >= 2 && is_pow2(sh), op, ": lows[", j, "] scale factor (base size / low size) must be a power of two >= 2, got ", sh);
  return ilog2(sh);
}

c10::List<std::optional<at::Tensor>> exchange_optional_list(at::TensorList ts) {
  c10::List<std::optional<at::Tensor>> out;
  for (const at::Tensor& t : ts) {
    if (t.dim() == 1 && t.numel() == 0) {
      out.push_back(std::nullopt);
    } else {
      out.push_back(t);
    }
  }
  return out;
}

at::MemoryFormat exchange_memory_format(const at::Tensor& t) {
  if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return at::MemoryFormat::ChannelsLast;
  }
  return at::MemoryFormat::Contiguous;
}

std::vector<int64_t> check_fused_exchange_args(const at::Tensor& base, at::TensorList lows,
                                               const c10::List<std::optional<at::Tensor>>& weights,
                                               const c10::List<std::optional<at::Tensor>>& biases) {
  TORCH_CHECK(base.dim() == 4, "fused_exchange: base must have shape (N, C, H, W), got ", base.sizes());
  TORCH_CHECK(base.is_floating_point(), "fused_exchange: base must be a floating-point tensor, got ", base.scalar_type());
  const int64_t c = base.size(1);
  TORCH_CHECK(weights.size() == lows.size(), "fused_exchange: weights must have one entry (tensor or None) per low input, got ",
              weights.size(), " for ", lows.size(), " lows");
  TORCH_CHECK(biases.size() == lows.size(), "fused_exchange: biases must have one entry (tensor or None) per low input, got ",
              biases.size(), " for ", lows.size(), " lows");
  std::vector<int64_t> log2s;
  for (size_t j = 0; j < lows.size(); ++j) {
    const at::Tensor& low = lows[j];
    TORCH_CHECK(low.dim() == 4, "fused_exchange: lows[", j, "] must have shape (N, C_j, H/s, W/s), got ", low.sizes());
    TORCH_CHECK(low.device() == base.device(), "fused_exchange: lows[", j, "] is on ", low.device(), " but base is on ",
                base.device());
    TORCH_CHECK(low.scalar_type() == base.scalar_type(), "fused_exchange: lows[", j, "] has dtype ", low.scalar_type(),
                " but base has dtype ", base.scalar_type());
    log2s.push_back(exchange_scale_log2("fused_exchange", base, low, j));
    const std::optional<at::Tensor> wj = weights.get(j);
    const std::optional<at::Tensor> bj = biases.get(j);
    if (wj.has_value()) {
      const at::Tensor& wt = *wj;
      TORCH_CHECK(wt.device() == base.device(), "fused_exchange: weights[", j, "] is on ", wt.device(), " but base is on ",
                  base.device());
      TORCH_CHECK(exchange_param_dtype_ok(wt.scalar_type(), base.scalar_type()), "fused_exchange: weights[", j,
                  "] has dtype ", wt.scalar_type(), " but base has dtype ", base.scalar_type(),
                  " (weights and biases take base's dtype, or float32 beside float16/bfloat16)");
      const bool ok2 = wt.dim() == 2 && wt.size(0) == c && wt.size(1) == low.size(1);
      const bool ok4 = wt.dim() == 4 && wt.size(0) == c && wt.size(1) == low.size(1) && wt.size(2) == 1 && wt.size(3) == 1;
      TORCH_CHECK(ok2 || ok4, "fused_exchange: weights[", j, "] must have shape (", c, ", ", low.size(1), ") or (", c, ", ",
                  low.size(1), ", 1, 1), got ", wt.sizes());
    } else {
      TORCH_CHECK(low.size(1) == c, "fused_exchange: lows[", j, "] has ", low.size(1), " channels but base has ", c,
                  " and weights[", j, "] is None (give a (", c, ", ", low.size(1), ") weight to project it)");
    }
    if (bj.has_value()) {
      const at::Tensor& bt = *bj;
      TORCH_CHECK(bt.device() == base.device(), "fused_exchange: biases[", j, "] is on ", bt.device(), " but base is on ",
                  base.device());
      TORCH_CHECK(exchange_param_dtype_ok(bt.scalar_type(), base.scalar_type()), "fused_exchange: biases[", j,
                  "] has dtype ", bt.scalar_type(), " but base has dtype ", base.scalar_type(),
                  " (weights and biases take base's dtype, or float32 beside float16/bfloat16)");
      TORCH_CHECK(bt.dim() == 1 && bt.size(0) == c, "fused_exchange: biases[", j, "] must have shape (", c, "), got ",
                  bt.sizes());
    }
  }
  return log2s;
}

at::Tensor exchange_low_contribution(const at::Tensor& low, const std::optional<at::Tensor>& weight,
                                     const std::optional<at::Tensor>& bias, int64_t channels, at::MemoryFormat fmt,
                                     at::ScalarType acc_dtype) {
  const int64_t n = low.size(0), cj = low.size(1), h = low.size(2), w = low.size(3);
  const at::Tensor lo = low.to(acc_dtype);  // no copy when the dtype already matches
  const std::optional<at::Tensor> b =
      bias.has_value() ? std::optional<at::Tensor>(bias->to(acc_dtype)) : std::nullopt;
  if (!weight.has_value()) {
    at::Tensor z = lo.contiguous(fmt);
    if (b.has_value()) z = (z + b->view({1, channels, 1, 1})).contiguous(fmt);
    return z;
  }
  const at::Tensor w2 = weight->reshape({channels, cj}).to(acc_dtype);
  if (fmt == at::MemoryFormat::ChannelsLast) {
    // (N*h*w, C_j) rows times W^T: one GEMM straight into NHWC memory.
    const at::Tensor rows = lo.contiguous(fmt).permute({0, 2, 3, 1}).reshape({n * h * w, cj});
    at::Tensor z = b.has_value() ? at::addmm(*b, rows, w2.t()) : at::mm(rows, w2.t());
    return z.view({n, h, w, channels}).permute({0, 3, 1, 2});
  }
  const at::Tensor cols = lo.contiguous().view({n, cj, h * w});
  at::Tensor z = at::matmul(w2, cols);
  if (b.has_value()) z.add_(b->view({1, channels, 1}));
  return z.view({n, channels, h, w});
}

namespace {

at::Tensor fused_exchange_cpu(const at::Tensor& base, at::TensorList lows, at::TensorList weight_list,
                              at::TensorList bias_list, bool relu) {
  const auto weights = exchange_optional_list(weight_list), biases = exchange_optional_list(bias_list);
  const std::vector<int64_t> log2s = check_fused_exchange_args(base, lows, weights, biases);
  TORCH_CHECK(base.scalar_type() == at::kFloat || base.scalar_type() == at::kDouble,
              "fused_exchange (cpp backend): base must be float32 or float64, got ", base.scalar_type());
  const at::MemoryFormat fmt = exchange_memory_format(base);
  // Odd strides (neither layout) are made dense once; the two dense layouts are used as they are.
  const at::Tensor b = base.contiguous(fmt);
  std::vector<at::Tensor> z;
  for (size_t j = 0; j < lows.size(); ++j) {
    z.push_back(exchange_low_contribution(lows[j], weights.get(j), biases.get(j), base.size(1), fmt, base.scalar_type()));
  }
  at::Tensor out = at::empty_like(b, at::TensorOptions(), fmt);
  if (out.numel() == 0) return out;
  if (poison_outputs()) out.fill_(std::numeric_limits<double>::quiet_NaN());
  cpu::exchange_forward(b, z, log2s, relu, fmt == at::MemoryFormat::ChannelsLast, out);
  return out;
}

}  // namespace

// Declared in fused_exchange.h and called by the CUDA binding too: external linkage, outside the unnamed
// namespace (inside it, a CUDA build of _C had two undefined symbols and could not be imported).
void check_fused_exchange_backward_args(const at::Tensor& grad_out, const at::Tensor& out) {
  TORCH_CHECK(out.dim() == 4, "fused_exchange_backward: out must have shape (N, C, H, W), got ", out.sizes());
  TORCH_CHECK(grad_out.sizes() == out.sizes(), "fused_exchange_backward: grad_out has shape ", grad_out.sizes(),
              " but out has ", out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == out.scalar_type(), "fused_exchange_backward: grad_out has dtype ",
              grad_out.scalar_type(), " but out has ", out.scalar_type());
}

ExchangeBackwardBuffers exchange_backward_buffers(const at::Tensor& grad_out, const at::Tensor& out,
                                                  at::TensorList lows) {
  ExchangeBackwardBuffers buf;
  for (size_t j = 0; j < lows.size(); ++j) {
    buf.log2s.push_back(exchange_scale_log2("fused_exchange_backward", out, lows[j], j));
  }
  buf.fmt = exchange_memory_format(out);
  buf.out = out.contiguous(buf.fmt);
  buf.grad_out = grad_out.contiguous(buf.fmt);  // autograd may hand us expanded or transposed grads
  buf.grad_base = at::empty_like(buf.out, at::TensorOptions(), buf.fmt);
  for (const at::Tensor& low : lows) {
    buf.pooled.push_back(at::empty({out.size(0), out.size(1), low.size(2), low.size(3)}, out.options(), buf.fmt));
  }
  if (buf.out.numel() == 0) {
    for (auto& p : buf.pooled) p.zero_();
  } else if (poison_outputs()) {
    buf.grad_base.fill_(std::numeric_limits<double>::quiet_NaN());
    for (auto& p : buf.pooled) p.fill_(std::numeric_limits<double>::quiet_NaN());
  }
  return buf;
}

namespace {

std::tuple<at::Tensor, std::vector<at::Tensor>> fused_exchange_backward_cpu(const at::Tensor& grad_out, const at::Tensor& out,
                                                                            at::TensorList lows, bool relu) {
  check_fused_exchange_backward_args(grad_out, out);
  TORCH_CHECK(out.scalar_type() == at::kFloat || out.scalar_type() == at::kDouble,
              "fused_exchange_backward (cpp backend): out must be float32 or float64, got ", out.scalar_type());
  ExchangeBackwardBuffers buf = exchange_backward_buffers(grad_out, out, lows);
  if (buf.out.numel() > 0) {
    cpu::exchange_backward(buf.grad_out, buf.out, buf.log2s, relu, buf.fmt == at::MemoryFormat::ChannelsLast,
                           buf.grad_base, buf.pooled);
  }
  return {buf.grad_base, buf.pooled};
}

}  // namespace

}  // namespace hrnet_fast

TORCH_LIBRARY_FRAGMENT(hrnet_fast, m) {
  // weights[j] / biases[j] of shape (0,) stand for None: torch.library's Python autograd registration
  // cannot route gradients into a Tensor?[] that holds a None, so the lists are Tensor[] with placeholders.
  m.def("fused_exchange(Tensor base, Tensor[] lows, Tensor[] weights, Tensor[] biases, bool relu) -> Tensor");
  m.def("fused_exchange_backward(Tensor grad_out, Tensor out, Tensor[] lows, bool relu) -> (Tensor, Tensor[])");
}

TORCH_LIBRARY_IMPL(hrnet_fast, CPU, m) {
  m.impl("fused_exchange", &hrnet_fast::fused_exchange_cpu);
  m.impl("fused_exchange_backward", &hrnet_fast::fused_exchange_backward_cpu);
}
