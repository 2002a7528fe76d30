// Shared helpers: JSON requests that show errors in the page, DOM building, small charts.
"use strict";
const B = window.BAYESDL;

function showError(message) {
  const el = document.getElementById("error");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { el.hidden = true; }, 8000);
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  return send(path, opts);
}

async function send(path, opts) {
  let resp;
  try {
    resp = await fetch(path, Object.assign({credentials: "same-origin"}, opts));
  } catch (err) {
    showError("cannot reach the server: is `bayesdl label` still running?");
    throw err;
  }
  let data = null;
  try { data = await resp.json(); } catch (err) { data = null; }
  if (!resp.ok) {
    const msg = data && data.error ? data.error : `request failed (${resp.status})`;
    showError(msg);
    throw new Error(msg);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function pct(x) { return (100 * x).toFixed(1) + "%"; }

// An item's input: the image, or a table of its features.
function inputView(entry) {
  if (entry.image) return el("img", {class: "pix", src: entry.image, alt: entry.name});
  const t = el("table", {class: "features"});
  for (const [name, v] of entry.features.slice(0, 12))
    t.append(el("tr", {}, el("td", {text: name}), el("td", {text: String(v)})));
  return t;
}

function uncertaintyView(entry) {
  if (entry.total === null || entry.total === undefined)
    return el("div", {class: "unc muted small", text: "no model yet"});
  const max = Math.log(B.classes.length);
  const row = (name, v, cls) => el("div", {class: "urow"},
    el("span", {class: "uname", text: name}),
    el("span", {class: "ubar"}, el("span", {class: "ufill " + cls,
      style: `width:${Math.min(100, 100 * v / max)}%`})),
    el("span", {class: "uval", text: v.toFixed(2)}));
  return el("div", {class: "unc"}, row("total", entry.total, "t"),
    row("epistemic", entry.epistemic, "e"), row("aleatoric", entry.aleatoric, "a"));
}

// Line chart: points [[x, y]] with y in [0, 1], into an <svg viewBox="0 0 300 160">.
function lineChart(svg, points, opts) {
  opts = opts || {};
  const W = 300, H = 160, L = 34, R = 8, T = 8, Bm = 22;
  svg.innerHTML = "";
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n); return n;
  };
  const xs = points.map(p => p[0]);
  const x0 = opts.xmin !== undefined ? opts.xmin : Math.min(...xs, 0);
  const x1 = opts.xmax !== undefined ? opts.xmax : Math.max(...xs, 1);
  const y0 = opts.ymin !== undefined ? opts.ymin : 0, y1 = 1;
  const px = x => L + (W - L - R) * (x - x0) / ((x1 - x0) || 1);
  const py = y => T + (H - T - Bm) * (1 - (y - y0) / ((y1 - y0) || 1));
  for (const g of [0, 0.25, 0.5, 0.75, 1]) {
    const y = y0 + g * (y1 - y0);
    add("line", {x1: L, x2: W - R, y1: py(y), y2: py(y), class: "grid"});
    add("text", {x: L - 4, y: py(y) + 3, class: "tick", "text-anchor": "end"}, Math.round(100 * y) + "%");
  }
  add("text", {x: L, y: H - 6, class: "tick"}, opts.xlabel0 || String(x0));
  add("text", {x: W - R, y: H - 6, class: "tick", "text-anchor": "end"}, opts.xlabel1 || String(x1));
  if (opts.hline !== undefined)
    add("line", {x1: L, x2: W - R, y1: py(opts.hline), y2: py(opts.hline), class: "target"});
  if (points.length) {
    add("polyline", {points: points.map(p => `${px(p[0])},${py(p[1])}`).join(" "), class: "curve"});
    if (!opts.noDots) for (const p of points) add("circle", {cx: px(p[0]), cy: py(p[1]), r: 2.5, class: "dot"});
  }
  if (opts.mark) add("circle", {cx: px(opts.mark[0]), cy: py(opts.mark[1]), r: 5, class: "mark"});
}
