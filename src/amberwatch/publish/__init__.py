"""The static edition: the public map as files any static host serves (``amberwatch publish``)."""
