// CPU crop kernel. One task = a run of output rows (box m, row y). Per pixel: the source point in double
// (A @ (x, y, 1), evaluated as the torch reference does), floor, float weights, the four neighbours of
// each channel (0 outside the image), the lerp blend of the reference, the normalisation, one store per
// channel. Pixels whose four neighbours are all inside skip the border tests.
#include "cpu/crop_boxes_kernel.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace hrnet_fast {
namespace cpu {
namespace {

template <typename T>
inline T cast_out(float v) {
  return static_cast<T>(v);
}

#if defined(__SSE2__)
// The 4 bytes at q (a pixel's 3 channels and one more byte) as 4 floats.
inline __m128 load_pixel(const uint8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  const __m128i z = _mm_setzero_si128();
  return _mm_cvtepi32_ps(_mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(v), z), z));
}
#endif

template <typename T>
void crop_row(const CropParams& p, T* out, int64_t m, int64_t y) {
  // Everything the loop reads goes to locals first: the output stores (float) could alias p.scale/p.bias
  // for the compiler, which would then reload them after every store.
  const int64_t os_c = p.os_c, os_w = p.os_w, W = p.W;
  T* o = out + m * p.os_m + y * p.os_h;
  const int64_t idx = p.index[m];
  if (idx < 0 || idx >= p.N) {  // checked before on CPU; kept so the kernel never reads outside images
    const T nan = cast_out<T>(std::numeric_limits<float>::quiet_NaN());
    for (int64_t x = 0; x < W; ++x) {
      for (int c = 0; c < 3; ++c) o[x * os_w + c * os_c] = nan;
    }
    return;
  }
  const uint8_t* img = p.images + p.meta[3 * idx];
  const int64_t ih = p.meta[3 * idx + 1], iw = p.meta[3 * idx + 2];
  const double* A = p.affine + 6 * m;
  const double dy = static_cast<double>(y);
  const double a0 = A[0], a1y = A[1] * dy, a2 = A[2], a3 = A[3], a4y = A[4] * dy, a5 = A[5];
  const double wd = static_cast<double>(iw), hd = static_cast<double>(ih);
  const int64_t row = iw * 3;
  const int s0 = p.src_c[0], s1 = p.src_c[1], s2 = p.src_c[2];
  const float k0 = p.scale[0], k1 = p.scale[1], k2 = p.scale[2];
  const float b0 = p.bias[0], b1 = p.bias[1], b2 = p.bias[2];
  const T zero0 = cast_out<T>(b0), zero1 = cast_out<T>(b1), zero2 = cast_out<T>(b2);  // 0 * scale + bias
#if defined(__SSE2__)
  // scale and bias in the lanes of the source channels
  alignas(16) float kl[4] = {0.f, 0.f, 0.f, 0.f}, bl[4] = {0.f, 0.f, 0.f, 0.f};
  kl[s0] = k0, kl[s1] = k1, kl[s2] = k2;
  bl[s0] = b0, bl[s1] = b1, bl[s2] = b2;
  const __m128 kv = _mm_load_ps(kl), bv = _mm_load_ps(bl);
#endif
  for (int64_t x = 0; x < W; ++x) {
    const double dx = static_cast<double>(x);
    const double sx = a0 * dx + a1y + a2;
    const double sy = a3 * dx + a4y + a5;
    T* ox = o + x * os_w;
    if (!(sx > -1.0 && sx < wd && sy > -1.0 && sy < hd)) {
      if (sx != sx || sy != sy) {
        const T nan = cast_out<T>(std::numeric_limits<float>::quiet_NaN());
        ox[0] = nan, ox[os_c] = nan, ox[2 * os_c] = nan;
      } else {
        ox[0] = zero0, ox[os_c] = zero1, ox[2 * os_c] = zero2;
      }
      continue;
    }
    int64_t x0 = static_cast<int64_t>(sx), y0 = static_cast<int64_t>(sy);  // floor: sx in (-1, w)
    if (static_cast<double>(x0) > sx) --x0;
    if (static_cast<double>(y0) > sy) --y0;
    const float fx = static_cast<float>(sx - static_cast<double>(x0));
    const float fy = static_cast<float>(sy - static_cast<double>(y0));
#if defined(__SSE2__)
    // All four neighbours inside, and the 4-byte loads stay inside the image (the bottom-right pixel's
    // last load would read one byte past it): the three channels in one SSE register, the same float
    // operations as the scalar blend (SSE2 has no FMA), so the result is bit-identical.
    if (x0 >= 0 && y0 >= 0 && x0 + 1 < iw && y0 + 1 < ih && (x0 + 2 < iw || y0 + 2 < ih)) {
      const uint8_t* q0 = img + y0 * row + x0 * 3;
      const uint8_t* q1 = q0 + row;
      const __m128 vfx = _mm_set1_ps(fx), vfy = _mm_set1_ps(fy);
      const __m128 p00 = load_pixel(q0), p01 = load_pixel(q0 + 3), p10 = load_pixel(q1), p11 = load_pixel(q1 + 3);
      const __m128 top = _mm_add_ps(p00, _mm_mul_ps(vfx, _mm_sub_ps(p01, p00)));
      const __m128 bot = _mm_add_ps(p10, _mm_mul_ps(vfx, _mm_sub_ps(p11, p10)));
      const __m128 v = _mm_add_ps(_mm_mul_ps(_mm_add_ps(top, _mm_mul_ps(vfy, _mm_sub_ps(bot, top))), kv), bv);
      alignas(16) float r[4];
      _mm_store_ps(r, v);
      ox[0] = cast_out<T>(r[s0]), ox[os_c] = cast_out<T>(r[s1]), ox[2 * os_c] = cast_out<T>(r[s2]);
      continue;
    }
#endif
    float v00[3], v01[3], v10[3], v11[3];
    if (x0 >= 0 && y0 >= 0 && x0 + 1 < iw && y0 + 1 < ih) {
      const uint8_t* q0 = img + y0 * row + x0 * 3;
      const uint8_t* q1 = q0 + row;
      v00[0] = q0[s0], v00[1] = q0[s1], v00[2] = q0[s2];
      v01[0] = q0[3 + s0], v01[1] = q0[3 + s1], v01[2] = q0[3 + s2];
      v10[0] = q1[s0], v10[1] = q1[s1], v10[2] = q1[s2];
      v11[0] = q1[3 + s0], v11[1] = q1[3 + s1], v11[2] = q1[3 + s2];
    } else {  // a neighbour outside the image counts as 0
      const bool xin0 = x0 >= 0, xin1 = x0 + 1 < iw, yin0 = y0 >= 0, yin1 = y0 + 1 < ih;
      const int sc[3] = {s0, s1, s2};
      for (int c = 0; c < 3; ++c) {
        v00[c] = (yin0 && xin0) ? img[y0 * row + x0 * 3 + sc[c]] : 0.f;
        v01[c] = (yin0 && xin1) ? img[y0 * row + (x0 + 1) * 3 + sc[c]] : 0.f;
        v10[c] = (yin1 && xin0) ? img[(y0 + 1) * row + x0 * 3 + sc[c]] : 0.f;
        v11[c] = (yin1 && xin1) ? img[(y0 + 1) * row + (x0 + 1) * 3 + sc[c]] : 0.f;
      }
    }
    float v[3];
    for (int c = 0; c < 3; ++c) {
      const float top = v00[c] + fx * (v01[c] - v00[c]);
      const float bot = v10[c] + fx * (v11[c] - v10[c]);
      v[c] = top + fy * (bot - top);
    }
    ox[0] = cast_out<T>(v[0] * k0 + b0);
    ox[os_c] = cast_out<T>(v[1] * k1 + b1);
    ox[2 * os_c] = cast_out<T>(v[2] * k2 + b2);
  }
}

}  // namespace

void crop_boxes_kernel(const CropParams& p, at::ScalarType dtype) {
  const int64_t rows = p.M * p.H;
  // ~16K output pixels per task (tens of microseconds): one box of 256x192 splits into a few tasks.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(p.W, 1));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "crop_boxes_cpu", [&] {
    scalar_t* o = static_cast<scalar_t*>(p.out);
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) crop_row<scalar_t>(p, o, r / p.H, r % p.H);
    });
  });
}

}  // namespace cpu
}  // namespace hrnet_fast
