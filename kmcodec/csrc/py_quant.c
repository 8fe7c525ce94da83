/* Binding of the quant kernels (placeholder until they are ported from numba). */
#include "binding.h"

int kmc_py_quant_init(PyObject *module)
{
    (void)module;
    return 0;
}
