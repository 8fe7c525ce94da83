/* kmcodec._kernels: the codec's compiled kernels, one module, each area's functions added by its binding. */
#include "binding.h"

static int exec_module(PyObject *module)
{
    if (kmc_py_cm_init(module) < 0 || kmc_py_rdo_init(module) < 0 || kmc_py_quant_init(module) < 0 ||
        kmc_py_dither_init(module) < 0 || kmc_py_png_init(module) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)exec_module},
#if PY_VERSION_HEX >= 0x030C0000
    /* The kernels keep no state in the module: safe in any interpreter. */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* Every kernel works on the buffers it is given and no shared state. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kmcodec._kernels",
    .m_doc = "The compiled kernels of kmcodec (C): label coders, RDO labeller, quantizer, ditherer, PNG unfilter.",
    .m_size = 0,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    return PyModuleDef_Init(&module_def);
}
