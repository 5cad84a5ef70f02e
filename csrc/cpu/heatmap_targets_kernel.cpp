// CPU heatmap_targets kernel. One task = a run of (n, k) heatmaps: the joint's window and weight
// (csrc/heatmap_targets_common.h, the arithmetic the CUDA kernel shares), the map zeroed, then the window's
// rows copied from the official table (msra) or computed (udp).
#include "cpu/heatmap_targets_kernel.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>

namespace hrnet_fast {
namespace cpu {

void heatmap_targets_kernel(const targets::TargetParams& p) {
  const int64_t maps = p.N * p.K, hw = p.H * p.W;
  // ~64K floats written per task: a 64x48 map is 3072, so about 20 maps per task
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(hw, 1));
  at::parallel_for(0, maps, grain, [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk) {
      const targets::Window w = targets::joint_window(p, nk);
      p.weights[nk] = w.weight;
      float* out = p.targets + nk * hw;
      std::memset(out, 0, static_cast<size_t>(hw) * sizeof(float));
      if (!w.paste) continue;
      for (int64_t y = w.y_begin; y < w.y_end; ++y) {
        const int64_t j = y - w.ul_y;
        float* row = out + y * p.W;
        if (p.method == targets::kMsra) {
          const float* src = p.table + j * p.L + (w.x_begin - w.ul_x);
          std::copy(src, src + (w.x_end - w.x_begin), row + w.x_begin);
        } else {
          for (int64_t x = w.x_begin; x < w.x_end; ++x) row[x] = targets::udp_value(p, w, x - w.ul_x, j);
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace hrnet_fast
