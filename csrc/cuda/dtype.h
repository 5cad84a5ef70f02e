// Element types the CUDA launchers take, as a plain enum: the .cu files include no torch headers (CI
// compiles them with nvcc alone), so each torch binding maps at::ScalarType onto this and passes it down.
// Plain C++ (no CUDA, no torch): any translation unit may include it.
#pragma once

namespace hrnet_fast {
namespace cuda {

// A launcher switches on the names and returns an error for a code it does not run (decode and crop: no
// kFloat64).
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

}  // namespace cuda
}  // namespace hrnet_fast
