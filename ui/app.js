// The inspector's entry point: routes the URL hash to a view (#/, #/sessions, #/sessions/42, #/memory,
// #/projects/{name}, #/queue),
// keeps the live connection with its "lost connection" banner, and refetches the open view when events say
// its data changed (coalesced by a Refresher). When a view has drawn its data the first time after a
// navigation, it sets document.body.dataset.ready to the view's name and marks `<name>-rendered` in the
// performance timeline, for tests and benchmarks.

import { el, count, replace } from './dom.js';
import { Live } from './live.js';
import { MemoryView } from './memory.js';
import { OverviewView } from './overview.js';
import { ProjectView } from './project.js';
import { QueueView } from './queue.js';
import { Refresher } from './refresh.js';
import { SessionView } from './session.js';
import { SessionsView } from './sessions.js';
import { keepTimesFresh } from './time.js';

const VIEWS = {
  overview: OverviewView,
  sessions: SessionsView,
  session: SessionView,
  memory: MemoryView,
  project: ProjectView,
  queue: QueueView,
};

/** At most one refetch of the open view per this many ms while events flow. */
const LIVE_INTERVAL_MS = 400;

const main = document.getElementById('main');
const banner = document.getElementById('banner');
const liveState = document.getElementById('live');
const statusRegion = document.getElementById('status');
const queueAlert = document.getElementById('queue-alert');

let current = null;
let refresher = null;
let renders = 0;
let statusTimer = null;
/** False until the first view is shown: only later navigations move focus to the new view. */
let started = false;
/** The view's error notice (a failed load), above the view. */
const viewError = el('div', { class: 'notice error', role: 'alert', hidden: true });

/** Parses `#/path?query` into a route. */
function parseRoute(hash) {
  // Anything not shaped like a route (an in-page anchor such as #main) shows the overview.
  const raw = hash.startsWith('#/') ? hash.slice(1) : '/';
  const at = raw.indexOf('?');
  const path = at < 0 ? raw : raw.slice(0, at);
  const params = new URLSearchParams(at < 0 ? '' : raw.slice(at + 1));
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return { name: 'overview', params };
  if (parts[0] === 'sessions' && parts.length === 1) return { name: 'sessions', params };
  if (parts[0] === 'sessions' && parts.length === 2 && /^\d+$/.test(parts[1])) return { name: 'session', id: Number(parts[1]), params };
  if (parts[0] === 'memory' && parts.length === 1) return { name: 'memory', params };
  if (parts[0] === 'projects' && parts.length === 2) {
    try {
      return { name: 'project', project: decodeURIComponent(parts[1]), params };
    } catch {
      return { name: 'missing', params };
    }
  }
  if (parts[0] === 'queue' && parts.length === 1) return { name: 'queue', params };
  return { name: 'missing', params };
}

const ctx = {
  /** Goes to `hash`; `replace` keeps the history entry (for corrections the user did not ask for). */
  navigate(hash, { replace: replaceEntry = false } = {}) {
    if (replaceEntry) {
      history.replaceState(null, '', hash);
      show(parseRoute(location.hash));
    } else {
      location.hash = hash;
    }
  },
  /** Refetch the open view now (after a user action). */
  refresh() {
    refresher?.now();
  },
  /** Refetch the open view soon (coalesced). */
  request() {
    refresher?.request();
  },
  /** Announces an action's outcome in the status region. */
  say(text, isError = false) {
    statusRegion.textContent = text;
    statusRegion.classList.toggle('error', isError);
    statusRegion.classList.add('shown');
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => statusRegion.classList.remove('shown'), 8000);
  },
};

function highlightNav(name) {
  const section = { session: 'sessions', project: 'memory' }[name] ?? name;
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    if (link.dataset.view === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function showMissing() {
  refresher?.stop();
  current?.destroy?.();
  current = null;
  refresher = null;
  document.title = 'Not found — memtray';
  highlightNav('');
  replace(main, el('section', { class: 'view' }, el('h1', { text: 'Nothing here' }), el('p', {}, 'This address shows nothing. ', el('a', { href: '#/', text: 'Go to the overview' }))));
  document.body.dataset.ready = 'missing';
}

function show(route) {
  if (current?.accepts(route)) {
    current.setRoute(route);
    refresher.now();
    return;
  }
  if (route.name === 'missing') {
    showMissing();
    return;
  }
  const moving = started;
  started = true;
  refresher?.stop();
  current?.destroy?.();
  const view = new VIEWS[route.name](ctx, route);
  current = view;
  document.body.dataset.ready = '';
  document.title = `${view.title} — memtray`;
  highlightNav(view.name);
  viewError.hidden = true;
  replace(main, viewError, view.root);
  view.root.setAttribute('aria-busy', 'true');
  if (moving) main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
  let first = true;
  refresher = new Refresher(async (signal) => {
    try {
      const data = await view.load(signal);
      if (signal.aborted) return;
      view.render(data);
      viewError.hidden = true;
    } catch (e) {
      if (signal.aborted || e.name === 'AbortError') return;
      if (!view.renderError?.(e)) {
        // Keep what is on screen; say why it may be stale. A lost server is the banner's job.
        if (e.unreachable && !banner.hidden) return;
        viewError.textContent = `Could not load this view: ${e.message}`;
        viewError.hidden = false;
        return;
      }
    }
    document.title = `${view.title} — memtray`;
    view.root.removeAttribute('aria-busy');
    renders += 1;
    document.body.dataset.renders = String(renders);
    if (first) {
      first = false;
      performance.mark(`${view.name}-rendered`);
      document.body.dataset.ready = view.name;
    }
  }, view.interval ?? LIVE_INTERVAL_MS);
  refresher.now();
}

function showQueueAlert(status) {
  const trouble = (status.stuck ?? 0) + (status.failed ?? 0);
  queueAlert.hidden = trouble === 0;
  queueAlert.textContent = trouble ? count(trouble) : '';
  queueAlert.title = trouble ? `${count(status.stuck)} stuck, ${count(status.failed)} failed` : '';
}

function setLive(state, text) {
  liveState.dataset.state = state;
  liveState.textContent = text;
  document.body.dataset.live = state;
}

const live = new Live('/stream', {
  event(name, data) {
    if (name === 'processing_status') {
      showQueueAlert(data);
      current?.onStatus?.(data);
    }
    if (current?.wants(name, data)) refresher.request();
  },
  open(reconnected) {
    banner.hidden = true;
    setLive('open', 'Live');
    // Whatever happened while the stream was down was missed: fetch it. (On the first open, events between
    // the first fetch and the stream opening could have been missed too.)
    if (reconnected) refresher?.now();
    else refresher?.request();
  },
  lost() {
    banner.hidden = false;
    setLive('lost', 'Offline');
  },
});

window.addEventListener('hashchange', () => show(parseRoute(location.hash)));
// The skip link moves focus without touching the hash, which holds the route.
document.querySelector('.skip').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});
show(parseRoute(location.hash));
live.start();
keepTimesFresh();
