// The referral view: cases, the threshold for a target accuracy, the expert's decisions.
"use strict";
let R = null;
let planTimer = null;

async function load(state) {
  R = state || await api("/api/referral/state");
  document.getElementById("sample").hidden = !R.samples;
  renderCases();
  schedulePlan();
}

function renderCases() {
  const n = R.cases.length;
  document.getElementById("n-cases").textContent = `${n} case${n === 1 ? "" : "s"} stored`;
  const referred = R.cases.filter(c => c.referred === 1);
  const kept = R.cases.filter(c => c.referred === 0);
  document.getElementById("n-referred").textContent = R.runs.length
    ? `(${referred.length} of ${referred.length + kept.length}; ${referred.filter(c => c.decision !== null).length} decided)` : "";
  const box = document.getElementById("referred");
  box.innerHTML = "";
  for (const c of referred) box.append(caseCard(c, true));
  if (!referred.length) box.append(el("p", {class: "muted", text: R.runs.length ? "No case was referred." : "Set a target and press “Refer these cases”."}));
  const keptBox = document.getElementById("kept");
  keptBox.innerHTML = "";
  for (const c of kept) keptBox.append(caseCard(c, false));
  document.getElementById("kept-summary").textContent = `Kept, decided by the model (${kept.length})`;
}

function caseCard(c, referred) {
  const probsEntry = {total: null};
  const classes = el("div", {class: "classes"});
  B.classes.forEach((name, k) => {
    const p = c.probs ? c.probs[k] : null;
    classes.append(el("button", {
      class: "cls" + (c.decision === k ? " chosen" : "") + (c.predicted === k ? " predicted" : ""),
      "data-label": k, disabled: referred ? null : "disabled",
      onclick: () => decide(c.id, k)},
      el("span", {class: "cname", text: name}),
      el("span", {class: "pbar"}, p === null ? null : el("span", {class: "pfill", style: `width:${100 * p}%`})),
      el("span", {class: "pval", text: p === null ? "" : pct(p)})));
  });
  return el("div", {class: "card" + (c.decision !== null ? " done" : ""), "data-case": c.id},
    el("div", {class: "head"}, inputView(c), el("div", {class: "unc small"},
      el("div", {text: `model says ${c.predicted === null ? "?" : B.classes[c.predicted]}`}),
      el("div", {class: "muted", text: c.score === null ? "" : `uncertainty ${c.score.toFixed(2)} nats`}),
      el("div", {class: "verdict", text: c.decision === null ? "" : `expert: ${B.classes[c.decision]}`}))),
    el("div", {class: "name muted small", text: c.name}),
    referred ? classes : null);
}

async function decide(id, label) { await load(await api("/api/referral/decide", {case: id, label})); }

function params() {
  return {target: Number(document.getElementById("target").value) / 100,
          score: document.getElementById("score").value};
}

function schedulePlan() { clearTimeout(planTimer); planTimer = setTimeout(plan, 150); }

async function plan() {
  const box = document.getElementById("plan");
  const btn = document.getElementById("commit");
  const {target, score} = params();
  let p;
  try {
    p = await api(`/api/referral/plan?target=${encodeURIComponent(target)}&score=${encodeURIComponent(score)}`);
  } catch (err) { box.textContent = err.message; btn.disabled = true; return; }
  const pts = p.curve_fraction.map((f, i) => [f, p.curve_accuracy[i]]);
  const ymin = Math.max(0, Math.floor(10 * Math.min(...p.curve_accuracy, target)) / 10 - 0.05);
  lineChart(document.getElementById("ref-curve"), pts, {xmin: 0, xmax: 1, ymin, hline: target, noDots: true,
    xlabel0: "refer 0%", xlabel1: "100%", mark: [p.expected_fraction, p.accuracy_kept]});
  box.innerHTML = "";
  box.dataset.target = String(p.target);
  box.dataset.score = p.score;
  box.append(
    el("p", {}, p.achievable
      ? el("span", {}, "Refer the ", el("b", {id: "expected-fraction", text: pct(p.expected_fraction)}),
          ` most uncertain cases (${p.k} of ${p.n_heldout} held-out) to reach `, el("b", {text: pct(p.accuracy_kept)}),
          ` on the rest (all kept: ${pct(p.accuracy_all)}).`)
      : el("span", {class: "warn", text: `No threshold reaches ${pct(target)} on the held-out data; the best is ${pct(p.accuracy_kept)} referring ${pct(p.expected_fraction)}. Label more, or lower the target.`})),
    el("p", {}, `Of your ${p.cases_total} cases, `, el("b", {id: "cases-referred", text: String(p.cases_referred)}),
      ` would go to the expert` + (p.threshold === null ? " (threshold: refer none)." : ` (${score} uncertainty ≥ ${p.threshold.toFixed(3)} nats).`)));
  btn.disabled = !p.cases_total;
}

document.getElementById("target").addEventListener("input", schedulePlan);
document.getElementById("score").addEventListener("change", schedulePlan);
document.getElementById("commit").addEventListener("click", async () => {
  await load(await api("/api/referral/commit", params()));
});
document.getElementById("sample").addEventListener("click", async () => {
  await load(await api("/api/cases/sample", {count: 50}));
});
document.getElementById("upload").addEventListener("submit", async ev => {
  ev.preventDefault();
  const accept = document.querySelector("main.referral").dataset.accept.split(",");
  const picked = [...document.getElementById("files").files, ...document.getElementById("folder").files];
  // a folder may hold other files: send only the accepted kinds
  const files = picked.filter(f => accept.some(ext => f.name.toLowerCase().endsWith(ext)));
  if (!files.length) { showError(`choose ${accept.join(", ")} files or a folder holding some.`); return; }
  // several requests, each within the server's limits (500 files, 20 MiB)
  let chunk = [], size = 0;
  const flush = async () => {
    if (!chunk.length) return;
    const form = new FormData();
    for (const f of chunk) form.append("files", f);
    await load(await send("/api/cases", {method: "POST", body: form}));
    chunk = []; size = 0;
  };
  for (const f of files) {
    if (chunk.length >= 200 || size + f.size > 16 * 2 ** 20) await flush();
    chunk.push(f); size += f.size;
  }
  await flush();
  document.getElementById("files").value = "";
  document.getElementById("folder").value = "";
});
load().catch(() => {});
