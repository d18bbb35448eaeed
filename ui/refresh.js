// Coalesced refetching: live events only mark data dirty; the refetch runs at most once per interval and
// never twice at once, so a burst of a hundred events costs one request and one redraw, not a hundred.
// A user action (sort, page, filter, navigation) refetches at once and cancels a fetch it makes stale.

export class Refresher {
  #task;
  #interval;
  #timer = null;
  #running = null;
  #dirty = false;
  #last = -Infinity;
  #stopped = false;

  /** `task(signal)` fetches and renders; `signal` is aborted when its result would be stale. */
  constructor(task, intervalMs) {
    this.#task = task;
    this.#interval = intervalMs;
  }

  /** Something changed: refetch soon, at most once per interval. */
  request() {
    this.#dirty = true;
    this.#schedule();
  }

  /** Refetch now, abandoning a fetch in flight. */
  now() {
    this.#running?.abort();
    this.#running = null;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#dirty = true;
    this.#start();
  }

  stop() {
    this.#stopped = true;
    this.#running?.abort();
    clearTimeout(this.#timer);
  }

  #schedule() {
    if (this.#stopped || this.#running || this.#timer !== null) return;
    const wait = Math.max(0, this.#last + this.#interval - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#start();
    }, wait);
  }

  async #start() {
    if (this.#stopped || !this.#dirty) return;
    this.#dirty = false;
    const controller = new AbortController();
    this.#running = controller;
    this.#last = performance.now();
    try {
      await this.#task(controller.signal);
    } catch (e) {
      if (!controller.signal.aborted) console.error('refresh failed', e);
    } finally {
      if (this.#running === controller) {
        this.#running = null;
        if (this.#dirty) this.#schedule();
      }
    }
  }
}
