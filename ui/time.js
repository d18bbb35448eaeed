// Times as people read them: "3 min ago" with the exact local time in a tooltip. Every time memtray
// stores is milliseconds since the Unix epoch.

import { el } from './dom.js';

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'short' });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

const STEPS = [
  [60, 'second'],
  [60, 'minute'],
  [24, 'hour'],
  [7, 'day'],
  [4.35, 'week'],
  [12, 'month'],
  [Infinity, 'year'],
];

/** "5 sec. ago", "3 hr. ago", "in 2 min." relative to now. */
export function ago(ms, now = Date.now()) {
  let value = (ms - now) / 1000;
  for (const [size, unit] of STEPS) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return relative.format(Math.round(value), 'year');
}

/** The full local date and time. */
export function exact(ms) {
  return absolute.format(new Date(ms));
}

/** A <time> element showing `ago`, with the exact time as its title and machine-readable datetime. */
export function timeEl(ms) {
  if (ms === null || ms === undefined) return el('span', { class: 'muted', text: '—' });
  const date = new Date(ms);
  return el('time', { datetime: date.toISOString(), title: exact(ms), text: ago(ms) });
}

/** Keeps every relative time on the page current while nothing else redraws it. */
export function keepTimesFresh(everyMs = 15000) {
  setInterval(() => {
    const now = Date.now();
    for (const time of document.querySelectorAll('time[datetime]')) {
      time.textContent = ago(Date.parse(time.dateTime), now);
    }
  }, everyMs);
}
