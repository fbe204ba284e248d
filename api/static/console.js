// The recourse console: a form generated from GET /v1/schema, POST /v1/recourse, the answer in words.
// Plain browser JavaScript, no external assets; every value from the server is inserted as text.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = "recourse.apiKey";
  let schema = null;
  let example = null;
  let lastAnswer = null;

  function headers() {
    const key = sessionStorage.getItem(KEY) || "";
    const out = { "Content-Type": "application/json" };
    if (key) out["Authorization"] = "Bearer " + key;
    return out;
  }

  function say(id, text, isError) {
    const el = $(id);
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  function problemText(body, status) {
    if (!body || typeof body !== "object") return "The service answered " + status + ".";
    const lines = [body.detail || body.title || ("Error " + status)];
    for (const e of body.errors || []) lines.push(e.field + ": " + e.message);
    return lines.join("\n");
  }

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { ok: response.ok, status: response.status, body };
  }

  function feature(name) {
    return schema.features.find((f) => f.name === name);
  }

  function title(f) {
    return f.label || f.name.replace(/_/g, " ");
  }

  function levelNames(f) {
    return (f.levels || []).map((l) => (typeof l === "string" ? l : l.name));
  }

  function stepOf(f) {
    // the applicant's own value may lie off the feature's step (only changed values land on it)
    if (f.kind === "integer") return "1";
    if (f.precision !== undefined && f.precision !== null) return String(Math.pow(10, -f.precision));
    return "any";
  }

  function buildForm() {
    const box = $("fields");
    box.replaceChildren();
    for (const f of schema.features) {
      const wrap = document.createElement("div");
      wrap.className = "field";
      const label = document.createElement("label");
      label.htmlFor = "f-" + f.name;
      label.textContent = title(f);
      if (f.unit) {
        const unit = document.createElement("span");
        unit.className = "unit";
        unit.textContent = " (" + f.unit + ")";
        label.appendChild(unit);
      }
      let input;
      if (f.kind === "continuous" || f.kind === "integer") {
        input = document.createElement("input");
        input.type = "number";
        input.step = stepOf(f);
        if (f.range) { input.min = f.range[0]; input.max = f.range[1]; }
        input.required = true;
      } else {
        input = document.createElement("select");
        const names = f.kind === "binary" ? (levelNames(f).length ? levelNames(f) : ["no", "yes"]) : levelNames(f);
        names.forEach((n, i) => {
          const o = document.createElement("option");
          o.value = f.kind === "binary" ? String(i === 1) : n;
          o.textContent = n;
          input.appendChild(o);
        });
      }
      input.id = "f-" + f.name;
      input.name = f.name;
      if (f.note) input.title = f.note;
      wrap.append(label, input);
      box.appendChild(wrap);
    }
  }

  function fill(applicant) {
    for (const [name, value] of Object.entries(applicant || {})) {
      const input = $("f-" + name);
      if (!input) continue;
      input.value = typeof value === "boolean" ? String(value) : String(value);
    }
  }

  function collect() {
    const applicant = {};
    for (const f of schema.features) {
      const input = $("f-" + f.name);
      input.removeAttribute("aria-invalid");
      const raw = input.value;
      if (f.kind === "integer") applicant[f.name] = raw === "" ? null : parseInt(raw, 10);
      else if (f.kind === "continuous") applicant[f.name] = raw === "" ? null : parseFloat(raw);
      else if (f.kind === "binary") applicant[f.name] = raw === "true";
      else applicant[f.name] = raw;
    }
    const body = { applicant };
    const m = $("opt-max-changes").value;
    const k = $("opt-alternatives").value;
    const p = $("opt-min-probability").value;
    if (m !== "") body.max_changes = parseInt(m, 10);
    if (k !== "") body.alternatives = parseInt(k, 10);
    if (p !== "") body.min_probability = parseFloat(p);
    return body;
  }

  function item(list, text) {
    const li = document.createElement("li");
    li.textContent = text;
    list.appendChild(li);
    return li;
  }

  function fillList(listId, blockId, entries) {
    // one list item per entry's text; the block is hidden when there is none
    const list = $(listId);
    list.replaceChildren();
    for (const e of entries || []) item(list, e.text);
    $(blockId).hidden = !(entries || []).length;
  }

  function pct(p) {
    return Math.round(p * 100) + " %";
  }

  // "model probability 38 %", or for a bundle that decides a score "predicted 162.3"
  function said(d) {
    if (d.score !== undefined && d.score !== null) {
      const digits = schema.target && schema.target.precision !== undefined ? schema.target.precision : 2;
      return "predicted " + d.score.toFixed(digits) + (schema.target && schema.target.unit ? " " + schema.target.unit : "");
    }
    return "model probability " + pct(d.probability);
  }

  function render(answer) {
    lastAnswer = answer;
    const fav = !schema.target ? null : schema.target.kind === "regression" ? "reached" : String(schema.target.favourable);
    const d = answer.decision;
    const decision = $("decision");
    decision.textContent = "Decision: " + d.label + " (" + said(d) + ")";
    decision.className = fav !== null && String(d.value) === fav ? "approved" : "denied";
    $("message").textContent = answer.message || "";
    fillList("actions", "actions-block", answer.actions);
    fillList("consequences", "consequences-block", answer.consequences);
    const cd = answer.counterfactual_decision;
    $("new-decision").textContent = cd
      ? "New decision: " + cd.label + " (" + said(cd) + "), verified with the model."
      : "";
    fillList("reasons", "reasons-block", answer.reasons);
    const alts = $("alternatives");
    alts.replaceChildren();
    for (const alt of answer.alternatives || []) {
      const li = item(alts, "cost " + alt.metrics.cost.toFixed(2) + ", " + alt.metrics.l0 + " change(s), "
        + said(alt.counterfactual_decision) + ":");
      const inner = document.createElement("ul");
      for (const a of alt.actions) item(inner, a.text);
      for (const c of alt.consequences || []) item(inner, "(" + c.text + ")");
      li.appendChild(inner);
    }
    $("alternatives-block").hidden = !(answer.alternatives || []).length;
    $("answer-id").textContent = "Answer " + answer.id + ", " + answer.created + ", model " + answer.model.id
      + " (" + answer.model.hash.slice(0, 12) + "); fetch it again with GET /v1/recourse/" + answer.id + ".";
    $("answer").hidden = false;
    $("answer").focus();
  }

  async function connect() {
    sessionStorage.setItem(KEY, $("api-key").value.trim());
    say("access-status", "Loading the schema...");
    const got = await getJSON("/v1/schema", { headers: headers() });
    if (!got.ok) {
      say("access-status", problemText(got.body, got.status), true);
      return;
    }
    schema = got.body;
    buildForm();
    const doc = await getJSON("/openapi.json");
    try {
      const examples = doc.body.paths["/v1/recourse"].post.requestBody.content["application/json"].examples;
      example = Object.values(examples)[0].value.applicant;
    } catch (e) { example = null; }
    $("example").hidden = !example;
    $("applicant").hidden = false;
    say("access-status", "Connected: " + schema.features.length + " features of '" + schema.name + "'.");
  }

  async function submit(event) {
    event.preventDefault();
    const body = collect();
    say("form-status", "Asking the model...");
    $("submit").disabled = true;
    try {
      const got = await getJSON("/v1/recourse", { method: "POST", headers: headers(), body: JSON.stringify(body) });
      if (!got.ok) {
        say("form-status", problemText(got.body, got.status), true);
        for (const e of (got.body && got.body.errors) || []) {
          const name = String(e.field).replace(/^applicant\./, "");
          const input = $("f-" + name);
          if (input) input.setAttribute("aria-invalid", "true");
        }
        return;
      }
      say("form-status", "");
      render(got.body);
    } catch (e) {
      say("form-status", "The service could not be reached (" + e + ").", true);
    } finally {
      $("submit").disabled = false;
    }
  }

  function save() {
    if (!lastAnswer) return;
    const blob = new Blob([JSON.stringify(lastAnswer, null, 2)], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "recourse-" + lastAnswer.id + ".json";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  $("api-key").value = sessionStorage.getItem(KEY) || "";
  $("connect").addEventListener("click", connect);
  $("api-key").addEventListener("keydown", (e) => { if (e.key === "Enter") connect(); });
  $("example").addEventListener("click", () => fill(example));
  $("applicant").addEventListener("submit", submit);
  $("print").addEventListener("click", () => window.print());
  $("save").addEventListener("click", save);
})();
