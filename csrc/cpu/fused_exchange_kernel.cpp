// CPU kernels of the fused exchange unit.
//
// Work is split with at::parallel_for over rows (NCHW: one (n, c, y) image row; NHWC: one (n, y) row of
// pixels), so each thread streams contiguous memory and the inner loops run over contiguous x (NCHW) or
// c (NHWC) and vectorise. The nearest upsampling is never materialised: each low-resolution value is
// added to the s outputs of its row segment (NCHW) or a whole channel vector is added per pixel (NHWC).
#include "cpu/fused_exchange_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace hrnet_fast {
namespace cpu {

namespace {

// Aim for chunks of ~32k elements per task so the threads' scheduling cost stays small.
int64_t grain_for(int64_t elems_per_item) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, elems_per_item)); }

// The ReLU mask of the backward: 0 where out <= 0, else grad (as threshold_backward, so a NaN output passes
// the gradient, like torch's ReLU). Both loads happen unconditionally so the compiler emits a blend, not
// a data-dependent branch (random signs mispredict).
template <typename T>
inline T relu_mask(T g, T o) {
  return o <= T(0) ? T(0) : g;
}

// ReLU that keeps NaN (as torch.relu does): NaN < 0 is false.
template <typename T>
inline T relu_keep_nan(T v) {
  return v < T(0) ? T(0) : v;
}

// o[x] = [relu](b[x] + e0[x] + ... ) over one contiguous row, J <= 3 addends, one vectorised pass.
template <typename T, int J, bool RELU>
void combine_flat(T* __restrict__ o, const T* __restrict__ b, const T* __restrict__ e0, const T* __restrict__ e1,
                  const T* __restrict__ e2, int64_t len) {
#pragma omp simd
  for (int64_t x = 0; x < len; ++x) {
    T v = b[x];
    if (J > 0) v += e0[x];
    if (J > 1) v += e1[x];
    if (J > 2) v += e2[x];
    o[x] = RELU ? relu_keep_nan(v) : v;
  }
}

template <typename T>
using FlatFn = void (*)(T*, const T*, const T*, const T*, const T*, int64_t);

template <typename T>
FlatFn<T> pick_flat(int j, bool relu) {
  switch (j * 2 + (relu ? 1 : 0)) {
    case 0: return combine_flat<T, 0, false>;
    case 1: return combine_flat<T, 0, true>;
    case 2: return combine_flat<T, 1, false>;
    case 3: return combine_flat<T, 1, true>;
    case 4: return combine_flat<T, 2, false>;
    case 5: return combine_flat<T, 2, true>;
    case 6: return combine_flat<T, 3, false>;
    default: return combine_flat<T, 3, true>;
  }
}

template <typename T>
void forward_nchw(const T* base, T* out, const std::vector<const T*>& z, const std::vector<int64_t>& ls, int64_t N,
                  int64_t C, int64_t H, int64_t W, bool relu) {
  // Each low row is expanded along x once into a row buffer, reused for the s image rows that share it;
  // the output row is then one vectorised pass o = [relu](b + e_0 + e_1 + e_2). More than 3 lows (not
  // in HRNet) are added in place by extra passes before the ReLU.
  const size_t J = z.size();
  const int first = static_cast<int>(std::min<size_t>(J, 3));
  const bool extra = J > 3;
  const FlatFn<T> head = pick_flat<T>(first, relu && !extra);
  if (J == 0) {  // [relu](base): the rows of a chunk are one contiguous span
    at::parallel_for(0, N * C * H, grain_for(W), [&](int64_t begin, int64_t end) {
      head(out + begin * W, base + begin * W, nullptr, nullptr, nullptr, (end - begin) * W);
    });
    return;
  }
  at::parallel_for(0, N * C * H, grain_for(W), [&](int64_t begin, int64_t end) {
    std::vector<T> expanded(std::max<size_t>(J, 1) * W);
    std::vector<int64_t> cached(J, -1);  // which low row (plane * h_j + y_j) each buffer holds
    for (int64_t r = begin; r < end; ++r) {
      const int64_t plane = r / H, y = r - plane * H;
      for (size_t j = 0; j < J; ++j) {
        const int64_t l = ls[j], s = int64_t{1} << l, hj = H >> l, wj = W >> l;
        const int64_t row = plane * hj + (y >> l);
        if (cached[j] != row) {
          T* __restrict__ e = expanded.data() + j * W;
          const T* __restrict__ zr = z[j] + row * wj;
          for (int64_t xb = 0; xb < wj; ++xb) {
            for (int64_t k = 0; k < s; ++k) e[xb * s + k] = zr[xb];
          }
          cached[j] = row;
        }
      }
      const T* e = expanded.data();
      T* o = out + r * W;
      head(o, base + r * W, e, e + (J > 1 ? W : 0), e + (J > 2 ? 2 * W : 0), W);
      if (extra) {
        for (size_t j = 3; j < J; ++j) {
          for (int64_t x = 0; x < W; ++x) o[x] += e[j * W + x];
        }
        if (relu) {
          for (int64_t x = 0; x < W; ++x) o[x] = relu_keep_nan(o[x]);
        }
      }
    }
  });
}

// One NHWC image row: o[x, c] = [relu](b[x, c] + sum_{j<J} zr_j[x >> l_j, c]) for J <= 3, one vectorised
// pass over c per pixel. restrict: the caller guarantees o aliases none of the inputs.
template <typename T, int J, bool RELU>
void combine_row_nhwc(T* __restrict__ o, const T* __restrict__ b, const T* const* zr, const int64_t* ls, int64_t W,
                      int64_t C) {
  for (int64_t x = 0; x < W; ++x) {
    const T* __restrict__ z0 = J > 0 ? zr[0] + (x >> ls[0]) * C : nullptr;
    const T* __restrict__ z1 = J > 1 ? zr[1] + (x >> ls[1]) * C : nullptr;
    const T* __restrict__ z2 = J > 2 ? zr[2] + (x >> ls[2]) * C : nullptr;
    T* __restrict__ op = o + x * C;
    const T* __restrict__ bp = b + x * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      T v = bp[c];
      if (J > 0) v += z0[c];
      if (J > 1) v += z1[c];
      if (J > 2) v += z2[c];
      op[c] = RELU ? relu_keep_nan(v) : v;
    }
  }
}

template <typename T>
using RowFn = void (*)(T*, const T*, const T* const*, const int64_t*, int64_t, int64_t);

template <typename T>
RowFn<T> pick_row_nhwc(int j, bool relu) {
  switch (j * 2 + (relu ? 1 : 0)) {
    case 0: return combine_row_nhwc<T, 0, false>;
    case 1: return combine_row_nhwc<T, 0, true>;
    case 2: return combine_row_nhwc<T, 1, false>;
    case 3: return combine_row_nhwc<T, 1, true>;
    case 4: return combine_row_nhwc<T, 2, false>;
    case 5: return combine_row_nhwc<T, 2, true>;
    case 6: return combine_row_nhwc<T, 3, false>;
    default: return combine_row_nhwc<T, 3, true>;
  }
}

template <typename T>
void forward_nhwc(const T* base, T* out, const std::vector<const T*>& z, const std::vector<int64_t>& ls, int64_t N,
                  int64_t C, int64_t H, int64_t W, bool relu) {
  // The first (up to) 3 contributions and the ReLU go in one pass (HRNet never has more); further ones
  // are added in place by extra passes before the ReLU.
  const int first = static_cast<int>(std::min<size_t>(z.size(), 3));
  const bool extra = z.size() > 3;
  const RowFn<T> head = pick_row_nhwc<T>(first, relu && !extra);
  if (z.empty()) {  // [relu](base): the rows of a chunk are one contiguous span
    const FlatFn<T> flat = pick_flat<T>(0, relu);
    at::parallel_for(0, N * H, grain_for(W * C), [&](int64_t begin, int64_t end) {
      flat(out + begin * W * C, base + begin * W * C, nullptr, nullptr, nullptr, (end - begin) * W * C);
    });
    return;
  }
  at::parallel_for(0, N * H, grain_for(W * C), [&](int64_t begin, int64_t end) {
    const T* zr[3] = {nullptr, nullptr, nullptr};
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / H, y = r - n * H;
      for (int j = 0; j < first; ++j) {
        const int64_t l = ls[j], hj = H >> l, wj = W >> l;
        zr[j] = z[j] + (n * hj + (y >> l)) * wj * C;
      }
      T* o = out + r * W * C;
      head(o, base + r * W * C, zr, ls.data(), W, C);
      if (extra) {
        for (size_t j = 3; j < z.size(); ++j) {
          const int64_t l = ls[j], hj = H >> l, wj = W >> l;
          const T* q = z[j] + (n * hj + (y >> l)) * wj * C;
          for (int64_t x = 0; x < W; ++x) {
            for (int64_t c = 0; c < C; ++c) o[x * C + c] += q[(x >> l) * C + c];
          }
        }
        if (relu) {
          for (int64_t i = 0; i < W * C; ++i) o[i] = relu_keep_nan(o[i]);
        }
      }
    }
  });
}

template <typename T>
void backward_nchw(const T* grad, const T* out, T* gb, const std::vector<T*>& pooled, const std::vector<int64_t>& ls,
                   int64_t N, int64_t C, int64_t H, int64_t W, bool relu) {
  // One task per (n, c) plane: each pooled plane then has a single writer. The s rows of a block are
  // first summed vertically into a row buffer (contiguous vector adds), then each block's s columns
  // once per s rows.
  const size_t J = pooled.size();
  at::parallel_for(0, N * C, grain_for(H * W), [&](int64_t begin, int64_t end) {
    std::vector<T> colsum(J * W);
    for (int64_t p = begin; p < end; ++p) {
      std::fill(colsum.begin(), colsum.end(), T(0));
      for (int64_t y = 0; y < H; ++y) {
        const int64_t off = (p * H + y) * W;
        const T* __restrict__ g = grad + off;
        T* __restrict__ d = gb + off;
        if (relu) {
          const T* __restrict__ o = out + off;
#pragma omp simd
          for (int64_t x = 0; x < W; ++x) d[x] = relu_mask(g[x], o[x]);
        } else {
          for (int64_t x = 0; x < W; ++x) d[x] = g[x];
        }
        for (size_t j = 0; j < J; ++j) {
          const int64_t l = ls[j], s = int64_t{1} << l, hj = H >> l, wj = W >> l;
          T* __restrict__ cs = colsum.data() + j * W;
#pragma omp simd
          for (int64_t x = 0; x < W; ++x) cs[x] += d[x];
          if (((y + 1) & (s - 1)) == 0) {  // last row of a block row: reduce the columns, reset
            T* __restrict__ pr = pooled[j] + (p * hj + (y >> l)) * wj;
            for (int64_t xb = 0; xb < wj; ++xb) {
              T acc = T(0);
              for (int64_t k = 0; k < s; ++k) acc += cs[xb * s + k];
              pr[xb] = acc;
            }
            std::fill(cs, cs + W, T(0));
          }
        }
      }
    }
  });
}

template <typename T>
void backward_nhwc(const T* grad, const T* out, T* gb, const std::vector<T*>& pooled, const std::vector<int64_t>& ls,
                   int64_t N, int64_t C, int64_t H, int64_t W, bool relu) {
  // One task per band of 2^lmax image rows: every low-resolution row of every pooled[j] lies in exactly
  // one band, so each pooled row has a single writer.
  int64_t lmax = 0;
  for (int64_t l : ls) lmax = std::max(lmax, l);
  const int64_t band = int64_t{1} << lmax, bands = H >> lmax;
  at::parallel_for(0, N * bands, grain_for(band * W * C), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / bands, y0 = (t - n * bands) * band;
      for (size_t j = 0; j < pooled.size(); ++j) {
        const int64_t l = ls[j], hj = H >> l, wj = W >> l;
        T* first = pooled[j] + ((n * hj + (y0 >> l)) * wj) * C;
        std::fill(first, first + (band >> l) * wj * C, T(0));
      }
      for (int64_t y = y0; y < y0 + band; ++y) {
        // the mask over the whole image row (W * C contiguous values) in one vectorised loop, then each
        // pixel's channel vector is added to its block's
        const int64_t off = ((n * H) + y) * W * C;
        const T* __restrict__ g = grad + off;
        T* __restrict__ d = gb + off;
        if (relu) {
          const T* __restrict__ o = out + off;
#pragma omp simd
          for (int64_t i = 0; i < W * C; ++i) d[i] = relu_mask(g[i], o[i]);
        } else {
          std::copy(g, g + W * C, d);
        }
        for (size_t j = 0; j < pooled.size(); ++j) {
          const int64_t l = ls[j], hj = H >> l, wj = W >> l;
          T* __restrict__ pr = pooled[j] + (n * hj + (y >> l)) * wj * C;
          for (int64_t x = 0; x < W; ++x) {
            T* __restrict__ pp = pr + (x >> l) * C;
            const T* __restrict__ dp = d + x * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) pp[c] += dp[c];
          }
        }
      }
    }
  });
}

}  // namespace

void exchange_forward(const at::Tensor& base, const std::vector<at::Tensor>& z, const std::vector<int64_t>& log2s,
                      bool relu, bool channels_last, at::Tensor& out) {
  const int64_t N = base.size(0), C = base.size(1), H = base.size(2), W = base.size(3);
  AT_DISPATCH_FLOATING_TYPES(base.scalar_type(), "fused_exchange_cpu", [&] {
    std::vector<const scalar_t*> zp;
    for (const at::Tensor& t : z) zp.push_back(t.const_data_ptr<scalar_t>());
    if (channels_last) {
      forward_nhwc<scalar_t>(base.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), zp, log2s, N, C, H, W, relu);
    } else {
      forward_nchw<scalar_t>(base.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), zp, log2s, N, C, H, W, relu);
    }
  });
}

void exchange_backward(const at::Tensor& grad, const at::Tensor& out, const std::vector<int64_t>& log2s, bool relu,
                       bool channels_last, at::Tensor& grad_base, std::vector<at::Tensor>& pooled) {
  const int64_t N = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "fused_exchange_backward_cpu", [&] {
    std::vector<scalar_t*> pp;
    for (at::Tensor& t : pooled) pp.push_back(t.mutable_data_ptr<scalar_t>());
    auto fn = channels_last ? backward_nhwc<scalar_t> : backward_nchw<scalar_t>;
    fn(grad.const_data_ptr<scalar_t>(), out.const_data_ptr<scalar_t>(), grad_base.mutable_data_ptr<scalar_t>(), pp, log2s, N,
       C, H, W, relu);
  });
}

}  // namespace cpu
}  // namespace hrnet_fast
