// CUDA heatmap_targets kernel (rules: hrnet_fast/ops/heatmap_targets.py; CPU twin:
// csrc/cpu/heatmap_targets_kernel.cpp; the per-joint arithmetic both run is in csrc/heatmap_targets_common.h).
//
// One 32 x 8 block per (n, k) heatmap (blockIdx.x, grid-strided): every thread computes the joint's window
// (a few float64 operations, cheaper than sharing it through shared memory and a barrier), then the block
// walks the map in 32-column x 8-row tiles, so a warp's stores are 32 consecutive floats of one row. Pixels
// in the window read the official table (msra, through the read-only cache) or compute the Gaussian in
// float64 (udp); every other pixel is written 0. Offsets are int64 (N*K*H*W may pass 2^31).
#include "cuda/heatmap_targets_kernel.h"

#include <cstdint>

namespace hrnet_fast {
namespace cuda {
namespace {

constexpr int kBlockX = 32;
constexpr int kBlockY = 8;
constexpr int64_t kMaxGridX = 0x7fffffffLL;

__global__ void __launch_bounds__(kBlockX * kBlockY) heatmap_targets_kernel(targets::TargetParams p) {
  const int64_t maps = p.N * p.K, hw = p.H * p.W;
  for (int64_t nk = blockIdx.x; nk < maps; nk += gridDim.x) {
    const targets::Window w = targets::joint_window(p, nk);
    if (threadIdx.x == 0 && threadIdx.y == 0) p.weights[nk] = w.weight;
    float* out = p.targets + nk * hw;
    for (int64_t y = threadIdx.y; y < p.H; y += kBlockY) {
      const bool row_in = w.paste && y >= w.y_begin && y < w.y_end;
      const int64_t j = y - w.ul_y;
      for (int64_t x = threadIdx.x; x < p.W; x += kBlockX) {
        float v = 0.f;
        if (row_in && x >= w.x_begin && x < w.x_end) {
          const int64_t i = x - w.ul_x;
          v = p.method == targets::kMsra ? __ldg(p.table + j * p.L + i) : targets::udp_value(p, w, i, j);
        }
        out[y * p.W + x] = v;
      }
    }
  }
}

}  // namespace

cudaError_t launch_heatmap_targets(const targets::TargetParams& p, cudaStream_t stream, const char** what) {
  *what = "no error";
  const int64_t maps = p.N * p.K;
  if (maps == 0) return cudaSuccess;
  // one block per map up to the grid limit; the kernel strides over the rest
  const unsigned int grid = static_cast<unsigned int>(maps < kMaxGridX ? maps : kMaxGridX);
  heatmap_targets_kernel<<<grid, dim3(kBlockX, kBlockY), 0, stream>>>(p);
  *what = "launching heatmap_targets_kernel";
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace hrnet_fast
