/* amberwatch static edition: a Leaflet layer drawing the raster tiles of a PMTiles archive, read by HTTP range
 * requests through the vendored pmtiles browser build (window.pmtiles). No tile server: any static host that honours
 * Range serves the archive. Options are L.GridLayer's (minNativeZoom / maxNativeZoom from config.json's layer, so
 * zooms past the imagery's are drawn overzoomed, bounds, attribution).
 *
 *   L.pmtilesLayer('imagery.pmtiles', {maxNativeZoom: 18, minNativeZoom: 12, attribution: credit}).addTo(map);
 */
(function () {
  'use strict';

  /* The archive may mix JPEG (covered) and PNG (partly transparent) tiles: the type comes from each tile's bytes. */
  function imageType(bytes) {
    if (bytes[0] === 0xff && bytes[1] === 0xd8) return 'image/jpeg';
    if (bytes[0] === 0x89 && bytes[1] === 0x50) return 'image/png';
    if (bytes[8] === 0x57 && bytes[9] === 0x45 && bytes[10] === 0x42 && bytes[11] === 0x50) return 'image/webp';
    return 'application/octet-stream';
  }

  L.PMTilesLayer = L.GridLayer.extend({
    initialize: function (url, options) {
      L.GridLayer.prototype.initialize.call(this, options);
      this._archive = new pmtiles.PMTiles(url);
    },

    /* The pmtiles.PMTiles archive (getHeader(), getMetadata()). */
    archive: function () {
      return this._archive;
    },

    createTile: function (coords, done) {
      var img = document.createElement('img');
      var controller = new AbortController();
      img.alt = '';
      img.setAttribute('role', 'presentation');
      img._pmtilesAbort = controller;
      this._archive.getZxy(coords.z, coords.x, coords.y, controller.signal).then(function (tile) {
        if (!tile || !tile.data) {
          img.style.visibility = 'hidden'; /* no imagery there: the tile stays empty (no broken-image frame) */
          done(null, img);
          return;
        }
        var bytes = new Uint8Array(tile.data);
        var url = URL.createObjectURL(new Blob([bytes], {type: imageType(bytes)}));
        img.onload = function () { URL.revokeObjectURL(url); done(null, img); };
        img.onerror = function (e) { URL.revokeObjectURL(url); done(e, img); };
        img.src = url;
      }).catch(function (err) {
        if (err && err.name !== 'AbortError') done(err, img);
      });
      return img;
    },

    _removeTile: function (key) {
      var tile = this._tiles[key];
      if (tile && tile.el && tile.el._pmtilesAbort && !tile.loaded) tile.el._pmtilesAbort.abort();
      L.GridLayer.prototype._removeTile.call(this, key);
    }
  });

  L.pmtilesLayer = function (url, options) {
    return new L.PMTilesLayer(url, options);
  };
})();
