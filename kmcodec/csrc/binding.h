/* Helpers shared by the Python bindings (py_*.c): buffers in, the codec's kernels called, errors out.
 *
 * Only the binding files include Python.h; the kernels (cm.c, quant.c, ...)
 * are plain C over pointers, lengths and strides.  A binding parses its
 * arguments, takes each array through kmc_buffer(), which checks its element
 * type, its number of dimensions and that it is C-contiguous, checks the
 * shapes against each other, releases the GIL around the kernel call and
 * releases every buffer on the way out.
 */
#ifndef KMC_BINDING_H
#define KMC_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Element kinds a binding asks for. */
#define KMC_UINT 'u'
#define KMC_INT 'i'
#define KMC_FLOAT 'f'

/* The kind of a struct-module format code ('B', 'l', 'd', ...), or 0 if it is none of ours. */
static inline char kmc_format_kind(const char *format)
{
    if (format == NULL)
        return KMC_UINT; /* PyBUF_FORMAT not honoured: plain bytes */
    if (*format == '@' || *format == '=' || *format == '<') {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        if (*format == '<')
            return 0;
#endif
        format++;
    }
    if (format[0] == '\0' || format[1] != '\0')
        return 0;
    switch (format[0]) {
    case 'B': case 'H': case 'I': case 'L': case 'Q': return KMC_UINT;
    case 'b': case 'h': case 'i': case 'l': case 'q': case 'n': return KMC_INT;
    case 'f': case 'd': return KMC_FLOAT;
    default: return 0;
    }
}

/* Acquire *obj*'s buffer into *view*, C-contiguous with its format: 0, or -1 with a ValueError naming *name*. */
static inline int kmc_contiguous(PyObject *obj, Py_buffer *view, const char *name, int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s array", name, writable ? ", writable" : "");
        view->obj = NULL;
        return -1;
    }
    return 0;
}

/* Acquire *obj*'s buffer into *view*: C-contiguous, *ndim* dimensions, items of *kind* and *itemsize* bytes.
 *
 * Returns 0, or -1 with a ValueError naming *name* (the argument) set.  *view*
 * must start zeroed; it is safe to pass to kmc_release() either way.
 */
static inline int kmc_buffer(PyObject *obj, Py_buffer *view, const char *name, char kind, Py_ssize_t itemsize,
                             int ndim, int writable)
{
    if (kmc_contiguous(obj, view, name, writable) < 0)
        return -1;
    if (view->ndim != ndim || view->itemsize != itemsize || kmc_format_kind(view->format) != kind) {
        PyErr_Format(PyExc_ValueError, "%s must be a %d-D array of %zd-byte %s", name, ndim, itemsize,
                     kind == KMC_FLOAT ? "floats" : kind == KMC_INT ? "signed integers" : "unsigned integers");
        PyBuffer_Release(view);
        view->obj = NULL;
        return -1;
    }
    return 0;
}

/* The itemsize of a label array's buffer, if it is one of 1 or 2 bytes (uint8 or uint16 labels), else 1
 * (kmc_buffer then says what is wrong). */
static inline Py_ssize_t kmc_label_itemsize(PyObject *obj)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_ND | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return 1;
    }
    Py_ssize_t size = view.itemsize == 2 ? 2 : 1;
    PyBuffer_Release(&view);
    return size;
}

/* Release a buffer taken by kmc_buffer() (a zeroed or failed one too). */
static inline void kmc_release(Py_buffer *view)
{
    if (view->obj != NULL)
        PyBuffer_Release(view);
}

/* Set a ValueError saying that *what* does not fit, and return NULL. */
static inline PyObject *kmc_mismatch(const char *what)
{
    PyErr_Format(PyExc_ValueError, "%s", what);
    return NULL;
}

/* Each area's binding adds its functions and constants to the module (module.c calls them in turn). */
int kmc_py_cm_init(PyObject *module);
int kmc_py_rdo_init(PyObject *module);
int kmc_py_quant_init(PyObject *module);
int kmc_py_dither_init(PyObject *module);
int kmc_py_png_init(PyObject *module);

#endif
