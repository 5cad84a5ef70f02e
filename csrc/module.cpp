// The Python module hrnet_fast._C. Importing it runs the static TORCH_LIBRARY registrations of every
// op in this extension (torch.ops.hrnet_fast.*). Plain CPython API rather than pybind11: the ops are
// reached through the dispatcher, so the module only needs to say how it was built.
#include <Python.h>

static PyObject* with_cuda(PyObject*, PyObject*) {
#ifdef HRNET_FAST_WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

static PyMethodDef hrnet_fast_methods[] = {
    {"with_cuda", with_cuda, METH_NOARGS, "True when the CUDA kernels were compiled into this extension."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef hrnet_fast_module = {PyModuleDef_HEAD_INIT, "_C", "hrnet_fast compiled ops", -1,
                                               hrnet_fast_methods};

extern "C" PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&hrnet_fast_module); }
