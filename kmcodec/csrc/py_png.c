/* Binding of the png kernels (placeholder until they are ported from numba). */
#include "binding.h"

int kmc_py_png_init(PyObject *module)
{
    (void)module;
    return 0;
}
