// The labelling view: the batch, answers by click or key, undo, refit progress, the panel.
"use strict";
let S = null;            // last state from the server
let focusItem = null;    // item id of the highlighted card
const mine = [];         // items this tab answered, for undo (newest last)
let shownKey = "";

async function refresh(state) {
  S = state || await api("/api/state");
  render();
}

function pending() { return S.items.filter(it => it.status === null); }

function render() {
  const key = S.batch + ":" + S.items.map(it => it.item + "=" + it.status + "/" + it.label).join(",");
  renderPanel();
  renderRefit();
  if (key === shownKey) { markFocus(); return; }
  shownKey = key;
  const cards = document.getElementById("cards");
  cards.innerHTML = "";
  const empty = document.getElementById("empty");
  empty.hidden = S.items.length > 0;
  if (!S.items.length) empty.textContent = "Nothing left to label in the pool.";
  const byModel = S.has_model && S.items.length && S.items[0].probs;
  document.getElementById("batch-title").textContent = byModel
    ? `Batch ${S.batch}: ${S.items.length} items the model is least sure of (${S.acquisition})`
    : `Batch ${S.batch}: ${S.items.length} random items to start (no model yet)`;
  for (const it of S.items) cards.append(card(it));
  if (focusItem === null || !S.items.some(it => it.item === focusItem && it.status === null)) {
    const next = pending()[0];
    focusItem = next ? next.item : null;
  }
  markFocus();
}

function card(it) {
  const buttons = el("div", {class: "classes"});
  B.classes.forEach((name, c) => {
    const p = it.probs ? it.probs[c] : null;
    buttons.append(el("button", {
      class: "cls" + (it.status === "label" && it.label === c ? " chosen" : ""),
      "data-label": c, title: `label as ${name}` + (c < 10 ? ` (key ${c})` : ""),
      onclick: () => answer(it.item, "label", c)},
      el("span", {class: "cname", text: name}),
      el("span", {class: "pbar"}, p === null ? null : el("span", {class: "pfill", style: `width:${100 * p}%`})),
      el("span", {class: "pval", text: p === null ? "" : pct(p)})));
  });
  const done = it.status !== null;
  const verdict = !done ? null : el("div", {class: "verdict"},
    el("span", {text: it.status === "label" ? `labelled ${B.classes[it.label]}` : it.status === "skip" ? "skipped" : "not sure"}),
    el("button", {class: "link", onclick: () => undo(it.item), text: "undo"}));
  return el("div", {class: "card" + (done ? " done" : ""), "data-item": it.item,
                    "data-status": it.status || "", onclick: () => { focusItem = it.item; markFocus(); }},
    el("div", {class: "head"}, inputView(it), uncertaintyView(it)),
    el("div", {class: "name muted small", text: it.name}),
    buttons,
    el("div", {class: "other"},
      el("button", {class: "skip", onclick: () => answer(it.item, "skip"), text: "skip (s)"}),
      el("button", {class: "unsure", onclick: () => answer(it.item, "unsure"), text: "not sure (n)"})),
    verdict);
}

function markFocus() {
  for (const c of document.querySelectorAll(".card"))
    c.classList.toggle("focused", Number(c.dataset.item) === focusItem);
}

function moveFocus(step) {
  if (!S || !S.items.length) return;
  const ids = S.items.map(it => it.item);
  let i = ids.indexOf(focusItem);
  i = i < 0 ? 0 : (i + step + ids.length) % ids.length;
  focusItem = ids[i];
  markFocus();
  const c = document.querySelector(`.card[data-item="${focusItem}"]`);
  if (c) c.scrollIntoView({block: "nearest"});
}

async function answer(item, status, label) {
  const state = await api("/api/answer", {item, status, label: label === undefined ? null : label});
  const i = mine.indexOf(item);
  if (i >= 0) mine.splice(i, 1);
  mine.push(item);
  S = state;
  const next = pending().find(it => S.items.findIndex(x => x.item === it.item) > S.items.findIndex(x => x.item === item)) || pending()[0];
  focusItem = next ? next.item : null;
  render();
}

async function undo(item) {
  if (item === undefined) item = mine.pop();
  else { const i = mine.indexOf(item); if (i >= 0) mine.splice(i, 1); }
  if (item === undefined) { showError("nothing of yours to undo in this tab."); return; }
  const state = await api("/api/undo", {item});
  if (state.undone === null) showError(`item ${item} had no answer to undo.`);
  S = state;
  focusItem = item;
  render();
}

function renderRefit() {
  const box = document.getElementById("refit");
  const r = S.refit;
  if (r.error) showError(r.error);
  box.hidden = !S.refitting;
  if (!S.refitting) return;
  const phase = {training: "Training on your labels", evaluating: "Measuring held-out accuracy",
                 scoring: "Choosing the next batch"}[r.phase] || "Refitting";
  document.getElementById("refit-fill").style.width = pct(r.fraction || 0);
  document.getElementById("refit-text").textContent =
    `${phase}… ${Math.round(100 * (r.fraction || 0))}% (${(r.elapsed || 0).toFixed(1)} s)`;
}

function renderPanel() {
  const c = S.counts;
  document.getElementById("n-labels").textContent = c.labelled;
  document.getElementById("n-other").textContent =
    ` · ${c.skip} skipped · ${c.unsure} not sure · ${c.pool - c.labelled - c.skip - c.unsure} left`;
  const acc = document.getElementById("acc-now");
  const pts = S.curve.filter(f => f.accuracy !== null).map(f => [f.n, f.accuracy]);
  if (!S.has_heldout) acc.textContent = "no held-out labels";
  else if (!pts.length) acc.textContent = "— (after the first refit)";
  else {
    const last = pts[pts.length - 1];
    acc.textContent = `${pct(last[1])} with ${last[0]} labels`;
  }
  acc.dataset.accuracy = pts.length ? String(pts[pts.length - 1][1]) : "";
  acc.dataset.history = JSON.stringify(pts);
  lineChart(document.getElementById("curve"), pts,
            {xmin: 0, xmax: Math.max(10, ...pts.map(p => p[0])),
             xlabel1: `${Math.max(10, ...pts.map(p => p[0]))} labels`});
  const bal = document.getElementById("balance");
  bal.innerHTML = "";
  const most = Math.max(1, ...c.per_class);
  B.classes.forEach((name, i) => bal.append(el("div", {class: "brow"},
    el("span", {class: "cname", text: name}),
    el("span", {class: "pbar"}, el("span", {class: "bfill", style: `width:${100 * c.per_class[i] / most}%`})),
    el("span", {class: "pval", text: String(c.per_class[i])}))));
  const last = S.curve[S.curve.length - 1];
  document.getElementById("model-info").textContent = `${S.method}, acquisition ${S.acquisition}` +
    (last ? ` · last refit ${last.seconds.toFixed(1)} s` : "");
}

document.addEventListener("keydown", ev => {
  if (ev.target.closest && ev.target.closest("input, select, textarea")) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key;
  if (k === "ArrowRight" || k === "ArrowDown") { moveFocus(1); ev.preventDefault(); return; }
  if (k === "ArrowLeft" || k === "ArrowUp") { moveFocus(-1); ev.preventDefault(); return; }
  if (k === "u" || k === "Backspace") { undo().catch(() => {}); ev.preventDefault(); return; }
  if (focusItem === null) return;
  if (/^[0-9]$/.test(k) && Number(k) < B.classes.length) answer(focusItem, "label", Number(k)).catch(() => {});
  else if (k === "s") answer(focusItem, "skip").catch(() => {});
  else if (k === "n" || k === "?") answer(focusItem, "unsure").catch(() => {});
});

async function poll() {
  try { await refresh(); } catch (err) { /* shown already */ }
  setTimeout(poll, S && S.refitting ? 400 : 1500);
}
poll();
