"""The style sheet and script inlined in report.html (one file that opens offline, no CDN)."""

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #141414; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
code { background: #f2f2f2; padding: 1px 4px; border-radius: 3px; }
.meta { color: #555; margin: 2px 0; }
table.grid { border-collapse: collapse; }
table.grid th { font-weight: 600; padding: 4px 8px; text-align: center; vertical-align: middle; }
table.grid th.row { text-align: right; max-width: 170px; }
table.grid td { padding: 6px; vertical-align: top; }
figure.cell { margin: 0; width: 256px; }
figure.cell img.final { width: 256px; display: block; cursor: zoom-in; border-radius: 2px; }
figure.cell .empty { width: 256px; height: 170px; background: #e1e1e1; display: flex; align-items: center;
  justify-content: center; text-align: center; color: #6b6b6b; padding: 8px; box-sizing: border-box;
  overflow-wrap: anywhere; overflow: hidden; }
figure.cell figcaption { font-size: 12px; color: #333; margin-top: 3px; overflow-wrap: anywhere; }
figure.cell .failed { color: #b3261e; }
.strip { display: flex; gap: 2px; margin-top: 3px; overflow-x: auto; }
.strip img { height: 36px; cursor: zoom-in; border-radius: 1px; }
svg.curves { width: 100%; max-width: 680px; height: auto; font-size: 12px; }
svg .frame { fill: none; stroke: #141414; } svg .grid { stroke: #e1e1e1; }
svg .ytick { text-anchor: end; dominant-baseline: middle; } svg .xtick { text-anchor: middle; }
svg .curve { fill: none; stroke-width: 2; } svg .curve:hover { stroke-width: 4; }
ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 4px 0; }
.swatch { display: inline-block; width: 18px; height: 4px; margin-right: 6px; vertical-align: middle; }
table.runs { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.runs th, table.runs td { border-bottom: 1px solid #e1e1e1; padding: 4px 8px; text-align: right; }
table.runs th { cursor: pointer; user-select: none; background: #f7f7f7; position: sticky; top: 0; }
table.runs th[aria-sort=ascending]::after { content: " \\25B2"; }
table.runs th[aria-sort=descending]::after { content: " \\25BC"; }
table.runs td.text, table.runs th.text { text-align: left; }
table.runs td[data-key=status] { max-width: 220px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
table.runs td.best { font-weight: 700; background: #e7f3e7; }
table.runs img { height: 40px; display: block; cursor: zoom-in; }
dialog { padding: 8px; border: 0; box-shadow: 0 4px 30px #0006; max-width: 95vw; }
dialog img { max-width: 90vw; max-height: 85vh; image-rendering: auto; display: block; }
dialog::backdrop { background: #000a; }
"""

# Sorting (click a header; `#sort=<column>` or `#sort=<column>-desc` in the URL sorts on load),
# click-to-enlarge, and a `data-ready` mark the browser test waits for.
JS = """
(function () {
  const table = document.getElementById("runs"), body = table.tBodies[0];
  function value(row, key) {
    const cell = row.querySelector('td[data-key="' + key + '"]');
    return cell ? cell.dataset.v : "";
  }
  function sortBy(key, desc) {
    const th = Array.from(table.tHead.rows[0].cells).find(h => h.dataset.key === key);
    if (!th) return;
    const numeric = th.dataset.type === "num";
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const va = value(a, key), vb = value(b, key);
      if (va === "" || vb === "") return (va === "") - (vb === "");  /* blanks last, either way */
      const c = numeric ? parseFloat(va) - parseFloat(vb) : va.localeCompare(vb, undefined, {numeric: true});
      return desc ? -c : c;
    });
    rows.forEach(r => body.appendChild(r));
    table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", desc ? "descending" : "ascending");
    table.dataset.sortedBy = key + (desc ? "-desc" : "");
  }
  table.querySelectorAll("th[data-key]").forEach(function (th) {
    th.addEventListener("click", () => sortBy(th.dataset.key, th.getAttribute("aria-sort") === "ascending"));
  });
  const wanted = decodeURIComponent(location.hash).match(/^#sort=(.+?)(-desc)?$/);
  if (wanted) sortBy(wanted[1], Boolean(wanted[2]));
  const zoom = document.getElementById("zoom");
  document.querySelectorAll("img.zoomable").forEach(function (img) {
    img.addEventListener("click", function () {
      zoom.querySelector("img").src = img.src;
      zoom.querySelector("p").textContent = img.dataset.caption || img.alt;
      zoom.showModal();
    });
  });
  zoom.addEventListener("click", () => zoom.close());
  document.body.dataset.ready = "1";
})();
"""
