"""The demo's one page: markup, style and script inline, nothing from elsewhere."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cvae demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.3rem; margin: 0 0 .8rem; }
  form { display: flex; flex-wrap: wrap; gap: .6rem; align-items: end; }
  label { display: flex; flex-direction: column; font-size: .85rem; }
  input[type=text] { width: 28rem; max-width: 90vw; }
  input, button { font: inherit; padding: .3rem .5rem; }
  fieldset { border: 1px solid #ccc; padding: .3rem .6rem; }
  fieldset label { flex-direction: row; gap: .3rem; display: inline-flex;
    margin-right: .8rem; }
  #status { margin: .8rem 0; min-height: 1.3em; }
  .error { color: #b00020; font-family: ui-monospace, monospace; }
  #results { display: flex; flex-wrap: wrap; gap: 1rem; }
  .card { border: 1px solid #ddd; border-radius: 6px; padding: .6rem;
    width: 400px; max-width: 92vw; }
  .card h2 { font-size: 1rem; margin: 0 0 .2rem; }
  .card .label { font-size: .85rem; color: #555; margin-bottom: .4rem; }
  .card img { image-rendering: pixelated; width: 100%; border: 1px solid #eee; }
  .card table { font-size: .8rem; margin-top: .4rem; border-collapse: collapse; }
  .card td { padding: 0 .6rem 0 0; }
</style>
</head>
<body>
<h1>cvae: text to image with conditional VAEs</h1>
<form id="form">
  <label>Prompt <input id="prompt" type="text" maxlength="300"
    value="Make a dress" autofocus></label>
  <label>Seed <input id="seed" type="number" min="0" value="0"></label>
  <label>Images <input id="n" type="number" min="1" max="64" value="16"></label>
  <button id="go" type="submit">Generate</button>
  <fieldset id="models"><legend>Models</legend></fieldset>
</form>
<div id="status"></div>
<div id="results"></div>
<script>
const $ = (id) => document.getElementById(id);
let catalogue = [];

function fmt(v) { return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4); }

function card(r) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.model = r.model;
  const h = document.createElement("h2");
  h.textContent = r.model;
  div.appendChild(h);
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = r.ok ? r.label + ": " + r.condition : r.label;
  div.appendChild(label);
  if (r.ok) {
    const img = document.createElement("img");
    img.src = r.image;
    img.alt = r.model + " samples for the prompt";
    div.appendChild(img);
    for (const w of r.warnings) {
      const p = document.createElement("div");
      p.className = "error";
      p.textContent = "WARNING: " + w;
      div.appendChild(p);
    }
  } else {
    const p = document.createElement("div");
    p.className = "error";
    p.textContent = r.error;
    div.appendChild(p);
  }
  const m = (catalogue.find((c) => c.name === r.model) || {}).metrics || {};
  if (Object.keys(m).length) {
    const t = document.createElement("table");
    for (const [k, v] of Object.entries(m)) {
      const row = t.insertRow();
      row.insertCell().textContent = k;
      row.insertCell().textContent = fmt(v);
    }
    div.appendChild(t);
  }
  return div;
}

async function load() {
  const res = await fetch("/api/models");
  catalogue = await res.json();
  for (const c of catalogue) {
    const l = document.createElement("label");
    l.title = c.conditioned_on;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = c.name;
    box.checked = true;
    l.appendChild(box);
    l.appendChild(document.createTextNode(c.name));
    $("models").appendChild(l);
  }
}

$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const models = [...document.querySelectorAll("#models input:checked")]
    .map((b) => b.value);
  const body = {
    prompt: $("prompt").value,
    seed: parseInt($("seed").value, 10),
    n: parseInt($("n").value, 10),
    models: models,
  };
  $("status").className = "";
  $("status").textContent = "generating...";
  const t0 = performance.now();
  const res = await fetch("/api/generate", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await res.json();
  $("results").replaceChildren();
  if (!res.ok) {
    $("status").className = "error";
    $("status").textContent = data.error;
    return;
  }
  const ms = Math.round(performance.now() - t0);
  $("status").textContent = "'" + data.prompt + "', seed " + data.seed +
    " (" + ms + " ms)";
  for (const r of data.results) $("results").appendChild(card(r));
});

load();
</script>
</body>
</html>
"""
