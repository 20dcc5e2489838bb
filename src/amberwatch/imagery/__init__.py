"""Imagery sources (XYZ/quadkey servers, GeoTIFF/COG, tile folders, MBTiles), tile math and the tile cache."""
