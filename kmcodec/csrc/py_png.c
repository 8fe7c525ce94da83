/* Binding of the PNG unfilter kernel (png_unfilter.c) for kmcodec.png's streaming reader. */
#include "binding.h"
#include "png_unfilter.h"

/* Whether two buffers share any byte. */
static int shares_memory(const Py_buffer *a, const Py_buffer *b)
{
    uintptr_t a0 = (uintptr_t)a->buf, b0 = (uintptr_t)b->buf;
    return a->len > 0 && b->len > 0 && a0 < b0 + (uintptr_t)b->len && b0 < a0 + (uintptr_t)a->len;
}

PyDoc_STRVAR(png_unfilter_doc,
             "png_unfilter(filtered, previous, bpp, out) -> int\n\n"
             "Undo PNG's per-row filters (PNG 9.2) of filtered (h, 1 + n) uint8 rows into out (h, n) uint8.\n"
             "previous (n,) uint8 is the raw row above the first (zeros for the image's top row); bpp\n"
             "1..8 the bytes per pixel.  Returns the index of the first row with an unknown filter type\n"
             "(it and the rows after it are not written), or -1 when all are known.  Releases the GIL.");

static PyObject *png_unfilter(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *filtered_obj, *previous_obj, *out_obj;
    Py_ssize_t bpp;
    if (!PyArg_ParseTuple(args, "OOnO:png_unfilter", &filtered_obj, &previous_obj, &bpp, &out_obj))
        return NULL;
    if (bpp < 1 || bpp > KMC_PNG_MAX_BPP)
        return kmc_mismatch("bpp must be 1 to 8");
    Py_buffer filtered = {0}, previous = {0}, out = {0};
    PyObject *result = NULL;
    if (kmc_buffer(filtered_obj, &filtered, "filtered", KMC_UINT, 1, 2, 0) < 0 ||
        kmc_buffer(previous_obj, &previous, "previous", KMC_UINT, 1, 1, 0) < 0 ||
        kmc_buffer(out_obj, &out, "out", KMC_UINT, 1, 2, 1) < 0)
        goto done;
    const Py_ssize_t h = out.shape[0], n = out.shape[1];
    if (filtered.shape[0] != h || filtered.shape[1] != n + 1 || previous.shape[0] != n) {
        kmc_mismatch("filtered must be (h, 1 + n), previous (n,) and out (h, n)");
        goto done;
    }
    if (shares_memory(&out, &filtered) || shares_memory(&out, &previous)) {
        kmc_mismatch("out must not share memory with filtered or previous");
        goto done;
    }
    ptrdiff_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = kmc_png_unfilter(filtered.buf, (size_t)n + 1, previous.buf, out.buf, (size_t)n, (size_t)h, (size_t)n,
                           (size_t)bpp);
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(bad);
done:
    kmc_release(&filtered);
    kmc_release(&previous);
    kmc_release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"png_unfilter", png_unfilter, METH_VARARGS, png_unfilter_doc},
    {NULL, NULL, 0, NULL},
};

int kmc_py_png_init(PyObject *module)
{
    return PyModule_AddFunctions(module, methods);
}
