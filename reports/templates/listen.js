// Sorting and filtering of the listening page: plain JavaScript, no libraries, no network.
"use strict";

// A cell's sort key: data-v as a number (Infinity allowed) or a string; null when missing,
// so missing values go last whichever the direction.
function sortKey(row, col, numeric) {
  const cell = row.cells[col];
  const raw = cell ? cell.getAttribute("data-v") : null;
  if (raw === null || raw === "") return null;
  if (!numeric) return raw;
  const n = Number(raw);
  return Number.isNaN(n) ? null : n;
}

function compare(a, b, numeric) {
  if (numeric) return a < b ? -1 : a > b ? 1 : 0;
  return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
}

function sortBy(table, th) {
  const col = Number(th.dataset.col);
  const numeric = th.dataset.type === "num";
  const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
  for (const other of table.querySelectorAll("th[aria-sort]")) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", dir);
  const sign = dir === "ascending" ? 1 : -1;
  const body = table.tBodies[0];
  // ties keep the previous order, so sorting by one column then another nests them
  const keyed = Array.from(body.rows, (row, i) => ({ row, i, k: sortKey(row, col, numeric) }));
  keyed.sort((a, b) => {
    if (a.k === null || b.k === null) return (a.k === null) - (b.k === null) || a.i - b.i;
    return sign * compare(a.k, b.k, numeric) || a.i - b.i;
  });
  const frag = document.createDocumentFragment();
  for (const { row } of keyed) frag.appendChild(row);
  body.appendChild(frag);
}

function initSorting(table) {
  for (const th of table.querySelectorAll("th[data-col]")) {
    th.tabIndex = 0;
    th.addEventListener("click", () => sortBy(table, th));
    th.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        sortBy(table, th);
      }
    });
  }
}

function initFilters() {
  const items = document.getElementById("items");
  const testset = document.getElementById("f-testset");
  const task = document.getElementById("f-task");
  const boxes = Array.from(document.querySelectorAll("#filters input[data-sys]"));
  const count = document.getElementById("count");
  const apply = () => {
    let shown = 0;
    const rows = items.tBodies[0].rows;
    for (const row of rows) {
      const keep = (!testset.value || row.dataset.testset === testset.value) &&
        (!task.value || row.dataset.task === task.value);
      row.hidden = !keep;
      shown += keep ? 1 : 0;
    }
    for (const row of document.querySelectorAll("#summary tbody tr")) {
      row.hidden = Boolean(testset.value) && row.dataset.testset !== testset.value;
    }
    // an unselected system loses its columns in the items table and its rows in the summary
    for (const box of boxes) {
      for (const el of document.querySelectorAll(`table [data-sys="${box.dataset.sys}"]`)) {
        if (el.tagName === "TR") el.hidden = el.hidden || !box.checked;
        else el.hidden = !box.checked;
      }
    }
    count.textContent = `${shown} of ${rows.length} rows shown`;
  };
  testset.addEventListener("change", apply);
  task.addEventListener("change", apply);
  for (const box of boxes) box.addEventListener("change", apply);
  apply();
}

// one player at a time: starting one pauses the others
function initPlayers() {
  document.addEventListener("play", (e) => {
    for (const audio of document.querySelectorAll("audio")) if (audio !== e.target) audio.pause();
  }, true);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.sortable")) initSorting(table);
  initFilters();
  initPlayers();
});
