"""Detections as polygons with hectares, export, and error-adjusted area estimation."""
