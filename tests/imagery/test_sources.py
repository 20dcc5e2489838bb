"""The TileSource base: typed tile warnings collected per thread."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from amberwatch.errors import BlankTileWarning
from amberwatch.imagery.decode import encode_png
from amberwatch.imagery.open import open_source
from amberwatch.imagery.sources import collect_tile_warnings


def test_tile_warnings_are_collected_per_thread_whatever_another_thread_filters(tmp_path):
    folder = tmp_path / "tiles" / "18" / "5"
    folder.mkdir(parents=True)
    (folder / "7.png").write_bytes(encode_png(np.full((256, 256, 3), 90, np.uint8)))  # blank: a BlankTileWarning
    source = open_source(str(tmp_path / "tiles"))
    got = {}

    def read() -> None:
        with collect_tile_warnings() as caught:
            got["image"] = source.read_tile(18, 5, 7)
        got["caught"] = [type(w) for w in caught]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # this thread's filter, process-wide: it would raise the reader's warning
        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
        with pytest.raises(BlankTileWarning):  # a thread not collecting warns as before
            source.read_tile(18, 5, 7)
    assert got == {"image": None, "caught": [BlankTileWarning]}
