// The relevance workbench: plain JS over /v1/workbench/info, /v1/search, /v1/compare, /v1/items/{id},
// /v1/items/{id}/related and /v1/ratings (a rater's grades: j/k move between items, a grade's key grades). No build step, no external assets. Every text from the server is set as text, never HTML.
"use strict";

const RANKER_NAMES = { bm25: "BM25", student: "student (bi-encoder)", teacher: "teacher (cross-encoder)" };
const SHORT_NAMES = { bm25: "BM25", student: "student", teacher: "teacher" };
const FIELD_LABELS = { description: "description", image_caption: "image", board_titles: "boards",
  engaged_queries: "searches" };
const state = { info: null, scale: null, selected: null, last: null, focus: -1, grades: {} };
const $ = (id) => document.getElementById(id);

// h("div", {class: "x", onclick: f}, child, "text", ...): a DOM element; strings become text nodes.
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(method, path, body) {
  const res = await fetch(path, { method, headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    let detail = data.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    throw new Error(`${res.status}: ${detail || res.statusText}`);
  }
  return data;
}

// -- grades: colour and name ------------------------------------------------------------------------
function gradeColour(grade) {
  const g = state.scale.grades;
  const t = g.length > 1 ? (grade - g[0]) / (g[g.length - 1] - g[0]) : 1;
  return `hsl(${Math.round(4 + 128 * t)}, 58%, ${Math.round(46 - 6 * t)}%)`;
}
function gradeName(grade) {
  const i = state.scale.grades.indexOf(grade);
  const name = i >= 0 ? state.scale.names[i] : "";
  return name && name !== String(grade) ? `${grade} · ${name}` : String(grade);
}
const fmt = (x, d = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));

// -- setup ------------------------------------------------------------------------------------------
async function init() {
  let info;
  try {
    info = await api("GET", "/v1/workbench/info");
  } catch (e) {
    showError(`cannot load the workbench: ${e.message}`);
    document.body.dataset.state = "error";
    return;
  }
  state.info = info;
  state.scale = info.scale;
  const meta = $("meta");
  const ds = info.dataset;
  meta.append(
    h("span", { class: "badge" }, ds ? `dataset ${ds.name} · ${ds.n_items.toLocaleString()} items` : "no dataset"),
    h("span", { class: "badge" }, `student ${info.model_version}`),
    h("span", { class: "badge" }, `index v${info.index_version} · ${info.index_items.toLocaleString()} items`),
    ...(info.teacher ? [h("span", { class: "badge", title: info.teacher.path }, `teacher ${info.teacher.backbone}`)] : []));
  if (ds && ds.synthetic) meta.append(h("span", { class: "badge" }, "synthetic data"));

  for (const lang of info.languages) $("language").append(h("option", { value: lang }, lang));
  for (const sel of [$("ranker-a"), $("ranker-b")]) {
    for (const [name, a] of Object.entries(info.rankers)) {
      sel.append(h("option", { value: name, disabled: !a.available, title: a.reason || "" },
        RANKER_NAMES[name] + (a.available ? "" : " — unavailable")));
    }
  }
  const available = Object.keys(info.rankers).filter((r) => info.rankers[r].available);
  $("ranker-a").value = info.default_ranker;
  $("ranker-b").value = available.find((r) => r !== info.default_ranker) || info.default_ranker;
  if (available.length < 2) $("compare").disabled = true;
  $("k").max = info.limits.max_k;
  $("pool").max = info.limits.max_pool;
  $("query").maxLength = info.limits.max_query_chars;

  const notices = $("notices");
  for (const [name, a] of Object.entries(info.rankers)) {
    if (!a.available) notices.append(h("div", { class: "notice" }, `${RANKER_NAMES[name]} is unavailable: ${a.reason}`));
  }
  if (info.fields_note) notices.append(h("div", { class: "notice" }, info.fields_note));

  if (info.examples.length) {
    const box = $("examples");
    box.append(h("span", { class: "lead" }, "judged queries:"));
    for (const ex of info.examples) {
      box.append(h("button", { type: "button", class: "chip", title: `${ex.query_id}: ${ex.n_judged} judgments`,
        onclick: () => { $("query").value = ex.query; $("language").value = ex.language; run(); } },
        ex.query, h("small", {}, `${ex.language} · ${ex.n_judged}`)));
    }
  }

  if (info.grading.enabled) {
    $("rater-box").hidden = false;
    $("rater").value = localStorage.getItem("searchrel.rater") || "";
    $("rater").addEventListener("change", () => localStorage.setItem("searchrel.rater", $("rater").value.trim()));
  }
  document.addEventListener("keydown", onKey);
  $("compare").addEventListener("change", () => { $("ranker-b").disabled = !$("compare").checked; });
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
  readHash();
  document.body.dataset.state = "ready";
  if ($("query").value.trim()) run();
}

// the form <-> the URL's hash, so a view can be shared
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has("q")) $("query").value = p.get("q");
  if (p.has("lang")) $("language").value = p.get("lang");
  if (p.has("a")) $("ranker-a").value = p.get("a");
  if (p.has("b")) $("ranker-b").value = p.get("b");
  if (p.has("k")) $("k").value = p.get("k");
  if (p.has("pool")) $("pool").value = p.get("pool");
  $("compare").checked = p.get("cmp") === "1" && !$("compare").disabled;
  $("ranker-b").disabled = !$("compare").checked;
}
function writeHash(req) {
  const p = new URLSearchParams({ q: req.query, lang: req.language || "", a: req.a, k: req.k, pool: req.pool });
  if (req.b) { p.set("b", req.b); p.set("cmp", "1"); }
  history.replaceState(null, "", `#${p}`);
}

function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  box.hidden = !msg;
}

// -- search -----------------------------------------------------------------------------------------
async function run() {
  const query = $("query").value.trim();
  if (!query) { showError("type a query first"); return; }
  const req = { query, language: $("language").value || null, a: $("ranker-a").value,
    b: $("compare").checked ? $("ranker-b").value : null,
    k: parseInt($("k").value, 10) || 20, pool: parseInt($("pool").value, 10) || 50 };
  if (req.b && req.b === req.a) { showError("pick two different rankers to compare"); return; }
  writeHash(req);
  showError("");
  document.body.dataset.state = "loading";
  $("search-btn").disabled = true;
  $("search-btn").textContent = "Searching…";
  try {
    const common = { query: req.query, language: req.language, k: req.k, pool: req.pool };
    const data = req.b ? await api("POST", "/v1/compare", { ...common, rankers: [req.a, req.b] })
      : await api("POST", "/v1/search", { ...common, ranker: req.a });
    state.last = data;
    render(data);
    document.body.dataset.state = "done";
  } catch (e) {
    showError(e.message);
    document.body.dataset.state = "error";
  } finally {
    $("search-btn").disabled = false;
    $("search-btn").textContent = "Search";
  }
}

function render(data) {
  const columns = data.columns || [{ ranker: data.ranker, items: data.items, judged: data.judged,
    timing_ms: data.timing_ms.rank }];
  renderStatus(data);
  const box = h("div", { class: `columns${columns.length > 1 ? " two" : ""}` });
  for (const col of columns) box.append(renderColumn(col, data, columns.length > 1));
  $("results").replaceChildren(box);
  if (state.selected) markSelected(state.selected);
  state.focus = -1;
  if (data.grading.enabled) setFocus(0);
}

function renderStatus(data) {
  const p = data.pool;
  const parts = [h("span", {}, "pool ", h("b", {}, p.size), " candidates: ",
    `${p.sources.bm25} BM25 · ${p.sources.ann} nearest (student) · ${p.sources.judged} judged`,
    p.dropped ? ` · ${p.dropped} index hits not in the dataset left out` : "")];
  const j = data.judged_query;
  if (j) {
    parts.push(" · ", h("span", { class: "judged" }, `judged query “${j.text}” (${j.languages.join(", ")}, `
      + `${j.query_ids.join(", ")}): ${j.n_judged} judged, ${j.n_in_pool} in the pool`));
  } else if (state.info.dataset) {
    parts.push(" · not a judged query");
  }
  if (data.summary) {
    const s = data.summary;
    parts.push(h("br"), h("span", {}, `top ${s.shown}: `, h("b", {}, `${s.overlap} shared`),
      `, ${s.same_position} at the same place · Spearman over the pool ${fmt(s.spearman)}`));
  }
  parts.push(" · ", `${Math.round(data.timing_ms.total)} ms`);
  const g = data.grading;
  if (g.enabled) {
    const keys = `${state.scale.grades[0]}–${state.scale.grades[state.scale.grades.length - 1]}`;
    parts.push(h("br"), h("span", { id: "grading", class: "grading on" }, `grading ${g.query_id}: j/k move, `
      + `${keys} grades the focused item (saved to ${state.info.grading.file})`));
  } else if (state.info.grading.enabled) {
    parts.push(h("br"), h("span", { id: "grading", class: "grading off" }, `no grading here: ${g.reason}`));
  }
  $("status").replaceChildren(...parts);
}

function renderColumn(col, data, comparing) {
  const stats = [];
  if (col.judged) {
    stats.push(`nDCG@${col.judged.k} on judged ${fmt(col.judged.ndcg, 3)}`,
      `${col.judged.judged_in_top_k}/${col.judged.judged_in_pool} judged in top ${data.k}`);
  }
  stats.push(`${Math.round(col.timing_ms)} ms`);
  const other = comparing ? data.rankers.find((r) => r !== col.ranker) : null;
  const head = h("div", { class: "col-head" },
    h("h2", {}, RANKER_NAMES[col.ranker] || col.ranker, other ? h("small", {}, `vs ${SHORT_NAMES[other] || other}`) : null),
    h("div", { class: "col-stats" }, stats.join(" · ")));
  const list = h("ol", { class: "cards" });
  if (!col.items.length) list.append(h("li", { class: "empty" }, "no candidates for this query"));
  for (const item of col.items) list.append(renderCard(item, col.ranker, other, data.k));
  return h("div", { class: "column", dataset: { ranker: col.ranker } }, head, list);
}

function moveBadge(item, other, k) {
  if (item.other_rank === undefined) return null;
  const where = `rank ${item.other_rank} in ${SHORT_NAMES[other] || other}`;
  if (item.new) return h("span", { class: "move new", title: `${where}: not in its top ${k}` }, "new");
  if (item.move > 0) return h("span", { class: "move up", title: where }, `▲${item.move}`);
  if (item.move < 0) return h("span", { class: "move down", title: where }, `▼${-item.move}`);
  return h("span", { class: "move same", title: where }, "=");
}

function renderProbs(item, ranker) {
  if (!item.probabilities) {
    return [h("span", { class: "score" }, `${ranker === "bm25" ? "BM25" : "score"} `,
      h("b", {}, fmt(item.score, 3))), h("span", { class: "na" }, "grade probabilities n/a")];
  }
  const bar = h("div", { class: "probs", title: "grade probabilities" });
  const nums = [];
  for (const g of state.scale.grades) {
    const p = item.probabilities[String(g)] || 0;
    bar.append(h("span", { style: `width:${(100 * p).toFixed(2)}%;background:${gradeColour(g)}`,
      title: `grade ${gradeName(g)}: ${p.toFixed(3)}` }));
    nums.push(`${g}:${p.toFixed(2).replace(/^0/, "")}`);
  }
  return [h("span", { class: "score" }, "E[grade] ", h("b", {}, fmt(item.expected_grade)),
    ` · grade ${item.grade}`), bar, h("span", { class: "probnums" }, nums.join(" "))];
}

function fieldRows(fields, skip) {
  const rows = [];
  for (const [name, value] of Object.entries(fields || {})) {
    if (skip.includes(name)) continue;
    const text = Array.isArray(value) ? value.join(" · ") : String(value);
    const long = text.length > 140; // long values are collapsed to two lines, with a toggle
    const span = h("span", { class: long ? "clamp" : null }, text);
    const dd = h("dd", {}, span);
    if (long) {
      dd.append(h("button", { type: "button", class: "more", onclick: (ev) => {
        ev.stopPropagation();
        span.classList.toggle("clamp");
        ev.target.textContent = span.classList.contains("clamp") ? "more" : "less";
      } }, "more"));
    }
    rows.push(h("dt", {}, FIELD_LABELS[name] || name.replace(/_/g, " ")), dd);
  }
  return rows;
}

function renderCard(item, ranker, other, k) {
  const f = item.fields || {};
  const title = f.title ? h("span", { class: "title" }, f.title)
    : h("span", { class: "title missing" }, item.fields ? "(no title)" : "(no fields: start with --data)");
  const label = item.human_label === null ? null : h("span", { class: "human-label",
    style: `background:${gradeColour(item.human_label)}`,
    title: item.label_variance === null ? "human label" : `human label (rater variance ${item.label_variance})` },
  `human ${gradeName(item.human_label)}`);
  const idline = h("div", { class: "idline" }, h("code", {}, item.item_id), f.language ? `· ${f.language}` : null,
    ...item.sources.map((s) => h("span", { class: "src", title: "retrieved by" }, s)),
    item.in_index ? null : h("span", { class: "src", title: "not in the index: embedded from its text" }, "not indexed"));
  const fields = fieldRows(f, ["title", "language"]);
  const mine = state.last && state.last.grading.enabled
    ? state.grades[`${state.last.grading.query_id}\u0000${item.item_id}`] : undefined;
  const myGrade = h("span", { class: "my-grade", hidden: mine === undefined,
    style: mine === undefined ? null : `background:${gradeColour(mine)}` },
  mine === undefined ? "" : `graded ${gradeName(mine)}`);
  return h("li", { class: "card", dataset: { itemId: item.item_id, rank: item.rank },
    onclick: (ev) => { focusItem(ev.currentTarget); select(item.item_id); } },
  h("div", { class: "rank" }, item.rank),
  h("div", { class: "body" },
    h("div", { class: "line1" }, moveBadge(item, other, k), title, label, myGrade),
    idline,
    h("div", { class: "scoreline" }, ...renderProbs(item, ranker)),
    fields.length ? h("dl", { class: "fields" }, ...fields) : null));
}

// -- grading: j/k move the focus over the first column's items, a grade's key grades the focused one -------
function gradable() { return [...document.querySelectorAll(".column:first-child .card")]; }

function setFocus(i) {
  const cards = gradable();
  if (!cards.length) return;
  state.focus = Math.max(0, Math.min(cards.length - 1, i));
  cards.forEach((c, j) => c.classList.toggle("focused", j === state.focus));
  cards[state.focus].scrollIntoView({ block: "nearest" });
}

function focusItem(card) {
  const i = gradable().indexOf(card);
  if (i >= 0) setFocus(i);
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.closest("input, select, textarea")) return;
  if (!state.last || !state.last.grading.enabled) return;
  if (ev.key === "j" || ev.key === "ArrowDown") { ev.preventDefault(); setFocus(state.focus + 1); return; }
  if (ev.key === "k" || ev.key === "ArrowUp") { ev.preventDefault(); setFocus(state.focus - 1); return; }
  const grade = state.scale.grades.find((g) => String(g) === ev.key);
  if (grade !== undefined && state.focus >= 0) { ev.preventDefault(); saveGrade(gradable()[state.focus], grade); }
}

async function saveGrade(card, grade) {
  const rater = $("rater").value.trim();
  if (!rater) { showError("write your name in the rater box first: grades are saved under it"); $("rater").focus(); return; }
  const queryId = state.last.grading.query_id;
  const itemId = card.dataset.itemId;
  try {
    await api("POST", "/v1/ratings", { query_id: queryId, item_id: itemId, grade, rater });
  } catch (e) {
    showError(`grade not saved: ${e.message}`);
    return;
  }
  showError("");
  state.grades[`${queryId}\u0000${itemId}`] = grade;
  for (const c of document.querySelectorAll(".card")) {  // the same item in the other column too
    if (c.dataset.itemId !== itemId) continue;
    const badge = c.querySelector(".my-grade");
    badge.hidden = false;
    badge.textContent = `graded ${gradeName(grade)}`;
    badge.style.background = gradeColour(grade);
  }
  setFocus(gradable().indexOf(card) + 1);
}

// -- an item: fields, judgments, related items ------------------------------------------------------
function markSelected(itemId) {
  for (const c of document.querySelectorAll(".card")) c.classList.toggle("selected", c.dataset.itemId === itemId);
}

async function select(itemId) {
  state.selected = itemId;
  markSelected(itemId);
  const panel = $("detail");
  panel.hidden = false;
  $("layout").classList.add("with-detail");
  panel.replaceChildren(h("div", { class: "empty" }, `loading ${itemId}…`));
  try {
    const [item, related] = await Promise.all([
      api("GET", `/v1/items/${encodeURIComponent(itemId)}`),
      api("GET", `/v1/items/${encodeURIComponent(itemId)}/related?k=8&fields=true`).catch((e) => ({ error: e.message })),
    ]);
    if (state.selected !== itemId) return;
    renderDetail(item, related);
  } catch (e) {
    panel.replaceChildren(h("div", { class: "error" }, e.message));
  }
}

function renderDetail(item, related) {
  const f = item.fields || {};
  const close = h("button", { type: "button", class: "close", title: "close", onclick: () => {
    state.selected = null; markSelected(null); $("detail").hidden = true; $("layout").classList.remove("with-detail");
  } }, "×");
  const parts = [close, h("h3", {}, f.title || item.item_id),
    h("div", { class: "idline" }, h("code", {}, item.item_id), f.language ? `· ${f.language}` : null,
      item.in_index ? null : h("span", { class: "src" }, "not indexed"))];
  const rows = fieldRows(f, ["title", "language"]);
  if (rows.length) parts.push(h("dl", { class: "fields" }, ...rows));
  if (item.judgments.length) {
    parts.push(h("h4", {}, `judged for ${item.judgments.length} quer${item.judgments.length > 1 ? "ies" : "y"}`),
      h("ul", { class: "judgments" }, ...item.judgments.map((j) => h("li", {}, `“${j.query}” (${j.language}) → `,
        h("span", { class: "human-label", style: `background:${gradeColour(j.label)}` }, gradeName(j.label))))));
  }
  parts.push(h("h4", {}, "related items"));
  if (related.error) {
    parts.push(h("div", { class: "na" }, related.error));
  } else if (!related.items.length) {
    parts.push(h("div", { class: "na" }, "none"));
  } else {
    parts.push(h("ul", { id: "related", class: "related" }, ...related.items.map((r) => {
      const rf = r.fields || {};
      return h("li", { class: "related-item", dataset: { itemId: r.item_id }, onclick: () => select(r.item_id) },
        h("div", {}, h("div", { class: "rt" }, rf.title || r.item_id),
          h("div", { class: "rid" }, r.item_id, rf.language ? ` · ${rf.language}` : "")),
        h("div", {}, h("div", { class: "sim" }, h("span", { style: `width:${Math.max(0, 100 * r.similarity).toFixed(1)}%` })),
          h("div", { class: "simnum" }, fmt(r.similarity, 3))));
    })));
  }
  $("detail").replaceChildren(...parts);
}

init();
