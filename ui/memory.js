// The Memory view: full-text search over observations, summaries and prompts (GET /api/search), with live
// results as the user types (debounced; a newer search aborts the one in flight through the Refresher's
// AbortController), filters by project, observation type, kind and date, and FTS5 syntax on request. The
// query and filters live in the URL hash (#/memory?q=&project=&type=&kind=&since=&syntax=), so Back and
// reload keep them. Each hit opens its session at that observation or summary. `/` focuses the search box;
// the arrow keys move between the box and the hits.

import { get } from './api.js';
import { badge, count, el, emptyState, plural, reconcile, replace } from './dom.js';
import { projectName } from './sessions.js';
import { timeEl } from './time.js';

/** Typing waits this long for a pause before it searches. */
const DEBOUNCE_MS = 200;
/** Hits asked for at first; "Show more" adds as many, up to the API's maximum. */
const PAGE = 20;
const MAX_HITS = 100;

const KINDS = { observation: 'Observation', summary: 'Summary', prompt: 'Prompt' };

/** The observation types memtray's providers write (see `NewObservation::kind`). */
const TYPES = ['bugfix', 'change', 'command', 'decision', 'discovery', 'failure', 'feature', 'refactor', 'research', 'test'];

/** Words as the server counts them (a letter or a digit); a query without one has nothing to look for. */
const WORDY = /[\p{Alphabetic}\p{N}]/u;

/** The link to a project's page of summaries; none for the nameless project, which has no such page. */
export function projectLink(project) {
  if (!project) return el('span', { text: projectName(project) });
  return el('a', { href: `#/projects/${encodeURIComponent(project)}`, title: `${project}: its summaries, newest first`, text: project });
}

/** Where a hit opens: its session, scrolled to the observation or summary itself. */
export function hitHref(hit) {
  if (hit.kind === 'observation') return `#/sessions/${hit.session_id}?observation=${hit.id}`;
  if (hit.kind === 'summary') return `#/sessions/${hit.session_id}?summary=${hit.id}`;
  return `#/sessions/${hit.session_id}`;
}

const ENTITIES = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };

/**
 * A hit's snippet as DOM nodes. The server escapes the snippet's text (& < > " ') and wraps each match in
 * `<mark>`…`</mark>`; the page still never parses it as markup. It is read as tokens instead: the two
 * marker tags become <mark> elements, the five entities the server writes become their characters, and
 * everything else is text, set through text nodes. So a stray tag can never become an element, whatever
 * the server sent (the test seeds a hit holding `<script>` and `&` and checks both arrive as text).
 */
export function snippetNodes(snippet) {
  const nodes = [];
  let mark = null;
  let text = '';
  const flush = () => {
    if (!text) return;
    if (mark) mark.append(text);
    else nodes.push(text);
    text = '';
  };
  for (const token of String(snippet ?? '').split(/(<mark>|<\/mark>|&(?:amp|lt|gt|quot|#39);)/)) {
    if (token === '<mark>') {
      flush();
      mark = el('mark');
      nodes.push(mark);
    } else if (token === '</mark>') {
      flush();
      mark = null;
    } else {
      // A snippet may span fields (one per line in the index): shown on one line, the fields separated.
      text += (ENTITIES[token] ?? token).replace(/\s*\n\s*/g, ' · ');
    }
  }
  flush();
  return nodes;
}

/** `node` with a `data-key`, so a redraw gives it focus back. */
function keyed(node, key) {
  node.dataset.key = key;
  return node;
}

function hitItem(hit) {
  return el(
    'li',
    { class: 'hit', dataset: { kind: hit.kind, hitId: hit.id } },
    el(
      'div',
      { class: 'hit-head' },
      badge(KINDS[hit.kind] ?? hit.kind, `kind-${hit.kind}`),
      hit.type ? badge(hit.type, `type-${hit.type}`) : null,
      el('a', { class: 'hit-title', href: hitHref(hit), dataset: { key: `hit-${hit.kind}-${hit.id}` }, text: hit.title || '(untitled)' }),
      el('span', { class: 'muted hit-meta' }, projectLink(hit.project), hit.author ? el('span', { class: 'author', text: ` · by ${hit.author}` }) : null, ' · ', timeEl(hit.created_at)),
    ),
    hit.snippet ? el('p', { class: 'hit-snippet' }, snippetNodes(hit.snippet)) : null,
  );
}

function readParams(params) {
  const kind = Object.hasOwn(KINDS, params.get('kind')) ? params.get('kind') : '';
  return {
    q: params.get('q') ?? '',
    project: params.get('project') ?? '',
    type: params.get('type') ?? '',
    kind,
    since: params.get('since') ?? '',
    author: params.get('author') ?? '',
    fts5: params.get('syntax') === 'fts5',
  };
}

function hashFor(state) {
  const params = new URLSearchParams();
  if (state.q) params.set('q', state.q);
  if (state.project) params.set('project', state.project);
  if (state.type) params.set('type', state.type);
  if (state.kind) params.set('kind', state.kind);
  if (state.since) params.set('since', state.since);
  if (state.author) params.set('author', state.author);
  if (state.fts5) params.set('syntax', 'fts5');
  const qs = params.toString();
  return qs ? `#/memory?${qs}` : '#/memory';
}

/** `since` for the API: a picked day means from local midnight; anything else goes as typed (and is judged there). */
function sinceParam(since) {
  const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(since);
  if (!day) return since;
  return String(new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3])).getTime());
}

/** Whether focus is somewhere the `/` key types a character. */
function typing(target) {
  return target instanceof Element && (target.closest('input, textarea, select, [contenteditable]') !== null || target.closest('dialog[open]') !== null);
}

export class MemoryView {
  name = 'memory';
  title = 'Memory';
  #ctx;
  #state;
  #limit = PAGE;
  #timer = null;
  /** False until the first render: only then, and only with an empty box, does the box take focus. */
  #started = false;
  /** The hash this view last navigated to itself, so its own navigation does not rewrite the box being typed in. */
  #sent = null;
  #projectsKey = '';
  #input;
  #project;
  #type;
  #kind;
  #since;
  #author;
  #fts5;
  #clear;
  #error;
  #count;
  #list;
  #more;
  #empty;
  #hint;
  #onKey;

  constructor(ctx, route) {
    this.#ctx = ctx;
    this.#state = readParams(route.params);
    this.#input = el('input', {
      type: 'search',
      id: 'memory-q',
      class: 'search-input',
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'Search observations, summaries and prompts',
      'aria-describedby': 'memory-hint',
      'aria-keyshortcuts': '/',
      'aria-controls': 'memory-hits',
      on: { input: () => this.#typed(), keydown: (event) => this.#boxKey(event) },
    });
    this.#project = el('select', { id: 'memory-project', on: { change: () => this.#go({ project: this.#project.value }) } }, el('option', { value: '', text: 'All projects' }));
    this.#type = el(
      'select',
      { id: 'memory-type', title: 'Only observations of this type (leaves out summaries and prompts)', on: { change: () => this.#go({ type: this.#type.value }) } },
      el('option', { value: '', text: 'Any type' }),
      TYPES.map((t) => el('option', { value: t, text: t })),
    );
    this.#kind = el(
      'select',
      { id: 'memory-kind', on: { change: () => this.#go({ kind: this.#kind.value }) } },
      el('option', { value: '', text: 'Everything' }),
      el('option', { value: 'observation', text: 'Observations' }),
      el('option', { value: 'summary', text: 'Summaries' }),
      el('option', { value: 'prompt', text: 'Prompts' }),
    );
    // A date picker where the engine has one; elsewhere a text box that takes YYYY-MM-DD.
    this.#since = el('input', { type: 'date', id: 'memory-since', placeholder: 'YYYY-MM-DD', on: { change: () => this.#go({ since: this.#since.value }) } });
    // Team memory: a teammate's name, or `me` for this machine's own.
    this.#author = el('input', { type: 'text', id: 'memory-author', size: 10, placeholder: 'anyone', title: 'A teammate\'s name, or me for your own memory', on: { change: () => this.#go({ author: this.#author.value.trim() }) } });
    this.#fts5 = el('input', { type: 'checkbox', id: 'memory-fts5', on: { change: () => this.#go({ fts5: this.#fts5.checked }) } });
    this.#clear = el('button', { type: 'button', on: { click: () => this.#go({ project: '', type: '', kind: '', since: '', author: '', fts5: false }) } }, 'Clear filters');
    this.#hint = el('span');
    this.#error = el('p', { class: 'notice error', role: 'alert', hidden: true });
    this.#count = el('p', { class: 'results-count muted', 'aria-live': 'polite' });
    this.#list = el('ol', { class: 'hits', id: 'memory-hits', 'aria-label': 'Search results', on: { keydown: (event) => this.#listKey(event) } });
    this.#more = el('p', { hidden: true });
    this.#empty = el('div');
    this.root = el(
      'section',
      { class: 'view memory', 'aria-labelledby': 'memory-title' },
      el('h1', { id: 'memory-title', text: 'Memory' }),
      el(
        'div',
        { role: 'search', 'aria-label': 'Search memory' },
        el(
          'div',
          { class: 'search-box' },
          el('label', { for: 'memory-q', class: 'visually-hidden' }, 'Search memory'),
          this.#input,
        ),
        el('p', { id: 'memory-hint', class: 'hint muted' }, this.#hint, ' Press ', el('kbd', { text: '/' }), ' to come back here, ', el('kbd', { text: '↓' }), ' to go to the results.'),
        el(
          'div',
          { class: 'filters' },
          el('label', { for: 'memory-project' }, 'Project'),
          this.#project,
          el('label', { for: 'memory-type' }, 'Type'),
          this.#type,
          el('label', { for: 'memory-kind' }, 'Kind'),
          this.#kind,
          el('label', { for: 'memory-since' }, 'Since'),
          this.#since,
          el('label', { for: 'memory-author' }, 'From'),
          this.#author,
          el('span', { class: 'check' }, this.#fts5, el('label', { for: 'memory-fts5', title: 'OR, NOT, "phrases", prefix*, NEAR(…), title:' }, 'FTS5 syntax')),
          this.#clear,
        ),
      ),
      this.#error,
      this.#count,
      this.#list,
      this.#more,
      this.#empty,
    );
    this.#syncControls(true);
    this.#onKey = (event) => {
      if (event.key !== '/' || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
      event.preventDefault();
      this.#input.focus();
      this.#input.select();
    };
    document.addEventListener('keydown', this.#onKey);
  }

  accepts(route) {
    return route.name === 'memory';
  }

  setRoute(route) {
    const state = readParams(route.params);
    const ours = hashFor(state) === this.#sent;
    this.#sent = null;
    if (!ours) clearTimeout(this.#timer);
    if (hashFor(state) !== hashFor(this.#state)) this.#limit = PAGE;
    this.#state = state;
    this.#syncControls(!ours);
  }

  /** New memory may match: refetch (coalesced); hits that did not change keep their nodes and focus. */
  wants(name) {
    return ['new_observation', 'new_summary', 'session_started', 'session_deleted'].includes(name);
  }

  destroy() {
    clearTimeout(this.#timer);
    document.removeEventListener('keydown', this.#onKey);
  }

  async load(signal) {
    const s = this.#state;
    const searching = this.#searchable(s);
    const [answer, projects] = await Promise.all([
      searching
        ? get('/api/search', { q: s.q, project: s.project, type: s.type, kind: s.kind, since: sinceParam(s.since), author: s.author, syntax: s.fts5 ? 'fts5' : '', limit: this.#limit }, signal)
        : null,
      get('/api/projects', {}, signal),
    ]);
    return { answer, projects: projects.projects, state: s, limit: this.#limit };
  }

  render({ answer, projects, state, limit }) {
    if (state !== this.#state) return;
    this.#renderProjects(projects);
    this.#error.hidden = true;
    this.#list.removeAttribute('aria-busy');
    if (!answer) {
      this.#show('idle', []);
      this.#count.textContent = '';
      this.#more.hidden = true;
      replace(this.#empty, state.q.trim() ? this.#nothingToSearch() : this.#idle(projects));
      if (!this.#started) this.#input.focus({ preventScroll: true });
      this.#started = true;
      return;
    }
    this.#started = true;
    const hits = answer.hits;
    this.#show(hits.length ? 'results' : 'empty', hits);
    replace(this.#empty, hits.length ? null : this.#noMatches());
    const capped = hits.length >= limit;
    this.#count.textContent = hits.length === 0 ? 'No matches' : capped ? `The best ${plural(hits.length, 'match', 'matches')}` : plural(hits.length, 'match', 'matches');
    this.#more.hidden = !capped;
    if (capped && limit < MAX_HITS) {
      replace(this.#more, el('button', { type: 'button', dataset: { key: 'more-hits' }, on: { click: () => this.#showMore() } }, 'Show more'));
    } else if (capped) {
      replace(this.#more, el('span', { class: 'muted', text: `Only the best ${count(MAX_HITS)} are shown: add a word or a filter to narrow the search.` }));
    }
  }

  /** A refused search (400: malformed FTS5 syntax, a bad date) says why inline; anything else is the page's. */
  renderError(error) {
    this.#list.removeAttribute('aria-busy');
    if (error.status !== 400) {
      // The page says what went wrong above the view; the hits on screen stay, marked as the last ones.
      if (this.root.dataset.state === 'loading') this.#count.textContent = 'The search did not finish.';
      return false;
    }
    this.#show('error', []);
    replace(this.#empty);
    this.#more.hidden = true;
    this.#count.textContent = '';
    this.#error.textContent = `Cannot search: ${error.message}`;
    this.#error.hidden = false;
    return true;
  }

  /** Draws `hits`; `data-state` and `data-rendered` (the address drawn) tell tests what is on screen. */
  #show(state, hits) {
    this.root.dataset.state = state;
    this.root.dataset.rendered = hashFor(this.#state);
    reconcile(this.#list, hits, (hit) => `${hit.kind}-${hit.id}`, hitItem);
    this.#list.hidden = hits.length === 0;
  }

  #searchable(s) {
    return s.fts5 ? s.q.trim() !== '' : WORDY.test(s.q);
  }

  #idle(projects) {
    const named = projects.filter((p) => p.project);
    return emptyState(
      'Type to search your memory',
      el('p', { text: 'memtray remembers what your agents did: every tool use becomes an observation, every stop a summary. Search finds them by any word they hold.' }),
      this.#state.project
        ? el('p', {}, el('a', { href: `#/projects/${encodeURIComponent(this.#state.project)}`, text: `Open ${this.#state.project}’s summaries →` }))
        : named.length
          ? el(
              'div',
              {},
              el('p', { class: 'muted', text: 'Or read a project’s summaries, newest first:' }),
              el('ul', { class: 'project-links' }, named.map((p) => el('li', {}, keyed(projectLink(p.project), `project-${p.project}`)))),
            )
          : null,
    );
  }

  #nothingToSearch() {
    return emptyState('Nothing to search for', el('p', { text: 'Type a word: punctuation alone matches nothing.' }));
  }

  #noMatches() {
    const s = this.#state;
    const filtered = Boolean(s.project || s.type || s.kind || s.since);
    return emptyState(
      'No matches',
      el('p', {}, 'Nothing in memory holds ', el('strong', { text: s.q }), filtered ? ' with these filters. ' : '. ', filtered ? el('button', { type: 'button', on: { click: () => this.#clear.click() } }, 'Clear filters') : 'Try fewer or shorter words.'),
    );
  }

  #renderProjects(projects) {
    if (this.#state.project && !projects.some((p) => p.project === this.#state.project)) {
      projects = [...projects, { project: this.#state.project, sessions: 0 }];
    }
    const key = JSON.stringify(projects);
    if (key === this.#projectsKey) return;
    this.#projectsKey = key;
    // Rebuilt only when the set changed, so an open or focused select is left alone by live refreshes.
    this.#project.replaceChildren(
      el('option', { value: '', text: 'All projects' }),
      ...projects.filter((p) => p.project).map((p) => el('option', { value: p.project, text: p.project })),
    );
    this.#project.value = this.#state.project;
  }

  /** Puts the state into the controls; the box only when the change came from elsewhere (Back, a link). */
  #syncControls(box) {
    const s = this.#state;
    if (box) this.#input.value = s.q;
    for (const [select, value] of [[this.#project, s.project], [this.#type, s.type]]) {
      if (value && ![...select.options].some((o) => o.value === value)) select.append(el('option', { value, text: value }));
      select.value = value;
    }
    this.#kind.value = s.kind;
    this.#since.value = s.since;
    this.#author.value = s.author;
    this.#fts5.checked = s.fts5;
    this.#hint.textContent = s.fts5
      ? 'FTS5 syntax: OR, NOT, "phrases", prefix*, NEAR(…), title:word.'
      : 'Every word must appear; the last may be the start of a word.';
    this.#clear.disabled = !s.project && !s.type && !s.kind && !s.since && !s.author && !s.fts5;
    if (this.#searchable(s)) {
      this.#count.textContent = 'Searching…';
      this.root.dataset.state = 'loading';
      this.#list.setAttribute('aria-busy', 'true');
    }
  }

  #typed() {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#go({ q: this.#input.value }, true), DEBOUNCE_MS);
  }

  #boxKey(event) {
    if (event.key === 'Enter') {
      clearTimeout(this.#timer);
      // Enter on the search already shown asks again (after a failure, say).
      if (!this.#go({ q: this.#input.value }, true)) this.#ctx.refresh();
    } else if (event.key === 'Escape' && this.#input.value) {
      event.preventDefault();
      this.#input.value = '';
      clearTimeout(this.#timer);
      this.#go({ q: '' }, true);
    } else if (event.key === 'ArrowDown') {
      const first = this.#list.querySelector('.hit-title');
      if (first && !this.#list.hidden) {
        event.preventDefault();
        first.focus();
      }
    }
  }

  /** Up and Down move between the hits' links (Up from the first goes back to the box); Enter opens one. */
  #listKey(event) {
    if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
    const links = [...this.#list.querySelectorAll('.hit-title')];
    const at = links.indexOf(document.activeElement);
    if (at < 0) return;
    event.preventDefault();
    const next = event.key === 'ArrowDown' ? links[Math.min(at + 1, links.length - 1)] : links[at - 1] ?? this.#input;
    next.focus();
  }

  #showMore() {
    this.#limit = Math.min(this.#limit + PAGE, MAX_HITS);
    this.#ctx.refresh();
  }

  /**
   * Navigates to the state with `change`. Typing replaces the history entry (one entry per search, not
   * per letter); a filter is a new entry, as in the sessions view. The navigation refetches at once, and
   * the Refresher aborts the search still in flight, so a slow answer to an old query never shows.
   * Returns false when nothing changed.
   */
  #go(change, typingEntry = false) {
    const hash = hashFor({ ...this.#state, ...change });
    if (hash === hashFor(this.#state)) return false;
    this.#sent = hash;
    this.#ctx.navigate(hash, { replace: typingEntry });
    return true;
  }
}
