// Tiny DOM helpers. Every piece of text goes in through textContent (or a text node), never
// innerHTML: server text (display names, SKUs, notes, error details) is data, not markup.
// The static server's CSP also sets `require-trusted-types-for 'script'`, so an innerHTML
// assignment with a string would throw instead of parsing markup.

/**
 * Build an element: h("li", {class: "x", dataset: {id: "1"}, onclick: fn}, "text", child).
 * Strings become text nodes; null, undefined and false children are skipped.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "text") element.textContent = String(value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `parent` (replaceChildren never parses markup). */
export function replace(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing element #${id}`);
  return element;
}

export function show(element, visible = true) {
  element.hidden = !visible;
}
