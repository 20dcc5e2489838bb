"""Scan an area of interest tile by tile, resumably, on local processes or Dask."""
