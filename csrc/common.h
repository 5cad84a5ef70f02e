// Helpers shared by every op's torch binding (CPU and CUDA). Plain C++ over ATen; no kernels here.
#pragma once

#include <cstdlib>

namespace hrnet_fast {

// Test hook (hrnet_fast._backends.POISON_ENV): when the environment variable HRNET_FAST_POISON_OUTPUTS is
// "1", every backend fills its freshly allocated outputs with NaN before its kernels run, so an element a
// kernel fails to write shows. Read per call: tests switch it on and off.
inline bool poison_outputs() {
  const char* v = std::getenv("HRNET_FAST_POISON_OUTPUTS");
  return v != nullptr && v[0] == '1';
}

}  // namespace hrnet_fast
