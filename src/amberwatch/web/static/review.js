// Reviewer queue: one card per flagged site (the detection outlined on its chip, what the readers said), and one
// decision for all of a site's flags. The count of what awaits review stays live: after each decision and polled.
'use strict';

(function () {
  const { el, api, pct, ha } = window.aw;
  const POLL_MS = 20000;
  const state = { token: null, timer: null };
  window.amberwatchReview = state;   // for the browser tests

  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const when = (t) => t.slice(0, 16).replace('T', ' ');

  function showCount(pending) {
    document.getElementById('queue-msg').textContent = pending.flags
      ? `${plural(pending.sites, 'site')} to review (${plural(pending.flags, 'flag')})` : 'Nothing to review.';
    const open = document.querySelectorAll('.card[data-status="pending"]').length;
    document.getElementById('queue-new').hidden = pending.sites <= open;   // sites flagged since the queue loaded
  }

  // What the readers said, as theirs: "2 readers say: mining" (a reader's claim is not yet a finding).
  function heading(site) {
    const n = site.counts.not_mining, y = site.counts.confirmed;
    const say = (k) => (k === 1 ? '1 reader says' : `${k} readers say`);
    if (n && y) return `Readers disagree: ${say(n)} not mining, ${y} ${y === 1 ? 'says' : 'say'} mining`;
    if (!n) return `${say(y)}: mining`;
    const cats = Object.entries(site.categories).map(([c, k]) => (k > 1 ? `${c} (${k})` : c));
    return `${say(n)}: not mining (${cats.join(', ') || 'other'})`;
  }

  function facts(site) {
    const first = when(site.first_flagged_at), last = when(site.last_flagged_at);
    const flagged = first === last ? ` · flagged ${first}` : ` · flagged ${first} to ${last}`;
    return el('p', { className: 'facts' }, 'Detection ',
      el('a', { href: `/?scan=${site.scan_id}#d=${site.detection_id}` }, `#${site.detection_id}`),
      site.area_ha != null ? ` · ${ha(site.area_ha)} ha · ${pct(site.mean_prob)}` : ' · detection no longer exists',
      site.place ? ` · ${site.place}` : '', flagged, lookedAt(site));
  }

  // The imagery dates readers flagged the site on (the map layer they looked at), when the layers are dated.
  function lookedAt(site) {
    const dates = [...new Set(site.flags.map((f) => f.imagery_date).filter(Boolean))].sort();
    return dates.length ? el('span', { className: 'looked-at' }, ` · flagged on the imagery of ${dates.join(', ')}`) : null;
  }

  function notes(site) {
    const said = (f) => (f.verdict === 'not_mining' ? `Not mining${f.category ? ` (${f.category})` : ''}: ` : 'Mining: ');
    const items = site.flags.filter((f) => f.comment).map((f) =>
      el('li', {}, site.flags.length > 1 ? el('span', { className: 'said' }, said(f)) : null,
        el('span', { className: 'comment' }, f.comment)));
    return items.length ? el('ul', { className: 'notes' }, ...items) : null;
  }

  // Buttons say what they do; the two verdicts have their own colours (mining red, not mining green).
  function buttons(site, decide) {
    const b = (cls, label, what, verdict) =>
      el('button', { type: 'button', className: cls, onclick: () => decide(what, verdict) }, label);
    const notMining = b('accept verdict-not', 'Agree: not mining', 'accept', 'not_mining');
    const mining = b('accept verdict-mining', 'Agree: mining', 'accept', 'confirmed');
    if (site.counts.not_mining && site.counts.confirmed) return [notMining, mining];
    const discard = b('reject', 'Discard these flags', 'reject');
    return [site.counts.confirmed ? mining : notMining, discard];
  }

  function outcome(out) {
    if (out.status === 'rejected') return `Discarded ${plural(out.rejected.length, 'flag')}: the site stays unreviewed`;
    return `Decided: ${out.verdict === 'not_mining' ? 'not mining' : 'mining'}` +
      (out.example_id ? ', added to the training examples' : '') +
      (out.rejected.length ? ` · ${plural(out.rejected.length, 'other flag')} discarded` : '');
  }

  // Undo a decision made on this page: its flags go back to the queue, its example out of training.
  function undoButton(detectionId, flagIds, after) {
    const btn = el('button', { type: 'button', className: 'undo' }, 'Undo');
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        const out = await api(`/api/feedback/sites/${detectionId}/undo`,
          { method: 'POST', token: state.token, body: { flag_ids: flagIds } });
        after(out);
      } catch (e) {
        btn.disabled = false;
        btn.textContent = 'Undo failed: ' + e.message;
      }
    });
    return btn;
  }

  function card(site) {
    const msg = el('p', { className: 'msg', role: 'alert' });
    const done = el('p', { className: 'outcome', role: 'status' });
    const actions = el('div', { className: 'actions' });
    const node = el('article', { className: 'card site', dataset: { id: String(site.detection_id), status: 'pending' } },
      el('div', { className: 'chip' }, el('img', { src: site.chip_url, loading: 'lazy', width: 256, height: 256,
        alt: `Detection ${site.detection_id} and its surroundings, its outline drawn in cyan` })),
      el('h2', {}, heading(site)), facts(site), notes(site), actions, done, msg);
    async function decide(what, verdict) {
      const all = actions.querySelectorAll('button');
      all.forEach((btn) => { btn.disabled = true; });
      msg.textContent = '';
      try {
        const out = await api(`/api/feedback/sites/${site.detection_id}/${what}`,
          { method: 'POST', token: state.token, body: { verdict: verdict || null, flag_ids: site.flag_ids } });
        node.classList.add('decided');
        node.dataset.status = out.status;
        done.replaceChildren(outcome(out), ' ', undoButton(site.detection_id, [...out.accepted, ...out.rejected],
          (undone) => { showCount(undone.remaining); reloadSite(node, site.detection_id, 'Undone.'); }));
        showCount(out.remaining);
      } catch (e) {
        if (e.status === 409) return reloadSite(node, site.detection_id, e.message);
        all.forEach((btn) => { btn.disabled = false; });
        msg.textContent = e.message;
      }
    }
    actions.append(...buttons(site, decide));
    return node;
  }

  // A site whose flags changed while the card was shown (a reader flagged again, another reviewer decided): the
  // card is redrawn from the server, so the reviewer decides on what the readers say now.
  async function reloadSite(node, detectionId, why) {
    try {
      const data = await api('/api/feedback/sites?status=pending', { token: state.token });
      const site = data.sites.find((s) => s.detection_id === detectionId);
      const fresh = site ? card(site) : el('article', { className: 'card site decided', dataset: { id: String(detectionId), status: 'gone' } },
        el('h2', {}, `Detection #${detectionId}`), el('p', { className: 'outcome' }, 'Already decided by another reviewer.'));
      node.replaceWith(fresh);
      if (site) fresh.querySelector('.msg').textContent = `${why} The card now shows the flags as they are.`;
      showCount(data.pending);
    } catch (e) {
      node.querySelector('.msg').textContent = e.message;
    }
  }

  async function load() {
    const err = document.getElementById('queue-error');
    try {
      const data = await api('/api/feedback/sites?status=pending', { token: state.token });
      err.textContent = '';
      document.getElementById('queue').replaceChildren(...data.sites.map(card));
      document.getElementById('queue-bar').hidden = false;
      showCount(data.pending);
    } catch (e) {
      err.textContent = e.message;
    }
  }

  async function poll() {
    if (document.hidden || !state.token) return;
    try {
      showCount(await api('/api/feedback/summary', { token: state.token }));
      document.getElementById('queue-error').textContent = '';
    } catch (e) {
      document.getElementById('queue-error').textContent = e.message;
    }
  }
  state.poll = poll;

  // ---------- unreviewed sites: a reviewer's own decision on sites nobody flagged ----------
  const CATEGORIES = (document.body.dataset.categories || 'other').split(' ').filter(Boolean);

  function unreviewedCard(site) {
    const done = el('p', { className: 'outcome', role: 'status' });
    const msg = el('p', { className: 'msg', role: 'alert' });
    const category = el('select', { 'aria-label': 'If not mining, what is it?' },
      ...CATEGORIES.map((c) => el('option', { value: c, selected: c === 'other' }, c)));
    const actions = el('div', { className: 'actions' });
    const node = el('article', { className: 'card site unreviewed', dataset: { id: String(site.detection_id), status: 'open' } },
      el('div', { className: 'chip' }, el('img', { src: site.chip_url, loading: 'lazy', width: 256, height: 256,
        alt: `Detection ${site.detection_id} and its surroundings, its outline drawn in cyan` })),
      el('h2', {}, 'Not reviewed, not flagged by readers'),
      el('p', { className: 'facts' }, 'Detection ',
        el('a', { href: `/?scan=${site.scan_id}#d=${site.detection_id}` }, `#${site.detection_id}`),
        ` · ${ha(site.area_ha)} ha · model ${pct(site.mean_prob)}`, site.place ? ` · ${site.place}` : ''),
      actions, done, msg);
    async function decide(verdict) {
      actions.querySelectorAll('button, select').forEach((b) => { b.disabled = true; });
      msg.textContent = '';
      try {
        const out = await api(`/api/detections/${site.detection_id}/review`, { method: 'POST', token: state.token,
          body: { verdict, category: verdict === 'not_mining' ? category.value : null } });
        node.classList.add('decided');
        node.dataset.status = 'accepted';
        done.replaceChildren(`Decided: ${verdict === 'not_mining' ? `not mining (${out.category})` : 'mining'},` +
          ' your own review, added to the training examples', ' ',
          undoButton(site.detection_id, [out.id], () => node.replaceWith(unreviewedCard(site))));
      } catch (e) {
        actions.querySelectorAll('button, select').forEach((b) => { b.disabled = false; });
        msg.textContent = e.message;
      }
    }
    actions.append(
      el('button', { type: 'button', className: 'accept verdict-mining', onclick: () => decide('confirmed') }, 'Mining'),
      el('button', { type: 'button', className: 'accept verdict-not', onclick: () => decide('not_mining') }, 'Not mining'),
      el('label', { className: 'instead' }, 'what it is: ', category));
    return node;
  }

  async function loadUnreviewed() {
    const out = document.getElementById('unreviewed-msg');
    const sel = document.getElementById('unreviewed-scan');
    try {
      if (!sel.options.length) {
        const scans = (await api('/api/scans')).scans;
        sel.replaceChildren(...scans.map((s) => el('option', { value: String(s.id) }, `#${s.id} · ${s.name}`)));
      }
      const query = sel.value ? '?scan=' + encodeURIComponent(sel.value) : '';
      const data = await api('/api/review/unreviewed' + query, { token: state.token });
      if (data.scan_id != null) sel.value = String(data.scan_id);
      out.textContent = data.count ? `The ${plural(data.count, 'largest unreviewed site')}, largest first`
        : 'Every site of this layer is reviewed or flagged.';
      document.getElementById('unreviewed').replaceChildren(...data.sites.map(unreviewedCard));
    } catch (e) {
      out.textContent = e.message;
    }
  }

  // ---------- missed-site reports: "mining here that the map missed" ----------
  function reportCard(report) {
    const done = el('p', { className: 'outcome', role: 'status' });
    const msg = el('p', { className: 'msg', role: 'alert' });
    const actions = el('div', { className: 'actions' });
    const where = `${report.lat.toFixed(5)}, ${report.lon.toFixed(5)}`;
    const img = el('img', { width: 256, height: 256,
      alt: `The imagery around the reported point ${where}, the point ringed in cyan` });
    loadChip(img, report.chip_url);
    const node = el('article', { className: 'card report', dataset: { id: String(report.id), status: 'pending' } },
      el('div', { className: 'chip' }, img),
      el('h2', {}, 'Reported missed site'),
      el('p', { className: 'facts' }, 'Layer ', el('a', { href: `/?scan=${report.scan_id}` }, `#${report.scan_id}`),
        ` · ${where}`, report.place ? ` · ${report.place}` : '', ` · reported ${when(report.created_at)}`,
        report.imagery_date ? ` · on the imagery of ${report.imagery_date}` : ''),
      report.note ? el('ul', { className: 'notes' }, el('li', {}, el('span', { className: 'comment' }, report.note)))
        : null,
      actions, done, msg);
    async function decide(what) {
      actions.querySelectorAll('button').forEach((b) => { b.disabled = true; });
      msg.textContent = '';
      try {
        const out = await api(`/api/reports/${report.id}/${what}`, { method: 'POST', token: state.token });
        node.classList.add('decided');
        node.dataset.status = out.status;
        const text = out.status === 'accepted' ? 'Accepted: added to the training examples as mining' +
          (out.queued.length ? `, ${plural(out.queued.length, 'tile')} around it sent to labelling` : '')
          : 'Rejected: the report changes nothing';
        done.replaceChildren(text, ' ', reportUndo(report, node));
        showReportCount(out.remaining);
      } catch (e) {
        actions.querySelectorAll('button').forEach((b) => { b.disabled = false; });
        msg.textContent = e.message;
      }
    }
    actions.append(
      el('button', { type: 'button', className: 'accept verdict-mining', onclick: () => decide('accept') },
        'Accept: mining'),
      el('button', { type: 'button', className: 'reject', onclick: () => decide('reject') }, 'Reject'));
    return node;
  }

  // A report's view is for reviewers only (where a reader reported is not public): fetched with the token.
  async function loadChip(img, url) {
    try {
      const res = await fetch(url, { headers: { Authorization: 'Bearer ' + state.token } });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      img.src = URL.createObjectURL(await res.blob());
    } catch (e) {
      img.alt += ` (not shown: ${e.message})`;
    }
  }

  function reportUndo(report, node) {
    const btn = el('button', { type: 'button', className: 'undo' }, 'Undo');
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        const out = await api(`/api/reports/${report.id}/undo`, { method: 'POST', token: state.token });
        node.replaceWith(reportCard(out));
        showReportCount(out.remaining);
      } catch (e) {
        btn.disabled = false;
        btn.textContent = 'Undo failed: ' + e.message;
      }
    });
    return btn;
  }

  function showReportCount(pending) {
    document.getElementById('reports-msg').textContent = pending.reports
      ? `${plural(pending.reports, 'reported place')} to review` : 'No reported places to review.';
  }

  async function loadReports() {
    try {
      const data = await api('/api/reports?status=pending', { token: state.token });
      document.getElementById('reports').replaceChildren(...data.reports.map(reportCard));
      showReportCount(data.pending);
    } catch (e) {
      document.getElementById('reports-msg').textContent = e.message;
    }
  }

  const TABS = ['flags', 'unreviewed', 'reports'];
  function showTab(name) {
    for (const [tab, panel] of TABS.map((t) => [`tab-${t}`, `panel-${t}`])) {
      const on = tab === 'tab-' + name;
      const t = document.getElementById(tab);
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      document.getElementById(panel).hidden = !on;
    }
    const url = new URL(location.href);
    if (name !== 'flags') url.searchParams.set('tab', name); else url.searchParams.delete('tab');
    history.replaceState(null, '', url);
    if (name === 'unreviewed') loadUnreviewed();
    if (name === 'reports') loadReports();
  }
  for (const t of TABS) document.getElementById(`tab-${t}`).addEventListener('click', () => showTab(t));
  document.getElementById('unreviewed-scan').addEventListener('change', loadUnreviewed);

  document.getElementById('queue-new').addEventListener('click', load);
  window.aw.tokenGate((token) => {
    state.token = token;
    document.getElementById('token-msg').textContent = '';   // a stale token's error, now that one works
    document.getElementById('tabs').hidden = false;
    load();
    const tab = new URL(location.href).searchParams.get('tab');
    if (TABS.includes(tab) && tab !== 'flags') showTab(tab);
    clearInterval(state.timer);
    state.timer = setInterval(poll, POLL_MS);
  });
})();
