// The Python module hrnet_fast._C. Importing it runs the static TORCH_LIBRARY registrations of every
// op in this extension (torch.ops.hrnet_fast.*). Plain CPython API rather than pybind11: the ops are
// reached through the dispatcher, so the module only says how it was built and the figures the Python
// support tables need from the kernels.
#include <Python.h>

#include "decode_heatmaps_common.h"

static PyObject* with_cuda(PyObject*, PyObject*) {
#ifdef HRNET_FAST_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

// In every build (a plain constant of the kernel's source): tests check the Python side's arithmetic
// without a GPU.
static PyObject* dark_udp_static_shared_bytes(PyObject*, PyObject*) {
  return PyLong_FromLongLong(static_cast<long long>(hrnet_fast::decode::kDarkUdpStaticSharedBytes));
}

static PyMethodDef hrnet_fast_methods[] = {
    {"with_cuda", with_cuda, METH_NOARGS, "True when the CUDA kernels were compiled into this extension."},
    {"dark_udp_static_shared_bytes", dark_udp_static_shared_bytes, METH_NOARGS,
     "Static shared memory (bytes) of the CUDA DARK/UDP decode kernel, beside its H*W*4 dynamic bytes."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef hrnet_fast_module = {PyModuleDef_HEAD_INIT, "_C", "hrnet_fast compiled ops", -1,
                                               hrnet_fast_methods};

extern "C" PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&hrnet_fast_module); }
