// A project's page (#/projects/{name}): its timeline of summaries, newest first (GET /api/summaries), each
// with what was asked, looked at, done and left to do, and a link to its session at that summary. The
// newest 50 at first, with a button for older ones; a new summary appears by itself.

import { get } from './api.js';
import { count, el, emptyState, plural, reconcile, replace } from './dom.js';
import { summaryBody } from './session.js';
import { timeEl } from './time.js';

/** Summaries drawn at first; each "Show older" adds as many, up to the API's page maximum. */
const PAGE = 50;
const MAX_SHOWN = 500;

function timelineItem(s) {
  return el(
    'li',
    { class: 'summary timeline-item', dataset: { summaryId: s.id } },
    el(
      'p',
      { class: 'muted timeline-head' },
      timeEl(s.created_at),
      ' · ',
      el('a', { href: `#/sessions/${s.session_id}?summary=${s.id}`, dataset: { key: `summary-${s.id}` }, 'aria-label': `Session ${s.session_id}, up to prompt ${s.prompt_number}`, text: `Session ${s.session_id}` }),
      `, up to prompt ${s.prompt_number}`,
    ),
    summaryBody(s),
  );
}

export class ProjectView {
  name = 'project';
  title = 'Project';
  #ctx;
  #project;
  #limit = PAGE;
  #count;
  #list;
  #more;
  #empty;

  constructor(ctx, route) {
    this.#ctx = ctx;
    this.#project = route.project;
    this.title = `${route.project} · memory`;
    const encoded = encodeURIComponent(route.project);
    this.#count = el('span', { class: 'muted' });
    this.#list = el('ol', { class: 'timeline', 'aria-labelledby': 'project-timeline' });
    this.#more = el('p', { hidden: true });
    this.#empty = emptyState(
      'No summaries yet',
      el('p', { text: 'A summary is made each time an agent in this project stops; they appear here, newest first.' }),
    );
    this.#empty.hidden = true;
    this.root = el(
      'section',
      { class: 'view project', 'aria-labelledby': 'project-title' },
      el('p', { class: 'crumbs' }, el('a', { href: '#/memory', text: '← Memory' })),
      el('h1', { id: 'project-title', text: route.project }),
      el(
        'p',
        { class: 'toolbar' },
        el('a', { href: `#/memory?project=${encoded}`, text: 'Search this project' }),
        el('span', { class: 'muted', 'aria-hidden': 'true', text: '·' }),
        el('a', { href: `#/sessions?project=${encoded}`, text: 'Its sessions' }),
      ),
      el('h2', { id: 'project-timeline' }, 'Summaries, newest first ', this.#count),
      this.#list,
      this.#more,
      this.#empty,
    );
  }

  accepts(route) {
    return route.name === 'project' && route.project === this.#project;
  }

  setRoute() {}

  wants(name, data) {
    if (name === 'new_summary') return !data?.summary?.project || data.summary.project === this.#project;
    return name === 'session_deleted';
  }

  async load(signal) {
    const limit = this.#limit;
    const page = await get('/api/summaries', { project: this.#project, limit }, signal);
    return { page, limit };
  }

  render({ page, limit }) {
    const items = page.items.filter((s) => s.project === this.#project);
    this.#count.textContent = `(${count(page.total)})`;
    reconcile(this.#list, items, (s) => s.id, timelineItem);
    this.#list.hidden = items.length === 0;
    this.#empty.hidden = page.total > 0;
    const hidden = page.total - items.length;
    this.#more.hidden = hidden <= 0;
    if (hidden > 0 && limit < MAX_SHOWN) {
      replace(
        this.#more,
        `${plural(hidden, 'older summary', 'older summaries')} not shown. `,
        el('button', { type: 'button', dataset: { key: 'show-older' }, on: { click: () => this.#older() } }, 'Show older'),
      );
    } else if (hidden > 0) {
      replace(this.#more, el('span', { class: 'muted', text: `${plural(hidden, 'older summary', 'older summaries')} not shown: search this project to find them.` }));
    }
  }

  #older() {
    this.#limit = Math.min(this.#limit + PAGE, MAX_SHOWN);
    this.#ctx.refresh();
  }
}
