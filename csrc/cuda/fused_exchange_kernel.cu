// CUDA kernels of the fused exchange unit (see fused_exchange_kernel.h).
//
// The 1x1 convolutions run at low resolution in cuBLAS (the binding's GEMM); these kernels do the
// full-resolution work in one pass each: the upsample + bias + sum + ReLU forward, the ReLU mask of the
// backward and the block sums (the adjoint of nearest upsampling). The forward indexes in 32 bits below
// 2^31 elements and in int64 above (tensors may pass 2^31 elements), the backward kernels in int64; loops
// are grid-stride so any size fits the grid limits. Where the innermost dimension and the
// pointers allow it, a thread moves 16 bytes at a time (VEC elements sharing every coordinate but the
// innermost), which is what it takes to approach copy bandwidth in fp16/bf16.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/fused_exchange_kernel.h"

namespace hrnet_fast {
namespace cuda_kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

template <typename T>
__device__ __forceinline__ typename Acc<T>::type to_acc(T v) {
  return static_cast<typename Acc<T>::type>(v);
}
template <>
__device__ __forceinline__ float to_acc<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_acc(typename Acc<T>::type v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

// Coordinates of dense element i (the first of a VEC group) in NCHW or NHWC order. index_t: uint32_t
// when the tensor has fewer than 2^31 elements (32-bit divisions, several times cheaper than 64-bit
// ones), else int64_t.
template <typename index_t>
struct Coord {
  index_t n, c, y, x;
};

template <typename index_t>
__device__ __forceinline__ Coord<index_t> decode(index_t i, index_t C, index_t H, index_t W, bool channels_last) {
  Coord<index_t> k;
  if (channels_last) {
    k.c = i % C;
    index_t t = i / C;
    k.x = t % W;
    t /= W;
    k.y = t % H;
    k.n = t / H;
  } else {
    k.x = i % W;
    index_t t = i / W;
    k.y = t % H;
    t /= H;
    k.c = t % C;
    k.n = t / C;
  }
  return k;
}

// TIn/TOut: the tensor type T or its accumulation type A (see ExchangeLows); z and bias are always A.
// The loop over the lows has a compile-time bound, so every lows.z[j] / lows.bias[j] is read at a constant
// index from the kernel's parameter space (a runtime index made the compiler copy the struct to a local
// stack frame).
template <typename TIn, typename TOut, int VEC, typename index_t>
__global__ void exchange_forward_kernel(const TIn* base, TOut* out,  // no __restrict__: base may be out
                                        const ExchangeLows lows, index_t C, index_t H, index_t W,
                                        bool channels_last, bool relu, index_t groups) {
  using A = typename Acc<TOut>::type;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t g = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < groups; g += step) {
    const index_t i = g * VEC;
    const Coord<index_t> k = decode<index_t>(i, C, H, W, channels_last);
    const Pack<TIn, VEC> b = *reinterpret_cast<const Pack<TIn, VEC>*>(base + i);
    A acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) acc[e] = static_cast<A>(to_acc(b.v[e]));
#pragma unroll
    for (int j = 0; j < kMaxLowsPerLaunch; ++j) {
      if (j >= lows.count) break;
      const int l = lows.log2s[j];
      const index_t hj = H >> l, wj = W >> l, yl = k.y >> l;
      const A* z = static_cast<const A*>(lows.z[j]);
      const A* bias = static_cast<const A*>(lows.bias[j]);
      A zv[VEC];
      if (channels_last) {  // the VEC elements are VEC channels of one pixel: contiguous in z as well
        const A* zp = z + ((k.n * hj + yl) * wj + (k.x >> l)) * C + k.c;
#pragma unroll
        for (int e = 0; e < VEC; ++e) zv[e] = zp[e];
        if (bias != nullptr) {
#pragma unroll
          for (int e = 0; e < VEC; ++e) zv[e] += bias[k.c + e];
        }
      } else {  // the VEC elements are VEC pixels of one row: x >> l differs between them
        const A* zr = z + ((k.n * C + k.c) * hj + yl) * wj;
#pragma unroll
        for (int e = 0; e < VEC; ++e) zv[e] = zr[(k.x + e) >> l];
        if (bias != nullptr) {
          const A bc = bias[k.c];
#pragma unroll
          for (int e = 0; e < VEC; ++e) zv[e] += bc;
        }
      }
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[e] += zv[e];
    }
    Pack<TOut, VEC> o;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const A v = (relu && acc[e] < A(0)) ? A(0) : acc[e];  // keeps NaN, as torch.relu does
      o.v[e] = from_acc<TOut>(v);
    }
    *reinterpret_cast<Pack<TOut, VEC>*>(out + i) = o;
  }
}

template <typename T, int VEC>
__global__ void exchange_relu_mask_kernel(const T* __restrict__ grad, const T* __restrict__ out, T* __restrict__ gb,
                                          bool relu, int64_t groups) {
  using A = typename Acc<T>::type;
  for (int64_t g = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; g < groups; g += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = g * VEC;
    Pack<T, VEC> d = *reinterpret_cast<const Pack<T, VEC>*>(grad + i);
    if (relu) {
      const Pack<T, VEC> o = *reinterpret_cast<const Pack<T, VEC>*>(out + i);
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        if (to_acc(o.v[e]) <= A(0)) d.v[e] = from_acc<T>(A(0));  // NaN passes, as threshold_backward
      }
    }
    *reinterpret_cast<Pack<T, VEC>*>(gb + i) = d;
  }
}

template <typename T>
__global__ void exchange_block_sum_kernel(const T* __restrict__ gb, T* __restrict__ pooled, int64_t C, int64_t H,
                                          int64_t W, int l, bool channels_last, int64_t total) {
  using A = typename Acc<T>::type;
  const int64_t h = H >> l, w = W >> l, s = int64_t{1} << l;
  for (int64_t q = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; q < total; q += int64_t{gridDim.x} * blockDim.x) {
    const Coord<int64_t> k = decode<int64_t>(q, C, h, w, channels_last);
    A acc = A(0);
    for (int64_t dy = 0; dy < s; ++dy) {
      const int64_t y = k.y * s + dy;
      for (int64_t dx = 0; dx < s; ++dx) {
        const int64_t x = k.x * s + dx;
        const int64_t off = channels_last ? ((k.n * H + y) * W + x) * C + k.c : ((k.n * C + k.c) * H + y) * W + x;
        acc += to_acc(gb[off]);
      }
    }
    pooled[q] = from_acc<T>(acc);
  }
}

int blocks_for(int64_t items) {
  const int64_t b = (items + kThreads - 1) / kThreads;
  return static_cast<int>(b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b));
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename TIn, typename TOut, int VEC, typename index_t>
void launch_forward(const void* base, void* out, const ExchangeLows& lows, int64_t c, int64_t h, int64_t w,
                    bool channels_last, bool relu, int64_t groups, cudaStream_t stream) {
  exchange_forward_kernel<TIn, TOut, VEC, index_t><<<blocks_for(groups), kThreads, 0, stream>>>(
      static_cast<const TIn*>(base), static_cast<TOut*>(out), lows, static_cast<index_t>(c), static_cast<index_t>(h),
      static_cast<index_t>(w), channels_last, relu, static_cast<index_t>(groups));
}

template <typename TIn, typename TOut, int VEC>
void launch_forward_indexed(const void* base, void* out, const ExchangeLows& lows, int64_t numel, int64_t c, int64_t h,
                            int64_t w, bool channels_last, bool relu, int64_t groups, cudaStream_t stream) {
  // 32-bit unsigned indices below 2^31 elements: every offset (base, out and the smaller z) fits, and so
  // does g + the grid stride (< 2^31 + 2^28) in the grid-stride loop.
  if (numel < (int64_t{1} << 31)) {
    launch_forward<TIn, TOut, VEC, uint32_t>(base, out, lows, c, h, w, channels_last, relu, groups, stream);
  } else {
    launch_forward<TIn, TOut, VEC, int64_t>(base, out, lows, c, h, w, channels_last, relu, groups, stream);
  }
}

template <typename TIn, typename TOut>
cudaError_t forward_typed(const void* base, void* out, const ExchangeLows& lows, int64_t n, int64_t c, int64_t h,
                          int64_t w, bool channels_last, bool relu, cudaStream_t stream) {
  constexpr int V = 16 / (sizeof(TIn) > sizeof(TOut) ? sizeof(TIn) : sizeof(TOut));
  const int64_t numel = n * c * h * w;
  const int64_t inner = channels_last ? c : w;
  // z and bias are read element by element, so only base and out need the 16-byte alignment of a vector access
  if (inner % V == 0 && aligned16(base) && aligned16(out)) {
    launch_forward_indexed<TIn, TOut, V>(base, out, lows, numel, c, h, w, channels_last, relu, numel / V, stream);
  } else {
    launch_forward_indexed<TIn, TOut, 1>(base, out, lows, numel, c, h, w, channels_last, relu, numel, stream);
  }
  return cudaGetLastError();
}

// (base, out) = (T, T), (T, A), (A, A) or (A, T), A = T's accumulation type.
template <typename T>
cudaError_t forward_pair(bool base_acc, bool out_acc, const void* base, void* out, const ExchangeLows& lows, int64_t n,
                         int64_t c, int64_t h, int64_t w, bool channels_last, bool relu, cudaStream_t stream) {
  using A = typename Acc<T>::type;
  if (!base_acc && !out_acc) return forward_typed<T, T>(base, out, lows, n, c, h, w, channels_last, relu, stream);
  if (!base_acc) return forward_typed<T, A>(base, out, lows, n, c, h, w, channels_last, relu, stream);
  if (out_acc) return forward_typed<A, A>(base, out, lows, n, c, h, w, channels_last, relu, stream);
  return forward_typed<A, T>(base, out, lows, n, c, h, w, channels_last, relu, stream);
}

template <typename T>
cudaError_t relu_mask_typed(const void* grad, const void* out, void* gb, int64_t numel, bool relu, cudaStream_t stream) {
  constexpr int V = 16 / sizeof(T);
  if (numel % V == 0 && aligned16(grad) && aligned16(out) && aligned16(gb)) {
    exchange_relu_mask_kernel<T, V><<<blocks_for(numel / V), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(out), static_cast<T*>(gb), relu, numel / V);
  } else {
    exchange_relu_mask_kernel<T, 1><<<blocks_for(numel), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(out), static_cast<T*>(gb), relu, numel);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t block_sum_typed(const void* gb, void* pooled, int64_t n, int64_t c, int64_t h, int64_t w, int l,
                            bool channels_last, cudaStream_t stream) {
  const int64_t total = n * c * (h >> l) * (w >> l);
  exchange_block_sum_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
      static_cast<const T*>(gb), static_cast<T*>(pooled), c, h, w, l, channels_last, total);
  return cudaGetLastError();
}

}  // namespace

#define HRNET_FAST_EXCHANGE_DISPATCH(dtype, fn, ...)        \
  switch (dtype) {                                          \
    case cuda::DType::kFloat32:                           \
      return fn<float>(__VA_ARGS__);                        \
    case cuda::DType::kFloat16:                           \
      return fn<__half>(__VA_ARGS__);                       \
    case cuda::DType::kBFloat16:                          \
      return fn<__nv_bfloat16>(__VA_ARGS__);                \
    case cuda::DType::kFloat64:                           \
      return fn<double>(__VA_ARGS__);                       \
  }                                                         \
  return cudaErrorInvalidValue;

cudaError_t launch_exchange_forward(cuda::DType dtype, bool base_is_acc, bool out_is_acc, const void* base, void* out,
                                    const ExchangeLows& lows, int64_t n, int64_t c, int64_t h, int64_t w,
                                    bool channels_last, bool relu, cudaStream_t stream) {
  if (n * c * h * w == 0) return cudaSuccess;
  if (lows.count < 0 || lows.count > kMaxLowsPerLaunch) return cudaErrorInvalidValue;
  HRNET_FAST_EXCHANGE_DISPATCH(dtype, forward_pair, base_is_acc, out_is_acc, base, out, lows, n, c, h, w,
                               channels_last, relu, stream)
}

cudaError_t launch_exchange_relu_mask(cuda::DType dtype, const void* grad, const void* out, void* grad_base,
                                      int64_t numel, bool relu, cudaStream_t stream) {
  if (numel == 0) return cudaSuccess;
  HRNET_FAST_EXCHANGE_DISPATCH(dtype, relu_mask_typed, grad, out, grad_base, numel, relu, stream)
}

cudaError_t launch_exchange_block_sum(cuda::DType dtype, const void* grad_base, void* pooled, int64_t n, int64_t c,
                                      int64_t h, int64_t w, int log2s, bool channels_last, cudaStream_t stream) {
  if (n * c * (h >> log2s) * (w >> log2s) == 0) return cudaSuccess;
  HRNET_FAST_EXCHANGE_DISPATCH(dtype, block_sum_typed, grad_base, pooled, n, c, h, w, log2s, channels_last, stream)
}

}  // namespace cuda_kernels
}  // namespace hrnet_fast
