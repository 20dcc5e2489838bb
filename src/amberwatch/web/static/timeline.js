// Time on the map: a site's status in plain words, its area-by-date chart (inline SVG) and the before/after view.
// The sites come from /api/timeline (results.timeline): hectares per date, 0 where the place was scanned and
// nothing was found, null where that date has no imagery there.
'use strict';

window.awTime = (function () {
  const { el, ha } = window.aw;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The dates with imagery at the site's place, oldest first.
  const withImagery = (site, dates) => dates.filter((d) => site.area_ha[d] !== null && site.area_ha[d] !== undefined);

  // The last date before the site was first seen where its place had imagery and nothing was found.
  function newSince(site, dates) {
    const before = withImagery(site, dates).filter((d) => d < site.first_seen && site.area_ha[d] === 0);
    return before.length ? before[before.length - 1] : null;
  }

  /** The site's status in plain words ("New since 2021-06-26", "Growing: larger on ... than on ..."). */
  function statusWords(site, dates) {
    const seen = withImagery(site, dates);
    const [prev, last] = seen.slice(-2);
    switch (site.status) {
      case 'new': { const d = newSince(site, dates); return d ? `New since ${d}` : `New on ${site.first_seen}`; }
      case 'growing': return `Growing: larger on ${last} than on ${prev}`;
      case 'shrinking': return `Shrinking: smaller on ${last} than on ${prev}`;
      case 'stable': return `About the same size on ${last} as on ${prev}`;
      case 'gone': return `Gone: not found on ${last || site.last_seen}, last seen ${site.last_seen}`;
      default: return 'Only one date with imagery of this place';
    }
  }

  function areaText(v) {
    return v === null || v === undefined ? 'no imagery' : v === 0 ? '0 ha' : `${ha(v)} ha`;
  }

  /** An inline SVG bar chart of the site's hectares per date ("no imagery" for null, "0" for 0). */
  function chart(site, dates, shown) {
    const W = 260, H = 92, TOP = 16, BASE = 68, n = dates.length, col = W / n;
    const values = dates.map((d) => site.area_ha[d]);
    const max = Math.max(0, ...values.filter((v) => v !== null && v !== undefined)) || 1;
    const label = 'Area by date: ' + dates.map((d, i) => `${d}: ${areaText(values[i])}`).join('; ');
    const root = svg('svg', { class: 'area-chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
      'aria-label': label });
    root.append(svg('line', { x1: 0, x2: W, y1: BASE + 0.5, y2: BASE + 0.5, class: 'axis' }));
    dates.forEach((d, i) => {
      const v = values[i], cx = col * (i + 0.5), bw = Math.min(34, col - 12);
      const g = svg('g', { class: 'bar' + (d === shown ? ' shown' : ''), 'data-date': d });
      if (v === null || v === undefined) {
        g.append(svg('rect', { x: cx - bw / 2, y: BASE - 12, width: bw, height: 12, class: 'none' }));
        g.append(svg('text', { x: cx, y: BASE - 16, class: 'value' }, 'no imagery'));
      } else {
        const h = v > 0 ? Math.max(2, (v / max) * (BASE - TOP - 12)) : 0;
        g.append(svg('rect', { x: cx - bw / 2, y: BASE - h, width: bw, height: h }));
        g.append(svg('text', { x: cx, y: BASE - h - 4, class: 'value' }, v === 0 ? '0' : ha(v)));
      }
      g.append(svg('text', { x: cx, y: BASE + 14, class: 'date' }, n <= 4 ? d : d.slice(0, 4)));
      root.append(g);
    });
    return root;
  }

  /** The popup's "Over time" section: status, chart (hectares), and a button opening the before/after view. */
  function overTime(site, dates, shown, openCompare) {
    return el('section', { className: 'over-time', 'aria-label': 'Over time' },
      el('p', { className: 'status-words' }, statusWords(site, dates)),
      chart(site, dates, shown),
      el('p', { className: 'chart-unit' }, 'hectares found at each imagery date'),
      el('button', { type: 'button', className: 'open-compare', onclick: (ev) => openCompare(site, ev.target) },
        'Before / after'));
  }

  // The two dates the before/after view opens on: the first and last with imagery at the site's place.
  function defaultPair(site, dates) {
    const seen = withImagery(site, dates);
    const before = site.status === 'new' ? newSince(site, dates) || seen[0] : seen[0];
    return [before || dates[0], seen[seen.length - 1] || dates[dates.length - 1]];
  }

  // ---------- before / after ----------
  // Two Leaflet maps side by side (stacked on a phone), each with one date's imagery around the site and its
  // outline(s) at that date; where nothing was found then, the outline of the nearest date it was found, dashed.
  // ctx: { dates, scanOf(date), imageryLayer(scan), outlinesAt(site, date) -> Promise<features> }.
  const view = { maps: [], opener: null, site: null, ctx: null };

  function nearestFound(site, dates, date) {
    const found = dates.filter((d) => site.detection_ids[d] && site.detection_ids[d].length);
    return found.sort((a, b) => Math.abs(dates.indexOf(a) - dates.indexOf(date)) -
      Math.abs(dates.indexOf(b) - dates.indexOf(date)))[0];
  }

  async function drawPane(k, date) {
    const { site, ctx } = view;
    const pane = document.querySelectorAll('#compare .pane')[k];
    const m = view.maps[k];
    m.eachLayer((layer) => m.removeLayer(layer));
    pane.dataset.date = date;
    pane.querySelector('select').value = date;
    const scan = ctx.scanOf(date);
    if (scan) ctx.imageryLayer(scan).addTo(m);
    const area = site.area_ha[date];
    const own = (site.detection_ids[date] || []).length > 0;
    const from = own ? date : nearestFound(site, ctx.dates, date);
    const shapes = from ? await ctx.outlinesAt(site, from) : [];
    const style = own ? { color: '#00e5ff', weight: 3, fill: false } : { color: '#fff', weight: 2, dashArray: '6 5', fill: false };
    for (const f of shapes) L.geoJSON(f, { style: () => style, interactive: false }).addTo(m);
    const what = area === null || area === undefined ? 'no imagery of this place'
      : area === 0 ? 'nothing found (0 ha)' : `${ha(area)} ha found`;
    const more = !own && from ? ` · dashed: its outline on ${from}` : '';
    pane.querySelector('.pane-area').textContent = what + more;
    m.getContainer().setAttribute('aria-label', `Imagery of ${date} around the site: ${what}`);
    return shapes;
  }

  function syncMaps() {
    let moving = false;
    view.maps.forEach((m, k) => m.on('move', () => {
      if (moving) return;
      moving = true;
      const other = view.maps[1 - k];
      other.setView(m.getCenter(), m.getZoom(), { animate: false });
      moving = false;
    }));
  }

  function paneMap(node) {
    return L.map(node, { zoomSnap: 1, minZoom: 10, maxZoom: 20, zoomAnimation: false, fadeAnimation: false,
      attributionControl: true });
  }

  /** Open the before/after view of a site, from the element that asked (focus returns there on close). */
  async function openCompare(site, ctx, opener) {
    closeCompare();
    Object.assign(view, { site, ctx, opener });
    const box = document.getElementById('compare');
    box.hidden = false;
    document.getElementById('compare-title').textContent = `Before and after: ${ctx.title}`;
    document.getElementById('compare-status').textContent = statusWords(site, ctx.dates);
    const panes = [...box.querySelectorAll('.pane')];
    view.maps = panes.map((pane) => paneMap(pane.querySelector('.pane-map')));
    panes.forEach((pane, k) => {
      const sel = pane.querySelector('select');
      sel.replaceChildren(...ctx.dates.map((d) => el('option', { value: d }, `${d} · ${areaText(site.area_ha[d])}`)));
      sel.onchange = () => drawPane(k, sel.value);
    });
    const pair = defaultPair(site, ctx.dates);
    const shapes = (await Promise.all(pair.map((d, k) => drawPane(k, d)))).flat();
    const bounds = shapes.length ? L.geoJSON({ type: 'FeatureCollection', features: shapes }).getBounds()
      : L.latLng(site.lat, site.lon).toBounds(200);
    for (const m of view.maps) {
      m.invalidateSize();
      m.fitBounds(bounds.pad(1.5), { maxZoom: 19, animate: false });
    }
    syncMaps();
    document.getElementById('compare-close').focus();
    box.dataset.ready = '1';
  }

  function closeCompare() {
    const box = document.getElementById('compare');
    for (const m of view.maps) m.remove();
    view.maps = [];
    if (box.hidden) return;
    box.hidden = true;
    delete box.dataset.ready;
    if (view.opener && document.body.contains(view.opener)) view.opener.focus();
  }

  document.getElementById('compare-close').addEventListener('click', closeCompare);
  document.getElementById('compare').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeCompare(); });

  return { statusWords, chart, overTime, defaultPair, areaText, withImagery, openCompare, closeCompare };
})();
