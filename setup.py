"""The C++/CUDA extension ``hrnet_fast._C`` (the project metadata is in pyproject.toml).

The CPU sources (``csrc/*.cpp``, ``csrc/cpu/*.cpp``) are always built. The CUDA sources
(``csrc/cuda/*.cu`` and their torch bindings ``csrc/cuda/*.cpp``) are added when torch is a CUDA
build and a CUDA toolkit is found; ``TORCH_CUDA_ARCH_LIST`` picks the architectures as usual.
Set ``HRNET_FAST_NO_CUDA=1`` to force a CPU-only build, ``HRNET_FAST_NO_EXT=1`` to skip the
extension entirely (the package then runs on its torch and Triton backends only).

The Triton kernels live in ``kernels/`` and are installed as ``hrnet_fast.kernels`` (pyproject.toml).
"""
import glob
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def _extensions():
    if os.environ.get("HRNET_FAST_NO_EXT", "0") == "1":
        return [], {}
    try:
        import torch
    except ImportError as exc:  # an isolated build environment has no torch
        raise RuntimeError(
            "hrnet_fast compiles its extension against your installed torch: install torch first, then "
            "`pip install --no-build-isolation .` (or set HRNET_FAST_NO_EXT=1 to skip the extension)"
        ) from exc
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    sources = _rel(glob.glob(os.path.join(ROOT, "csrc", "*.cpp")) + glob.glob(os.path.join(ROOT, "csrc", "cpu", "*.cpp")))
    # No -std flag of our own: BuildExtension adds the standard the installed torch's headers need
    # (C++17 for older releases, C++20 for newer ones).
    cxx_flags = ["-O3"]
    if os.environ.get("HRNET_FAST_NO_OPENMP", "0") != "1":
        cxx_flags.append("-fopenmp")
    with_cuda = (
        torch.version.cuda is not None
        and CUDA_HOME is not None
        and os.environ.get("HRNET_FAST_NO_CUDA", "0") != "1"
    )
    if with_cuda:
        sources += _rel(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cpp")) + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
        ext = CUDAExtension(
            "hrnet_fast._C",
            sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=[("HRNET_FAST_WITH_CUDA", "1")],
            # No --use_fast_math: it would flush denormals to zero and approximate division, square root
            # and the transcendental functions in every kernel, while the decode kernels rely on IEEE
            # results and exactly placed products (csrc/decode_heatmaps_common.h) and the exchange and
            # crop kernels are memory-bound (nothing measured gains from it). A kernel that ever does
            # gain asks for the fast intrinsics (__expf, __fdividef, ...) itself.
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=["-fopenmp"] if "-fopenmp" in cxx_flags else [],
        )
    else:
        ext = CppExtension(
            "hrnet_fast._C",
            sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"] if "-fopenmp" in cxx_flags else [],
        )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

# Metadata (name, version, dependencies, extras, console script, packages) lives in pyproject.toml.
setup(ext_modules=ext_modules, cmdclass=cmdclass)
