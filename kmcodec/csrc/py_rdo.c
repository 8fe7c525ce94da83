/* Binding of the rdo kernel (rdo.h): the rate-distortion-optimised labeller. */
#include "binding.h"
#include "rdo.h"

/* rdo_labels and rdo_bits: the same arguments, the bits summed with *measure*. */
static PyObject *label(PyObject *args, const char *format, int measure)
{
    PyObject *pix_obj, *palette_obj, *near_obj, *cost_obj, *out_obj, *weight_obj = Py_None;
    double lam, ahead;
    Py_ssize_t alpha;
    if (!PyArg_ParseTuple(args, format, &pix_obj, &palette_obj, &near_obj, &lam, &alpha, &cost_obj, &ahead,
                          &out_obj, &weight_obj))
        return NULL;
    Py_buffer pix = {0}, palette = {0}, near = {0}, cost = {0}, out = {0}, weight = {0};
    PyObject *result = NULL;
    Py_ssize_t itemsize = kmc_label_itemsize(near_obj);
    if (kmc_buffer(pix_obj, &pix, "pix", KMC_UINT, 1, 3, 0) < 0 ||
        kmc_buffer(palette_obj, &palette, "palette", KMC_UINT, 1, 2, 0) < 0 ||
        kmc_buffer(near_obj, &near, "near", KMC_UINT, itemsize, 2, 0) < 0 ||
        kmc_buffer(cost_obj, &cost, "cost", KMC_FLOAT, 8, 1, 0) < 0 ||
        kmc_buffer(out_obj, &out, "out", KMC_UINT, itemsize, 2, 1) < 0 ||
        (weight_obj != Py_None && kmc_buffer(weight_obj, &weight, "weight", KMC_UINT, 1, 2, 0) < 0))
        goto done;
    Py_ssize_t h = pix.shape[0], w = pix.shape[1], channels = pix.shape[2], k = palette.shape[0];
    if (near.shape[0] != h || near.shape[1] != w || out.shape[0] != h || out.shape[1] != w) {
        kmc_mismatch("near and out must be (h, w) for pix of (h, w, channels)");
        goto done;
    }
    if (palette.shape[1] != channels || k < 1 || k > 65536) {
        kmc_mismatch("palette must be (k, channels), 1 <= k <= 65536, for pix of (h, w, channels)");
        goto done;
    }
    if (weight_obj != Py_None && (weight.shape[0] != h || weight.shape[1] != w)) {
        kmc_mismatch("weight must be (h, w) for pix of (h, w, channels)");
        goto done;
    }
    if (cost.shape[0] != 4096) {
        kmc_mismatch("cost must hold 4096 values");
        goto done;
    }
    if (alpha < -1 || alpha >= channels) {
        kmc_mismatch("alpha must be a channel's index, or -1");
        goto done;
    }
    double bits = 0.0;
    int64_t error;
    Py_BEGIN_ALLOW_THREADS
    error = kmc_rdo_label(pix.buf, h, w, channels, palette.buf, k, near.buf, out.buf, itemsize == 2, lam, alpha,
                          cost.buf, ahead, weight_obj != Py_None ? weight.buf : NULL, measure ? &bits : NULL);
    Py_END_ALLOW_THREADS
    if (error == KMC_RDO_NO_MEMORY)
        PyErr_NoMemory();
    else if (error == KMC_RDO_BAD_LABEL)
        kmc_mismatch("a nearest entry is not below the palette's size");
    else if (measure)
        result = Py_BuildValue("(Ld)", (long long)error, bits);
    else
        result = PyLong_FromLongLong(error);
done:
    kmc_release(&pix);
    kmc_release(&palette);
    kmc_release(&near);
    kmc_release(&cost);
    kmc_release(&out);
    kmc_release(&weight);
    return result;
}

PyDoc_STRVAR(rdo_labels_doc,
             "rdo_labels(pix, palette, near, lam, alpha, cost, ahead, out, weight=None) -> int\n\n"
             "Choose the labels out (h, w) of one strip for squared error + lam x bits, the bits those the\n"
             "cm model prices them at; returns their summed squared error.  pix (h, w, C) uint8; palette\n"
             "(k, C) uint8; near (h, w) uint8 or uint16, each pixel's nearest entry, and out like it;\n"
             "alpha the alpha channel or -1; cost (4096,) float64, the bits of a 12-bit probability;\n"
             "ahead the bits added per later neighbour whose nearest entry is not the label; weight None or\n"
             "(h, w) uint8, how many times each pixel's squared error counts in its choice.");

static PyObject *rdo_labels(PyObject *self, PyObject *args)
{
    (void)self;
    return label(args, "OOOdnOdO|O:rdo_labels", 0);
}

PyDoc_STRVAR(rdo_bits_doc,
             "rdo_bits(pix, palette, near, lam, alpha, cost, ahead, out, weight=None) -> (int, float)\n\n"
             "rdo_labels, also returning the bits its model prices the chosen labels at: the sum of\n"
             "-log2 p over the decisions the coder would code for them (without the look-ahead bits).");

static PyObject *rdo_bits(PyObject *self, PyObject *args)
{
    (void)self;
    return label(args, "OOOdnOdO|O:rdo_bits", 1);
}

static PyMethodDef methods[] = {
    {"rdo_labels", rdo_labels, METH_VARARGS, rdo_labels_doc},
    {"rdo_bits", rdo_bits, METH_VARARGS, rdo_bits_doc},
    {NULL, NULL, 0, NULL},
};

int kmc_py_rdo_init(PyObject *module)
{
    return PyModule_AddFunctions(module, methods);
}
