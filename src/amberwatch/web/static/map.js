// The amberwatch map: clustered markers at low zoom, canvas polygons at high zoom, filters, popups, corrections.
// One page, two modes: the live map reads the API; a static edition (`amberwatch publish`, body data-edition naming
// its config.json) reads the published files. Only `source` (below) knows which.
'use strict';

(function () {
  const { el, api, pct, ha, confClass, confColour, siteWords, siteClass, getToken } = window.aw;
  const awTime = window.awTime;     // timeline.js: status words, area chart, before/after view
  const POLYGON_ZOOM = 14;          // from this zoom on, sites are drawn as polygons instead of clustered markers
  const LIST_LIMIT = 200;
  // The one list of categories (labels.store.CATEGORIES), written into the page by the server.
  const CATEGORIES = (document.body.dataset.categories || 'other').split(' ').filter(Boolean);
  const SIMILAR_TOP = 10;            // places a "Find similar places" search shows
  // The online basemap `serve --basemap` chose (xyzservices preset: url, attribution...), or null: fully offline.
  const BASEMAP = document.body.dataset.basemap ? JSON.parse(document.body.dataset.basemap) : null;
  const EDITION = document.body.dataset.edition || '';   // a static edition's config.json, or '' on the live map

  // ---------- data access: the live API, or a static edition's files ----------
  // The calls the rest of the page makes for data. Live only: a reader's earlier answer, thumbnails, similar places
  // and reviewers' features (`live`); a static edition takes flags and missed-site reports only when its config
  // names a flag endpoint.
  // An SVG file's text, or null when there is none (404).
  async function svgText(path) {
    const r = await fetch(path);
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.text();
  }

  function liveSource() {
    return {
      live: true,
      flagging: true,
      ready: Promise.resolve(),
      scans: async () => (await api('/api/scans')).scans,
      detections: (scanId) => api('/api/detections' + (scanId ? '?scan=' + scanId : '')),
      detection: (id) => api('/api/detections/' + id),
      timeline: (scanId) => api('/api/timeline?scan=' + scanId),
      places: async (bbox, limit) => (await api(`/api/places?bbox=${bbox}&limit=${limit}`)).places,
      locator: (scanId) => svgText('/api/locator.svg' + (scanId ? '?scan=' + scanId : '')),
      sendFlag: (id, body) => api(`/api/detections/${id}/feedback`, { method: 'POST', body }),
      myFlag: (id) => api(`/api/detections/${id}/feedback/mine`),
      sendReport: (scanId, body) => api(`/api/scans/${scanId}/reports`, { method: 'POST', body }),
      tiles: (s, options) => L.tileLayer(`/tiles/${encodeURIComponent(s.imagery_source_id)}/{z}/{x}/{y}?base={base}`,
        Object.assign({ base: s.zoom, errorTileUrl: 'data:image/gif;base64,R0lGODlhAQABAAAAACw=' }, options)),
      thumbnail: (f) => `/api/detections/${f.id}/thumbnail.jpg`,
      shareUrl: (f) => `${location.origin}/?scan=${f.properties.scan_id}#d=${f.id}`,
    };
  }

  // A static edition: config.json's layers are the scans (its chosen date first), each with its sites file and
  // PMTiles archive (assets/pmtiles-layer.js); places.geojson holds the place labels. Files are fetched once.
  function staticSource(configFile) {
    const url = (name) => new URL(name, new URL(configFile, location.href)).href;
    const files = new Map();
    const getJson = (name) => {
      if (!files.has(name)) {
        files.set(name, fetch(url(name)).then((r) => {
          if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
          return r.json();
        }));
      }
      return files.get(name);
    };
    const src = { live: false, flagging: false };
    src.ready = getJson(configFile).then((c) => { src.config = c; src.flagging = Boolean(c.flag_endpoint); });
    const endpoint = (path) => src.config.flag_endpoint + path;
    const asScan = (l) => ({ id: l.scan_id, imagery_date: l.date, bounds: src.config.bounds, zoom: l.max_zoom,
      overview_min_zoom: l.min_zoom, imagery_source_id: l.imagery, imagery_credit: l.credit, detections: l.n_sites,
      area_scanned_km2: l.area_scanned_km2 || 0, area_name: null, sites_file: l.sites });
    src.scans = async () => {
      await src.ready;
      const { layers, date } = src.config;
      return [...layers.filter((l) => l.date === date), ...layers.filter((l) => l.date !== date)].map(asScan);
    };
    src.detections = async (scanId) => {
      const shown = (await src.scans()).filter((s) => !scanId || String(s.id) === String(scanId));
      const parts = await Promise.all(shown.map((s) => getJson(s.sites_file)));
      return { type: 'FeatureCollection', features: parts.flatMap((fc) => fc.features) };
    };
    src.detection = async (id) => {
      const f = (await src.detections(null)).features.find((x) => x.id === Number(id));
      if (!f) throw new Error(`No site ${id} on this map`);
      return f;
    };
    // A dated edition's timeline.json is what the live map's /api/timeline gives (dates, scans, sites over time);
    // without one (an edition of one date, or a config.json that names none) the dates come from the config alone.
    src.timeline = async () => {
      await src.ready;
      const { dates, layers, timeline } = src.config;
      if (timeline) return getJson(timeline);
      return { dates: dates.length > 1 ? dates : [], scan_ids: Object.fromEntries(layers.map((l) => [l.date, l.scan_id])),
        sites: [] };
    };
    src.places = async (bbox, limit) => {
      const [w, s, e, n] = bbox.split(',').map(Number);
      const fc = await getJson(src.config ? src.config.places : 'places.geojson');
      return fc.features.map((f) => ({ name: f.properties.name, lon: f.geometry.coordinates[0],
        lat: f.geometry.coordinates[1], population: f.properties.population || 0 }))
        .filter((p) => p.lon >= w && p.lon <= e && p.lat >= s && p.lat <= n).slice(0, limit);
    };
    // One locator for the edition (every date's sites), or none (config.locator null: no sites or no outlines).
    src.locator = async () => {
      await src.ready;
      return src.config.locator ? svgText(url(src.config.locator)) : null;
    };
    // Flags go to `amberwatch serve` on another origin (serve --cors-origin names this site) with credentials, so
    // its reader cookie tells readers apart. A request that never gets an answer (the server is down, or refuses
    // this origin: the browser then hides its answer) is said in words; an answer's own error is passed on.
    const remote = async (path, options) => {
      try {
        return await api(endpoint(path), Object.assign({ credentials: 'include' }, options));
      } catch (e) {
        if (e.status) throw e;
        const host = new URL(src.config.flag_endpoint).host;
        throw new Error(`the flag server (${host}) cannot be reached from this page: it is down or does not take ` +
          'answers from this site. Please try again later.');
      }
    };
    src.sendFlag = (id, body) => remote(`/api/detections/${id}/feedback`, { method: 'POST', body });
    src.myFlag = (id) => remote(`/api/detections/${id}/feedback/mine`);
    src.sendReport = (scanId, body) => remote(`/api/scans/${scanId}/reports`, { method: 'POST', body });
    src.tiles = (s, options) => L.pmtilesLayer(url(s.imagery_source_id), options);
    src.thumbnail = () => null;
    src.shareUrl = (f) => `${location.origin}${location.pathname}?scan=${f.properties.scan_id}#d=${f.id}`;
    return src;
  }

  const source = EDITION ? staticSource(EDITION) : liveSource();

  // Exposed for the browser tests (load time, frame rate) and for debugging.
  const AW = window.amberwatch = { ready: false, loadMs: null, count: 0 };
  // Phones and narrow windows (as app.css's media query): the panel is a bottom sheet, collapsed by default.
  const narrow = window.matchMedia('(max-width: 700px)');
  function setSheet(open) {
    document.body.classList.toggle('sheet-open', open);
    document.getElementById('panel-toggle').setAttribute('aria-expanded', String(open));
  }

  const map = L.map('map', { preferCanvas: true, zoomSnap: 1, minZoom: 2, maxZoom: 20 }).setView([51.3, 26.9], 9);
  const renderer = L.canvas({ padding: 0.3 });
  AW.map = map;
  L.control.scale({ metric: true, imperial: false, maxWidth: 140 }).addTo(map);
  const basemapLayer = BASEMAP ? L.tileLayer(BASEMAP.url, {
    subdomains: BASEMAP.subdomains || 'abc', maxNativeZoom: BASEMAP.max_zoom || 19, maxZoom: 20,
    attribution: BASEMAP.attribution, zIndex: 0,
  }) : null;
  AW.basemap = BASEMAP;

  let scans = [];
  let scan = null;                   // selected scan object, or null for all scans
  let features = [];                 // all features of the layer
  let byId = new Map();
  let filtered = [];
  let imagery = [];                 // tile layers of the scanned imagery shown
  let loading = false;               // markers are being added to the cluster group in chunks
  const polygons = new Map();        // id -> L.Polygon currently on the map (only those near the view)
  const polygonLayer = L.layerGroup().addTo(map);
  const selectedRing = L.layerGroup().addTo(map);
  const similarLayer = L.layerGroup().addTo(map);
  let similar = null;                // { scanId, of, places } of the last similarity search
  let reviewerToken = null;          // a reviewer's token (signed in on /review or /label in this tab), checked
  let timeline = null;               // /api/timeline of the shown scan's AOI (dated scans only), else null
  let siteOf = new Map();            // detection id -> its timeline site

  const clusters = L.markerClusterGroup({
    chunkedLoading: true, chunkInterval: 150, chunkDelay: 5,
    showCoverageOnHover: false, spiderfyOnMaxZoom: false, disableClusteringAtZoom: POLYGON_ZOOM,
    removeOutsideVisibleBounds: true,
    // Coloured like the sites (by the most confident site inside), so the legend holds at every zoom.
    iconCreateFunction: (cluster) => {
      // Sites reviewed as not mining are grey: they never colour a cluster red.
      const best = cluster.getAllChildMarkers().reduce((a, m) => Math.max(a, m.options.removed ? 0 : m.options.prob), 0);
      const n = cluster.getChildCount();
      const size = n < 100 ? 'small' : n < 1000 ? 'medium' : 'large';
      return L.divIcon({ html: '<div><span>' + n + '</span></div>', iconSize: L.point(40, 40),
        className: `marker-cluster cluster cluster-${size} ${confClass(best)}` });
    },
    // Also called (0, 0) when the empty group is added to the map: only a load we started counts.
    chunkProgress: (done, total) => { if (loading && done === total) { loading = false; markReady(); } },
  });
  map.addLayer(clusters);

  function markReady() {
    if (!AW.ready) {
      AW.ready = true;
      AW.loadMs = Math.round(performance.now());
      document.body.dataset.ready = '1';
    }
  }

  // ---------- data ----------
  async function loadScans() {
    scans = await source.scans();
    labelScans();
  }

  // A layer by where and when (never a scan's file name): "Around Klesiv · 2018-05-12 · 5 sites". Signed-in
  // reviewers also see its id and model version (what layers of the same area differ by), first, as the closed
  // dropdown cuts long names.
  function labelScans() {
    const sel = document.getElementById('scan-select');
    const value = sel.value;
    sel.replaceChildren(el('option', { value: 'all' }, 'All scans'));
    for (const s of scans) {
      const sites = `${s.detections.toLocaleString('en')} site${s.detections === 1 ? '' : 's'}`;
      const where = (s.area_name ? `Around ${s.area_name}` : 'Scanned area') + (s.imagery_date ? ` · ${s.imagery_date}` : '');
      const label = reviewerToken
        ? `#${s.id} · model ${s.model_version} · ${sites}` + (s.parent_scan_id ? ` (rescan of #${s.parent_scan_id})` : '') +
          ` · ${where}`
        : `${where} · ${sites}` + (s.parent_scan_id ? ' · re-checked' : '');
      sel.append(el('option', { value: String(s.id) }, label));
    }
    if (value) sel.value = value;
    showCreditWarning();
  }

  // Reviewers are told when a shown layer's imagery names no provider (a licensing risk before publishing).
  function showCreditWarning() {
    const box = document.getElementById('credit-warning');
    const unstated = reviewerToken ? (scan ? [scan] : scans).filter((s) => s.credit_stated === false) : [];
    box.hidden = !unstated.length;
    box.textContent = unstated.length ? `Imagery provider not stated for ${unstated.length === 1 ? 'this layer'
      : `${unstated.length} layers`}: rescan with --imagery-credit "…" (or a preset name) before publishing.` : '';
  }

  async function selectScan(id, { fit = true } = {}) {
    scan = scans.find((s) => String(s.id) === String(id)) || null;
    document.getElementById('scan-select').value = scan ? String(scan.id) : 'all';
    const url = new URL(location.href);
    if (scan) url.searchParams.set('scan', scan.id); else url.searchParams.delete('scan');
    history.replaceState(null, '', url);
    showCreditWarning();
    if (fit) fitToLayer();   // first, so the imagery asks only for the tiles of the final view
    setImagery();
    loadLocator();
    await loadTimeline();
    const fc = await source.detections(scan ? scan.id : null);
    features = fc.features;
    byId = new Map(features.map((f) => [f.id, f]));
    AW.count = features.length;
    for (const f of features) f.marker = makeMarker(f);
    applyFilters();
  }

  function fitToLayer() {
    const list = scan ? [scan] : scans;
    let b = null;
    for (const s of list) {
      if (!s.bounds) continue;
      const sb = L.latLngBounds([s.bounds[1], s.bounds[0]], [s.bounds[3], s.bounds[2]]);
      b = b ? b.extend(sb) : sb;
    }
    if (b && b.isValid()) map.fitBounds(b, { maxZoom: 16, animate: false });
  }

  // ---------- background ----------
  // Leaflet shows attributions as HTML: the credit is text.
  function escapeHtml(text) {
    const span = document.createElement('span');
    span.textContent = text || '';
    return span.innerHTML;
  }

  // The scan's scanned area (its AOI's bounds), pulled in by 1% of a tile: Leaflet requests every tile that
  // touches its bounds, and the tiles just outside an area aligned on tile edges are not in the cache.
  function scannedBounds(s) {
    const b = s.scanned_bounds || s.bounds;
    if (!b || b.some((v) => !Number.isFinite(v))) return null;
    const inset = 360 / 2 ** s.zoom / 100;
    return L.latLngBounds([b[1] + inset, b[0] + inset], [b[3] - inset, b[2] - inset]);
  }

  // One tile layer per scan shown (scans over the same imagery and area share one), each with its own imagery,
  // credit, bounds and zoom, so a page requests only tiles the cache holds. Below the scan's zoom the server
  // sends overview tiles (the cached tiles downsampled) down to overview_min_zoom, where the scanned area fits
  // in a few tiles; further out those few tiles are drawn smaller, so the area stays visible at every zoom.
  function imageryLayer(s) {
    const bounds = scannedBounds(s);
    const lowest = Number.isInteger(s.overview_min_zoom) ? Math.min(s.overview_min_zoom, s.zoom) : s.zoom;
    return source.tiles(s, Object.assign({
      minZoom: 0, maxZoom: 20, minNativeZoom: lowest, maxNativeZoom: s.zoom, zIndex: 1,
      attribution: escapeHtml(s.imagery_credit),
    }, bounds ? { bounds } : {}));
  }

  function setImagery() {
    for (const layer of imagery) map.removeLayer(layer);
    imagery = [];
    const wanted = document.getElementById('basemap').value;
    document.getElementById('map').classList.toggle('plain', wanted === 'plain');
    if (basemapLayer) {
      if (wanted === 'plain') map.removeLayer(basemapLayer); else basemapLayer.addTo(map);
    }
    if (wanted !== 'imagery') return;
    const seen = new Set();
    for (const s of scan ? [scan] : scans) {
      const key = JSON.stringify([s.imagery_source_id, s.zoom, s.scanned_bounds || s.bounds, s.imagery_credit]);
      if (seen.has(key)) continue;
      seen.add(key);
      const layer = imageryLayer(s).addTo(map);   // above the basemap (zIndex 1 over 0)
      imagery.push(layer);
    }
    AW.imagery = imagery;
  }

  // ---------- context, offline: place names and a locator ----------
  // Names of the gazetteer's places in view (most populous first, none overlapping) at every zoom, and a small
  // locator (below).
  map.createPane('labels').style.zIndex = 450;   // over the imagery and outlines, under markers and popups
  const placeLabels = L.layerGroup().addTo(map);
  let placesSeq = 0;
  const clampBox = (w, s2, e, n) => [Math.max(w, -180), Math.max(s2, -90), Math.min(e, 180), Math.min(n, 90)]
    .map((v) => v.toFixed(5)).join(',');

  async function refreshPlaceLabels() {
    const b = map.getBounds();
    const size = map.getSize();
    const limit = Math.max(8, Math.min(60, Math.round((size.x * size.y) / 12000)));
    const seq = ++placesSeq;
    let places;
    try {
      places = await source.places(clampBox(b.getWest(), b.getSouth(), b.getEast(), b.getNorth()), limit * 3);
    } catch (e) {
      return;   // the map works without its labels
    }
    if (seq !== placesSeq) return;
    placeLabels.clearLayers();
    const taken = [];
    for (const p of places) {
      const pt = map.latLngToContainerPoint([p.lat, p.lon]);
      const w = 7 * p.name.length + 14;
      const box = [pt.x - w / 2, pt.y - 20, pt.x + w / 2, pt.y + 2];
      if (taken.length >= limit || taken.some((t) => box[0] < t[2] && box[2] > t[0] && box[1] < t[3] && box[3] > t[1])) continue;
      taken.push(box);
      placeLabels.addLayer(L.marker([p.lat, p.lon], { pane: 'labels', interactive: false, keyboard: false,
        icon: L.divIcon({ className: 'place-label', html: el('span', {}, p.name), iconSize: [0, 0] }) }));
    }
    AW.placeLabels = taken.length;
  }

  // locator: the country holding the sites among its neighbours, their extent marked (results.locator: offline
  // outlines, the same inset as the story's), with the view drawn over it as a box. The SVG states its lon/lat
  // window (data-window) and is equirectangular, so the box is placed linearly. No sites or no outlines: none.
  const locator = L.control({ position: 'bottomright' });
  locator.onAdd = () => el('div', { className: 'locator', hidden: true });
  locator.addTo(map);
  let locatorFor = null;   // the scan id ('all': every scan) whose locator is drawn or on its way

  function parseSvg(text) {
    const node = new DOMParser().parseFromString(text, 'image/svg+xml').documentElement;
    return node && node.localName === 'svg' ? document.importNode(node, true) : null;
  }

  async function loadLocator() {
    const key = scan ? String(scan.id) : 'all';
    if (key === locatorFor) return;
    locatorFor = key;
    let svg = null;
    try {
      const sites = (scan ? [scan] : scans).some((s) => s.detections > 0);   // none public: no locator to ask for
      const text = sites ? await source.locator(scan ? scan.id : null) : null;
      svg = text ? parseSvg(text) : null;
    } catch (e) {
      svg = null;   // the map works without its locator
    }
    if (key !== locatorFor) return;
    const box = locator.getContainer();
    box.replaceChildren(...(svg ? [svg] : []));
    box.hidden = !svg;
    refreshLocator();
  }

  function refreshLocator() {
    const svg = locator.getContainer().querySelector('svg');
    if (!svg || !svg.dataset.window) return;
    const [w, s2, e, n] = svg.dataset.window.split(',').map(Number);
    const { width, height } = svg.viewBox.baseVal;
    const b = map.getBounds();
    const x0 = ((b.getWest() - w) / (e - w)) * width, x1 = ((b.getEast() - w) / (e - w)) * width;
    const y0 = ((n - b.getNorth()) / (n - s2)) * height, y1 = ((n - b.getSouth()) / (n - s2)) * height;
    const outside = x1 < 0 || x0 > width || y1 < 0 || y0 > height;
    const clamp = (v, most) => Math.max(0, Math.min(most, v));
    const [cx0, cx1, cy0, cy1] = [clamp(x0, width), clamp(x1, width), clamp(y0, height), clamp(y1, height)];
    let rect = svg.querySelector('rect.view');
    if (!rect) {
      rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
      rect.setAttribute('class', 'view');
      svg.append(rect);
    }
    rect.setAttribute('visibility', outside ? 'hidden' : 'visible');
    const rw = Math.max(3, cx1 - cx0), rh = Math.max(3, cy1 - cy0);
    rect.setAttribute('x', ((cx0 + cx1 - rw) / 2).toFixed(1));
    rect.setAttribute('y', ((cy0 + cy1 - rh) / 2).toFixed(1));
    rect.setAttribute('width', rw.toFixed(1));
    rect.setAttribute('height', rh.toFixed(1));
  }

  map.on('moveend', () => { refreshPlaceLabels(); refreshLocator(); });

  // ---------- dates ----------
  // A project with dated scans of one AOI: a date control on the map over those dates (each date is that date's
  // scan: its imagery and detections), "Over time" in popups, and the "new since" / "growing" filters. Scans
  // without a date show none of it.
  async function loadTimeline() {
    const ids = timeline ? Object.values(timeline.scan_ids) : [];
    if (!scan || !scan.imagery_date) timeline = null;
    else if (!ids.includes(scan.id)) {
      try {
        const t = await source.timeline(scan.id);
        timeline = t.dates.length ? t : null;
      } catch (e) {
        timeline = null;   // the map works without its time dimension
      }
    }
    siteOf = new Map();
    for (const site of timeline ? timeline.sites : []) {
      for (const list of Object.values(site.detection_ids)) for (const id of list) siteOf.set(id, site);
    }
    AW.timeline = timeline;
    showDates();
    showChangeFilter();
  }

  const dateControl = L.control({ position: 'topright' });
  dateControl.onAdd = () => {
    const box = el('fieldset', { id: 'dates', className: 'date-control' }, el('legend', {}, 'Imagery date'));
    L.DomEvent.disableClickPropagation(box);
    L.DomEvent.disableScrollPropagation(box);
    return box;
  };

  function showDates() {
    if (!timeline) { dateControl.remove(); return; }
    if (!dateControl.getContainer() || !dateControl.getContainer().parentNode) dateControl.addTo(map);
    const box = dateControl.getContainer();
    const shown = scan ? scan.imagery_date : null;
    box.replaceChildren(el('legend', {}, 'Imagery date'), ...timeline.dates.map((d) => el('label', {},
      el('input', { type: 'radio', name: 'imagery-date', value: d, checked: d === shown,
        onchange: () => selectDate(d) }), el('span', {}, d))));
  }

  async function selectDate(date) {
    AW.ready = false;   // until the date's sites are drawn
    const previous = siteOf.get(AW.selected);
    map.closePopup();
    await selectScan(timeline.scan_ids[date], { fit: false });
    const same = previous && (previous.detection_ids[date] || [])[0];
    if (same) select(same, { fly: false });
  }

  function layerDate(p) {
    const s = scans.find((x) => x.id === p.scan_id);
    return s ? s.imagery_date : null;
  }

  function showChangeFilter() {
    const sel = document.getElementById('f-change');
    const value = sel.value;
    document.getElementById('f-change-row').hidden = !timeline || !timeline.sites.length;
    const dates = timeline ? timeline.dates.slice(0, -1) : [];
    sel.replaceChildren(el('option', { value: '' }, 'All sites'),
      ...dates.map((d) => el('option', { value: 'new:' + d }, `New since ${d}`)),
      el('option', { value: 'growing' }, 'Growing'));
    sel.value = timeline && [...sel.options].some((o) => o.value === value) ? value : '';
  }

  // "New since D" needs a later date: on an earlier layer it would leave nothing, so it shows the latest date.
  function onChangeFilter() {
    const m = /^new:(.+)$/.exec(document.getElementById('f-change').value);
    const last = timeline && timeline.dates[timeline.dates.length - 1];
    if (m && scan && scan.imagery_date <= m[1] && last) selectDate(last); else applyFilters();
  }

  function changeFilter(f) {
    const wanted = timeline ? document.getElementById('f-change').value : '';
    if (!wanted) return true;
    const site = siteOf.get(f.id);
    if (!site) return false;
    if (wanted === 'growing') return site.status === 'growing';
    const since = wanted.slice(4);
    return site.area_ha[since] === 0 && site.first_seen > since;
  }

  function overTimeSection(f) {
    const site = timeline && siteOf.get(f.id);
    if (!site) return null;
    return awTime.overTime(site, timeline.dates, layerDate(f.properties), (s, opener) => awTime.openCompare(s, {
      dates: timeline.dates,
      scanOf: (d) => scans.find((x) => x.id === timeline.scan_ids[d]),
      imageryLayer,
      title: placeText(f.properties),
      outlinesAt: (s2, d) => Promise.all((s2.detection_ids[d] || []).map((id) => byId.get(id) || source.detection(id))),
    }, opener));
  }

  // ---------- drawing ----------
  function makeMarker(f) {
    const p = f.properties;
    // 24 px: a tap target a finger can hit. Focusable: Enter (Leaflet's keyboard option) opens the popup.
    const m = L.marker([p.lat, p.lon], { icon: L.divIcon({ className: 'dot ' + siteClass(p), iconSize: [24, 24] }),
      keyboard: true, title: `${placeText(p)}: ${siteWords(p)}, ${ha(p.area_ha)} ha`, alt: placeText(p),
      prob: p.mean_prob, removed: p.review === 'not_mining' });
    // While marking a missed place, a tap on a site's dot marks the place under the finger (dots do not bubble).
    m.on('click', (e) => (reporting ? reportAt(map.mouseEventToLatLng(e.originalEvent)) : select(f.id, { fly: true })));
    m.on('keypress', (ev) => { if (ev.originalEvent.key === 'Enter') select(f.id, { fly: true }); });
    return m;
  }

  function polygonStyle(p, selected) {
    const reviewed = p.review === 'not_mining' ? { color: '#555', fillColor: '#9e9e9e', dashArray: '5 5', fillOpacity: 0.15 }
      : p.review === 'confirmed' ? { color: '#7a0177', weight: 3 } : {};
    return Object.assign({ renderer, color: confColour(p.mean_prob), weight: 2, fillColor: confColour(p.mean_prob),
      fillOpacity: 0.25, dashArray: null }, reviewed, selected ? { weight: 4, color: '#00e5ff' } : {});
  }

  function refreshPolygons() {
    if (map.getZoom() < POLYGON_ZOOM) {
      polygonLayer.clearLayers();
      polygons.clear();
      AW.outlines = [];
      return;
    }
    const view = map.getBounds().pad(0.5);
    const keep = new Set();
    for (const f of filtered) {
      const p = f.properties;
      if (!view.contains([p.lat, p.lon])) continue;
      keep.add(f.id);
      if (polygons.has(f.id)) continue;
      const layer = L.geoJSON(f, { style: () => polygonStyle(p, false) });
      layer.on('click', () => { if (!reporting) select(f.id, { fly: false }); });
      polygons.set(f.id, layer);
      polygonLayer.addLayer(layer);
    }
    for (const [id, layer] of polygons) {
      if (!keep.has(id)) { polygonLayer.removeLayer(layer); polygons.delete(id); }
    }
    AW.outlines = [...polygons.keys()];
  }

  // ---------- filters, totals, list ----------
  function regionBounds() {
    const text = document.getElementById('f-region').value.trim();
    if (document.getElementById('f-inview').checked) return map.getBounds();
    if (!text) return null;
    const v = text.split(',').map(Number);
    if (v.length !== 4 || v.some((x) => !Number.isFinite(x))) return null;
    return L.latLngBounds([v[1], v[0]], [v[3], v[2]]);
  }

  function applyFilters() {
    const minProb = Number(document.getElementById('f-prob').value);
    const from = document.getElementById('f-from').value;
    const to = document.getElementById('f-to').value;
    const region = regionBounds();
    filtered = features.filter((f) => {
      const p = f.properties;
      if (p.mean_prob < minProb) return false;
      const d = (p.capture_date || '').slice(0, 10);
      if (from && (!d || d < from)) return false;
      if (to && (!d || d > to)) return false;
      if (region && !region.contains([p.lat, p.lon])) return false;
      return changeFilter(f);
    });
    AW.ready = false;
    clusters.clearLayers();
    loading = filtered.length > 0;
    if (loading) clusters.addLayers(filtered.map((f) => f.marker)); else markReady();
    polygonLayer.clearLayers();
    polygons.clear();
    refreshPolygons();
    updateSummary();
  }

  function updateSummary() {
    const list = filtered;
    const km2 = (scan ? [scan] : scans).reduce((a, s) => a + (s.area_scanned_km2 || 0), 0);
    // Totals count confirmed and unreviewed sites; those a reviewer removed (not mining) are counted apart.
    const kept = list.filter((f) => f.properties.review !== 'not_mining');
    const removed = list.length - kept.length;
    document.getElementById('t-sites').textContent = kept.length.toLocaleString('en');
    document.getElementById('t-ha').textContent = ha(kept.reduce((a, f) => a + f.properties.area_ha, 0));
    const note = document.getElementById('t-removed');
    note.textContent = removed ? `${removed.toLocaleString('en')} removed after review (not mining)` : '';
    note.hidden = !removed;
    document.getElementById('t-km2').textContent = km2.toFixed(km2 >= 100 ? 0 : km2 >= 1 ? 1 : 2);
    showShares(kept, km2);
    const top = [...list].sort((a, b) => b.properties.area_ha - a.properties.area_ha).slice(0, LIST_LIMIT);
    const ol = document.getElementById('site-list');
    ol.replaceChildren(...top.map((f) => {
      const p = f.properties;
      return el('li', {}, el('button', { type: 'button', className: 'site', dataset: { id: String(f.id) },
        onclick: () => select(f.id, { fly: true }) },
      el('i', { className: 'swatch ' + siteClass(p) }),
      el('span', { className: 'where' }, placeText(p)),
      el('span', { className: 'what' }, `${ha(p.area_ha)} ha · ${siteWords(p)}` +
        (p.capture_date ? ` · ${p.capture_date.slice(0, 10)}` : ''))));
    }));
  }

  // What share of the scanned area the sites cover, and how many a reviewer has confirmed; the phone's landing
  // line says the same in one sentence.
  function showShares(kept, km2) {
    const hectares = kept.reduce((a, f) => a + f.properties.area_ha, 0);
    const share = km2 > 0 ? (100 * hectares) / (km2 * 100) : null;
    const shareText = share === null ? '' : share >= 1 ? `${share.toFixed(1)}%` : share >= 0.01 ? `${share.toFixed(2)}%` : '<0.01%';
    document.getElementById('t-share').textContent = share === null ? ''
      : `${shareText} of the scanned area is affected`;
    const confirmed = kept.filter((f) => f.properties.review === 'confirmed').length;
    const open = kept.length - confirmed;
    document.getElementById('t-reviewed').textContent = kept.length
      ? `${confirmed.toLocaleString('en')} confirmed by a reviewer · ${open.toLocaleString('en')} not reviewed yet` : '';
    document.getElementById('summary-line').textContent = `Surface mining seen from above: ${kept.length.toLocaleString('en')}` +
      ` site${kept.length === 1 ? '' : 's'}, ${ha(hectares)} ha` + (shareText ? ` (${shareText} of the area scanned)` : '');
  }

  // ---------- selection and popup ----------
  function shareUrl(f) {
    return source.shareUrl(f);
  }

  function reviewLine(p) {
    const on = p.review_from ? ` (on the ${p.review_from.imagery_date} imagery of this place)` : '';
    if (p.review === 'not_mining') return 'Reviewed: not mining' + on;
    if (p.review === 'confirmed') return 'Reviewed: confirmed mining' + on;
    if (p.pending) return `${p.pending} reader ${p.pending === 1 ? 'answer' : 'answers'} awaiting review`;
    return 'Not reviewed yet';
  }

  // Where a site is, in words ("2.3 km NE of Klesiv"), else its coordinates.
  function placeText(p) {
    return p.place || `${p.lat.toFixed(4)}, ${p.lon.toFixed(4)}`;
  }

  function headline(p) {
    const text = siteWords(p);
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  // The question to readers, up front: two answers (one tap sends), then what it is instead and an optional note.
  // One answer per reader and site (the reader cookie): once sent, the buttons are disabled (no duplicate); after
  // "No" the reader can still choose what it is instead, and a note written after sending goes with "Send note":
  // both are sent as an edit of their answer (the server keeps the reader's latest). "Change my answer" starts
  // over. A reader who answered before sees that answer when the popup opens.
  function flagForm(f) {
    if (!source.flagging) return null;
    const p = f.properties;
    const qid = `q-${f.id}`;
    const msg = el('p', { className: 'msg', role: 'status' });
    const category = el('select', { name: 'category', 'aria-label': 'If not, what is it?', onchange: () => edit() },
      ...CATEGORIES.map((c) => el('option', { value: c, selected: c === 'other' }, c)));
    const comment = el('textarea', { name: 'comment', maxLength: 2000, rows: 2, 'aria-label': 'Note (optional)',
      placeholder: 'What you know about this place (optional)', oninput: () => noteChanged() });
    const sendNote = el('button', { type: 'button', className: 'send-note', hidden: true, onclick: () => edit() },
      'Send note');
    const yes = el('button', { type: 'button', className: 'confirm', onclick: () => send('confirmed') }, 'Yes, mining');
    const no = el('button', { type: 'button', className: 'not-mining', onclick: () => send('not_mining') },
      'No, not mining');
    const change = el('button', { type: 'button', className: 'change link', hidden: true,
      onclick: () => answered(null) }, 'Change my answer');
    const instead = el('label', { className: 'row instead' }, 'If not, what is it? ', category);
    let busy = false;
    let current = null;                // the answer the server holds for this reader: {verdict, category, comment}
    // The popup grew or shrank: lay it out again and pan it back into view.
    const relayout = () => { if (map._popup && map._popup.isOpen()) map._popup.update(); };
    function noteChanged() {
      sendNote.hidden = !current || comment.value.trim() === (current.comment || '');
    }
    function answered(fb, text) {
      current = fb;
      for (const b of [yes, no]) {
        b.disabled = Boolean(fb);
        b.classList.toggle('chosen', Boolean(fb) && (b === yes) === (fb.verdict === 'confirmed'));
        b.setAttribute('aria-pressed', String(b.classList.contains('chosen')));
      }
      // What it is instead: before any answer, and after "No" (an edit); not after "Yes".
      category.disabled = Boolean(fb) && fb.verdict === 'confirmed';
      if (fb && fb.category) category.value = fb.category;
      if (fb) comment.value = fb.comment || '';
      noteChanged();
      change.hidden = !fb;
      msg.classList.toggle('ok', Boolean(fb));
      msg.textContent = fb ? text : '';
      relayout();
    }
    async function post(verdict) {
      return source.sendFlag(f.id, {
        verdict, category: verdict === 'not_mining' ? category.value : null, comment: comment.value,
        imagery_date: layerDate(p) });
    }
    async function send(verdict) {
      if (busy) return;
      busy = true;
      yes.disabled = no.disabled = true;
      msg.classList.remove('ok');
      msg.textContent = 'Sending…';
      try {
        const r = await post(verdict);
        const updated = Array.isArray(r.replaced) && r.replaced.length > 0;
        if (!updated) p.pending = (p.pending || 0) + 1;
        answered(r, (updated ? 'Thanks — your answer is updated.' : 'Thanks — sent.') +
          (verdict === 'not_mining' ? ' What is it instead? Choose below.' : ' A reviewer will check it.'));
        status.textContent = reviewLine(p);
        // Keyboard and screen-reader users keep their place: on to "what is it?" after "No", else the marker.
        if (verdict === 'not_mining') category.focus(); else returnFocus(f);
      } catch (e) {
        yes.disabled = no.disabled = false;
        msg.textContent = 'Not sent: ' + e.message;
        relayout();
      } finally {
        busy = false;
      }
    }
    // An edit of the answer already sent (what it is instead, a note): sent at once, never dropped silently.
    async function edit() {
      if (!current || busy) return;
      busy = true;
      msg.classList.remove('ok');
      msg.textContent = 'Sending…';
      try {
        const r = await post(current.verdict);
        answered(r, 'Thanks — your answer is updated: ' + said(r) + '.');
      } catch (e) {
        msg.textContent = 'Not sent: ' + e.message;
        relayout();
      } finally {
        busy = false;
      }
    }
    const status = el('p', { className: 'review-line' }, reviewLine(p));
    source.myFlag(f.id).then((r) => {
      const fb = r && r.feedback;
      if (!fb || busy || yes.disabled) return;
      const state = fb.status === 'accepted' ? 'a reviewer agreed' : fb.status === 'rejected' ? 'a reviewer disagreed'
        : 'awaiting review';
      answered(fb, `You answered: ${said(fb)} — ${state}.`);
    }).catch(() => {});
    return el('section', { className: 'flag', 'aria-labelledby': qid },
      el('h4', { id: qid }, 'Is this mining?'),
      el('div', { className: 'row answers' }, yes, no),
      instead,
      el('details', { className: 'add-note', ontoggle: relayout },
        el('summary', {}, 'Add a note'), comment, sendNote),
      msg, change, status);
  }

  // ---------- missed-site reports: "mining here that the map missed" ----------
  // The reader chooses "Report mining the map missed", taps the place on the imagery (zoomed in, so the point is
  // where the reviewers' example is cut), adds an optional note and sends it on the layer shown. A second report
  // within 50 m of their pending one replaces it (the server decides; the answer says so).
  const REPORT_MIN_ZOOM = 15;
  let reporting = false;
  const reportControl = L.control({ position: 'topleft' });
  reportControl.onAdd = () => {
    const button = el('button', { type: 'button', id: 'report-missed', 'aria-pressed': 'false',
      onclick: () => setReporting(!reporting) }, 'Report mining the map missed');
    const box = el('div', { className: 'report-control' }, button,
      el('p', { id: 'report-hint', className: 'report-hint', role: 'status', hidden: true }));
    L.DomEvent.disableClickPropagation(box);
    return box;
  };

  function setReporting(on) {
    reporting = on;
    const button = document.getElementById('report-missed');
    const hint = document.getElementById('report-hint');
    button.setAttribute('aria-pressed', String(on));
    button.textContent = on ? 'Cancel report' : 'Report mining the map missed';
    hint.hidden = !on;
    hint.textContent = !on ? '' : map.getZoom() < REPORT_MIN_ZOOM ? 'Zoom in, then tap the place where you see mining.'
      : 'Tap the place on the imagery where you see mining.';
    map.getContainer().classList.toggle('reporting', on);
  }

  const inBounds = (b, ll) => b && ll.lng >= b[0] && ll.lng <= b[2] && ll.lat >= b[1] && ll.lat <= b[3];

  function reportAt(latlng) {
    if (map.getZoom() < REPORT_MIN_ZOOM) {
      map.setView(latlng, REPORT_MIN_ZOOM);
      setReporting(true);
      return;
    }
    setReporting(false);
    const target = scan || scans.find((s) => inBounds(s.scanned_bounds || s.bounds, latlng));
    const note = el('textarea', { name: 'report-note', maxLength: 2000, rows: 2, 'aria-label': 'Note (optional)',
      placeholder: 'What you see there (optional)' });
    const msg = el('p', { className: 'msg', role: 'status' });
    const send = el('button', { type: 'button', className: 'send-report' }, 'Send report');
    const form = el('section', { className: 'report-form', 'aria-labelledby': 'report-title' },
      el('h4', { id: 'report-title' }, 'Mining the map missed?'),
      el('p', {}, `The marked place: ${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}`), note,
      el('div', { className: 'row' }, send), msg);
    const ring = L.circleMarker(latlng, { radius: 9, color: '#00e5ff', weight: 3, fill: false, interactive: false })
      .addTo(map);
    L.popup({ maxWidth: 300 }).setLatLng(latlng).setContent(form).openOn(map).on('remove', () => ring.remove());
    send.addEventListener('click', async () => {
      if (!target) { msg.textContent = 'Not sent: choose the layer this place is on first.'; return; }
      send.disabled = true;
      msg.classList.remove('ok');
      msg.textContent = 'Sending…';
      try {
        const r = await source.sendReport(target.id, { lon: latlng.lng, lat: latlng.lat, note: note.value,
          imagery_date: target.imagery_date || null });
        msg.classList.add('ok');
        msg.textContent = (r.replaced && r.replaced.length ? 'Thanks — your report there is updated.'
          : 'Thanks — sent.') + ' A reviewer will check it.';
      } catch (e) {
        send.disabled = false;
        msg.textContent = 'Not sent: ' + e.message;
      }
    });
    note.focus();
  }
  map.on('click', (e) => { if (reporting) reportAt(e.latlng); });

  function said(fb) {
    return fb.verdict === 'confirmed' ? 'mining' : `not mining (${fb.category || 'other'})`;
  }

  function popupContent(f) {
    const p = f.properties;
    const share = el('input', { className: 'share', readOnly: true, value: shareUrl(f), 'aria-label': 'Share link' });
    // Model ids and peak values are for reviewers (signed in in this tab); readers get plain words.
    const reviewer = reviewerToken ? [
      el('dt', {}, 'Site'), el('dd', {}, `#${f.id}`),
      el('dt', {}, 'Model'), el('dd', {}, `version ${p.model_version}, peak ${pct(p.max_prob)}`),
    ] : [];
    const thumb = source.thumbnail(f);
    return el('div', { className: 'popup', dataset: { id: String(f.id) } },
      thumb && el('img', { className: 'thumb', src: thumb, alt: `Imagery of the site ${placeText(p)}`,
        width: 200, height: 200, onerror: (ev) => { ev.target.hidden = true; } }),
      el('h3', {}, headline(p)),
      el('p', { className: 'place' }, placeText(p)),
      flagForm(f),
      el('dl', {},
        el('dt', {}, 'Model confidence'), el('dd', {}, pct(p.mean_prob)),
        el('dt', {}, 'Area'), el('dd', {}, ha(p.area_ha) + ' ha'),
        el('dt', {}, 'Imagery date'), el('dd', {}, p.capture_date || 'unknown'),
        el('dt', {}, 'Coordinates'), el('dd', {}, `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}`),
        ...reviewer),
      overTimeSection(f),
      el('label', { className: 'share-row' }, 'Share ', share),
      source.live && el('div', { className: 'row' }, el('button', { type: 'button', className: 'find-similar',
        onclick: () => findSimilar(f) }, 'Find similar places')));
  }

  // Popups fit the map: at most 320 px wide, narrower and with less padding on a phone; taller content scrolls.
  function popupOptions() {
    const size = map.getSize();
    const pad = narrow.matches ? 8 : 20;
    const maxWidth = Math.max(160, Math.min(320, size.x - 2 * pad - 40));
    // Below the date control, when there is one: it sits over the map's top edge.
    const box = timeline && dateControl.getContainer();
    const top = box && box.parentNode ? box.offsetHeight + 10 : 0;
    const options = { maxWidth, minWidth: Math.min(240, maxWidth), autoPanPaddingTopLeft: [pad, pad + top],
      autoPanPaddingBottomRight: [pad, pad] };
    if (narrow.matches) options.maxHeight = Math.max(200, size.y - 2 * pad - 40 - top);
    return options;
  }

  // The marker of the site whose popup is open (keyboard focus goes back there), if it is drawn.
  function markerElement(f) {
    return f && f.marker && f.marker.getElement ? f.marker.getElement() : null;
  }

  function returnFocus(f) {
    const icon = markerElement(f);
    if (icon && icon.isConnected) icon.focus({ preventScroll: true });
  }

  function select(id, { fly }) {
    const f = byId.get(Number(id));
    if (!f) return false;
    const p = f.properties;
    history.replaceState(null, '', `${location.pathname}?scan=${p.scan_id}#d=${f.id}`);
    selectedRing.clearLayers();
    const open = () => {
      selectedRing.clearLayers();
      selectedRing.addLayer(L.geoJSON(f, { style: () => polygonStyle(p, true), interactive: false }));
      if (narrow.matches) setSheet(false);   // the sheet would cover the popup
      L.popup(popupOptions()).setLatLng([p.lat, p.lon])
        .setContent(popupContent(f)).openOn(map);
      AW.selected = f.id;
    };
    if (fly) {
      // Not animated, so the view is final before the popup opens.
      map.fitBounds(L.geoJSON(f).getBounds(), { maxZoom: Math.max(POLYGON_ZOOM + 2, map.getZoom()), animate: false });
    }
    open();
    return true;
  }

  async function openFromHash() {
    const m = /(?:^#|&)d=(\d+)/.exec(location.hash);
    if (!m) return;
    const id = Number(m[1]);
    if (!byId.has(id)) {
      try {
        const f = await source.detection(id);
        await selectScan(f.properties.scan_id, { fit: false });
      } catch (e) {
        document.getElementById('search-msg').textContent = e.message;
        return;
      }
    }
    select(id, { fly: true });
  }

  // ---------- similar places ----------
  async function checkReviewer() {
    const token = source.live && getToken();
    if (token) {
      try { await api('/api/me', { token }); reviewerToken = token; } catch (e) { reviewerToken = null; }
    }
  }

  function clearSimilar() {
    similar = AW.similar = null;
    similarLayer.clearLayers();
    document.getElementById('similar-list').replaceChildren();
    document.getElementById('similar-send-msg').textContent = '';
    document.getElementById('similar').hidden = true;
  }

  // A similar place in words: where it is, how alike, and whether the model already found a site there.
  function similarWhere(p) {
    return p.place || `${p.lat.toFixed(4)}, ${p.lon.toFixed(4)}`;
  }

  function similarPopup(p) {
    const site = p.detection_id && byId.get(p.detection_id);
    return el('div', { className: 'popup similar-popup', dataset: { rank: String(p.rank) } },
      el('h3', {}, `Similar place ${p.rank}`),
      el('p', { className: 'place' }, similarWhere(p)),
      el('img', { className: 'thumb', src: p.chip_url, alt: `Imagery of similar place ${p.rank}`, width: 160,
        height: 160, onerror: (ev) => { ev.target.hidden = true; } }),
      el('p', {}, `${pct(Math.max(0, p.score))} alike. ` +
        (site ? 'The model already marks a site here.' : 'The model marks no site here.')),
      site ? el('button', { type: 'button', onclick: () => select(site.id, { fly: true }) }, 'Open this site') : null);
  }

  // The place in view with its popup fully on screen (on a phone the sheet closes first).
  function goToPlace(p) {
    for (const li of document.querySelectorAll('#similar-list li')) li.classList.toggle('current', li.dataset.rank === String(p.rank));
    if (narrow.matches) setSheet(false);
    map.invalidateSize();
    const zoom = Math.max(map.getZoom(), scan ? scan.zoom : POLYGON_ZOOM + 2);
    map.setView([p.lat, p.lon], zoom, { animate: false });
    L.popup(popupOptions()).setLatLng([p.lat, p.lon]).setContent(similarPopup(p)).openOn(map);
    AW.similarOpen = p.rank;
  }

  function placeItem(p) {
    const what = `${similarWhere(p)} · ${pct(Math.max(0, p.score))} alike` +
      (p.detection_id ? ' · a site is marked here' : '');
    return el('li', { dataset: { rank: String(p.rank), tile: p.tile } },
      el('button', { type: 'button', className: 'place', title: `Go to similar place ${p.rank}`,
        onclick: () => goToPlace(p) },
        el('b', { className: 'rank' }, String(p.rank)),
        el('img', { src: p.chip_url, alt: `Imagery of similar place ${p.rank}`, width: 64, height: 64,
          onerror: (ev) => { ev.target.classList.add('missing'); } }),
        el('span', {}, what)));
  }

  function showSimilar() {
    document.getElementById('similar-list').replaceChildren(...similar.places.map(placeItem));
    similarLayer.clearLayers();
    for (const p of similar.places) {
      const icon = L.divIcon({ className: 'similar-pin', html: el('span', {}, String(p.rank)), iconSize: [24, 24] });
      similarLayer.addLayer(L.marker([p.lat, p.lon], { icon, title: `Similar place ${p.rank}`, zIndexOffset: 1000 })
        .on('click', () => goToPlace(p)));
    }
    document.getElementById('similar-send').hidden = !reviewerToken || !similar.places.length;
    document.getElementById('similar-signin').hidden = Boolean(reviewerToken) || !similar.places.length;
  }

  async function findSimilar(f) {
    clearSimilar();
    const msg = document.getElementById('similar-msg');
    document.getElementById('similar').hidden = false;
    document.getElementById('similar-of').textContent = placeText(f.properties);
    msg.textContent = 'Searching…';
    try {
      const data = await api(`/api/similar?detection=${f.id}&top=${SIMILAR_TOP}`);
      similar = AW.similar = { scanId: data.scan_id, of: f.id, places: data.places };
      msg.textContent = data.places.length ? '' : 'No similar place in this scan.';
      showSimilar();
    } catch (e) {
      msg.textContent = 'Cannot search: ' + e.message;
    }
    if (narrow.matches) setSheet(true);
    document.getElementById('similar').scrollIntoView({ block: 'nearest' });
  }

  async function sendToLabelling() {
    const out = document.getElementById('similar-send-msg');
    if (!similar || !reviewerToken) return;
    out.classList.remove('ok');
    out.textContent = 'Sending…';
    try {
      const r = await api('/api/label/queue', { method: 'POST', token: reviewerToken,
        body: { scan_id: similar.scanId, tiles: similar.places.map((p) => p.tile), source: 'similar' } });
      out.classList.add('ok');
      out.replaceChildren(`Sent to labelling: ${r.queued} new, ${r.already_queued} already queued. `,
        el('a', { href: `/label?scan=${r.scan_id}&mode=like` }, 'Label them'));
    } catch (e) {
      out.textContent = 'Not sent: ' + e.message;
    }
  }

  // ---------- search ----------
  function search(text) {
    const out = document.getElementById('search-msg');
    const m = /^\s*(-?\d+(?:\.\d+)?)\s*[,;\s]\s*(-?\d+(?:\.\d+)?)\s*$/.exec(text);
    if (!m) {
      const id = /^\s*#?(\d+)\s*$/.exec(text);
      if (id && select(Number(id[1]), { fly: true })) { out.textContent = ''; return; }
      out.textContent = `"${text}" is not "lat, lon" (e.g. 51.32, 26.90) or a site number`;
      return;
    }
    const lat = Number(m[1]), lon = Number(m[2]);
    if (Math.abs(lat) > 90 || Math.abs(lon) > 180) { out.textContent = 'Latitude must be within ±90 and longitude within ±180'; return; }
    out.textContent = '';
    map.flyTo([lat, lon], Math.max(map.getZoom(), POLYGON_ZOOM + 2), { duration: 0.8 });
  }

  // ---------- wiring ----------
  document.getElementById('scan-select').addEventListener('change', (ev) => selectScan(ev.target.value));
  document.getElementById('basemap').addEventListener('change', setImagery);
  document.getElementById('search-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    search(document.getElementById('search').value);
  });
  const probOut = document.getElementById('f-prob-out');
  document.getElementById('f-prob').addEventListener('input', (ev) => { probOut.textContent = pct(Number(ev.target.value)); });
  document.getElementById('f-change').addEventListener('change', onChangeFilter);
  for (const id of ['f-prob', 'f-from', 'f-to', 'f-region', 'f-inview']) {
    document.getElementById(id).addEventListener('change', applyFilters);
  }
  map.on('moveend', () => {
    refreshPolygons();
    if (document.getElementById('f-inview').checked) applyFilters();
  });
  window.addEventListener('hashchange', openFromHash);
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || !map._popup || !map._popup.isOpen() || !document.getElementById('compare').hidden) return;
    map.closePopup();
    returnFocus(byId.get(AW.selected));
  });
  document.getElementById('panel-toggle').addEventListener('click', () => {
    setSheet(!document.body.classList.contains('sheet-open'));
  });
  document.getElementById('similar-clear').addEventListener('click', clearSimilar);
  document.getElementById('similar-send').addEventListener('click', sendToLabelling);

  (async function start() {
    try {
      if (BASEMAP) {
        document.getElementById('basemap').append(el('option', { value: 'map' }, `Map only (${BASEMAP.name})`));
      }
      await source.ready;
      // Reviewers' and API-only links are the live app's; a static edition has none of them.
      document.getElementById('app-links').hidden = !source.live;
      if (source.flagging) reportControl.addTo(map);   // hidden like flags in an edition without a flag endpoint
      await Promise.all([loadScans(), checkReviewer()]);
      labelScans();   // with the reviewer's details once the token is checked
      const wanted = new URL(location.href).searchParams.get('scan');
      const first = wanted || (scans.length ? scans[0].id : 'all');
      await selectScan(first, { fit: !/d=\d+/.test(location.hash) });
      refreshPlaceLabels();
      await openFromHash();
    } catch (e) {
      document.getElementById('search-msg').textContent = 'Cannot load the map data: ' + e.message;
      markReady();
    }
  })();
})();
