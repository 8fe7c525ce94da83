/* Binding of the cm kernels (cm.h): the label coder of methods cm, cmm, cm2d and cmx, its palette expansion,
 * its match probe. */
#include "binding.h"
#include "cm.h"

/* Labels one call may code (kmcodec.cm.MAX_LABELS): the positions of §9.1 fit int32. */
#define MAX_LABELS ((Py_ssize_t)1 << 28)

/* The padded label array of a strip, (h + 2, w + 3) uint16: its h and w, checked. */
static int padded_strip(PyObject *obj, Py_buffer *view, int writable, int64_t *h, int64_t *w)
{
    if (kmc_buffer(obj, view, "L", KMC_UINT, 2, 2, writable) < 0)
        return -1;
    if (view->shape[0] < 2 || view->shape[1] < 3) {
        kmc_mismatch("L must have at least 2 rows and 3 columns (a padded strip)");
        return -1;
    }
    *h = view->shape[0] - 2;
    *w = view->shape[1] - 3;
    if (*w > 0 && *h > MAX_LABELS / *w) {
        kmc_mismatch("the strip has more labels than one call may code (2**28)");
        return -1;
    }
    return 0;
}

static int check_colors(long long k)
{
    if (k < 2 || k > 65536) {
        kmc_mismatch("k must be from 2 to 65536");
        return -1;
    }
    return 0;
}

static int check_model(int model)
{
    if (model != KMC_CM_MODEL_CM && model != KMC_CM_MODEL_CMM && model != KMC_CM_MODEL_CM2D &&
        model != KMC_CM_MODEL_CMX) {
        kmc_mismatch("model must be 0 (cm), 1 (cmm), 2 (cm2d) or 3 (cmx)");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(cm_encode_doc,
             "cm_encode(L, k, out, model) -> int\n\n"
             "Code the strip in the padded (h + 2, w + 3) uint16 array L (label (y, x) at L[y + 2, x + 2],\n"
             "each below k, 2 <= k <= 65536) with method cm, cmm, cm2d or cmx (model 0 to 3) into the uint8\n"
             "array out.\n"
             "Returns the bytes written, or -1 if out may be too small (checked at each row start).");

static PyObject *cm_encode(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *l_obj, *out_obj;
    long long k;
    int model;
    if (!PyArg_ParseTuple(args, "OLOi:cm_encode", &l_obj, &k, &out_obj, &model))
        return NULL;
    Py_buffer l_view = {0}, out_view = {0};
    PyObject *result = NULL;
    int64_t h, w;
    if (check_model(model) < 0 || check_colors(k) < 0 || padded_strip(l_obj, &l_view, 0, &h, &w) < 0 ||
        kmc_buffer(out_obj, &out_view, "out", KMC_UINT, 1, 1, 1) < 0)
        goto done;
    int64_t size;
    Py_BEGIN_ALLOW_THREADS
    size = kmc_cm_encode(l_view.buf, h, w, k, model, out_view.buf, out_view.shape[0]);
    Py_END_ALLOW_THREADS
    if (size == KMC_CM_NO_MEMORY)
        PyErr_NoMemory();
    else if (size == KMC_CM_BAD_LABEL)
        kmc_mismatch("a label of L is not below k");
    else
        result = PyLong_FromLongLong(size);
done:
    kmc_release(&l_view);
    kmc_release(&out_view);
    return result;
}

PyDoc_STRVAR(cm_decode_doc,
             "cm_decode(L, k, data, model) -> (used, code)\n\n"
             "Decode one strip of method cm, cmm, cm2d or cmx (model 0 to 3) from the bytes-like data into the padded\n"
             "(h + 2, w + 3) uint16 array L.  Bytes past the end of data read as 0; returns the bytes\n"
             "consumed (more than len(data) if it ran out) and the range decoder's final code value.");

static PyObject *cm_decode(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *l_obj, *data_obj;
    long long k;
    int model;
    if (!PyArg_ParseTuple(args, "OLOi:cm_decode", &l_obj, &k, &data_obj, &model))
        return NULL;
    Py_buffer l_view = {0}, data_view = {0};
    PyObject *result = NULL;
    int64_t h, w;
    if (check_model(model) < 0 || check_colors(k) < 0 || padded_strip(l_obj, &l_view, 1, &h, &w) < 0 ||
        kmc_buffer(data_obj, &data_view, "data", KMC_UINT, 1, 1, 0) < 0)
        goto done;
    int64_t used;
    uint32_t code = 0;
    Py_BEGIN_ALLOW_THREADS
    used = kmc_cm_decode(l_view.buf, h, w, k, model, data_view.buf, data_view.shape[0], &code);
    Py_END_ALLOW_THREADS
    if (used < 0)
        PyErr_NoMemory();
    else
        result = Py_BuildValue("(LI)", (long long)used, (unsigned int)code);
done:
    kmc_release(&l_view);
    kmc_release(&data_view);
    return result;
}

PyDoc_STRVAR(cm_palette_doc,
             "cm_palette(L, palette, out) -> None\n\n"
             "Write palette[label] for every label of the padded (h + 2, w + 3) uint16 array L into the\n"
             "(h, w, channels) uint8 array out; palette is (k, channels) uint8 and every label below k.");

static PyObject *cm_palette(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *l_obj, *palette_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO:cm_palette", &l_obj, &palette_obj, &out_obj))
        return NULL;
    Py_buffer l_view = {0}, palette_view = {0}, out_view = {0};
    PyObject *result = NULL;
    if (kmc_buffer(l_obj, &l_view, "L", KMC_UINT, 2, 2, 0) < 0 ||
        kmc_buffer(palette_obj, &palette_view, "palette", KMC_UINT, 1, 2, 0) < 0 ||
        kmc_buffer(out_obj, &out_view, "out", KMC_UINT, 1, 3, 1) < 0)
        goto done;
    Py_ssize_t h = out_view.shape[0], w = out_view.shape[1], channels = out_view.shape[2];
    if (l_view.shape[0] != h + 2 || l_view.shape[1] != w + 3 || palette_view.shape[1] != channels) {
        kmc_mismatch("L must be (h + 2, w + 3) and palette (k, channels) for out of (h, w, channels)");
        goto done;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_cm_palette(l_view.buf, h, w, palette_view.buf, palette_view.shape[0], channels, out_view.buf);
    Py_END_ALLOW_THREADS
    if (status < 0) {
        kmc_mismatch("a label of L is not below the palette's size");
    } else {
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    kmc_release(&l_view);
    kmc_release(&palette_view);
    kmc_release(&out_view);
    return result;
}

PyDoc_STRVAR(cm_match_probe_doc,
             "cm_match_probe(labels, row_step) -> (hits, seen)\n\n"
             "Follow the match model (spec §9.1) along every row_step-th row (row_step >= 1) of the (h, w)\n"
             "uint8 or uint16 label map, coding nothing: returns the labels that a match running for at\n"
             "least CM_PROBE_RUN labels predicted and that differ from W, and the non-flat pixels seen.");

static PyObject *cm_match_probe(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *labels_obj;
    Py_ssize_t row_step;
    if (!PyArg_ParseTuple(args, "On:cm_match_probe", &labels_obj, &row_step))
        return NULL;
    if (row_step < 1)
        return kmc_mismatch("row_step must be at least 1");
    Py_buffer view = {0};
    PyObject *result = NULL;
    Py_ssize_t itemsize = kmc_label_itemsize(labels_obj);
    if (kmc_buffer(labels_obj, &view, "labels", KMC_UINT, itemsize, 2, 0) < 0)
        goto done;
    int64_t hits = 0, seen = 0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_cm_match_probe(view.buf, itemsize == 2, view.shape[0], view.shape[1], row_step, &hits, &seen);
    Py_END_ALLOW_THREADS
    if (status < 0)
        PyErr_NoMemory();
    else
        result = Py_BuildValue("(LL)", (long long)hits, (long long)seen);
done:
    kmc_release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"cm_encode", cm_encode, METH_VARARGS, cm_encode_doc},
    {"cm_decode", cm_decode, METH_VARARGS, cm_decode_doc},
    {"cm_palette", cm_palette, METH_VARARGS, cm_palette_doc},
    {"cm_match_probe", cm_match_probe, METH_VARARGS, cm_match_probe_doc},
    {NULL, NULL, 0, NULL},
};

int kmc_py_cm_init(PyObject *module)
{
    if (PyModule_AddFunctions(module, methods) < 0)
        return -1;
    if (PyModule_AddIntConstant(module, "CM_MODEL_CM", KMC_CM_MODEL_CM) < 0 ||
        PyModule_AddIntConstant(module, "CM_MODEL_CMM", KMC_CM_MODEL_CMM) < 0 ||
        PyModule_AddIntConstant(module, "CM_MODEL_CM2D", KMC_CM_MODEL_CM2D) < 0 ||
        PyModule_AddIntConstant(module, "CM_MODEL_CMX", KMC_CM_MODEL_CMX) < 0)
        return -1;
    return PyModule_AddIntConstant(module, "CM_PROBE_RUN", KMC_CM_PROBE_RUN);
}
