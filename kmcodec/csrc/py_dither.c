/* Binding of the dither kernels (placeholder until they are ported from numba). */
#include "binding.h"

int kmc_py_dither_init(PyObject *module)
{
    (void)module;
    return 0;
}
