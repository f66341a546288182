// A small OpenAPI viewer with "try it": lists operations by tag and sends requests with fetch.
(async function () {
  const root = document.getElementById("ops");
  const doc = await (await fetch("/openapi.json")).json();
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [verb, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      (byTag[tag] = byTag[tag] || []).push({ path, verb, op });
    }
  }
  root.textContent = "";
  for (const [tag, ops] of Object.entries(byTag)) {
    const h = document.createElement("h2");
    h.textContent = tag;
    root.appendChild(h);
    for (const { path, verb, op } of ops) root.appendChild(operation(path, verb, op));
  }

  function operation(path, verb, op) {
    const d = document.createElement("details");
    const s = document.createElement("summary");
    const v = document.createElement("span");
    v.className = "verb " + verb;
    v.textContent = verb.toUpperCase();
    s.appendChild(v);
    s.appendChild(document.createTextNode(" " + path + (op["x-scope"] ? "  [scope: " + op["x-scope"] + "]" : "")));
    d.appendChild(s);
    const inputs = {};
    for (const p of op.parameters || []) {
      const l = document.createElement("label");
      l.textContent = p.name + " (" + p.in + (p.required ? ", required" : "") + ")";
      const i = document.createElement("input");
      l.appendChild(i);
      d.appendChild(l);
      inputs[p.name] = { p, i };
    }
    let body = null;
    if (op.requestBody) {
      const l = document.createElement("label");
      l.textContent = "body (JSON)";
      body = document.createElement("textarea");
      body.rows = 6;
      body.value = "{}";
      l.appendChild(body);
      d.appendChild(l);
    }
    const b = document.createElement("button");
    b.textContent = "Send";
    const out = document.createElement("pre");
    b.onclick = async () => {
      let url = path;
      const q = new URLSearchParams();
      for (const { p, i } of Object.values(inputs)) {
        if (!i.value) continue;
        if (p.in === "path") url = url.replace("{" + p.name + "}", encodeURIComponent(i.value));
        else q.append(p.name, i.value);
      }
      const qs = q.toString();
      const headers = { "content-type": "application/json" };
      const token = document.getElementById("token").value;
      if (token) headers["authorization"] = "Bearer " + token;
      const res = await fetch(url + (qs ? "?" + qs : ""), { method: verb.toUpperCase(), headers, body: body ? body.value : undefined });
      out.textContent = res.status + " " + res.statusText + "\n\n" + (await res.text());
    };
    d.appendChild(b);
    d.appendChild(out);
    return d;
  }
})();
