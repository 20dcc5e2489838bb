// Shared helpers of the amberwatch pages. User-supplied text is only ever set with textContent.
'use strict';

window.aw = (function () {
  const TOKEN_KEY = 'amberwatch.reviewerToken';

  /** Create an element; attrs are properties (className, href, ...), children are nodes or text. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k.includes('-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** fetch JSON; throws Error(message) with the API's {"error"} text on failure. `credentials: 'include'` sends
   * cookies to another origin (a static edition's flag endpoint). */
  async function api(path, { method = 'GET', body, token, credentials } = {}) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers['Authorization'] = 'Bearer ' + token;
    const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
    if (credentials) init.credentials = credentials;
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const err = new Error((data && data.error) || ('HTTP ' + res.status));
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function getToken() { return sessionStorage.getItem(TOKEN_KEY); }
  function setToken(t) { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); }

  function pct(p) { return Math.round(p * 100) + '%'; }
  function ha(x) { return x >= 100 ? x.toFixed(0) : x.toFixed(2); }
  function confClass(p) { return p >= 0.8 ? 'conf-h' : p >= 0.6 ? 'conf-m' : 'conf-l'; }
  function confColour(p) { return p >= 0.8 ? '#d7191c' : p >= 0.6 ? '#fd8d3c' : '#fecc5c'; }
  /** The model's confidence in plain words for readers (the same bands as confClass and the legend). */
  function likelihood(p) { return p >= 0.8 ? 'likely mining' : p >= 0.6 ? 'possibly mining' : 'unsure, maybe mining'; }
  /** What a site is, in words: a reviewer's decision wins over the model's confidence. */
  function siteWords(props) {
    if (props.review === 'not_mining') return 'not mining (reviewed)';
    if (props.review === 'confirmed') return 'mining, confirmed by a reviewer';
    return likelihood(props.mean_prob);
  }
  /** The CSS class of a site's marker and swatch: grey once reviewed as not mining, else by confidence. */
  function siteClass(props) {
    if (props.review === 'not_mining') return 'reviewed-no';
    return confClass(props.mean_prob) + (props.review === 'confirmed' ? ' reviewed-yes' : '');
  }

  /** Wire a token form (input#token, form#token-form, button#logout) that keeps the token in sessionStorage. */
  function tokenGate(onReady) {
    const form = document.getElementById('token-form');
    const msg = document.getElementById('token-msg');
    const logout = document.getElementById('logout');
    async function tryToken(t) {
      if (!t) { form.hidden = false; logout.hidden = true; return; }
      try {
        const me = await api('/api/me', { token: t });
        setToken(t);
        form.hidden = true;
        logout.hidden = false;
        document.getElementById('who').textContent = me.name;
        document.getElementById('signed-in').hidden = false;
        onReady(t);
      } catch (e) {
        setToken(null);
        form.hidden = false;
        logout.hidden = true;
        msg.textContent = t ? e.message : '';
      }
    }
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      tryToken(document.getElementById('token').value.trim());
    });
    logout.addEventListener('click', () => { setToken(null); location.reload(); });
    tryToken(getToken());
  }

  return { el, api, getToken, setToken, pct, ha, confClass, confColour, likelihood, siteWords, siteClass, tokenGate };
})();
