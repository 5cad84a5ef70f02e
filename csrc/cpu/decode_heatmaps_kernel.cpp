// CPU decode kernels. One (n, k) heatmap per task; each task reads its heatmap once for the argmax
// (the flip merge is computed row by row into a W-float buffer, never written out), then touches only
// the few neighbours the method needs. DARK/UDP blur the (merged) heatmap in a per-thread buffer,
// because mmpose rescales the blurred map by its global maximum.
#include "cpu/decode_heatmaps_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "decode_heatmaps.h"

namespace hrnet_fast {
namespace cpu {
namespace {

struct Params {
  int64_t N, K, H, W;
  int64_t hs_n, hs_k, hs_h;  // element strides (64-bit: offsets may pass 2^31)
  int64_t fs_n, fs_k, fs_h;
  const int64_t* perm;  // null: no flip
  bool shift;
  const float* center;  // null: heatmap coordinates
  const float* scale;
  int64_t method;
  const float* weights;
  int64_t ksize;
  float* coords;
  float* maxvals;
};

// Max of n contiguous floats; `nan` is set when one of them is NaN (NaNs are skipped by the max).
// SSE2 (every x86-64) with four 4-lane accumulators; a scalar loop elsewhere.
inline float span_max(const float* r, int64_t n, bool& nan) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float best = kNegInf;
  bool any_nan = false;
  int64_t x = 0;
#if defined(__SSE2__)
  if (n >= 16) {
    __m128 m0 = _mm_set1_ps(kNegInf), m1 = m0, m2 = m0, m3 = m0;
    __m128 u = _mm_setzero_ps();
    for (; x + 16 <= n; x += 16) {
      const __m128 a = _mm_loadu_ps(r + x), b = _mm_loadu_ps(r + x + 4);
      const __m128 c = _mm_loadu_ps(r + x + 8), d = _mm_loadu_ps(r + x + 12);
      // maxps(v, m) returns m when v is NaN: NaNs never win; cmpunord records them.
      m0 = _mm_max_ps(a, m0);
      m1 = _mm_max_ps(b, m1);
      m2 = _mm_max_ps(c, m2);
      m3 = _mm_max_ps(d, m3);
      u = _mm_or_ps(u, _mm_or_ps(_mm_cmpunord_ps(a, b), _mm_cmpunord_ps(c, d)));
    }
    const __m128 m = _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3));
    alignas(16) float lanes[4];
    _mm_store_ps(lanes, m);
    for (int j = 0; j < 4; ++j) best = lanes[j] > best ? lanes[j] : best;
    any_nan = _mm_movemask_ps(u) != 0;
  }
#endif
  for (; x < n; ++x) {
    best = r[x] > best ? r[x] : best;
    any_nan = any_nan || std::isnan(r[x]);
  }
  nan = any_nan;
  return best;
}

// Index of the first element equal to v (n if none).
inline int64_t first_equal(const float* r, int64_t n, float v) {
  int64_t x = 0;
#if defined(__SSE2__)
  const __m128 vv = _mm_set1_ps(v);
  for (; x + 4 <= n; x += 4) {
    const int mask = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(r + x), vv));
    if (mask != 0) return x + __builtin_ctz(static_cast<unsigned>(mask));
  }
#endif
  for (; x < n; ++x) {
    if (r[x] == v) return x;
  }
  return n;
}

// fp16/bf16 rows to fp32. fp16 uses F16C (8 per instruction) where the CPU has it, chosen at run time
// so the extension still runs on CPUs without it; bf16 is a 16-bit shift.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx,f16c"))) void half_to_float_f16c(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  }
  for (; i < n; ++i) d[i] = _cvtsh_ss(s[i]);
}
const bool kHasF16C = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
#endif

template <typename T>  // any other type the dispatch macro instantiates (never called: checked dtypes)
inline const float* to_float_row(const T* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
  return dst;
}

inline const float* to_float_row(const float* src, float*, int64_t) { return src; }

inline const float* to_float_row(const c10::Half* src, float* dst, int64_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (kHasF16C) {
    half_to_float_f16c(reinterpret_cast<const uint16_t*>(src), dst, n);
    return dst;
  }
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
  return dst;
}

inline const float* to_float_row(const c10::BFloat16* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i].x) << 16;
    std::memcpy(dst + i, &bits, sizeof(float));
  }
  return dst;
}

template <typename T>
struct Heatmap {
  const T* h;
  const T* f;  // flipped heatmap of channel perm[k], or null
  const Params* p;

  // Row y as floats: a pointer into the input when no conversion is needed, else `buf`.
  // Row y as floats: a pointer into the input when no conversion is needed, else `buf` (W floats);
  // `fbuf` (W floats) holds the converted flipped row for fp16/bf16.
  const float* row(int64_t y, float* buf, float* fbuf) const {
    const int64_t W = p->W;
    const T* hr = h + y * p->hs_h;
    const float* hv = to_float_row(hr, buf, W);
    if (f == nullptr) return hv;
    const float* fv = to_float_row(f + y * p->fs_h, fbuf, W);
    // Official merge: out = (h + flip_back(f) shifted) * 0.5 in fp32 (buf may alias hv: same index).
    // buf[x] = (hv[x] + fv[m - x]) * 0.5 for x >= x0, with m = W (shift) or W - 1; column 0 of the
    // shifted map keeps its value (fv[W - 1]).
    const int64_t m = p->shift ? W : W - 1;
    int64_t x = 0;
    if (p->shift) {
      buf[0] = (hv[0] + fv[W - 1]) * 0.5f;
      x = 1;
    }
#if defined(__SSE2__)
    const __m128 half = _mm_set1_ps(0.5f);
    for (; x + 4 <= W; x += 4) {  // fv[m-x-3 .. m-x] reversed: same IEEE add and multiply as below
      const __m128 f4 = _mm_loadu_ps(fv + (m - x - 3));
      const __m128 r4 = _mm_shuffle_ps(f4, f4, _MM_SHUFFLE(0, 1, 2, 3));
      _mm_storeu_ps(buf + x, _mm_mul_ps(_mm_add_ps(_mm_loadu_ps(hv + x), r4), half));
    }
#endif
    for (; x < W; ++x) buf[x] = (hv[x] + fv[m - x]) * 0.5f;
    return buf;
  }

  float at(int64_t y, int64_t x) const {
    const float hv = static_cast<float>(h[y * p->hs_h + x]);
    if (f == nullptr) return hv;
    const int64_t W = p->W;
    const int64_t xf = p->shift ? (x == 0 ? W - 1 : W - x) : W - 1 - x;
    return (hv + static_cast<float>(f[y * p->fs_h + xf])) * 0.5f;
  }
};

inline float sign_f(float v) { return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f); }

// mmpose's gaussian_blur on one heatmap (zero padding = OpenCV on the padded copy), rows then columns,
// into `out`; returns the blurred maximum.
// `pad` holds W + ks - 1 floats: each row is copied between zeros so that the row pass is a fixed-length
// tap loop over x, which vectorises (the taps are added in the same order; the zero taps add +0).
float blur(const float* img, float* pad, float* tmp, float* out, int64_t H, int64_t W, const float* w, int64_t ks) {
  const int64_t r = ks / 2;
  std::fill(pad, pad + W + 2 * r, 0.f);
  for (int64_t y = 0; y < H; ++y) {
    std::copy(img + y * W, img + (y + 1) * W, pad + r);
    float* dst = tmp + y * W;
    std::fill(dst, dst + W, 0.f);
    for (int64_t t = 0; t < ks; ++t) {
      const float wt = w[t];
      const float* src = pad + t;
      for (int64_t x = 0; x < W; ++x) dst[x] += wt * src[x];
    }
  }
  float bmax = -std::numeric_limits<float>::infinity();
  for (int64_t y = 0; y < H; ++y) {
    float* dst = out + y * W;
    std::fill(dst, dst + W, 0.f);
    const int64_t t0 = std::max<int64_t>(0, r - y), t1 = std::min<int64_t>(ks, H + r - y);
    for (int64_t t = t0; t < t1; ++t) {
      const float* src = tmp + (y + t - r) * W;
      const float wt = w[t];
      for (int64_t x = 0; x < W; ++x) dst[x] += wt * src[x];
    }
    for (int64_t x = 0; x < W; ++x) bmax = dst[x] > bmax ? dst[x] : bmax;
  }
  return bmax;
}

struct Scratch {
  std::vector<float> img, frow, pad, tmp, blurred;
};

template <typename T>
void decode_one(const Params& p, const T* hbase, const T* fbase, int64_t i, Scratch& s) {
  const int64_t n = i / p.K, k = i % p.K, H = p.H, W = p.W;
  Heatmap<T> hm{hbase + n * p.hs_n + k * p.hs_k, nullptr, &p};
  if (p.perm != nullptr) hm.f = fbase + n * p.fs_n + p.perm[k] * p.fs_k;

  // Argmax over a contiguous fp32 view of the (merged) heatmap: the input itself when it already is
  // one, else a per-thread buffer filled row by row (fp16/bf16 conversion, flip merge).
  const float* img;
  if (std::is_same<T, float>::value && hm.f == nullptr && (p.hs_h == W || H == 1)) {
    img = reinterpret_cast<const float*>(hm.h);
  } else {
    float* buf = s.img.data();
    for (int64_t y = 0; y < H; ++y) {
      const float* r = hm.row(y, buf + y * W, s.frow.data());
      if (r != buf + y * W) std::copy(r, r + W, buf + y * W);
    }
    img = buf;
  }
  bool nan = false;
  float best = span_max(img, H * W, nan);
  int64_t idx = 0;
  if (nan) {
    best = std::numeric_limits<float>::quiet_NaN();
  } else {
    idx = first_equal(img, H * W, best);  // the first maximum in row-major order wins ties
    if (idx >= H * W) idx = 0;
  }
  const int64_t by = idx / W, bx = idx % W;
  const bool pos = best > 0.f;  // false for NaN, as in the official code
  const int64_t ix = pos ? bx : 0, iy = pos ? by : 0;
  double px = static_cast<double>(ix), py = static_cast<double>(iy);

  if (p.method == kQuarter) {
    if (ix > 1 && ix < W - 1 && iy > 1 && iy < H - 1) {
      px += 0.25 * sign_f(hm.at(iy, ix + 1) - hm.at(iy, ix - 1));
      py += 0.25 * sign_f(hm.at(iy + 1, ix) - hm.at(iy - 1, ix));
    }
  } else if (p.method >= kDark && pos) {
    const bool dark = p.method == kDark;
    if (!dark || (ix > 1 && ix < W - 2 && iy > 1 && iy < H - 2)) {
      const float bmax = blur(img, s.pad.data(), s.tmp.data(), s.blurred.data(), H, W, p.weights, p.ksize);
      const float ratio = best / bmax;
      if (std::isfinite(ratio) && ratio > 0.f) {
        const float* B = s.blurred.data();
        // Log-heatmap at (y, x): clamp(B * ratio) then log, as mmpose does in fp32; UDP pads by edge.
        auto L = [&](int64_t y, int64_t x) -> float {
          if (!dark) {
            y = std::min(std::max<int64_t>(y, 0), H - 1);
            x = std::min(std::max<int64_t>(x, 0), W - 1);
          }
          const float v = B[y * W + x] * ratio;
          return dark ? std::log(std::max(v, 1e-10f)) : std::log(std::min(std::max(v, 1e-3f), 50.f));
        };
        if (dark) {
          const float c = L(iy, ix);
          const float dx = 0.5f * (L(iy, ix + 1) - L(iy, ix - 1));
          const float dy = 0.5f * (L(iy + 1, ix) - L(iy - 1, ix));
          const float dxx = 0.25f * (L(iy, ix + 2) - 2 * c + L(iy, ix - 2));
          const float dxy = 0.25f * (L(iy + 1, ix + 1) - L(iy - 1, ix + 1) - L(iy + 1, ix - 1) + L(iy - 1, ix - 1));
          const float dyy = 0.25f * (L(iy + 2, ix) - 2 * c + L(iy - 2, ix));
          const float det32 = dxx * dyy - dxy * dxy;  // mmpose's fp32 det == 0 test
          if (det32 != 0.f) {
            const double a = dxx, b = dxy, d = dyy, gx = dx, gy = dy;
            const double det = a * d - b * b;
            if (det != 0.0) {
              px -= (d * gx - b * gy) / det;
              py -= (-b * gx + a * gy) / det;
            }
          }
        } else {
          const float i_ = L(iy, ix), ix1 = L(iy, ix + 1), ix1_ = L(iy, ix - 1);
          const float iy1 = L(iy + 1, ix), iy1_ = L(iy - 1, ix);
          const float ix1y1 = L(iy + 1, ix + 1), ix1_y1_ = L(iy - 1, ix - 1);
          const float dx = 0.5f * (ix1 - ix1_), dy = 0.5f * (iy1 - iy1_);
          const float dxx = ix1 - 2 * i_ + ix1_, dyy = iy1 - 2 * i_ + iy1_;
          const float dxy = 0.5f * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_);
          constexpr double kEps = 1.1920928955078125e-07;  // np.finfo(np.float32).eps, added in fp64
          const double a = double(dxx) + kEps, b = dxy, d = double(dyy) + kEps;
          const double det = a * d - b * b;
          if (det != 0.0) {
            px -= (d * dx - b * dy) / det;
            py -= (-b * dx + a * dy) / det;
          }
        }
      }
    }
  }

  if (p.center != nullptr) {
    const double cx = p.center[2 * n], cy = p.center[2 * n + 1];
    const double s0 = p.scale[2 * n], s1 = p.scale[2 * n + 1];
    if (p.method == kUdp) {
      px = px / double(std::max<int64_t>(W - 1, 1)) * 200.0 * s0 + cx - 100.0 * s0;
      py = py / double(std::max<int64_t>(H - 1, 1)) * 200.0 * s1 + cy - 100.0 * s1;
    } else {
      const double fct = 200.0 * s0 / double(W);
      px = cx + (px - W * 0.5) * fct;
      py = cy + (py - H * 0.5) * fct;
    }
  }
  p.coords[2 * i] = static_cast<float>(px);
  p.coords[2 * i + 1] = static_cast<float>(py);
  p.maxvals[i] = best;
}

}  // namespace

void decode_heatmaps_kernel(const at::Tensor& heatmaps, const std::optional<at::Tensor>& flipped,
                            const std::optional<at::Tensor>& flip_perm, const std::optional<at::Tensor>& center,
                            const std::optional<at::Tensor>& scale, int64_t method, bool shift,
                            const std::optional<at::Tensor>& blur_weights, at::Tensor& coords, at::Tensor& maxvals) {
  Params p{};
  p.N = heatmaps.size(0);
  p.K = heatmaps.size(1);
  p.H = heatmaps.size(2);
  p.W = heatmaps.size(3);
  p.hs_n = heatmaps.stride(0);
  p.hs_k = heatmaps.stride(1);
  p.hs_h = heatmaps.stride(2);
  p.perm = nullptr;
  if (flipped.has_value()) {
    p.fs_n = flipped->stride(0);
    p.fs_k = flipped->stride(1);
    p.fs_h = flipped->stride(2);
    p.perm = flip_perm->data_ptr<int64_t>();
  }
  p.shift = shift;
  p.center = center.has_value() ? center->data_ptr<float>() : nullptr;
  p.scale = scale.has_value() ? scale->data_ptr<float>() : nullptr;
  p.method = method;
  p.weights = method >= kDark ? blur_weights->data_ptr<float>() : nullptr;
  p.ksize = method >= kDark ? blur_weights->size(0) : 0;
  p.coords = coords.data_ptr<float>();
  p.maxvals = maxvals.data_ptr<float>();
  const int64_t total = p.N * p.K, hw = p.H * p.W;
  // About 32K pixels per task for the argmax methods; DARK/UDP do ~30 flops a pixel more.
  // Tasks of ~128K pixels for the argmax methods (tens of microseconds: a small batch stays on one
  // thread instead of paying a fork/join); DARK/UDP do ~30 flops a pixel more.
  const int64_t grain = std::max<int64_t>(1, (method >= kDark ? 4096 : 131072) / std::max<int64_t>(hw, 1));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, heatmaps.scalar_type(), "decode_heatmaps_cpu", [&] {
    const scalar_t* h = heatmaps.data_ptr<scalar_t>();
    const scalar_t* f = flipped.has_value() ? flipped->data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, total, grain, [&](int64_t begin, int64_t end) {
      Scratch s;
      s.img.resize(hw);
      s.frow.resize(p.W);
      if (method >= kDark) {
        s.pad.resize(p.W + p.ksize);
        s.tmp.resize(hw);
        s.blurred.resize(hw);
      }
      for (int64_t i = begin; i < end; ++i) decode_one<scalar_t>(p, h, f, i, s);
    });
  });
}

}  // namespace cpu
}  // namespace hrnet_fast
