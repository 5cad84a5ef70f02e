"""Triton kernels of hrnet_fast, installed as ``hrnet_fast.kernels``.

Set ``TRITON_INTERPRET=1`` before importing a kernel module to run it on CPU tensors (tests in CI).
"""
