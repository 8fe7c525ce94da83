/* Binding of the quantizer's kernels (quant.h) as kmcodec._kernels.quant_*: called by kmcodec.quantize.
 *
 * Each function takes numpy arrays (C-contiguous), checks their types and
 * shapes against each other, calls its kernel with the GIL released (the
 * quantizer runs the search over ranges of points in threads) and raises
 * ValueError for arrays that do not fit, MemoryError when scratch memory
 * runs out.  Points may be uint8, float32 or float64 and weights uint32 or
 * float64, in the pairs kmcodec.quantize passes.
 */
#include "binding.h"
#include "masking.h"
#include "quant.h"

#include <string.h>

#define MAX_VIEWS 14

/* The buffers a call holds, released together. */
typedef struct {
    Py_buffer v[MAX_VIEWS];
} views;

static void release_all(views *vs)
{
    for (int i = 0; i < MAX_VIEWS; i++)
        kmc_release(&vs->v[i]);
}

/* Acquire obj into view as a C-contiguous ndim-D array and tell its element type: U8, U32, F32 or F64 (-1 if none). */
static int take_typed(PyObject *obj, Py_buffer *view, const char *name, int ndim, int writable, kmc_quant_type *type)
{
    if (kmc_contiguous(obj, view, name, writable) < 0)
        return -1;
    char kind = kmc_format_kind(view->format);
    if (view->ndim == ndim && kind == KMC_UINT && view->itemsize == 1)
        *type = KMC_QUANT_U8;
    else if (view->ndim == ndim && kind == KMC_UINT && view->itemsize == 4)
        *type = KMC_QUANT_U32;
    else if (view->ndim == ndim && kind == KMC_FLOAT && view->itemsize == 4)
        *type = KMC_QUANT_F32;
    else if (view->ndim == ndim && kind == KMC_FLOAT && view->itemsize == 8)
        *type = KMC_QUANT_F64;
    else {
        PyErr_Format(PyExc_ValueError, "%s must be a %d-D array of uint8, uint32, float32 or float64", name, ndim);
        return -1;
    }
    return 0;
}

/* Points (n, C): uint8, float32 or float64, C >= 1. */
static int take_points(PyObject *obj, Py_buffer *view, kmc_quant_points *points)
{
    if (take_typed(obj, view, "points", 2, 0, &points->type) < 0)
        return -1;
    if (points->type == KMC_QUANT_U32) {
        PyErr_SetString(PyExc_ValueError, "points must be uint8, float32 or float64");
        return -1;
    }
    points->data = view->buf;
    points->n = view->shape[0];
    points->channels = view->shape[1];
    if (points->channels < 1) {
        PyErr_SetString(PyExc_ValueError, "points must have at least one channel");
        return -1;
    }
    return 0;
}

/* Weights (n,) of a type that goes with the points': uint32 counts with uint8 or float64 points, float64 masses
 * with float32 or float64 points. */
static int take_weights(PyObject *obj, Py_buffer *view, const kmc_quant_points *points, kmc_quant_type *wtype)
{
    if (take_typed(obj, view, "weights", 1, 0, wtype) < 0)
        return -1;
    int fits = points->type == KMC_QUANT_U8 ? *wtype == KMC_QUANT_U32
               : points->type == KMC_QUANT_F32 ? *wtype == KMC_QUANT_F64
                                               : *wtype == KMC_QUANT_U32 || *wtype == KMC_QUANT_F64;
    if (!fits) {
        PyErr_SetString(PyExc_ValueError,
                        "weights must be uint32 for uint8 points, float64 for float32 points, "
                        "uint32 or float64 for float64 points");
        return -1;
    }
    if (view->shape[0] != points->n) {
        kmc_mismatch("weights must have one entry per point");
        return -1;
    }
    return 0;
}

/* The search's centre arguments: centres (k, C), order (k,), proj (k,), axis (C,), table and table_dist (k, T) or
 * (0, T). */
static int take_search(PyObject *const objs[6], Py_buffer *v, kmc_quant_search *s)
{
    if (kmc_buffer(objs[0], &v[0], "centres", KMC_FLOAT, 8, 2, 0) < 0 ||
        kmc_buffer(objs[1], &v[1], "order", KMC_INT, 8, 1, 0) < 0 ||
        kmc_buffer(objs[2], &v[2], "proj", KMC_FLOAT, 8, 1, 0) < 0 ||
        kmc_buffer(objs[3], &v[3], "axis", KMC_FLOAT, 8, 1, 0) < 0 ||
        kmc_buffer(objs[4], &v[4], "table", KMC_INT, 4, 2, 0) < 0 ||
        kmc_buffer(objs[5], &v[5], "table_dist", KMC_FLOAT, 8, 2, 0) < 0)
        return -1;
    s->centres = v[0].buf;
    s->k = v[0].shape[0];
    s->channels = v[0].shape[1];
    s->order = v[1].buf;
    s->proj = v[2].buf;
    s->axis = v[3].buf;
    s->table = v[4].buf;
    s->table_dist = v[5].buf;
    s->width = v[4].shape[0] > 0 ? v[4].shape[1] : 0;
    if (s->k < 1) {
        PyErr_SetString(PyExc_ValueError, "centres must have at least one row");
        return -1;
    }
    if (v[1].shape[0] != s->k || v[2].shape[0] != s->k || v[3].shape[0] != s->channels) {
        PyErr_SetString(PyExc_ValueError, "order and proj must have k entries, axis one per channel");
        return -1;
    }
    if ((v[4].shape[0] != 0 && v[4].shape[0] != s->k) || v[4].shape[1] > s->k || v[5].shape[0] != v[4].shape[0] ||
        v[5].shape[1] != v[4].shape[1]) {
        PyErr_SetString(PyExc_ValueError, "table and table_dist must be (k, T) with T <= k, or empty");
        return -1;
    }
    return 0;
}

static int check_range(Py_ssize_t start, Py_ssize_t stop, int64_t n)
{
    if (start < 0 || start > stop || stop > n) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= start <= stop <= number of points");
        return -1;
    }
    return 0;
}

static PyObject *py_nearest(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *p, *o[6], *l, *d;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOnn:quant_nearest", &p, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &l, &d,
                          &start, &stop))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    kmc_quant_points points;
    kmc_quant_search s;
    if (take_points(p, &vs.v[0], &points) < 0 || take_search(o, &vs.v[1], &s) < 0 ||
        kmc_buffer(l, &vs.v[7], "labels", KMC_INT, 4, 1, 1) < 0 ||
        kmc_buffer(d, &vs.v[8], "dist", KMC_FLOAT, 8, 1, 1) < 0)
        goto done;
    if (points.channels != s.channels || vs.v[7].shape[0] != points.n || vs.v[8].shape[0] != points.n) {
        kmc_mismatch("points and centres must have the same channels, labels and dist one entry per point");
        goto done;
    }
    if (check_range(start, stop, points.n) < 0)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_search_valid(&s) ? kmc_quant_nearest(&points, &s, vs.v[7].buf, vs.v[8].buf, start, stop)
                                        : KMC_QUANT_ERANGE;
    Py_END_ALLOW_THREADS
    if (status < 0) {
        kmc_mismatch("order, table and labels must hold centre indices below k");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&vs);
    return result;
}

static PyObject *py_assign_bounded(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *p, *o[6], *hg, *sh, *l, *up, *lo;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOnn:quant_assign_bounded", &p, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &hg, &sh, &l, &up, &lo, &start, &stop))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    kmc_quant_points points;
    kmc_quant_search s;
    if (take_points(p, &vs.v[0], &points) < 0 || take_search(o, &vs.v[1], &s) < 0 ||
        kmc_buffer(hg, &vs.v[7], "half_gap", KMC_FLOAT, 8, 1, 0) < 0 ||
        kmc_buffer(sh, &vs.v[8], "shift", KMC_FLOAT, 8, 1, 0) < 0 ||
        kmc_buffer(l, &vs.v[9], "labels", KMC_INT, 4, 1, 1) < 0 ||
        kmc_buffer(up, &vs.v[10], "upper", KMC_FLOAT, 8, 1, 1) < 0 ||
        kmc_buffer(lo, &vs.v[11], "lower", KMC_FLOAT, 8, 1, 1) < 0)
        goto done;
    if (points.channels != s.channels || vs.v[7].shape[0] != s.k || vs.v[8].shape[0] != s.k ||
        vs.v[9].shape[0] != points.n || vs.v[10].shape[0] != points.n || vs.v[11].shape[0] != points.n) {
        kmc_mismatch("points and centres must have the same channels, half_gap and shift k entries, "
                     "labels, upper and lower one per point");
        goto done;
    }
    if (check_range(start, stop, points.n) < 0)
        goto done;
    int64_t changed;
    Py_BEGIN_ALLOW_THREADS
    changed = kmc_quant_search_valid(&s) ? kmc_quant_assign_bounded(&points, &s, vs.v[7].buf, vs.v[8].buf,
                                                                     vs.v[9].buf, vs.v[10].buf, vs.v[11].buf,
                                                                     start, stop)
                                         : KMC_QUANT_ERANGE;
    Py_END_ALLOW_THREADS
    if (changed < 0) {
        kmc_mismatch("order, table and labels must hold centre indices below k");
        goto done;
    }
    result = PyLong_FromLongLong(changed);
done:
    release_all(&vs);
    return result;
}

static PyObject *py_accumulate(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *p, *w, *l, *su, *ma;
    if (!PyArg_ParseTuple(args, "OOOOO:quant_accumulate", &p, &w, &l, &su, &ma))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    kmc_quant_points points;
    kmc_quant_type wtype;
    if (take_points(p, &vs.v[0], &points) < 0 || take_weights(w, &vs.v[1], &points, &wtype) < 0 ||
        kmc_buffer(l, &vs.v[2], "labels", KMC_INT, 4, 1, 0) < 0 ||
        kmc_buffer(su, &vs.v[3], "sums", KMC_FLOAT, 8, 2, 1) < 0 ||
        kmc_buffer(ma, &vs.v[4], "mass", KMC_FLOAT, 8, 1, 1) < 0)
        goto done;
    int64_t k = vs.v[3].shape[0];
    if (vs.v[2].shape[0] != points.n || vs.v[3].shape[1] != points.channels || vs.v[4].shape[0] != k) {
        kmc_mismatch("labels must have one entry per point, sums (k, channels) and mass (k,)");
        goto done;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_accumulate(&points, vs.v[1].buf, wtype, vs.v[2].buf, vs.v[3].buf, vs.v[4].buf, k);
    Py_END_ALLOW_THREADS
    if (status < 0) {
        kmc_mismatch("labels must be centre indices 0 <= j < k");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&vs);
    return result;
}

static PyObject *py_weighted_sum(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *v, *w;
    if (!PyArg_ParseTuple(args, "OO:quant_weighted_sum", &v, &w))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    kmc_quant_type wtype;
    if (kmc_buffer(v, &vs.v[0], "values", KMC_FLOAT, 8, 1, 0) < 0 ||
        take_typed(w, &vs.v[1], "weights", 1, 0, &wtype) < 0)
        goto done;
    if (wtype != KMC_QUANT_U32 && wtype != KMC_QUANT_F64) {
        kmc_mismatch("weights must be uint32 or float64");
        goto done;
    }
    if (vs.v[1].shape[0] != vs.v[0].shape[0]) {
        kmc_mismatch("values and weights must have the same length");
        goto done;
    }
    double total;
    Py_BEGIN_ALLOW_THREADS
    total = kmc_quant_weighted_sum(vs.v[0].buf, vs.v[1].buf, wtype, vs.v[0].shape[0]);
    Py_END_ALLOW_THREADS
    result = PyFloat_FromDouble(total);
done:
    release_all(&vs);
    return result;
}

/* The poll of a long kernel run without the GIL (kmc_quant_poll): take the GIL, run Python's signal handlers
 * (in the main thread; elsewhere none run), release it.  Nonzero when a handler raised, its exception set. */
static int run_signal_handlers(void *arg)
{
    PyThreadState **state = arg;
    PyEval_RestoreThread(*state);
    int raised = PyErr_CheckSignals() < 0;
    *state = PyEval_SaveThread();
    return raised;
}

static PyObject *py_plusplus(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *p, *w, *dr, *ce;
    Py_ssize_t first;
    if (!PyArg_ParseTuple(args, "OOnOO:quant_plusplus", &p, &w, &first, &dr, &ce))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    kmc_quant_points points;
    kmc_quant_type wtype;
    if (take_points(p, &vs.v[0], &points) < 0 || take_weights(w, &vs.v[1], &points, &wtype) < 0 ||
        kmc_buffer(dr, &vs.v[2], "draws", KMC_FLOAT, 8, 2, 0) < 0 ||
        kmc_buffer(ce, &vs.v[3], "centres", KMC_FLOAT, 8, 2, 1) < 0)
        goto done;
    int64_t k = vs.v[3].shape[0];
    if (points.n < 1 || first < 0 || first >= points.n || k < 1 || vs.v[3].shape[1] != points.channels ||
        vs.v[2].shape[0] != k - 1) {
        kmc_mismatch("need points, 0 <= first < n, centres (k >= 1, channels) and draws (k - 1, trials)");
        goto done;
    }
    int status;
    PyThreadState *state = PyEval_SaveThread();
    status = kmc_quant_plusplus(&points, vs.v[1].buf, wtype, first, vs.v[2].buf, vs.v[2].shape[1], vs.v[3].buf, k,
                                run_signal_handlers, &state);
    PyEval_RestoreThread(state);
    if (status == KMC_QUANT_ENOMEM)
        PyErr_NoMemory();
    if (status < 0) /* KMC_QUANT_EINTR: a handler's exception (KeyboardInterrupt) is set */
        goto done;
    result = Py_NewRef(Py_None);
done:
    release_all(&vs);
    return result;
}

static PyObject *py_centre_table(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *ce, *ta, *td;
    Py_ssize_t start, stop;
    if (!PyArg_ParseTuple(args, "OOOnn:quant_centre_table", &ce, &ta, &td, &start, &stop))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (kmc_buffer(ce, &vs.v[0], "centres", KMC_FLOAT, 8, 2, 0) < 0 ||
        kmc_buffer(ta, &vs.v[1], "table", KMC_INT, 4, 2, 1) < 0 ||
        kmc_buffer(td, &vs.v[2], "table_dist", KMC_FLOAT, 8, 2, 1) < 0)
        goto done;
    int64_t k = vs.v[0].shape[0], width = vs.v[1].shape[1];
    if (vs.v[1].shape[0] != k || width < 1 || width > k || vs.v[2].shape[0] != k || vs.v[2].shape[1] != width) {
        kmc_mismatch("table and table_dist must be (k, T) with 1 <= T <= k");
        goto done;
    }
    if (check_range(start, stop, k) < 0)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_centre_table(vs.v[0].buf, k, vs.v[0].shape[1], vs.v[1].buf, vs.v[2].buf, width, start, stop);
    Py_END_ALLOW_THREADS
    if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    release_all(&vs);
    return result;
}

/* ---- Distinct colours ---- */

/* Pixels (n, C) uint8 with C >= 1, and the bits per channel of their keys (1 ..= 63). */
static int take_pixels(PyObject *obj, Py_buffer *view, int bits)
{
    if (kmc_buffer(obj, view, "pixels", KMC_UINT, 1, 2, 0) < 0)
        return -1;
    if (view->shape[1] < 1 || bits < 1 || bits > 63) {
        PyErr_SetString(PyExc_ValueError, "pixels must have at least one channel, keys 1 to 63 bits a channel");
        return -1;
    }
    return 0;
}

/* Bitmap (words,) uint64 and its ranks (words,) int64. */
static int take_bitmap(PyObject *bitmap, PyObject *ranks, Py_buffer *v, int writable)
{
    if (kmc_buffer(bitmap, &v[0], "bitmap", KMC_UINT, 8, 1, writable) < 0)
        return -1;
    if (ranks != NULL) {
        if (kmc_buffer(ranks, &v[1], "ranks", KMC_INT, 8, 1, 0) < 0)
            return -1;
        if (v[1].shape[0] != v[0].shape[0]) {
            kmc_mismatch("ranks must have one entry per bitmap word");
            return -1;
        }
    }
    return 0;
}

static PyObject *colour_status(int64_t status, PyObject *ok)
{
    if (status < 0) {
        Py_XDECREF(ok);
        return kmc_mismatch("a key or an index falls outside its array (or wraps is full)");
    }
    return ok;
}

static PyObject *py_mark(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *px, *bm;
    int has_alpha, bits;
    if (!PyArg_ParseTuple(args, "OpiO:quant_mark", &px, &has_alpha, &bits, &bm))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (take_pixels(px, &vs.v[0], bits) < 0 || take_bitmap(bm, NULL, &vs.v[1], 1) < 0)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_mark(vs.v[0].buf, vs.v[0].shape[0], vs.v[0].shape[1], has_alpha, bits, vs.v[1].buf,
                            vs.v[1].shape[0]);
    Py_END_ALLOW_THREADS
    result = colour_status(status, Py_NewRef(Py_None));
done:
    release_all(&vs);
    return result;
}

static PyObject *py_rank(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bm, *rk;
    if (!PyArg_ParseTuple(args, "OO:quant_rank", &bm, &rk))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (kmc_buffer(bm, &vs.v[0], "bitmap", KMC_UINT, 8, 1, 0) < 0 ||
        kmc_buffer(rk, &vs.v[1], "ranks", KMC_INT, 8, 1, 1) < 0)
        goto done;
    if (vs.v[1].shape[0] != vs.v[0].shape[0]) {
        kmc_mismatch("ranks must have one entry per bitmap word");
        goto done;
    }
    int64_t total;
    Py_BEGIN_ALLOW_THREADS
    total = kmc_quant_rank(vs.v[0].buf, vs.v[1].buf, vs.v[0].shape[0]);
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong(total);
done:
    release_all(&vs);
    return result;
}

static PyObject *py_count(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *px, *bm, *rk, *co, *we = Py_None;
    int has_alpha, bits;
    if (!PyArg_ParseTuple(args, "OpiOOO|O:quant_count", &px, &has_alpha, &bits, &bm, &rk, &co, &we))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (take_pixels(px, &vs.v[0], bits) < 0 || take_bitmap(bm, rk, &vs.v[1], 0) < 0 ||
        kmc_buffer(co, &vs.v[3], "counts", KMC_UINT, 4, 1, 1) < 0)
        goto done;
    if (we != Py_None) {
        if (kmc_buffer(we, &vs.v[4], "weights", KMC_UINT, 1, 1, 0) < 0)
            goto done;
        if (vs.v[4].shape[0] != vs.v[0].shape[0]) {
            kmc_mismatch("weights must have one entry per pixel");
            goto done;
        }
    }
    const uint8_t *weights = we == Py_None ? NULL : vs.v[4].buf;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_count(vs.v[0].buf, weights, vs.v[0].shape[0], vs.v[0].shape[1], has_alpha, bits, vs.v[1].buf,
                             vs.v[2].buf, vs.v[1].shape[0], vs.v[3].buf, vs.v[3].shape[0]);
    Py_END_ALLOW_THREADS
    result = colour_status(status, Py_NewRef(Py_None));
done:
    release_all(&vs);
    return result;
}

static PyObject *py_masking_weights(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *po, *oo;
    int span, scale;
    if (!PyArg_ParseTuple(args, "OiiO:masking_weights", &po, &span, &scale, &oo))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (kmc_buffer(po, &vs.v[0], "pixels", KMC_UINT, 1, 3, 0) < 0 ||
        kmc_buffer(oo, &vs.v[1], "out", KMC_UINT, 1, 2, 1) < 0)
        goto done;
    Py_ssize_t rows = vs.v[0].shape[0], width = vs.v[0].shape[1], channels = vs.v[0].shape[2];
    if (rows < 2 * KMC_MASKING_HALO + 1 || width < 1 || channels < 1 || channels > 4 ||
        vs.v[1].shape[0] != rows - 2 * KMC_MASKING_HALO || vs.v[1].shape[1] != width) {
        kmc_mismatch("need pixels of (rows + 6, W, 1 to 4), rows >= 1, W >= 1, and out of (rows, W)");
        goto done;
    }
    if (span < 0 || span > 254 || scale < 1 || scale > 1000000 || (int64_t)span * scale > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= span <= 254 and 1 <= scale <= 1000000");
        goto done;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_masking_weights(vs.v[0].buf, rows, width, channels, span, scale, vs.v[1].buf);
    Py_END_ALLOW_THREADS
    if (status == KMC_MASKING_ENOMEM)
        PyErr_NoMemory();
    else
        result = Py_NewRef(Py_None);
done:
    release_all(&vs);
    return result;
}

static PyObject *py_tally(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *px, *ta, *wr;
    int has_alpha, bits;
    Py_ssize_t wrapped;
    if (!PyArg_ParseTuple(args, "OpiOOn:quant_tally", &px, &has_alpha, &bits, &ta, &wr, &wrapped))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (take_pixels(px, &vs.v[0], bits) < 0 || kmc_buffer(ta, &vs.v[1], "tallies", KMC_UINT, 2, 1, 1) < 0 ||
        kmc_buffer(wr, &vs.v[2], "wraps", KMC_UINT, 4, 1, 1) < 0)
        goto done;
    if (wrapped < 0 || wrapped > vs.v[2].shape[0]) {
        kmc_mismatch("need 0 <= wrapped <= len(wraps)");
        goto done;
    }
    int64_t status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_tally(vs.v[0].buf, vs.v[0].shape[0], vs.v[0].shape[1], has_alpha, bits, vs.v[1].buf,
                             vs.v[1].shape[0], vs.v[2].buf, vs.v[2].shape[0], wrapped);
    Py_END_ALLOW_THREADS
    result = colour_status(status, status < 0 ? NULL : PyLong_FromLongLong(status));
done:
    release_all(&vs);
    return result;
}

static PyObject *py_mark_tallied(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *ta, *wr, *bm;
    if (!PyArg_ParseTuple(args, "OOO:quant_mark_tallied", &ta, &wr, &bm))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (kmc_buffer(ta, &vs.v[0], "tallies", KMC_UINT, 2, 1, 0) < 0 ||
        kmc_buffer(wr, &vs.v[1], "wraps", KMC_UINT, 4, 1, 0) < 0 || take_bitmap(bm, NULL, &vs.v[2], 1) < 0)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_mark_tallied(vs.v[0].buf, vs.v[0].shape[0], vs.v[1].buf, vs.v[1].shape[0], vs.v[2].buf,
                                    vs.v[2].shape[0]);
    Py_END_ALLOW_THREADS
    result = colour_status(status, Py_NewRef(Py_None));
done:
    release_all(&vs);
    return result;
}

static PyObject *py_gather_tallies(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *ta, *wr, *ke, *bm, *rk, *co;
    if (!PyArg_ParseTuple(args, "OOOOOO:quant_gather_tallies", &ta, &wr, &ke, &bm, &rk, &co))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (kmc_buffer(ta, &vs.v[0], "tallies", KMC_UINT, 2, 1, 0) < 0 ||
        kmc_buffer(wr, &vs.v[1], "wraps", KMC_UINT, 4, 1, 0) < 0 ||
        kmc_buffer(ke, &vs.v[2], "keys", KMC_UINT, 4, 1, 0) < 0 || take_bitmap(bm, rk, &vs.v[3], 0) < 0 ||
        kmc_buffer(co, &vs.v[5], "counts", KMC_UINT, 4, 1, 1) < 0)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_gather_tallies(vs.v[0].buf, vs.v[0].shape[0], vs.v[1].buf, vs.v[1].shape[0], vs.v[2].buf,
                                      vs.v[2].shape[0], vs.v[3].buf, vs.v[4].buf, vs.v[3].shape[0], vs.v[5].buf,
                                      vs.v[5].shape[0]);
    Py_END_ALLOW_THREADS
    result = colour_status(status, Py_NewRef(Py_None));
done:
    release_all(&vs);
    return result;
}

static PyObject *py_keys_of(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bm, *ke;
    if (!PyArg_ParseTuple(args, "OO:quant_keys_of", &bm, &ke))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (take_bitmap(bm, NULL, &vs.v[0], 0) < 0 || kmc_buffer(ke, &vs.v[1], "keys", KMC_UINT, 4, 1, 1) < 0)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_keys_of(vs.v[0].buf, vs.v[0].shape[0], vs.v[1].buf, vs.v[1].shape[0]);
    Py_END_ALLOW_THREADS
    result = colour_status(status, Py_NewRef(Py_None));
done:
    release_all(&vs);
    return result;
}

static PyObject *py_lookup(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *px, *bm, *rk, *ma, *ou;
    int has_alpha, bits;
    if (!PyArg_ParseTuple(args, "OpiOOOO:quant_lookup", &px, &has_alpha, &bits, &bm, &rk, &ma, &ou))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (take_pixels(px, &vs.v[0], bits) < 0 || take_bitmap(bm, rk, &vs.v[1], 0) < 0)
        goto done;
    /* mapping and out: 1-D, of one integer type of 1, 2 or 4 bytes. */
    if (PyObject_GetBuffer(ma, &vs.v[3], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        vs.v[3].obj = NULL;
        PyErr_Clear();
        kmc_mismatch("mapping must be a C-contiguous array");
        goto done;
    }
    if (PyObject_GetBuffer(ou, &vs.v[4], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        vs.v[4].obj = NULL;
        PyErr_Clear();
        kmc_mismatch("out must be a C-contiguous, writable array");
        goto done;
    }
    char kind = kmc_format_kind(vs.v[3].format);
    Py_ssize_t itemsize = vs.v[3].itemsize;
    if ((kind != KMC_UINT && kind != KMC_INT) || (itemsize != 1 && itemsize != 2 && itemsize != 4) ||
        vs.v[3].ndim != 1 || vs.v[4].ndim != 1 || kmc_format_kind(vs.v[4].format) != kind ||
        vs.v[4].itemsize != itemsize || vs.v[4].shape[0] != vs.v[0].shape[0]) {
        kmc_mismatch("mapping and out must be 1-D arrays of one integer type of 1, 2 or 4 bytes, out one per pixel");
        goto done;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_lookup(vs.v[0].buf, vs.v[0].shape[0], vs.v[0].shape[1], has_alpha, bits, vs.v[1].buf,
                              vs.v[2].buf, vs.v[1].shape[0], vs.v[3].buf, vs.v[3].shape[0], (int)itemsize,
                              vs.v[4].buf);
    Py_END_ALLOW_THREADS
    result = colour_status(status, Py_NewRef(Py_None));
done:
    release_all(&vs);
    return result;
}

static PyObject *py_first_members(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *in, *me;
    if (!PyArg_ParseTuple(args, "OO:quant_first_members", &in, &me))
        return NULL;
    views vs = {0};
    PyObject *result = NULL;
    if (kmc_buffer(in, &vs.v[0], "inverse", KMC_INT, 4, 1, 0) < 0 ||
        kmc_buffer(me, &vs.v[1], "member", KMC_INT, 8, 1, 1) < 0)
        goto done;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kmc_quant_first_members(vs.v[0].buf, vs.v[0].shape[0], vs.v[1].buf, vs.v[1].shape[0]);
    Py_END_ALLOW_THREADS
    result = colour_status(status, Py_NewRef(Py_None));
done:
    release_all(&vs);
    return result;
}

static PyMethodDef methods[] = {
    {"quant_nearest", py_nearest, METH_VARARGS,
     "quant_nearest(points, centres, order, proj, axis, table, table_dist, labels, dist, start, stop)\n--\n\n"
     "labels[i], dist[i] = nearest centre of points[i] and its squared distance, for start <= i < stop\n"
     "(labels[i] holds a guess on entry, -1 for none)."},
    {"quant_assign_bounded", py_assign_bounded, METH_VARARGS,
     "quant_assign_bounded(points, centres, order, proj, axis, table, table_dist, half_gap, shift, labels, upper,\n"
     "lower, start, stop)\n--\n\n"
     "One Lloyd assignment with Hamerly's bounds, for start <= i < stop; returns the labels changed."},
    {"quant_accumulate", py_accumulate, METH_VARARGS,
     "quant_accumulate(points, weights, labels, sums, mass)\n--\n\n"
     "sums[j] += w * point and mass[j] += w over the points labelled j, in point order."},
    {"quant_weighted_sum", py_weighted_sum, METH_VARARGS,
     "quant_weighted_sum(values, weights)\n--\n\nsum(values * weights) in float64, in index order."},
    {"quant_plusplus", py_plusplus, METH_VARARGS,
     "quant_plusplus(points, weights, first, draws, centres)\n--\n\n"
     "Greedy k-means++ seeding into centres (k, C) float64."},
    {"quant_centre_table", py_centre_table, METH_VARARGS,
     "quant_centre_table(centres, table, table_dist, start, stop)\n--\n\n"
     "The search table's rows start ..< stop: each centre's T nearest centres and their distances."},
    {"quant_mark", py_mark, METH_VARARGS,
     "quant_mark(pixels, has_alpha, bits, bitmap)\n--\n\nSet the bit of each pixel's key in bitmap."},
    {"quant_rank", py_rank, METH_VARARGS,
     "quant_rank(bitmap, ranks)\n--\n\nranks[w] = set bits in the words before w; returns the total."},
    {"quant_count", py_count, METH_VARARGS,
     "quant_count(pixels, has_alpha, bits, bitmap, ranks, counts, weights=None)\n--\n\n"
     "counts[index of the key] += weights[i] (1 without weights) for each pixel i."},
    {"masking_weights", py_masking_weights, METH_VARARGS,
     "masking_weights(pixels, span, scale, out)\n--\n\n"
     "out = the masking weights of pixels' rows 3 .. -4 (3 rows of context either side)."},
    {"quant_tally", py_tally, METH_VARARGS,
     "quant_tally(pixels, has_alpha, bits, tallies, wraps, wrapped)\n--\n\n"
     "tallies[key] += 1 per pixel modulo 2**16, each wrap appending the key to wraps; returns the wraps so far."},
    {"quant_mark_tallied", py_mark_tallied, METH_VARARGS,
     "quant_mark_tallied(tallies, wraps, bitmap)\n--\n\nSet the bit of every key with a nonzero tally or a wrap."},
    {"quant_gather_tallies", py_gather_tallies, METH_VARARGS,
     "quant_gather_tallies(tallies, wraps, keys, bitmap, ranks, counts)\n--\n\n"
     "counts[i] = the count of keys[i]: its tally plus 65536 per wrap."},
    {"quant_keys_of", py_keys_of, METH_VARARGS,
     "quant_keys_of(bitmap, keys)\n--\n\nThe set bits' keys in ascending order."},
    {"quant_lookup", py_lookup, METH_VARARGS,
     "quant_lookup(pixels, has_alpha, bits, bitmap, ranks, mapping, out)\n--\n\n"
     "out[i] = mapping[index of pixel i's key]."},
    {"quant_first_members", py_first_members, METH_VARARGS,
     "quant_first_members(inverse, member)\n--\n\nmember[j] = the first i with inverse[i] == j (member starts at -1)."},
    {NULL, NULL, 0, NULL},
};

int kmc_py_quant_init(PyObject *module)
{
    return PyModule_AddFunctions(module, methods);
}
