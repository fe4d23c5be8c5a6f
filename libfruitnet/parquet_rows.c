/*
 * parquet_rows.c — fn_parquet_writer_add_rows: a batch of rows in one call,
 * so that bindings (Python/ctypes) cross into C once per batch, not per row.
 * Built on fn_parquet_writer_add only; the rows are the same as n single adds.
 */
#include "fruitnet.h"
#include "util.h"

int fn_parquet_writer_add_rows(fn_parquet_writer *w, int nrows, const char *const *paths, const char *const *labels,
                               const float *vecs, int dim, fn_error *err)
{
    if (!w || nrows < 0 || dim < 0 || (nrows > 0 && (!paths || !labels || (dim > 0 && !vecs))))
        return fn_fail(err, FN_EARG, "fn_parquet_writer_add_rows: invalid arguments");
    for (int i = 0; i < nrows; i++) {
        int rc = fn_parquet_writer_add(w, paths[i] ? paths[i] : "", labels[i] ? labels[i] : "",
                                       dim ? vecs + (size_t)i * dim : NULL, dim, err);
        if (rc)
            return rc;
    }
    return FN_OK;
}
