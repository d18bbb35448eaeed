// Building DOM nodes from data, safely: text always goes in through textContent, never through HTML
// strings, because observation text comes from tool output and must never become markup.

/**
 * Creates an element. `props`: `class`, `text`, `dataset` (object), `on` (object of event handlers),
 * attributes (strings; `true` sets an empty attribute, `false`/`null`/`undefined` leaves it out).
 * Children may be nodes, strings (become text nodes), arrays, or null/false (skipped).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'on') for (const [name, handler] of Object.entries(value)) node.addEventListener(name, handler);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/**
 * Replaces `parent`'s children. If focus was inside and the focused element carries `data-key`, the
 * element with the same key in the new content gets focus back, so a live refresh never throws a keyboard
 * user out of a table.
 */
export function replace(parent, ...children) {
  const active = document.activeElement;
  const key = active && parent.contains(active) ? active.dataset.key : undefined;
  parent.replaceChildren();
  append(parent, children);
  if (key !== undefined) {
    const again = parent.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again && !again.disabled) again.focus({ preventScroll: true });
  }
}

/** The data each reconciled node was built from, to tell whether it must be rebuilt. */
const builtFrom = new WeakMap();

/**
 * Makes `parent`'s children one node per item, in order, reusing the node of an item whose data did not
 * change, so a live refresh leaves untouched rows alone: focus, hover, selection and a click in progress
 * survive, and the DOM does not churn. `keyOf(item)` must be unique; `build(item)` makes a fresh node.
 */
export function reconcile(parent, items, keyOf, build) {
  const active = document.activeElement;
  const focusKey = active && parent.contains(active) ? active.dataset.key : undefined;
  const existing = new Map();
  for (const node of parent.children) {
    if (node.dataset.itemKey !== undefined) existing.set(node.dataset.itemKey, node);
  }
  const wanted = items.map((item) => {
    const key = String(keyOf(item));
    const data = JSON.stringify(item);
    const old = existing.get(key);
    if (old && builtFrom.get(old) === data) return old;
    const node = build(item);
    node.dataset.itemKey = key;
    builtFrom.set(node, data);
    return node;
  });
  const keep = new Set(wanted);
  for (const node of [...parent.childNodes]) {
    if (!keep.has(node)) node.remove();
  }
  // Move only what is out of place: a node that stays where it is keeps its focus.
  let at = parent.firstChild;
  for (const node of wanted) {
    if (node === at) at = at.nextSibling;
    else parent.insertBefore(node, at);
  }
  if (focusKey !== undefined && !parent.contains(document.activeElement)) {
    const again = parent.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (again && !again.disabled) again.focus({ preventScroll: true });
  }
}

/** A number with thousands separators. */
export function count(n) {
  return Number(n ?? 0).toLocaleString();
}

/** "1 session", "3 sessions". */
export function plural(n, one, many = `${one}s`) {
  return `${count(n)} ${n === 1 ? one : many}`;
}

/** A small status badge; `kind` picks the colour (pending, processing, processed, failed, stuck, ...). */
export function badge(text, kind = text) {
  return el('span', { class: `badge badge-${kind}`, text });
}

/** A panel that tells the user what to do next when there is nothing to show. */
export function emptyState(title, ...body) {
  return el('div', { class: 'empty' }, el('p', { class: 'empty-title', text: title }), ...body);
}
