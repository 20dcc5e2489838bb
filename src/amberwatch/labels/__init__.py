"""Labelled example store: import, list, exclude examples of mining and not-mining imagery."""
