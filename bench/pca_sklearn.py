"""scikit-learn's PCA on the float32 file bench_pca wrote: seconds and peak RSS.
usage: .venv/bin/python bench/pca_sklearn.py FILE ROWS DIM  (bench_pca runs it with $FRUITNET_PYTHON)"""
import resource
import sys
import time

import numpy as np
from sklearn.decomposition import PCA

path, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = time.time()
x = np.fromfile(path, dtype="<f4").reshape(rows, dim).astype(np.float64)
p = PCA(0.8, svd_solver="full").fit(x)
sec = time.time() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"sklearn k80={p.n_components_} seconds={sec:.2f} peak_rss_mb={rss:.0f}")
