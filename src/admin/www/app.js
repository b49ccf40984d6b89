// portgate admin page: the port-forward table, its edit dialog, a mapping's live view and the
// account. Plain ES2020, no framework. Everything that comes from the network is put on the page
// with textContent or attributes, never parsed as HTML. The API is /api/v1 (admin-contract.md).
// Loaded as a module: strict, deferred, and its names stay out of the global scope.
const API = '/api/v1';
const POLL_MS = 2000;
const HISTORY_MS = 5 * 60 * 1000;
const FETCH_TIMEOUT_MS = 20000;
const MAX_CONN_ROWS = 500;
const NAME_RE = /^[A-Za-z0-9._-]{1,63}$/;

const $ = (id) => document.getElementById(id);

const state = {
  gen: 0, // bumped at logout so that answers to an older session's requests are dropped
  user: null,
  csrf: null,
  revision: null, // revision of state.mappings (GET /mappings)
  mappings: new Map(), // name -> mapping object, in the server's order
  order: [],
  clockSkew: 0, // server clock minus ours, in ms (from the Date header)
  view: null, // 'list' | 'detail' | 'account'
  detailName: null,
  listDirty: false,
};

// ---------------------------------------------------------------- helpers

function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const kid of kids) {
    if (kid != null) el.append(kid);
  }
  return el;
}

const enc = encodeURIComponent;

function serverNowS() {
  return (Date.now() + state.clockSkew) / 1000;
}

function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function fmtBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '\u2013';
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1023.95 && i < units.length - 1);
  return `${n < 100 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

function fmtDuration(s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return '\u2013';
  s = Math.max(0, Math.floor(s));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function fmtAgo(unix) {
  if (typeof unix !== 'number' || !Number.isFinite(unix)) return 'never';
  const s = Math.max(0, Math.round(serverNowS() - unix));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function fmtIn(unix) {
  const s = Math.round(unix - serverNowS());
  return s > 0 ? fmtDuration(s) : 'now';
}

function fmtDate(unix) {
  if (typeof unix !== 'number' || !Number.isFinite(unix)) return '\u2013';
  const d = new Date(unix * 1000);
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

function fmtCount(n) {
  return typeof n === 'number' && Number.isFinite(n) ? String(n) : '\u2013';
}

// A bug in this page: say so in the page and in the console (where the tests look).
function bug(e) {
  console.error(e);
  banner(`Something went wrong in this page: ${e && e.message ? e.message : e}`);
}

// Event listener whose handler may be async: its failure never becomes an unhandled rejection.
function on(el, type, fn) {
  el.addEventListener(type, (ev) => {
    try {
      const p = fn(ev);
      if (p && typeof p.catch === 'function') p.catch(bug);
    } catch (e) {
      bug(e);
    }
  });
}

function setError(el, msg) {
  el.textContent = msg || '';
  el.hidden = !msg;
}

// ---------------------------------------------------------------- banner

let bannerKind = null;
let bannerTimer = 0;

// kind 'poll' is cleared by the next successful refresh; 'info' fades after a few seconds.
function banner(msg, kind = 'error') {
  const b = $('banner');
  $('banner-text').textContent = msg;
  b.classList.toggle('info', kind === 'info');
  b.hidden = false;
  bannerKind = kind;
  clearTimeout(bannerTimer);
  if (kind === 'info') bannerTimer = setTimeout(() => clearBanner('info'), 4000);
}

function clearBanner(kind) {
  if (kind && bannerKind !== kind) return;
  $('banner').hidden = true;
  bannerKind = null;
}

// ---------------------------------------------------------------- API

function parseEtag(headers) {
  const e = headers && headers.get('ETag');
  if (!e) return null;
  const m = /^(?:W\/)?"?(\d+)"?$/.exec(e.trim());
  return m ? Number(m[1]) : null;
}

function noteServerDate(res) {
  const d = Date.parse(res.headers.get('Date') || '');
  if (!Number.isFinite(d)) return;
  const skew = d - Date.now();
  // The Date header has a one-second resolution: only a real difference of clocks counts.
  state.clockSkew = Math.abs(skew) < 2000 ? 0 : skew;
}

// Resolves (never rejects) to {ok, status, data, headers, error}. status 0: no answer.
// A 401 ends the session in the page unless opts.allow401 (login, password change).
async function api(method, path, body, opts = {}) {
  const gen = state.gen;
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  if (opts.ifMatch != null) headers['If-Match'] = `"${opts.ifMatch}"`;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  const r = { ok: false, status: 0, data: null, headers: null, error: null, stale: false };
  try {
    const res = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal: ctl.signal,
    });
    const text = await res.text();
    r.status = res.status;
    r.ok = res.ok;
    r.headers = res.headers;
    if (text) {
      try {
        r.data = JSON.parse(text);
      } catch (e) {
        r.data = null;
      }
    }
    noteServerDate(res);
    if (!res.ok) {
      const msg = r.data && typeof r.data.error === 'string' ? r.data.error : '';
      r.error = msg || `The gateway answered ${res.status} ${res.statusText || ''}`.trim();
    }
  } catch (e) {
    r.error = ctl.signal.aborted
      ? 'The gateway did not answer in time.'
      : 'Cannot reach the gateway (network error).';
  } finally {
    clearTimeout(timer);
  }
  if (gen !== state.gen) {
    r.stale = true; // logged out meanwhile: callers drop it
    return r;
  }
  if (r.status === 401 && !opts.allow401) sessionLost();
  if (r.ok && method !== 'GET' && state.revision != null) {
    // Take the new revision only if ours was the one write in between: otherwise a later
    // If-Match would vouch for mappings this page has not seen yet.
    const rev = parseEtag(r.headers);
    if (rev === state.revision + 1) state.revision = rev;
  }
  return r;
}

// ---------------------------------------------------------------- views and routing

const VIEWS = ['loading-view', 'setup-panel', 'login-view', 'list-view', 'detail-view', 'account-view'];

function showView(id) {
  for (const v of VIEWS) $(v).hidden = v !== id;
}

function route() {
  if (!state.user) return;
  const hash = location.hash;
  let m = null;
  if (hash === '#/account') {
    showAccount();
  } else if ((m = /^#\/mapping\/(.+)$/.exec(hash))) {
    let name = m[1];
    try {
      name = decodeURIComponent(name);
    } catch (e) {
      /* keep it as written */
    }
    showDetail(name);
  } else {
    showList();
  }
  for (const [id, view] of [['nav-forwards', 'list'], ['nav-account', 'account']]) {
    if (state.view === view) $(id).setAttribute('aria-current', 'page');
    else $(id).removeAttribute('aria-current');
  }
}

// ---------------------------------------------------------------- session

async function boot() {
  showView('loading-view');
  setError($('loading-error'), '');
  $('loading-text').hidden = false;
  $('loading-retry').hidden = true;
  const r = await api('GET', '/session', undefined, { allow401: true });
  if (r.ok && r.data && typeof r.data.user === 'string') {
    loggedIn(r.data);
  } else if (r.status === 401 && r.data && r.data.setup === true) {
    showView('setup-panel');
    $('setup-retry').focus();
  } else if (r.status === 401) {
    showLogin('');
  } else {
    showView('loading-view');
    $('loading-text').hidden = true;
    setError($('loading-error'), `Cannot load the session: ${r.error}`);
    $('loading-retry').hidden = false;
  }
}

function showLogin(notice) {
  showView('login-view');
  $('main-nav').hidden = true;
  $('user-box').hidden = true;
  setError($('login-notice'), notice);
  setError($('login-error'), '');
  $('login-user').focus();
}

async function login(ev) {
  ev.preventDefault();
  const user = $('login-user').value.trim();
  const password = $('login-password').value;
  const withCode = !$('login-code-field').hidden;
  const code = $('login-code').value.trim();
  const err = $('login-error');
  if (!user || !password) {
    setError(err, 'Enter the user and the password.');
    (user ? $('login-password') : $('login-user')).focus();
    return;
  }
  if (withCode && !code) {
    setError(err, 'Enter the code your authenticator app shows.');
    $('login-code').focus();
    return;
  }
  setError(err, '');
  $('login-submit').disabled = true;
  const body = withCode ? { user, password, code } : { user, password };
  const r = await api('POST', '/session', body, { allow401: true });
  $('login-submit').disabled = false;
  if (r.ok && r.data && typeof r.data.user === 'string') {
    $('login-password').value = '';
    $('login-password').removeAttribute('aria-invalid');
    showLoginCode(false);
    loggedIn(r.data);
    return;
  }
  // The password is right and the user has a second factor: ask for the code.
  if (r.status === 401 && r.data && r.data['code-needed'] === true) {
    showLoginCode(true);
    $('login-password').removeAttribute('aria-invalid');
    $('login-code').focus();
    return;
  }
  let msg = r.error;
  if (r.status === 401 && !(r.data && r.data.error)) msg = 'Wrong user or password.';
  if (r.status === 429 && !(r.data && r.data.error)) msg = 'Too many failed logins; try again later.';
  setError(err, msg);
  // A code is good once: a new one is typed whatever was wrong.
  const at = withCode ? $('login-code') : $('login-password');
  if (withCode) $('login-code').value = '';
  at.setAttribute('aria-invalid', 'true');
  at.select();
  at.focus();
}

// The login form's code field: shown when the gateway asks for a code, hidden and emptied
// otherwise (another user name may need none).
function showLoginCode(show) {
  $('login-code-field').hidden = !show;
  if (!show) {
    $('login-code').value = '';
    $('login-code').removeAttribute('aria-invalid');
  }
}

function loggedIn(data) {
  state.user = data.user;
  state.csrf = typeof data.csrf === 'string' ? data.csrf : null;
  $('user-name').textContent = data.user;
  $('pw-user').value = data.user;
  $('main-nav').hidden = false;
  $('user-box').hidden = false;
  setError($('login-notice'), '');
  route();
  loadStatusLine();
}

// Forget everything the session showed and go back to the login form.
function logoutLocal(notice) {
  state.gen++;
  state.user = null;
  state.csrf = null;
  state.revision = null;
  state.mappings = new Map();
  state.order = [];
  state.view = null;
  state.detailName = null;
  clearTimeout(pollTimer);
  pollTimer = 0;
  for (const d of document.querySelectorAll('dialog')) {
    if (d.open) d.close();
  }
  for (const [cache, table] of [
    [rowCache, 'mappings-table'],
    [connCache, 'connections-table'],
    [sessCache, 'sessions-table'],
    [tokenCache, 'tokens-table'],
  ]) {
    cache.clear();
    $(table).tBodies[0].replaceChildren();
  }
  samples.clear();
  $('token-created').hidden = true;
  $('token-value').value = '';
  tfaReset();
  showLoginCode(false);
  $('status-line').textContent = '';
  $('list-count').textContent = '';
  $('list-more').hidden = true;
  $('filter').value = '';
  filterText = '';
  rowLimit = PAGE_ROWS;
  clearBanner();
  showLogin(notice);
}

function sessionLost() {
  if (state.user) logoutLocal('Your session has ended. Log in again.');
}

async function logout() {
  const r = await api('DELETE', '/session', undefined, { allow401: true });
  if (r.stale) return;
  if (r.ok || r.status === 401) logoutLocal('You are logged out.');
  else banner(`Could not log out: ${r.error}`);
}

async function loadStatusLine() {
  const r = await api('GET', '/status');
  if (r.stale || !r.ok || !r.data) return; // the footer is a nicety: no error for it
  const s = r.data;
  const parts = [];
  if (s.version) parts.push(`portgate ${s.version}`);
  if (s.mappings && typeof s.mappings.total === 'number') {
    parts.push(`${s.mappings.total} mappings (${num(s.mappings.config)} from the configuration)`);
  }
  if (typeof s.workers === 'number') parts.push(`${s.workers} workers`);
  $('status-line').textContent = parts.join(' \u00b7 ');
}

// ---------------------------------------------------------------- polling

let pollTimer = 0;
let polling = false;
let pollAgain = false;

function schedulePoll() {
  clearTimeout(pollTimer);
  pollTimer = 0;
  if (!state.user || document.hidden) return;
  pollTimer = setTimeout(pollNow, POLL_MS);
}

function pollNow() {
  clearTimeout(pollTimer);
  pollTimer = 0;
  if (!state.user) return;
  if (polling) {
    pollAgain = true;
    return;
  }
  polling = true;
  poll()
    .catch(bug)
    .finally(() => {
      polling = false;
      if (pollAgain) {
        pollAgain = false;
        pollNow();
      } else {
        schedulePoll();
      }
    });
}

async function poll() {
  const tasks = [pollMappings()];
  if (state.view === 'detail') tasks.push(pollDetailLists(state.detailName));
  await Promise.all(tasks);
}

async function pollMappings() {
  const r = await api('GET', '/mappings');
  if (r.stale || r.status === 401) return;
  if (!r.ok || !r.data) {
    const why = (r.error || 'the answer is not JSON').replace(/\.$/, '');
    banner(`Cannot refresh the port forwards: ${why}. Retrying\u2026`, 'poll');
    return;
  }
  clearBanner('poll');
  applyMappings(r);
}

function applyMappings(r) {
  const list = Array.isArray(r.data.mappings) ? r.data.mappings : [];
  const rev = typeof r.data.revision === 'number' ? r.data.revision : parseEtag(r.headers);
  const map = new Map();
  const now = Date.now();
  for (const m of list) {
    if (!m || typeof m.name !== 'string' || map.has(m.name)) continue;
    map.set(m.name, m);
    recordSample(m, now);
  }
  state.mappings = map;
  state.order = [...map.keys()];
  state.revision = rev;
  if (state.view === 'list') renderTable();
  else state.listDirty = true;
  if (state.view === 'detail') renderDetail();
}

// ---------------------------------------------------------------- keyed table rows

// Brings tbody's rows to items' order, reusing the row of each key (so focus, a pending
// toggle and unchanged cells survive a refresh). cache: key -> record with .tr.
function syncRows(tbody, cache, items, keyOf, create, update) {
  const keys = [];
  const seen = new Set();
  for (const it of items) {
    const k = keyOf(it);
    if (seen.has(k)) continue;
    seen.add(k);
    keys.push(k);
    let rec = cache.get(k);
    if (!rec) {
      rec = create(it, k);
      cache.set(k, rec);
    }
    update(rec, it);
  }
  for (const [k, rec] of cache) {
    if (!seen.has(k)) {
      rec.tr.remove();
      cache.delete(k);
    }
  }
  const rows = tbody.rows;
  let same = rows.length === keys.length;
  for (let i = 0; same && i < keys.length; i++) same = rows[i] === cache.get(keys[i]).tr;
  if (!same) {
    const active = document.activeElement;
    const frag = document.createDocumentFragment();
    for (const k of keys) frag.append(cache.get(k).tr);
    tbody.append(frag);
    if (active && active !== document.activeElement && tbody.contains(active)) active.focus();
  }
}

// Sets a cell's text only when it changed (writing the DOM is what costs with 10,000 rows).
function put(rec, key, el, text, title) {
  if (rec.v[key] !== text) {
    rec.v[key] = text;
    el.textContent = text;
  }
  if (title !== undefined && rec.v[key + ':t'] !== title) {
    rec.v[key + ':t'] = title;
    if (title) el.title = title;
    else el.removeAttribute('title');
  }
}

// ---------------------------------------------------------------- the mappings table

const rowCache = new Map(); // name -> row record, for the rows on the page only
const PAGE_ROWS = 200;
let rowLimit = PAGE_ROWS;
let rowProto = null;
let filterText = '';

function rowPrototype() {
  if (rowProto) return rowProto;
  const btn = (cls, text) => h('button', { type: 'button', class: cls, text });
  rowProto = h(
    'tr',
    null,
    h('th', { scope: 'row', class: 'c-name' }, h('a', { class: 'name-link' }), h('span', { class: 'sub c-expires' })),
    h('td', { class: 'c-proto', 'data-label': 'Protocol' }),
    h('td', { class: 'c-listen addr', 'data-label': 'External' }),
    h('td', { class: 'c-target addr', 'data-label': 'Internal' }),
    h('td', { class: 'c-allow', 'data-label': 'Allowed sources' }),
    h('td', { class: 'c-enabled' }, h('input', { type: 'checkbox', class: 'toggle-enabled switch-input' })),
    h('td', { class: 'c-status' }, h('span', { class: 'badge' })),
    h('td', { class: 'c-open num', 'data-label': 'Open' }),
    h('td', { class: 'c-bytes-in num', 'data-label': 'In' }),
    h('td', { class: 'c-bytes-out num', 'data-label': 'Out' }),
    h('td', { class: 'c-last', 'data-label': 'Last activity' }),
    h(
      'td',
      { class: 'c-actions' },
      btn('edit-mapping', 'Edit'),
      btn('delete-mapping danger', 'Delete'),
      h('span', { class: 'source', hidden: true })
    )
  );
  return rowProto;
}

function createRow(m, name) {
  const tr = rowPrototype().cloneNode(true);
  tr.dataset.name = name;
  const c = tr.children;
  const rec = {
    tr,
    name,
    v: {},
    pending: false,
    link: c[0].firstChild,
    expires: c[0].lastChild,
    proto: c[1],
    listen: c[2],
    target: c[3],
    allow: c[4],
    toggle: c[5].firstChild,
    status: c[6].firstChild,
    open: c[7],
    bin: c[8],
    bout: c[9],
    last: c[10],
    edit: c[11].children[0],
    del: c[11].children[1],
    source: c[11].children[2],
  };
  rec.link.href = `#/mapping/${enc(name)}`;
  rec.link.textContent = name;
  rec.toggle.setAttribute('aria-label', `Enable ${name}`);
  rec.edit.setAttribute('aria-label', `Edit ${name}`);
  rec.del.setAttribute('aria-label', `Delete ${name}`);
  return rec;
}

function statusOf(m) {
  const st = (m.status && m.status.state) || 'unknown';
  const reason = m.status && m.status.reason ? String(m.status.reason) : '';
  return { st, text: st === 'failed' && reason ? `failed: ${reason}` : st, reason };
}

function allowText(m) {
  const allow = Array.isArray(m.allow) ? m.allow : [];
  const deny = Array.isArray(m.deny) ? m.deny : [];
  let text = allow.length ? allow.slice(0, 2).join(', ') : 'any';
  if (allow.length > 2) text += ` +${allow.length - 2} more`;
  if (deny.length) text += ` (${deny.length} denied)`;
  let title = allow.length ? `Allow: ${allow.join(', ')}` : 'Allow: everyone';
  if (deny.length) title += `\nDeny: ${deny.join(', ')}`;
  return [text, title];
}

function updateRow(rec, m) {
  const st = m.stats || {};
  put(rec, 'proto', rec.proto, String(m.proto || ''));
  put(rec, 'listen', rec.listen, String(m.listen || ''));
  put(rec, 'target', rec.target, String(m.target || ''));
  const [at, atitle] = allowText(m);
  put(rec, 'allow', rec.allow, at, atitle);
  put(rec, 'expires', rec.expires, typeof m.expires === 'number' ? `expires in ${fmtIn(m.expires)}` : '');

  const ro = m['read-only'] === true;
  if (rec.v.ro !== ro) {
    rec.v.ro = ro;
    rec.edit.hidden = ro;
    rec.del.hidden = ro;
    rec.source.hidden = !ro;
    rec.toggle.disabled = ro;
    rec.tr.classList.toggle('read-only', ro);
  }
  if (ro) {
    const src = String(m.source || 'configuration');
    put(rec, 'source', rec.source, `read-only: ${src}`, `Set in ${src}; change it there.`);
    if (rec.toggle.title !== `Set in ${src}`) rec.toggle.title = `Set in ${src}`;
  }
  if (!rec.pending && rec.toggle.checked !== (m.enabled !== false)) rec.toggle.checked = m.enabled !== false;

  const s = statusOf(m);
  put(rec, 'status', rec.status, s.text, s.reason || undefined);
  if (rec.v.st !== s.st) {
    rec.v.st = s.st;
    rec.status.className = `badge st-${s.st}`;
  }
  const udp = m.proto === 'udp';
  put(rec, 'open', rec.open, fmtCount(udp ? st.sessions : st.open), udp ? 'UDP sessions' : 'open connections');
  put(rec, 'bin', rec.bin, fmtBytes(st['bytes-in']), `${num(st['bytes-in'])} bytes`);
  put(rec, 'bout', rec.bout, fmtBytes(st['bytes-out']), `${num(st['bytes-out'])} bytes`);
  put(rec, 'last', rec.last, fmtAgo(st['last-activity']));
}

function matchesFilter(m) {
  if (!filterText) return true;
  return `${m.name}\n${m.listen || ''}\n${m.target || ''}\n${m.proto || ''}`.toLowerCase().includes(filterText);
}

// Only the first rowLimit matching mappings are rows of the table: a browser lays out and
// paints ten thousand rows for seconds at every refresh, while the data of every mapping is
// at hand for the filter, and "Show more" adds rows.
function renderTable() {
  state.listDirty = false;
  const names = [];
  let matching = 0;
  for (const name of state.order) {
    if (!matchesFilter(state.mappings.get(name))) continue;
    matching++;
    if (names.length < rowLimit) names.push(name);
  }
  const tbody = $('mappings-table').tBodies[0];
  syncRows(tbody, rowCache, names, (n) => n, (n, k) => createRow(state.mappings.get(n), k), (rec, n) =>
    updateRow(rec, state.mappings.get(n))
  );
  updateCount(names.length, matching);
}

function applyFilter() {
  const q = $('filter').value.trim().toLowerCase();
  if (q === filterText) return;
  filterText = q;
  rowLimit = PAGE_ROWS;
  renderTable();
}

function updateCount(shown, matching) {
  const total = state.order.length;
  let text = '';
  if (filterText) {
    text = `${matching} of ${total} port forwards match \u201c${$('filter').value.trim()}\u201d.`;
  } else if (total) {
    text = total === 1 ? '1 port forward.' : `${total} port forwards.`;
  }
  if (shown < matching) text += ` Showing the first ${shown}.`;
  const el = $('list-count');
  if (el.textContent !== text) el.textContent = text;
  const more = matching - shown;
  $('list-more').hidden = more <= 0;
  if (more > 0) {
    const t = `Show ${Math.min(more, PAGE_ROWS)} more`;
    if ($('show-more').textContent !== t) $('show-more').textContent = t;
    const a = `Show all ${matching}`;
    if ($('show-all').textContent !== a) $('show-all').textContent = a;
  }
  $('list-empty').hidden = total !== 0 || state.revision == null;
}

function showList() {
  state.view = 'list';
  state.detailName = null;
  showView('list-view');
  if (state.listDirty || state.revision == null) renderTable();
  pollNow();
}

// ---------------------------------------------------------------- enable / disable / delete

async function setEnabled(name, on, input) {
  const rec = rowCache.get(name);
  if (rec) rec.pending = true;
  input.disabled = true;
  const r = await api('POST', `/mappings/${enc(name)}/${on ? 'enable' : 'disable'}`);
  if (rec) rec.pending = false;
  input.disabled = false;
  if (r.stale || r.status === 401) return;
  if (r.ok) {
    if (r.data && r.data.name === name) {
      state.mappings.set(name, r.data);
      if (rec) updateRow(rec, r.data);
      if (state.view === 'detail' && state.detailName === name) renderDetail();
    }
    banner(`${name} ${on ? 'enabled' : 'disabled'}.`, 'info');
  } else {
    input.checked = !on;
    banner(`Could not ${on ? 'enable' : 'disable'} ${name}: ${r.error}`);
  }
  pollNow();
}

async function deleteMapping(name) {
  const yes = await confirmDialog({
    title: `Delete ${name}?`,
    text: `The port forward ${name} stops listening and is removed. Connections already open go on until they end.`,
    yes: 'Delete',
  });
  if (!yes) return;
  const r = await api('DELETE', `/mappings/${enc(name)}`);
  if (r.stale || r.status === 401) return;
  if (r.ok || r.status === 404) {
    state.mappings.delete(name);
    state.order = state.order.filter((n) => n !== name);
    if (state.view === 'list') renderTable();
    else state.listDirty = true;
    banner(r.ok ? `${name} deleted.` : `${name} was already gone.`, 'info');
    if (state.view === 'detail' && state.detailName === name) location.hash = '#/';
  } else {
    banner(`Could not delete ${name}: ${r.error}`);
  }
  pollNow();
}

// ---------------------------------------------------------------- confirm dialog

let confirmResolve = null;

// Resolves true when the user confirms, false on Cancel, Escape or any other close.
function confirmDialog({ title, text, yes }) {
  const d = $('confirm-dialog');
  if (d.open) d.close();
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-yes').textContent = yes || 'OK';
  d.returnValue = '';
  return new Promise((resolve) => {
    confirmResolve = resolve;
    d.showModal();
    $('confirm-no').focus();
  });
}

// ---------------------------------------------------------------- the add/edit dialog

const FIELD_IDS = [
  'name', 'proto', 'listen-addr', 'listen-port', 'target-addr', 'target-port', 'enabled', 'allow', 'deny',
  'max-conns', 'max-conns-per-ip', 'connect-timeout', 'send-proxy', 'accept-proxy', 'idle-timeout',
  'max-sessions', 'rtp-ports', 'lease',
  'cert', 'key', 'ocsp', 'min-tls', 'ciphers', 'alpn', 'handshake-timeout',
  'host', 'target-host', 'trusted-proxies', 'redirect-https', 'hsts', 'header-timeout', 'max-header-size',
  'device-auth', 'acme-webroot', 'keep-alive-timeout', 'auth', 'client-ca', 'client-crl', 'users',
];
const PROTOS = ['tcp', 'udp', 'tls', 'http', 'https', 'rtsp', 'rtsps'];
// The protocols that end TLS at the gateway: a certificate is required.
const TLS_PROTOS = ['tls', 'https', 'rtsps'];
const NUMBER_KEYS = ['max-conns', 'max-conns-per-ip', 'max-sessions', 'lease', 'max-header-size'];
// Text inputs and selects: sent as written, left out when empty.
const TEXT_KEYS = [
  'connect-timeout', 'send-proxy', 'accept-proxy', 'idle-timeout', 'rtp-ports',
  'cert', 'key', 'ocsp', 'min-tls', 'ciphers', 'alpn', 'handshake-timeout',
  'host', 'target-host', 'redirect-https', 'hsts', 'device-auth', 'acme-webroot',
  'keep-alive-timeout', 'header-timeout', 'auth', 'client-ca', 'client-crl', 'users',
];
// Comma-separated lists whose entries may not hold a space: "a.crt, b.crt" is sent as "a.crt,b.crt".
const COMMA_KEYS = ['cert', 'key', 'ocsp', 'alpn', 'host', 'users'];
// Address lists in a textarea (one a line or comma-separated) that the API takes as one
// comma-separated string, unlike allow and deny (arrays).
const LIST_TEXT_KEYS = ['trusted-proxies'];
// Protocols without sessions of their own: their detail view has no sessions' table.
const NO_SESSIONS = ['tcp', 'tls', 'http', 'https'];

const dlg = { mode: 'add', name: null, revision: null, seq: 0, saving: false };
const f = (id) => $(`f-${id}`);

// "[2001:db8::1]:80" -> {addr: "2001:db8::1", port: "80"}; "0.0.0.0:6000-6009" likewise.
function splitHostPort(s) {
  s = String(s || '');
  if (s.startsWith('[')) {
    const e = s.indexOf(']');
    if (e > 0) return { addr: s.slice(1, e), port: s.slice(e + 1).replace(/^:/, '') };
  }
  const i = s.lastIndexOf(':');
  if (i < 0 || s.indexOf(':') !== i) return { addr: s, port: '' };
  return { addr: s.slice(0, i), port: s.slice(i + 1) };
}

function joinHostPort(addr, port) {
  addr = addr.trim();
  if (addr.startsWith('[') && addr.endsWith(']')) addr = addr.slice(1, -1);
  if (addr.includes(':')) addr = `[${addr}]`;
  return `${addr}:${port.trim()}`;
}

function parseList(text) {
  return text
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

function selectTab(which) {
  for (const t of ['general', 'advanced']) {
    const sel = t === which;
    const tab = $(`tab-${t}`);
    tab.setAttribute('aria-selected', String(sel));
    tab.tabIndex = sel ? 0 : -1;
    $(`panel-${t}`).hidden = !sel;
  }
}

function tabKeys(ev) {
  const order = ['general', 'advanced'];
  const cur = order.indexOf(ev.currentTarget.id.replace('tab-', ''));
  let next = null;
  if (ev.key === 'ArrowRight') next = order[(cur + 1) % order.length];
  else if (ev.key === 'ArrowLeft') next = order[(cur + order.length - 1) % order.length];
  else if (ev.key === 'Home') next = order[0];
  else if (ev.key === 'End') next = order[order.length - 1];
  if (!next) return;
  ev.preventDefault();
  selectTab(next);
  $(`tab-${next}`).focus();
}

function updateProtoFields() {
  const proto = f('proto').value;
  for (const el of $('mapping-form').querySelectorAll('.field[data-protos], option[data-protos]')) {
    el.hidden = !el.dataset.protos.split(' ').includes(proto);
    if (el.tagName === 'OPTION') el.disabled = el.hidden;
  }
  // A choice the protocol does not have falls back to none.
  if (f('auth').selectedOptions[0]?.disabled) f('auth').value = 'none';
  f('idle-timeout').placeholder = proto === 'udp' ? '60s' : '1h';
  f('max-sessions').placeholder = proto === 'rtsp' ? '64' : '4096';
}

function clearFieldErrors() {
  for (const id of FIELD_IDS) {
    const input = f(id);
    setError($(`err-${id}`), '');
    input.removeAttribute('aria-invalid');
    input.setAttribute('aria-describedby', `hint-${id}`);
    input.closest('.field').classList.remove('has-error');
  }
  setError($('err-form'), '');
  $('mapping-conflict').hidden = true;
}

function showFormError(msg, details) {
  const el = $('err-form');
  el.replaceChildren(document.createTextNode(msg));
  if (Array.isArray(details) && details.length > 1) {
    const ul = h('ul');
    for (const d of details) ul.append(h('li', { text: typeof d === 'string' ? d : d && d.error ? d.error : JSON.stringify(d) }));
    el.append(ul);
  }
  el.hidden = false;
  el.scrollIntoView({ block: 'nearest' });
}

// Shows msg under the field; false when the field is not on the form for this protocol.
function showFieldError(id, msg, focus = true) {
  const input = f(id);
  const field = input && input.closest('.field');
  if (!input || field.hidden) return false;
  setError($(`err-${id}`), msg);
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', `err-${id} hint-${id}`);
  field.classList.add('has-error');
  if (focus) {
    selectTab(input.closest('[role="tabpanel"]').id.replace('panel-', ''));
    input.focus();
  }
  return true;
}

// Which input an API error's "field" points at. listen and target are two inputs each: a
// message about the port or range goes to the port, anything else to the address.
function inputForApiField(field, msg) {
  if (field === 'listen' || field === 'target') {
    const words = String(msg || '').replace(/"[^"]*"/g, '');
    return /port|range|overlap|in use/i.test(words) ? `${field}-port` : `${field}-addr`;
  }
  return FIELD_IDS.includes(field) ? field : null;
}

function fillForm(m) {
  const l = splitHostPort(m.listen);
  const t = splitHostPort(m.target);
  f('name').value = m.name || '';
  f('proto').value = PROTOS.includes(m.proto) ? m.proto : 'tcp';
  f('listen-addr').value = l.addr;
  f('listen-port').value = l.port;
  f('target-addr').value = t.addr;
  f('target-port').value = t.port === l.port ? '' : t.port;
  f('enabled').checked = m.enabled !== false;
  f('allow').value = Array.isArray(m.allow) ? m.allow.join('\n') : '';
  f('deny').value = Array.isArray(m.deny) ? m.deny.join('\n') : '';
  for (const k of [...NUMBER_KEYS, ...TEXT_KEYS]) f(k).value = m[k] == null ? '' : String(m[k]);
  for (const k of LIST_TEXT_KEYS) f(k).value = m[k] == null ? '' : parseList(String(m[k])).join('\n');
  // A select has no empty choice: a mapping that does not say takes the default.
  if (!f('min-tls').value) f('min-tls').value = '1.2';
  for (const k of ['send-proxy', 'accept-proxy']) if (!f(k).value) f(k).value = 'off';
  if (!f('auth').value) f('auth').value = 'none';
  updateProtoFields();
}

function openMappingDialog(mode, name) {
  const d = $('mapping-dialog');
  if (d.open) return;
  dlg.mode = mode;
  dlg.name = name;
  dlg.seq++;
  dlg.saving = false;
  $('mapping-save').disabled = false;
  clearFieldErrors();
  selectTab('general');
  if (mode === 'edit') {
    const m = state.mappings.get(name);
    if (!m) {
      banner(`${name} is not in the list (any more).`);
      return;
    }
    if (m['read-only'] === true) {
      banner(`${name} is set in ${m.source || 'the configuration file'}; change it there.`);
      return;
    }
    dlg.revision = state.revision;
    fillForm(m);
    $('mapping-dialog-title').textContent = `Edit port forward ${name}`;
    f('name').readOnly = true;
    $('hint-name').textContent = 'The name cannot change: add a new port forward and delete this one to rename it.';
  } else {
    dlg.revision = null;
    fillForm({ proto: 'tcp', listen: '0.0.0.0:', target: ':', enabled: true });
    f('target-addr').value = '';
    $('mapping-dialog-title').textContent = 'Add port forward';
    f('name').readOnly = false;
    $('hint-name').textContent = '1 to 63 letters, digits, ., _ or -. It names the mapping in every log line.';
  }
  d.showModal();
  (mode === 'edit' ? f('listen-port') : f('name')).focus();
}

// The mapping object for POST/PUT, or null after showing what is wrong.
function buildBody() {
  const proto = f('proto').value;
  const errors = [];
  const name = f('name').value.trim();
  if (!NAME_RE.test(name)) errors.push(['name', 'Enter 1 to 63 letters, digits, ., _ or -.']);
  const lport = f('listen-port').value.trim();
  if (!lport) errors.push(['listen-port', 'Enter a port (1-65535) or a range FIRST-LAST.']);
  if (!f('listen-addr').value.trim()) errors.push(['listen-addr', 'Enter an address: 0.0.0.0 for every IPv4 address, :: for every IPv6 one.']);
  if (!f('target-addr').value.trim()) errors.push(['target-addr', "Enter the device's address or host name."]);
  if (TLS_PROTOS.includes(proto) && !f('cert').value.trim()) {
    errors.push(['cert', "Enter the certificate's PEM file (portgate cert NAME makes one)."]);
  }
  const body = {
    name,
    proto,
    listen: joinHostPort(f('listen-addr').value, lport),
    target: joinHostPort(f('target-addr').value, f('target-port').value.trim() || lport),
    enabled: f('enabled').checked,
    allow: parseList(f('allow').value),
    deny: parseList(f('deny').value),
  };
  for (const k of NUMBER_KEYS) {
    const input = f(k);
    if (input.closest('.field').hidden) continue;
    if (input.validity.badInput) {
      errors.push([k, 'Enter a whole number.']);
      continue;
    }
    const v = input.value.trim();
    if (v === '') continue;
    if (!/^\d+$/.test(v)) errors.push([k, 'Enter a whole number.']);
    else body[k] = Number(v);
  }
  for (const k of TEXT_KEYS) {
    const input = f(k);
    if (input.closest('.field').hidden) continue;
    let v = input.value.trim();
    if (COMMA_KEYS.includes(k)) v = v.replace(/\s*,\s*/g, ',');
    if (v !== '') body[k] = v;
  }
  for (const k of LIST_TEXT_KEYS) {
    if (f(k).closest('.field').hidden) continue;
    const v = parseList(f(k).value).join(',');
    if (v !== '') body[k] = v;
  }
  if (errors.length) {
    errors.forEach(([id, msg], i) => showFieldError(id, msg, i === 0));
    return null;
  }
  return body;
}

async function saveMapping(ev) {
  ev.preventDefault();
  if (dlg.saving) return;
  clearFieldErrors();
  const body = buildBody();
  if (!body) return;
  const seq = dlg.seq;
  dlg.saving = true;
  $('mapping-save').disabled = true;
  const r =
    dlg.mode === 'add'
      ? await api('POST', '/mappings', body)
      : await api('PUT', `/mappings/${enc(dlg.name)}`, body, { ifMatch: dlg.revision });
  dlg.saving = false;
  $('mapping-save').disabled = false;
  if (r.stale || seq !== dlg.seq || !$('mapping-dialog').open || r.status === 401) return;
  if (r.ok) {
    $('mapping-dialog').close();
    if (r.data && r.data.name === body.name) state.mappings.set(body.name, r.data);
    banner(`${body.name} ${dlg.mode === 'add' ? 'added' : 'saved'}.`, 'info');
    pollNow();
    return;
  }
  if (r.status === 412) {
    $('mapping-conflict').hidden = false;
    $('mapping-reload').focus();
    return;
  }
  const field = r.data && typeof r.data.field === 'string' ? r.data.field : null;
  const id = field ? inputForApiField(field, r.error) : null;
  if (!(id && showFieldError(id, r.error))) {
    let msg = r.error;
    if (r.status === 404 && dlg.mode === 'edit') msg = `${dlg.name} does not exist any more (deleted meanwhile?).`;
    showFormError(msg, r.data && r.data.errors);
    $('mapping-save').focus();
  }
}

// After a 412: the current settings and revision, in place of what the dialog was opened with.
async function reloadDialog() {
  const seq = dlg.seq;
  $('mapping-reload').disabled = true;
  const r = await api('GET', '/mappings');
  $('mapping-reload').disabled = false;
  if (r.stale || seq !== dlg.seq || r.status === 401) return;
  if (!r.ok || !r.data) {
    showFormError(`Cannot reload: ${r.error}`);
    return;
  }
  applyMappings(r);
  const m = state.mappings.get(dlg.name);
  clearFieldErrors();
  if (!m) {
    showFormError(`${dlg.name} has been deleted meanwhile.`);
    $('mapping-save').disabled = true;
    return;
  }
  dlg.revision = state.revision;
  fillForm(m);
  banner(`Reloaded the current settings of ${dlg.name}.`, 'info');
  f('listen-port').focus();
}

// ---------------------------------------------------------------- the detail view

const samples = new Map(); // name -> [{t, in, out}], for the last few mappings looked at
const MAX_TRACKED = 8;
const connCache = new Map();
const sessCache = new Map();
let countersBuilt = null;

function track(name) {
  const h0 = samples.get(name) || [];
  samples.delete(name);
  samples.set(name, h0); // most recently viewed last
  while (samples.size > MAX_TRACKED) samples.delete(samples.keys().next().value);
}

function recordSample(m, t) {
  const hist = samples.get(m.name);
  if (!hist || !m.stats) return;
  hist.push({ t, in: num(m.stats['bytes-in']), out: num(m.stats['bytes-out']) });
  while (hist.length && hist[0].t < t - HISTORY_MS - 10000) hist.shift();
}

function showDetail(name) {
  const changed = state.detailName !== name;
  state.view = 'detail';
  state.detailName = name;
  track(name);
  if (changed) {
    for (const [cache, table] of [[connCache, 'connections-table'], [sessCache, 'sessions-table']]) {
      cache.clear();
      $(table).tBodies[0].replaceChildren();
    }
    $('conn-note').textContent = 'Loading\u2026';
    $('sess-note').textContent = 'Loading\u2026';
    setError($('detail-error'), '');
  }
  showView('detail-view');
  renderDetail();
  if (changed) $('detail-title').focus();
  pollNow();
}

const COUNTERS = [
  ['open', 'Open connections', fmtCount],
  ['accepted', 'Accepted', fmtCount],
  ['refused-acl', 'Refused by allow/deny', fmtCount],
  ['refused-limit', 'Refused by limits', fmtCount],
  ['connect-failed', 'Connect failed', fmtCount],
  ['bytes-in', 'Bytes in (clients \u2192 device)', (v) => `${fmtBytes(v)}${typeof v === 'number' && v >= 1024 ? ` (${v})` : ''}`],
  ['bytes-out', 'Bytes out (device \u2192 clients)', (v) => `${fmtBytes(v)}${typeof v === 'number' && v >= 1024 ? ` (${v})` : ''}`],
  ['bytes-spliced', 'Bytes spliced', fmtBytes],
  ['datagrams-in', 'Datagrams in', fmtCount],
  ['datagrams-out', 'Datagrams out', fmtCount],
  ['datagrams-dropped', 'Datagrams dropped', fmtCount],
  ['sessions', 'Sessions', fmtCount],
  ['evicted', 'Sessions evicted', fmtCount],
  ['last-activity', 'Last activity', fmtAgo],
];

// Words of counter names that are written in capitals.
const ACRONYMS = ['tls', 'http', 'https', 'rtsp', 'rtsps', 'rtp', 'rtcp', 'acme'];

// A protocol's own counter, by its key: "rtp-bytes-to-clients" is "RTP bytes to clients".
function counterLabel(k) {
  const words = k.split('-').map((w) => (ACRONYMS.includes(w) ? w.toUpperCase() : w));
  const text = words.join(' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// Counters that mean nothing for a protocol are left out unless they are not zero.
const NOT_FOR = {
  tcp: ['datagrams-in', 'datagrams-out', 'datagrams-dropped', 'sessions', 'evicted'],
  udp: ['open', 'accepted', 'connect-failed', 'bytes-spliced'],
  // RTSP's RTP has counters of its own (below); sessions are evicted only over UDP.
  rtsp: ['datagrams-in', 'datagrams-out', 'datagrams-dropped', 'evicted', 'bytes-spliced'],
  // A TLS connection goes through the gateway's TLS layer: never spliced.
  tls: ['datagrams-in', 'datagrams-out', 'datagrams-dropped', 'sessions', 'evicted', 'bytes-spliced'],
  // HTTP reads every message: never spliced either, and no sessions.
  http: ['datagrams-in', 'datagrams-out', 'datagrams-dropped', 'sessions', 'evicted', 'bytes-spliced'],
  https: ['datagrams-in', 'datagrams-out', 'datagrams-dropped', 'sessions', 'evicted', 'bytes-spliced'],
  // RTSPS has RTSP's sessions; its RTP rides in the TLS connection.
  rtsps: ['datagrams-in', 'datagrams-out', 'datagrams-dropped', 'evicted', 'bytes-spliced'],
};

function renderCounters(stats, proto) {
  const dl = $('detail-counters');
  const skip = NOT_FOR[proto] || [];
  const keys = COUNTERS.map((c) => c[0]).filter((k) => !skip.includes(k) || num(stats[k]) !== 0);
  for (const k of Object.keys(stats)) if (!keys.includes(k) && !COUNTERS.some((c) => c[0] === k)) keys.push(k);
  const sig = keys.join(',');
  if (countersBuilt !== sig) {
    dl.replaceChildren();
    for (const k of keys) {
      const c = COUNTERS.find((x) => x[0] === k);
      dl.append(h('div', { class: 'counter' }, h('dt', { text: c ? c[1] : counterLabel(k) }), h('dd', { 'data-key': k })));
    }
    countersBuilt = sig;
  }
  for (const dd of dl.querySelectorAll('dd')) {
    const k = dd.dataset.key;
    const c = COUNTERS.find((x) => x[0] === k);
    const v = stats[k];
    const text = c ? c[2](v) : v == null ? '\u2013' : String(v);
    if (dd.textContent !== text) dd.textContent = text;
  }
}

function renderDetail() {
  const name = state.detailName;
  const m = state.mappings.get(name);
  $('detail-title').textContent = name;
  const summary = $('detail-summary');
  if (!m) {
    summary.textContent = state.revision == null ? 'Loading\u2026' : `There is no port forward named ${name}.`;
    $('detail-actions').hidden = true;
    for (const id of ['detail-counters', 'connections-box', 'sessions-box']) $(id).hidden = state.revision != null;
    return;
  }
  $('detail-counters').hidden = false;
  $('detail-actions').hidden = false;
  const s = statusOf(m);
  const ro = m['read-only'] === true;
  const badge = h('span', { class: `badge st-${s.st}`, text: s.text });
  const parts = [
    `${String(m.proto || '').toUpperCase()} ${m.listen || ''} \u2192 ${m.target || ''} \u00b7 `,
    badge,
    ` \u00b7 ${allowText(m)[1].replace('\n', '; ')}`,
  ];
  if (typeof m.expires === 'number') parts.push(` \u00b7 expires in ${fmtIn(m.expires)}`);
  parts.push(ro ? ` \u00b7 read-only, set in ${m.source || 'the configuration'}` : ` \u00b7 source: ${m.source || 'api'}`);
  summary.replaceChildren(...parts);
  $('detail-edit').hidden = ro;
  $('detail-delete').hidden = ro;
  const tog = $('detail-enabled');
  tog.disabled = ro;
  if (!tog.dataset.pending) tog.checked = m.enabled !== false;
  $('connections-box').hidden = m.proto === 'udp';
  $('sessions-box').hidden = NO_SESSIONS.includes(m.proto);
  renderCounters(m.stats || {}, m.proto);
  drawGraph();
}

async function pollDetailLists(name) {
  const m = state.mappings.get(name);
  const proto = m ? m.proto : null;
  const tasks = [];
  if (proto !== 'udp') tasks.push(loadConnections(name));
  if (!NO_SESSIONS.includes(proto)) tasks.push(loadSessions(name));
  await Promise.all(tasks);
}

async function loadConnections(name) {
  const r = await api('GET', `/connections?mapping=${enc(name)}`);
  if (r.stale || r.status === 401 || state.detailName !== name || state.view !== 'detail') return;
  const note = $('conn-note');
  if (!r.ok || !r.data) {
    note.textContent = `Cannot load the connections: ${r.error || 'not JSON'}`;
    return;
  }
  const all = (Array.isArray(r.data.connections) ? r.data.connections : []).filter((c) => c && c.id != null);
  const list = all.slice(0, MAX_CONN_ROWS);
  let text = all.length ? '' : 'No open connections.';
  if (all.length > list.length) text = `Showing ${list.length} of ${all.length} connections.`;
  if (note.textContent !== text) note.textContent = text;
  syncRows($('connections-table').tBodies[0], connCache, list, (c) => String(c.id), createConnRow, updateConnRow);
}

function createConnRow(c, id) {
  const end = h('button', { type: 'button', class: 'conn-end danger', text: 'End' });
  const tr = h(
    'tr',
    { class: 'conn-row', 'data-id': id },
    h('td', { class: 'addr' }),
    h('td', { class: 'addr' }),
    h('td', { class: 'num' }),
    h('td', { class: 'num' }),
    h('td', { class: 'num' }),
    h('td', { class: 'num' }),
    h('td', null, end)
  );
  end.setAttribute('aria-label', `End the connection from ${c.client || id}`);
  return { tr, id, v: {}, c: tr.children, end };
}

function updateConnRow(rec, c) {
  put(rec, 'client', rec.c[0], String(c.client || ''));
  put(rec, 'target', rec.c[1], String(c.target || ''));
  put(rec, 'in', rec.c[2], fmtBytes(c['bytes-in']), `${num(c['bytes-in'])} bytes`);
  put(rec, 'out', rec.c[3], fmtBytes(c['bytes-out']), `${num(c['bytes-out'])} bytes`);
  put(rec, 'age', rec.c[4], fmtDuration(c.age));
  put(rec, 'idle', rec.c[5], fmtDuration(c.idle));
}

async function endConnection(id, btn) {
  btn.disabled = true;
  const r = await api('DELETE', `/connections/${enc(id)}`);
  if (r.stale || r.status === 401) return;
  const rec = connCache.get(id);
  if (r.ok || r.status === 404) {
    if (rec) {
      const next = rec.tr.nextElementSibling || rec.tr.previousElementSibling;
      const hadFocus = rec.tr.contains(document.activeElement);
      rec.tr.remove();
      connCache.delete(id);
      if (hadFocus) (next ? next.querySelector('.conn-end') : $('conn-title')).focus();
    }
    banner(r.ok ? 'Connection ended.' : 'That connection had ended already.', 'info');
  } else {
    btn.disabled = false;
    $('conn-note').textContent = `Could not end the connection: ${r.error}`;
  }
}

async function loadSessions(name) {
  const r = await api('GET', `/sessions?mapping=${enc(name)}`);
  if (r.stale || r.status === 401 || state.detailName !== name || state.view !== 'detail') return;
  const note = $('sess-note');
  if (!r.ok || !r.data) {
    note.textContent = `Cannot load the sessions: ${r.error || 'not JSON'}`;
    return;
  }
  const all = (Array.isArray(r.data.sessions) ? r.data.sessions : []).filter(Boolean);
  const list = all.slice(0, MAX_CONN_ROWS);
  let text = all.length ? '' : 'No sessions.';
  if (all.length > list.length) text = `Showing ${list.length} of ${all.length} sessions.`;
  if (note.textContent !== text) note.textContent = text;
  const keyOf = (s) => (s.id != null ? String(s.id) : `${s.kind}|${s.client}|${s.target}`);
  syncRows($('sessions-table').tBodies[0], sessCache, list, keyOf, createSessRow, updateSessRow);
}

function createSessRow(s, key) {
  const tr = h(
    'tr',
    { class: 'sess-row', 'data-key': key },
    h('td'),
    h('td', { class: 'addr' }),
    h('td', { class: 'addr' }),
    h('td', { class: 'num' }),
    h('td', { class: 'num' }),
    h('td', { class: 'details' })
  );
  return { tr, v: {}, c: tr.children };
}

const SESSION_BASE = ['kind', 'mapping', 'client', 'target', 'age', 'idle', 'id'];

function updateSessRow(rec, s) {
  put(rec, 'kind', rec.c[0], String(s.kind || ''));
  put(rec, 'client', rec.c[1], String(s.client || ''));
  put(rec, 'target', rec.c[2], String(s.target || ''));
  put(rec, 'age', rec.c[3], fmtDuration(s.age));
  put(rec, 'idle', rec.c[4], fmtDuration(s.idle));
  const extra = Object.keys(s)
    .filter((k) => !SESSION_BASE.includes(k))
    .map((k) => {
      const v = s[k];
      const text = /bytes/.test(k) && typeof v === 'number' ? fmtBytes(v) : typeof v === 'object' ? JSON.stringify(v) : String(v);
      return `${k}: ${text}`;
    })
    .join(', ');
  put(rec, 'extra', rec.c[5], extra);
}

// ---------------------------------------------------------------- the throughput graph

function cssVar(el, name, fallback) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

// A round top for the graph's scale in the units fmtBytes shows: 500 KiB/s, not 488.
function niceMax(v) {
  if (!(v > 0)) return 1024;
  const base = 1024 ** Math.max(0, Math.floor(Math.log(v) / Math.log(1024)));
  const x = v / base;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p * base;
  return 10 * p * base;
}

function rates(hist) {
  const pts = [];
  for (let i = 1; i < hist.length; i++) {
    const a = hist[i - 1];
    const b = hist[i];
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0) continue;
    const din = b.in - a.in;
    const dout = b.out - a.out;
    // A counter that went down started anew (the mapping was replaced): a gap, not a dip.
    if (din < 0 || dout < 0) pts.push(null);
    else pts.push({ t: b.t, rin: din / dt, rout: dout / dt });
  }
  return pts;
}

function drawGraph() {
  const c = $('detail-graph');
  if (state.view !== 'detail' || c.offsetParent === null) return;
  const pts = rates(samples.get(state.detailName) || []);
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || 600;
  const ht = c.clientHeight || 160;
  if (c.width !== Math.round(w * dpr)) c.width = Math.round(w * dpr);
  if (c.height !== Math.round(ht * dpr)) c.height = Math.round(ht * dpr);
  const ctx = c.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, ht);

  const colIn = cssVar(c, '--graph-in', '#1565c0');
  const colOut = cssVar(c, '--graph-out', '#c62828');
  const colGrid = cssVar(c, '--graph-grid', '#ccc');
  const colText = cssVar(c, '--muted', '#666');
  const font = '11px system-ui, sans-serif';
  const now = Date.now();
  const t0 = now - HISTORY_MS;
  let max = 0;
  for (const p of pts) if (p && p.t >= t0) max = Math.max(max, p.rin, p.rout);
  max = niceMax(max);

  ctx.font = font;
  const labels = [max, max / 2, 0].map((v) => `${fmtBytes(v)}/s`);
  const left = Math.ceil(Math.max(...labels.map((l) => ctx.measureText(l).width))) + 8;
  const right = 6;
  const top = 8;
  const bottom = 18;
  const pw = Math.max(10, w - left - right);
  const ph = Math.max(10, ht - top - bottom);
  const x = (t) => left + ((t - t0) / HISTORY_MS) * pw;
  const y = (v) => top + ph - (v / max) * ph;

  ctx.strokeStyle = colGrid;
  ctx.fillStyle = colText;
  ctx.lineWidth = 1;
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  [max, max / 2, 0].forEach((v, i) => {
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(left, yy);
    ctx.lineTo(left + pw, yy);
    ctx.stroke();
    ctx.fillText(labels[i], left - 6, yy);
  });
  ctx.textBaseline = 'alphabetic';
  ctx.textAlign = 'left';
  ctx.fillText('5 min ago', left, ht - 4);
  ctx.textAlign = 'right';
  ctx.fillText('now', left + pw, ht - 4);

  const series = (key, color, dash) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.setLineDash(dash);
    ctx.beginPath();
    let pen = false;
    for (const p of pts) {
      if (!p || p.t < t0) {
        pen = false;
        continue;
      }
      if (pen) ctx.lineTo(x(p.t), y(p[key]));
      else ctx.moveTo(x(p.t), y(p[key]));
      pen = true;
    }
    ctx.stroke();
    ctx.setLineDash([]);
  };
  series('rin', colIn, []);
  series('rout', colOut, [6, 4]);

  let last = null;
  for (let i = pts.length - 1; i >= 0 && !last; i--) last = pts[i];
  const tin = last ? `${fmtBytes(last.rin)}/s` : 'measuring\u2026';
  const tout = last ? `${fmtBytes(last.rout)}/s` : 'measuring\u2026';
  if ($('rate-in').textContent !== tin) $('rate-in').textContent = tin;
  if ($('rate-out').textContent !== tout) $('rate-out').textContent = tout;
}

// ---------------------------------------------------------------- the account view

const tokenCache = new Map();

function showAccount() {
  state.view = 'account';
  state.detailName = null;
  showView('account-view');
  loadTokens().catch(bug);
  loadTfa().catch(bug);
  pollNow();
}

// ---------------------------------------------------------------- two-factor authentication

// The panel shows one of: 'off' (a button to set it up), 'enrol' (the QR code and the code to
// confirm it), 'codes' (the recovery codes, once) or 'on' (the form that turns it off).
const tfa = { mode: null, left: 0 };

function tfaRender() {
  const m = tfa.mode;
  $('tfa-off').hidden = m !== 'off';
  $('tfa-enrol').hidden = m !== 'enrol';
  $('tfa-codes').hidden = m !== 'codes';
  $('tfa-disable-form').hidden = m !== 'on';
  let text = '';
  if (m === 'off' || m === 'enrol') text = 'Off: logging in takes the password alone.';
  else if (m === 'on' || m === 'codes') {
    text = `On: logging in takes the password and a code. ${tfa.left} recovery code${tfa.left === 1 ? '' : 's'} left.`;
  }
  $('tfa-state').textContent = text;
}

// Forgets what the panel showed (a key, recovery codes): at logout.
function tfaReset() {
  tfa.mode = null;
  tfa.left = 0;
  $('tfa-qr').replaceChildren();
  $('tfa-secret').textContent = '';
  $('tfa-uri').removeAttribute('href');
  $('tfa-codes-list').replaceChildren();
  for (const id of ['tfa-code', 'tfa-disable-secret']) {
    $(id).value = '';
    $(id).removeAttribute('aria-invalid');
  }
  setError($('tfa-error'), '');
  tfaRender();
}

async function loadTfa() {
  const r = await api('GET', '/me/totp');
  if (r.stale || r.status === 401 || state.view !== 'account') return;
  if (!r.ok || !r.data) {
    setError($('tfa-error'), `Cannot load the two-factor state: ${r.error || 'not JSON'}`);
    return;
  }
  tfa.left = num(r.data['recovery-codes-left']);
  // An enrolment or the recovery codes on screen stay until the user is done with them.
  if (tfa.mode !== 'enrol' && tfa.mode !== 'codes') tfa.mode = r.data.enabled === true ? 'on' : 'off';
  tfaRender();
}

const SVG_NS = 'http://www.w3.org/2000/svg';

// The QR code as an <svg> made with DOM calls (no markup parsed): a white square with the
// quiet zone, and the dark modules as one path.
function qrSvg(size, d) {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'QR code of the key, for an authenticator app');
  const bg = document.createElementNS(SVG_NS, 'rect');
  bg.setAttribute('width', String(size));
  bg.setAttribute('height', String(size));
  bg.setAttribute('fill', '#fff');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('fill', '#000');
  path.setAttribute('d', d);
  svg.append(bg, path);
  return svg;
}

async function tfaBegin() {
  const err = $('tfa-error');
  setError(err, '');
  $('tfa-begin').disabled = true;
  const r = await api('POST', '/me/totp');
  $('tfa-begin').disabled = false;
  if (r.stale || r.status === 401) return;
  const d = r.data || {};
  const qr = d.qr || {};
  const ok =
    r.ok &&
    typeof d.secret === 'string' &&
    typeof d.uri === 'string' &&
    d.uri.startsWith('otpauth://totp/') &&
    Number.isInteger(qr.size) &&
    qr.size > 0 &&
    qr.size <= 200 &&
    typeof qr.path === 'string' &&
    /^[Mhvz0-9 -]*$/.test(qr.path);
  if (!ok) {
    setError(err, r.error || 'The gateway did not answer a key.');
    if (r.status === 409) await loadTfa();
    return;
  }
  $('tfa-qr').replaceChildren(qrSvg(qr.size, qr.path));
  $('tfa-secret').textContent = d.secret.replace(/(.{4})(?=.)/g, '$1 ');
  $('tfa-uri').setAttribute('href', d.uri);
  $('tfa-code').value = '';
  $('tfa-code').removeAttribute('aria-invalid');
  tfa.mode = 'enrol';
  tfaRender();
  $('tfa-code').focus();
}

function tfaCancel() {
  $('tfa-qr').replaceChildren();
  $('tfa-secret').textContent = '';
  $('tfa-uri').removeAttribute('href');
  setError($('tfa-error'), '');
  tfa.mode = 'off';
  tfaRender();
  $('tfa-begin').focus();
}

function tfaFail(msg, input) {
  setError($('tfa-error'), msg);
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', 'tfa-error');
  input.select();
  input.focus();
}

async function tfaConfirm(ev) {
  ev.preventDefault();
  const input = $('tfa-code');
  setError($('tfa-error'), '');
  const code = input.value.replace(/\s+/g, '');
  if (!/^\d{6}$/.test(code)) return tfaFail('Enter the 6 digits the app shows.', input);
  $('tfa-confirm').disabled = true;
  const r = await api('POST', '/me/totp/confirm', { code });
  $('tfa-confirm').disabled = false;
  if (r.stale || r.status === 401) return;
  const codes = r.ok && r.data && Array.isArray(r.data['recovery-codes']) ? r.data['recovery-codes'] : null;
  if (!codes) {
    if (r.status === 409) {
      // The enrolment was forgotten (too long) or it is on already: start from what is true.
      tfaCancel();
      setError($('tfa-error'), r.error);
      await loadTfa();
      return;
    }
    return tfaFail(r.error || 'The gateway did not answer the recovery codes.', input);
  }
  input.value = '';
  input.removeAttribute('aria-invalid');
  input.removeAttribute('aria-describedby');
  $('tfa-qr').replaceChildren();
  $('tfa-secret').textContent = '';
  $('tfa-uri').removeAttribute('href');
  const list = codes.filter((c) => typeof c === 'string');
  $('tfa-codes-list').replaceChildren(...list.map((c) => h('li', { text: c.length === 10 ? `${c.slice(0, 5)}-${c.slice(5)}` : c })));
  tfa.mode = 'codes';
  tfa.left = list.length;
  tfaRender();
  $('tfa-codes-done').focus();
}

function tfaCodesDone() {
  $('tfa-codes-list').replaceChildren();
  tfa.mode = 'on';
  tfaRender();
  loadTfa().catch(bug);
}

async function tfaDisable(ev) {
  ev.preventDefault();
  const input = $('tfa-disable-secret');
  setError($('tfa-error'), '');
  const v = input.value;
  if (!v) return tfaFail('Enter your password, or a code from the app.', input);
  // Six digits are a code (a password has at least 8 characters); anything else a password.
  const compact = v.replace(/[\s-]/g, '');
  const body = /^\d{6}$/.test(compact) ? { code: compact } : { password: v };
  $('tfa-disable').disabled = true;
  const r = await api('DELETE', '/me/totp', body, { allow401: true });
  $('tfa-disable').disabled = false;
  if (r.stale) return;
  if (r.ok) {
    input.value = '';
    input.removeAttribute('aria-invalid');
    input.removeAttribute('aria-describedby');
    tfa.mode = 'off';
    tfa.left = 0;
    tfaRender();
    banner('Two-factor authentication turned off.', 'info');
    await loadTfa();
    return;
  }
  let msg = r.error;
  if (r.status === 401 && !(r.data && r.data.error)) msg = 'The password or the code is wrong.';
  input.value = '';
  tfaFail(msg, input);
}

async function changePassword(ev) {
  ev.preventDefault();
  const err = $('pw-error');
  setError(err, '');
  setError($('pw-ok'), '');
  const old = $('pw-old').value;
  const nw = $('pw-new').value;
  if (!old) return pwFail('Enter your current password.', 'pw-old');
  if (nw.length < 8) return pwFail('The new password needs at least 8 characters.', 'pw-new');
  if (nw !== $('pw-new2').value) return pwFail('The two new passwords differ.', 'pw-new2');
  $('pw-submit').disabled = true;
  const r = await api('POST', '/password', { old, new: nw }, { allow401: true });
  $('pw-submit').disabled = false;
  if (r.stale) return;
  if (r.ok) {
    for (const id of ['pw-old', 'pw-new', 'pw-new2']) {
      $(id).value = '';
      $(id).removeAttribute('aria-invalid');
    }
    setError($('pw-ok'), 'Password changed.');
    return;
  }
  let msg = r.error;
  if (r.status === 401 && !(r.data && r.data.error)) msg = 'The current password is wrong.';
  pwFail(msg, r.status === 401 ? 'pw-old' : 'pw-new');
}

function pwFail(msg, id) {
  setError($('pw-error'), msg);
  for (const x of ['pw-old', 'pw-new', 'pw-new2']) {
    if (x === id) {
      $(x).setAttribute('aria-invalid', 'true');
      $(x).setAttribute('aria-describedby', x === 'pw-new' ? 'pw-error pw-hint' : 'pw-error');
    } else {
      $(x).removeAttribute('aria-invalid');
      $(x).setAttribute('aria-describedby', x === 'pw-new' ? 'pw-hint' : '');
    }
  }
  $(id).focus();
}

async function loadTokens() {
  const r = await api('GET', '/tokens');
  if (r.stale || r.status === 401 || state.view !== 'account') return;
  if (!r.ok || !r.data) {
    setError($('token-error'), `Cannot load the tokens: ${r.error || 'not JSON'}`);
    return;
  }
  const list = (Array.isArray(r.data.tokens) ? r.data.tokens : []).filter((t) => t && typeof t.name === 'string');
  syncRows($('tokens-table').tBodies[0], tokenCache, list, (t) => t.name, createTokenRow, (rec, t) =>
    put(rec, 'created', rec.created, fmtDate(t.created))
  );
  $('tokens-empty').hidden = list.length !== 0;
  $('tokens-table').hidden = list.length === 0;
}

function createTokenRow(t, name) {
  const created = h('td');
  const revoke = h('button', { type: 'button', class: 'token-revoke danger', text: 'Revoke' });
  revoke.setAttribute('aria-label', `Revoke token ${name}`);
  const tr = h('tr', { class: 'token-row', 'data-name': name }, h('td', { text: name }), created, h('td', null, revoke));
  return { tr, v: {}, created };
}

async function createToken(ev) {
  ev.preventDefault();
  const err = $('token-error');
  setError(err, '');
  const name = $('token-name').value.trim();
  if (!name) {
    setError(err, 'Enter a name for the token, such as the script that will use it.');
    $('token-name').setAttribute('aria-invalid', 'true');
    $('token-name').focus();
    return;
  }
  $('token-name').removeAttribute('aria-invalid');
  $('token-create').disabled = true;
  const r = await api('POST', '/tokens', { name });
  $('token-create').disabled = false;
  if (r.stale || r.status === 401) return;
  if (!r.ok || !r.data || typeof r.data.token !== 'string') {
    setError(err, r.error || 'The gateway did not return a token.');
    $('token-name').setAttribute('aria-invalid', 'true');
    $('token-name').focus();
    return;
  }
  $('token-name').value = '';
  $('token-created-name').textContent = r.data.name || name;
  $('token-value').value = r.data.token;
  $('token-copy-msg').textContent = '';
  $('token-created').hidden = false;
  $('token-value').focus();
  $('token-value').select();
  await loadTokens();
}

async function copyToken() {
  const input = $('token-value');
  const msg = $('token-copy-msg');
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(input.value);
      msg.textContent = 'Copied to the clipboard.';
      return;
    }
  } catch (e) {
    /* no permission: fall back to the selection */
  }
  input.focus();
  input.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch (e) {
    ok = false;
  }
  msg.textContent = ok ? 'Copied to the clipboard.' : 'The token is selected: press Ctrl+C (\u2318C) to copy it.';
}

function tokenDone() {
  $('token-value').value = '';
  $('token-created').hidden = true;
  $('token-name').focus();
}

async function revokeToken(name) {
  const yes = await confirmDialog({
    title: `Revoke token ${name}?`,
    text: `Scripts that use the token ${name} can no longer reach the API.`,
    yes: 'Revoke',
  });
  if (!yes) return;
  const r = await api('DELETE', `/tokens/${enc(name)}`);
  if (r.stale || r.status === 401) return;
  if (r.ok || r.status === 404) banner(`Token ${name} revoked.`, 'info');
  else setError($('token-error'), `Could not revoke ${name}: ${r.error}`);
  await loadTokens();
}

// ---------------------------------------------------------------- wiring

function wire() {
  on($('login-form'), 'submit', login);
  on($('setup-retry'), 'click', () => location.reload());
  on($('loading-retry'), 'click', boot);
  on($('logout'), 'click', logout);
  on($('banner-close'), 'click', () => clearBanner());
  on(window, 'hashchange', route);
  on(document, 'visibilitychange', () => {
    if (document.hidden) {
      clearTimeout(pollTimer);
      pollTimer = 0;
    } else {
      pollNow();
    }
  });
  let resizeFrame = 0;
  on(window, 'resize', () => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(drawGraph);
  });
  // Redraw with the other palette when the system switches between light and dark.
  if (window.matchMedia) on(window.matchMedia('(prefers-color-scheme: dark)'), 'change', drawGraph);

  // The table: one listener for all rows.
  const tbody = $('mappings-table').tBodies[0];
  on(tbody, 'change', (ev) => {
    const t = ev.target;
    if (!t.classList.contains('toggle-enabled')) return;
    const tr = t.closest('tr');
    if (tr) return setEnabled(tr.dataset.name, t.checked, t);
  });
  on(tbody, 'click', (ev) => {
    const btn = ev.target.closest('button');
    const tr = btn && btn.closest('tr');
    if (!tr) return;
    if (btn.classList.contains('edit-mapping')) openMappingDialog('edit', tr.dataset.name);
    else if (btn.classList.contains('delete-mapping')) return deleteMapping(tr.dataset.name);
  });
  let filterTimer = 0;
  on($('filter'), 'input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(applyFilter, state.order.length > 2000 ? 200 : 50);
  });
  // More rows; the keyboard goes on from the first new one (the buttons may go away).
  const showMore = (limit) => {
    const before = rowCache.size;
    rowLimit = limit;
    renderTable();
    const row = $('mappings-table').tBodies[0].rows[before];
    if (row && $('list-more').hidden) row.querySelector('.name-link').focus();
  };
  on($('show-more'), 'click', () => showMore(rowLimit + PAGE_ROWS));
  on($('show-all'), 'click', () => showMore(Infinity));
  on($('add-mapping'), 'click', () => openMappingDialog('add', null));

  // The dialog.
  on($('mapping-form'), 'submit', saveMapping);
  on($('mapping-cancel'), 'click', () => $('mapping-dialog').close());
  on($('mapping-reload'), 'click', reloadDialog);
  on(f('proto'), 'change', updateProtoFields);
  for (const t of ['general', 'advanced']) {
    on($(`tab-${t}`), 'click', () => selectTab(t));
    on($(`tab-${t}`), 'keydown', tabKeys);
  }
  on($('mapping-dialog'), 'close', () => {
    dlg.seq++;
  });

  // The confirm dialog.
  const cd = $('confirm-dialog');
  on($('confirm-yes'), 'click', () => cd.close('yes'));
  on($('confirm-no'), 'click', () => cd.close('no'));
  on(cd, 'close', () => {
    const resolve = confirmResolve;
    confirmResolve = null;
    if (resolve) resolve(cd.returnValue === 'yes');
  });

  // The detail view.
  on($('detail-edit'), 'click', () => openMappingDialog('edit', state.detailName));
  on($('detail-delete'), 'click', () => deleteMapping(state.detailName));
  on($('detail-enabled'), 'change', async (ev) => {
    const t = ev.target;
    t.dataset.pending = '1';
    try {
      await setEnabled(state.detailName, t.checked, t);
    } finally {
      delete t.dataset.pending;
    }
  });
  on($('connections-table').tBodies[0], 'click', (ev) => {
    const btn = ev.target.closest('button.conn-end');
    const tr = btn && btn.closest('tr');
    if (tr) return endConnection(tr.dataset.id, btn);
  });

  // The account view.
  on($('password-form'), 'submit', changePassword);
  on($('tfa-begin'), 'click', tfaBegin);
  on($('tfa-cancel'), 'click', tfaCancel);
  on($('tfa-confirm-form'), 'submit', tfaConfirm);
  on($('tfa-codes-done'), 'click', tfaCodesDone);
  on($('tfa-disable-form'), 'submit', tfaDisable);
  // A code asked for one user is not asked for another.
  on($('login-user'), 'input', () => showLoginCode(false));
  on($('token-form'), 'submit', createToken);
  on($('token-copy'), 'click', copyToken);
  on($('token-done'), 'click', tokenDone);
  on($('tokens-table').tBodies[0], 'click', (ev) => {
    const btn = ev.target.closest('button.token-revoke');
    const tr = btn && btn.closest('tr');
    if (tr) return revokeToken(tr.dataset.name);
  });
}

// A rejection that escaped every handler is a bug of this page: show it, and let the browser
// log it too (the end-to-end test reads the console).
window.addEventListener('unhandledrejection', (ev) => {
  banner(`Something went wrong in this page: ${ev.reason && ev.reason.message ? ev.reason.message : ev.reason}`);
});

// A module runs once the document is parsed.
wire();
boot().catch(bug);
