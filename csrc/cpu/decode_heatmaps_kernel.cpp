// CPU decode kernels (rules: hrnet_fast/ops/decode_heatmaps.py; CUDA twin: csrc/cuda/decode_heatmaps_kernel.cu;
// the refinement steps and the back-transform both run are in csrc/decode_heatmaps_common.h).
// One (n, k) heatmap at a time. Its argmax runs over the fp32 input in place when it is contiguous and
// unflipped, else over a per-thread H*W buffer filled row by row (fp16/bf16 conversion, flip merge);
// the quarter step then reads only the four neighbours it needs. DARK/UDP blur the (merged) heatmap into
// per-thread buffers, because mmpose rescales the blurred map by its global maximum.
#include "cpu/decode_heatmaps_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

namespace hrnet_fast {
namespace cpu {
namespace {

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
  const DecodeParams* p;

  // Row y as floats: a pointer into the input when it is fp32 and unflipped, else `buf` (W floats);
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

  // Value at (y, x) as float, merged with the flipped map where there is one.
  float operator()(int64_t y, int64_t x) const {
    const float hv = static_cast<float>(h[y * p->hs_h + x]);
    if (f == nullptr) return hv;
    const int64_t W = p->W;
    const int64_t xf = p->shift ? (x == 0 ? W - 1 : W - x) : W - 1 - x;
    return (hv + static_cast<float>(f[y * p->fs_h + xf])) * 0.5f;
  }
};

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
  std::vector<float> img, frow, pad, blur_rows;  // blur_rows: the row pass, then (at an offset) the column pass
  float* tmp() { return blur_rows.data(); }
  float* blurred() { return blur_rows.data() + blurred_offset; }
  int64_t blurred_offset = 0;
  // The column pass reads tmp and writes blurred in lockstep. With both at the same offset modulo 4 KiB
  // (two separately allocated H*W buffers usually are), the loads alias the pending stores in the CPU's
  // store buffer and the loop slows by up to a third, depending on where malloc put them. One allocation
  // with the second buffer shifted by a few cache lines off any 4 KiB multiple avoids that every time.
  void reserve_blur(int64_t hw) {
    blurred_offset = ((hw + 1023) / 1024) * 1024 + 80;  // 80 floats = 320 bytes past a 4 KiB multiple
    blur_rows.resize(blurred_offset + hw);
  }
};

template <typename T>
void decode_one(const DecodeParams& p, int64_t i, Scratch& s) {
  const int64_t n = i / p.K, k = i % p.K, H = p.H, W = p.W;
  Heatmap<T> hm{static_cast<const T*>(p.heatmaps) + n * p.hs_n + k * p.hs_k, nullptr, &p};
  if (p.flipped != nullptr) hm.f = static_cast<const T*>(p.flipped) + n * p.fs_n + p.perm[k] * p.fs_k;

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
    decode::quarter_step(hm, iy, ix, H, W, px, py);
  } else if (p.method >= kDark && pos) {
    const bool dark = p.method == kDark;
    if (decode::taylor_applies(dark, iy, ix, H, W)) {
      const float bmax = blur(img, s.pad.data(), s.tmp(), s.blurred(), H, W, p.weights, p.ksize);
      const float ratio = best / bmax;
      if (std::isfinite(ratio) && ratio > 0.f) {
        const float* B = s.blurred();
        // Log-heatmap at (y, x): clamp(B * ratio) then log, as mmpose does in fp32.
        auto L = [&](int64_t y, int64_t x) -> float {
          const float v = B[y * W + x] * ratio;
          return dark ? std::log(std::max(v, 1e-10f)) : std::log(std::min(std::max(v, 1e-3f), 50.f));
        };
        if (dark) {
          decode::dark_step(L, iy, ix, px, py);
        } else {
          decode::udp_step(L, iy, ix, H, W, px, py);
        }
      }
    }
  }
  decode::write_point(p, i, n, px, py, best);
}

}  // namespace

void decode_heatmaps_kernel(const DecodeParams& p, at::ScalarType dtype) {
  const int64_t total = p.N * p.K, hw = p.H * p.W;
  // at::parallel_for runs on the calling thread when N*K <= grain, else on min(threads, ceil(N*K / grain))
  // threads, one contiguous range of heatmaps each. grain is about 128K pixels of heatmap for argmax/quarter
  // (tens of microseconds: 42 heatmaps of 64x48, so a small batch stays on one thread instead of paying
  // a fork/join) and about 4K for DARK/UDP, whose blur adds 2 * ksize multiply-adds a pixel (1 heatmap).
  const int64_t grain = std::max<int64_t>(1, (p.method >= kDark ? 4096 : 131072) / std::max<int64_t>(hw, 1));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "decode_heatmaps_cpu", [&] {
    at::parallel_for(0, total, grain, [&](int64_t begin, int64_t end) {
      Scratch s;
      s.img.resize(hw);
      s.frow.resize(p.W);
      if (p.method >= kDark) {
        s.pad.resize(p.W + p.ksize);
        s.reserve_blur(hw);
      }
      for (int64_t i = begin; i < end; ++i) decode_one<scalar_t>(p, i, s);
    });
  });
}

}  // namespace cpu
}  // namespace hrnet_fast
