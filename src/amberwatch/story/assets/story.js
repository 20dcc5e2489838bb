/* amberwatch story page: the map at the end, fragments that fly to their places, click-to-site. */
(function () {
  'use strict';
  var data = window.AMBER_STORY;
  var mapEl = document.getElementById('story-map');
  if (!data || !mapEl || !window.L) { return; }
  var reduceMotion = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
  var status = document.getElementById('map-status');
  var backButton = document.querySelector('.back-to-text');

  // On phones and tablets one finger scrolls the page (the map must not trap it) and two fingers move and zoom the
  // map (Leaflet's touch zoom pans with the pinch's centre); mice drag it as usual.
  var touchFirst = L.Browser.mobile || (window.matchMedia && window.matchMedia('(pointer: coarse)').matches);
  var map = L.map(mapEl, {
    scrollWheelZoom: false,  // the page scrolls; the map zooms with its buttons, keys, pinch or a click first
    dragging: !touchFirst,
    zoomSnap: 0.25,
    minZoom: 3,
    maxZoom: data.maxZoom,
    zoomAnimation: !reduceMotion,
    fadeAnimation: !reduceMotion,
    markerZoomAnimation: !reduceMotion
  });

  function textNode(text) {
    // Captions come from the DB and the article: show them as text, never as HTML.
    var span = document.createElement('span');
    span.textContent = text;
    return span;
  }
  map.attributionControl.setPrefix('Leaflet');
  if (touchFirst) { touchNote(); }

  function touchNote() {
    // Said on the map, and said louder when one finger tries to move it.
    mapEl.classList.add('story-map--touch');
    var note = L.control({ position: 'topright' });
    note.onAdd = function () {
      var el = L.DomUtil.create('div', 'map-touch-note');
      el.textContent = 'Two fingers move the map';
      return el;
    };
    note.addTo(map);
    var timer = null;
    mapEl.addEventListener('touchmove', function (e) {
      if (e.touches.length !== 1) { return; }
      mapEl.classList.add('story-map--hint');
      window.clearTimeout(timer);
      timer = window.setTimeout(function () { mapEl.classList.remove('story-map--hint'); }, 1500);
    }, { passive: true });
  }
  map.on('click focus', function () { map.scrollWheelZoom.enable(); });
  map.on('blur', function () { map.scrollWheelZoom.disable(); });

  if (data.view) {
    map.setView(data.view.center, data.view.zoom);
  } else {
    map.fitBounds(data.bounds, { padding: [40, 40], maxZoom: data.fitMaxZoom });
  }

  // Context without a basemap: a scale bar, the locator drawn at build time (above it) and nearby place names.
  L.control.scale({ imperial: false, maxWidth: 140 }).addTo(map);
  var locatorEl = document.getElementById('story-locator');
  if (locatorEl) {
    var locator = L.control({ position: 'bottomleft' });
    locator.onAdd = function () {
      var box = L.DomUtil.create('div', 'locator-control');
      box.appendChild(locatorEl);
      return box;
    };
    locator.addTo(map);
  }
  (data.places || []).forEach(function (p) {
    var label = document.createElement('span');
    label.textContent = p.name;  // gazetteer names: text, never HTML
    L.marker(p.latLng, {
      icon: L.divIcon({ className: 'place-label', html: label, iconSize: null }),
      interactive: false, keyboard: false, zIndexOffset: -1000
    }).addTo(map);
  });

  // Optional online basemap (the article's `basemap:`), under everything; without it nothing leaves the folder.
  if (data.basemap) {
    var bm = data.basemap;
    var bmOptions = {
      attribution: bm.attribution || '',
      maxZoom: data.maxZoom,
      zIndex: 0,
      className: 'story-basemap'
    };
    if (bm.maxNativeZoom) { bmOptions.maxNativeZoom = bm.maxNativeZoom; }
    if (bm.subdomains) { bmOptions.subdomains = bm.subdomains; }
    L.tileLayer(bm.url, bmOptions).addTo(map);
  }

  // The imagery: the small static tile set exported at build time (no-data is transparent); tiles that were not
  // exported stay blank.
  if (data.tiles && data.tiles.zooms.length) {
    var have = {};
    data.tiles.keys.forEach(function (k) { have[k] = true; });
    var StoryTiles = L.TileLayer.extend({
      getTileUrl: function (c) {
        var key = c.z + '/' + c.x + '/' + c.y;
        return have[key] ? 'tiles/' + key + '.webp' : L.Util.emptyImageUrl;
      }
    });
    new StoryTiles('', {
      minZoom: data.tiles.minZoom,
      minNativeZoom: data.tiles.minZoom,
      maxNativeZoom: data.tiles.maxZoom,
      maxZoom: data.maxZoom,
      zIndex: 1,
      attribution: data.attribution || ''
    }).addTo(map);
  } else if (data.attribution) {
    map.attributionControl.addAttribution(data.attribution);
  }

  var siteStyle = { color: '#f4f1e8', weight: 1.5, opacity: 0.85, fillColor: '#f4f1e8', fillOpacity: 0.12 };
  var fragStyle = { color: '#ffb020', weight: 2.5, opacity: 1, fillColor: '#ffb020', fillOpacity: 0.18 };
  var activeStyle = { color: '#ff3d00', weight: 4, opacity: 1, fillColor: '#ffb020', fillOpacity: 0.3 };

  var byId = {};
  data.fragments.forEach(function (f) { byId[f.id] = f; });
  var polygons = {};
  L.geoJSON(data.sites, {
    // Thousands of SVG paths make scrolling sluggish: many sites are drawn on a canvas instead.
    renderer: data.sites.features.length > 800 ? L.canvas({ padding: 0.5 }) : undefined,
    style: function (feature) { return byId[feature.id] ? fragStyle : siteStyle; },
    onEachFeature: function (feature, layer) {
      polygons[feature.id] = layer;
      layer.bindTooltip(textNode(feature.properties.caption), { className: 'site-tip', sticky: true });
    }
  }).addTo(map);

  // Markers and image overlays of the story's fragments: shown once the fragments have "landed".
  var markers = {};
  var overlays = {};
  var markerLayer = L.layerGroup();
  data.fragments.forEach(function (f) {
    var m = L.circleMarker(f.center, {
      radius: 7, color: '#1e1d1a', weight: 2, fillColor: '#ffb020', fillOpacity: 1, className: 'site-marker',
      keyboard: true
    });
    m.bindTooltip(textNode(f.caption), { className: 'site-tip', direction: 'top', offset: [0, -6] });
    m.on('click', function () { showSite(f.id, { fromMap: true }); });
    markers[f.id] = m;
    markerLayer.addLayer(m);
    if (f.bounds) {
      overlays[f.id] = L.imageOverlay(f.overlay, f.bounds, {
        opacity: 0, className: 'frag-overlay', alt: f.alt, interactive: false
      }).addTo(map);
    }
  });

  var arrived = false;
  var pending = null;
  var activeId = null;
  var lastFragment = null;

  function land() {
    markerLayer.addTo(map);
    Object.keys(overlays).forEach(function (id) { overlays[id].setOpacity(0.95); });
    polygonsToFront();
  }

  function polygonsToFront() {
    Object.keys(polygons).forEach(function (id) { if (byId[id]) { polygons[id].bringToFront(); } });
  }

  function fragmentRects() {
    // Clones start where each fragment was last seen: clamped just past the viewport edge it left from.
    var out = [];
    var sx = window.scrollX, sy = window.scrollY, vh = window.innerHeight;
    document.querySelectorAll('.frag').forEach(function (el) {
      var id = Number(el.getAttribute('data-site'));
      var f = byId[id];
      if (!f) { return; }
      var r = el.getBoundingClientRect();
      var top = Math.min(Math.max(r.top, -r.height * 0.85), vh - r.height * 0.15);
      out.push({ f: f, el: el, left: r.left + sx, top: top + sy, width: r.width, height: r.height });
    });
    return out.slice(-data.maxFlyingClones);
  }

  function targetRect(f) {
    var mr = mapEl.getBoundingClientRect();
    var b = f.bounds ? L.latLngBounds(f.bounds) : L.latLngBounds(f.siteBounds);
    var nw = map.latLngToContainerPoint(b.getNorthWest());
    var se = map.latLngToContainerPoint(b.getSouthEast());
    var w = Math.max(se.x - nw.x, 10), h = Math.max(se.y - nw.y, 10);
    var cx = (nw.x + se.x) / 2, cy = (nw.y + se.y) / 2;
    cx = Math.min(Math.max(cx, 0), mr.width);
    cy = Math.min(Math.max(cy, 0), mr.height);
    return { left: mr.left + window.scrollX + cx - w / 2, top: mr.top + window.scrollY + cy - h / 2, width: w, height: h };
  }

  function arrive() {
    if (arrived) { return; }
    arrived = true;
    map.invalidateSize();
    var instant = reduceMotion || !document.body.animate;
    document.documentElement.setAttribute('data-story-arrival', instant ? 'instant' : 'animated');
    if (instant) {
      land();
      afterArrival();
      return;
    }
    var layer = document.createElement('div');
    layer.className = 'fly-layer';
    document.body.appendChild(layer);
    var rects = fragmentRects();
    var quick = pending !== null;
    var duration = quick ? 650 : 1300;
    var stagger = quick ? 25 : 70;
    var runs = rects.map(function (s, i) {
      var t = targetRect(s.f);
      var clone = document.createElement('div');
      clone.className = 'fly-clone';
      clone.style.width = s.width + 'px';
      clone.style.height = s.height + 'px';
      var img = document.createElement('img');
      var src = s.el.querySelector('img');
      img.src = (src && (src.currentSrc || src.src)) || s.f.overlay;
      img.alt = '';
      clone.appendChild(img);
      layer.appendChild(clone);
      var from = 'translate(' + s.left + 'px,' + s.top + 'px) scale(1,1)';
      var to = 'translate(' + t.left + 'px,' + t.top + 'px) scale(' + (t.width / s.width) + ',' + (t.height / s.height) + ')';
      var anim = clone.animate([
        { transform: from, opacity: 1 },
        { transform: to, opacity: 1, offset: 0.82 },
        { transform: to, opacity: 0 }
      ], { duration: duration, delay: i * stagger, easing: 'cubic-bezier(0.3, 0.7, 0.2, 1)', fill: 'forwards' });
      return anim.finished;
    });
    window.setTimeout(land, duration * 0.8 + rects.length * stagger);
    Promise.all(runs).catch(function () { return null; }).then(function () {
      layer.remove();
      land();
      afterArrival();
    });
  }

  function afterArrival() {
    document.documentElement.setAttribute('data-story-arrived', 'true');
    if (pending !== null) {
      var id = pending;
      pending = null;
      flyToSite(id);
    }
  }

  function flyToSite(id) {
    var f = byId[id];
    if (!f) { return; }
    if (activeId !== null && polygons[activeId]) { polygons[activeId].setStyle(byId[activeId] ? fragStyle : siteStyle); }
    if (activeId !== null && markers[activeId]) { markers[activeId].closeTooltip(); }  // one caption at a time
    activeId = id;
    if (polygons[id]) { polygons[id].setStyle(activeStyle); polygons[id].bringToFront(); }
    var onEnd = function () {
      if (markers[id]) { markers[id].openTooltip(); }
      document.documentElement.setAttribute('data-map-site', String(id));
    };
    map.once('moveend', onEnd);
    if (reduceMotion) {
      map.setView(f.center, f.zoom, { animate: false });
    } else {
      map.flyTo(f.center, f.zoom, { duration: 1.4 });
    }
    if (status) { status.textContent = 'Map shows ' + f.caption; }
  }

  function btnOf(id) {
    // A site's button in the text: its fragment, else its then-and-now pair.
    return document.querySelector('.frag[data-site="' + id + '"] .frag-btn, .pair[data-site="' + id + '"] .frag-btn');
  }

  function showSite(id, opts) {
    opts = opts || {};
    if (!opts.fromMap) {
      lastFragment = btnOf(id);
      mapEl.scrollIntoView({ behavior: reduceMotion ? 'auto' : 'smooth', block: 'center' });
      mapEl.focus({ preventScroll: true });
      if (backButton && lastFragment) { backButton.hidden = false; }
    }
    if (arrived) {
      flyToSite(id);
    } else {
      pending = id;
      // The observer below starts the arrival when the map is in view; a map already in view arrives now.
      var r = mapEl.getBoundingClientRect();
      if (r.top < window.innerHeight && r.bottom > 0 && opts.fromMap) { arrive(); }
    }
  }

  document.querySelectorAll('.frag-btn').forEach(function (btn) {
    btn.addEventListener('click', function () {
      showSite(Number(btn.closest('[data-site]').getAttribute('data-site')));
    });
  });

  if (backButton) {
    backButton.addEventListener('click', function () {
      backButton.hidden = true;
      if (lastFragment) {
        lastFragment.scrollIntoView({ behavior: reduceMotion ? 'auto' : 'smooth', block: 'center' });
        lastFragment.focus({ preventScroll: true });
      }
    });
  }

  if ('IntersectionObserver' in window) {
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting && e.intersectionRatio >= 0.35) {
          observer.disconnect();
          arrive();
        }
      });
    }, { threshold: [0, 0.35, 0.6, 1] });
    observer.observe(mapEl);
  } else {
    arrive();
  }

  window.amberStory = { map: map, showSite: showSite, data: data };
})();
