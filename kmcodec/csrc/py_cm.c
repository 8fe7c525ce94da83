/* Binding of the cm kernels (placeholder until they are ported from numba). */
#include "binding.h"

int kmc_py_cm_init(PyObject *module)
{
    (void)module;
    return 0;
}
