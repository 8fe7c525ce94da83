/* Binding of the dither kernels (dither.c) for kmcodec.dither. */
#include "binding.h"
#include "dither.h"

/* Whether two buffers share any byte. */
static int shares_memory(const Py_buffer *a, const Py_buffer *b)
{
    uintptr_t a0 = (uintptr_t)a->buf, b0 = (uintptr_t)b->buf;
    return a->len > 0 && b->len > 0 && a0 < b0 + (uintptr_t)b->len && b0 < a0 + (uintptr_t)a->len;
}

/* Whether every value of order (k int64) is a palette index 0..k-1. */
static int order_in_range(const Py_buffer *order)
{
    const int64_t *v = order->buf;
    const Py_ssize_t k = order->shape[0];
    for (Py_ssize_t j = 0; j < k; j++)
        if (v[j] < 0 || v[j] >= k)
            return 0;
    return 1;
}

PyDoc_STRVAR(dither_nearest_other_doc,
             "dither_nearest_other(palette, order, out) -> None\n\n"
             "Write into out (k,) int64 the squared distance from each entry of palette (k, C) uint8 to\n"
             "the nearest entry of a different colour, -1 if there is none.  order (k,) int64 lists the\n"
             "entries sorted by their first channel.");

static PyObject *dither_nearest_other(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *palette_obj, *order_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO:dither_nearest_other", &palette_obj, &order_obj, &out_obj))
        return NULL;
    Py_buffer palette = {0}, order = {0}, out = {0};
    PyObject *result = NULL;
    if (kmc_buffer(palette_obj, &palette, "palette", KMC_UINT, 1, 2, 0) < 0 ||
        kmc_buffer(order_obj, &order, "order", KMC_INT, 8, 1, 0) < 0 ||
        kmc_buffer(out_obj, &out, "out", KMC_INT, 8, 1, 1) < 0)
        goto done;
    const Py_ssize_t k = palette.shape[0], channels = palette.shape[1];
    if (k < 1 || channels < 1 || order.shape[0] != k || out.shape[0] != k) {
        kmc_mismatch("palette must be (k, C) with k, C >= 1, order and out (k,)");
        goto done;
    }
    if (!order_in_range(&order)) {
        kmc_mismatch("order holds an index out of the palette");
        goto done;
    }
    if (shares_memory(&out, &palette) || shares_memory(&out, &order)) {
        kmc_mismatch("out must not share memory with palette or order");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    kmc_dither_nearest_other(palette.buf, (size_t)k, (size_t)channels, order.buf, out.buf);
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    kmc_release(&palette);
    kmc_release(&order);
    kmc_release(&out);
    return result;
}

PyDoc_STRVAR(dither_block_doc,
             "dither_block(image, palette, strength, limit, alpha_channel, labels, carry, first_row) -> int\n\n"
             "Floyd-Steinberg error diffusion with a serpentine scan of image (H, W, C) uint8, C <= 64, to\n"
             "palette (k, C) uint8 into labels (H, W), uint8 (k <= 256) or uint16 (k <= 65536): each pixel\n"
             "takes the entry nearest it plus the error it is passed (ties to the lowest index).\n"
             "strength 0..256 is the 256ths of the error passed on; limit 0..2**62 the most error, in\n"
             "fixed point (DITHER_FRAC fractional bits), a pixel takes from its neighbours per channel;\n"
             "alpha_channel the index of alpha or -1 (a pixel with alpha 0 takes the entry nearest all\n"
             "zeros and neither takes nor gives error).  carry (W + 2, C) int64 holds the error arriving\n"
             "at the block's first row (column x at x + 1) and is left holding the error for the row after\n"
             "it; first_row is the block's row in the image (even rows run left to right).  Returns the\n"
             "sum over pixels and channels of the squared difference between the pixel (a transparent one\n"
             "as zeros) and its entry.  weights, optional, (H, W) uint8: the 255ths of the arriving error\n"
             "each pixel takes (a dither map; None: all of it).  Releases the GIL.");

static PyObject *dither_block(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *image_obj, *palette_obj, *labels_obj, *carry_obj, *weights_obj = Py_None;
    long long strength, limit, first_row;
    int alpha_channel;
    if (!PyArg_ParseTuple(args, "OOLLiOOL|O:dither_block", &image_obj, &palette_obj, &strength, &limit,
                          &alpha_channel, &labels_obj, &carry_obj, &first_row, &weights_obj))
        return NULL;
    if (strength < 0 || strength > KMC_DITHER_MAX_STRENGTH)
        return kmc_mismatch("strength must be 0 to 256");
    if (limit < 0 || limit > KMC_DITHER_MAX_LIMIT)
        return kmc_mismatch("limit must be 0 to 2**62");
    Py_buffer image = {0}, palette = {0}, labels = {0}, carry = {0}, weights = {0};
    PyObject *result = NULL;
    if (kmc_buffer(image_obj, &image, "image", KMC_UINT, 1, 3, 0) < 0 ||
        kmc_buffer(palette_obj, &palette, "palette", KMC_UINT, 1, 2, 0) < 0 ||
        kmc_buffer(carry_obj, &carry, "carry", KMC_INT, 8, 2, 1) < 0 ||
        (weights_obj != Py_None && kmc_buffer(weights_obj, &weights, "weights", KMC_UINT, 1, 2, 0) < 0))
        goto done;
    /* labels: uint8 or uint16 */
    if (kmc_buffer(labels_obj, &labels, "labels", KMC_UINT, 1, 2, 1) < 0) {
        PyErr_Clear();
        if (kmc_buffer(labels_obj, &labels, "labels", KMC_UINT, 2, 2, 1) < 0) {
            PyErr_Clear();
            kmc_mismatch("labels must be a writable, C-contiguous 2-D uint8 or uint16 array");
            goto done;
        }
    }
    const Py_ssize_t h = image.shape[0], w = image.shape[1], channels = image.shape[2], k = palette.shape[0];
    if (channels < 1 || channels > KMC_DITHER_MAX_CHANNELS || palette.shape[1] != channels || k < 1 ||
        labels.shape[0] != h || labels.shape[1] != w || carry.shape[0] != w + 2 || carry.shape[1] != channels) {
        kmc_mismatch("image must be (H, W, C) with 1 <= C <= 64, palette (k, C) with k >= 1, labels (H, W) and "
                     "carry (W + 2, C)");
        goto done;
    }
    if (weights.buf != NULL && (weights.shape[0] != h || weights.shape[1] != w)) {
        kmc_mismatch("weights must be (H, W)");
        goto done;
    }
    if (k > (labels.itemsize == 1 ? 256 : 65536)) {
        kmc_mismatch("labels cannot hold k labels: uint8 takes up to 256, uint16 up to 65536");
        goto done;
    }
    if (alpha_channel < -1 || alpha_channel >= channels) {
        kmc_mismatch("alpha_channel must be -1 or a channel of the image");
        goto done;
    }
    if (shares_memory(&labels, &image) || shares_memory(&labels, &palette) || shares_memory(&labels, &carry) ||
        shares_memory(&carry, &image) || shares_memory(&carry, &palette) || shares_memory(&labels, &weights) ||
        shares_memory(&carry, &weights)) {
        kmc_mismatch("labels and carry must not share memory with each other or the inputs");
        goto done;
    }
    int64_t sse = 0;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = kmc_dither_weighted(image.buf, (size_t)h, (size_t)w, (size_t)channels, palette.buf, (size_t)k,
                                 (int64_t)strength, (int64_t)limit, alpha_channel, weights.buf, labels.buf,
                                 (int)labels.itemsize, carry.buf, (int64_t)first_row, &sse);
    Py_END_ALLOW_THREADS
    if (failed)
        PyErr_NoMemory();
    else
        result = PyLong_FromLongLong((long long)sse);
done:
    kmc_release(&image);
    kmc_release(&palette);
    kmc_release(&labels);
    kmc_release(&carry);
    kmc_release(&weights);
    return result;
}

static PyMethodDef methods[] = {
    {"dither_nearest_other", dither_nearest_other, METH_VARARGS, dither_nearest_other_doc},
    {"dither_block", dither_block, METH_VARARGS, dither_block_doc},
    {NULL, NULL, 0, NULL},
};

int kmc_py_dither_init(PyObject *module)
{
    if (PyModule_AddFunctions(module, methods) < 0)
        return -1;
    return PyModule_AddIntConstant(module, "DITHER_FRAC", KMC_DITHER_FRAC);
}
