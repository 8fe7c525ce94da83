/* Binding of the rdo kernels (placeholder until they are ported from numba). */
#include "binding.h"

int kmc_py_rdo_init(PyObject *module)
{
    (void)module;
    return 0;
}
