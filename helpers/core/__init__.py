"""The base layer: errors, run folders and atomic writes, the step cache, notebook reuse, child processes, dask."""
