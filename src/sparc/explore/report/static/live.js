/* sparc report, served by `sparc serve`: the query box asks the server, which encodes any
   text or image through the store's own backbones (sparc/explore/serve.py). The page looks
   for the server with one fetch of api/info; opened from disk (file://) it does not try,
   and the box keeps its offline behaviour (app.js). Text from the server is inserted as
   text, never as HTML. */
(function () {
  "use strict";

  if (location.protocol !== "http:" && location.protocol !== "https:") { return; }
  var R = window.sparcReport;
  var INFO = null;
  var asked = 0;   // the latest query: an older answer arriving late is dropped

  function modality(name) {
    for (var i = 0; i < INFO.streams.length; i++) { if (INFO.streams[i].name === name) { return INFO.streams[i].modality; } }
    return null;
  }

  function rowView(row, mode, stream) {
    var el = R.el;
    var tip = row.row + (row.caption ? " — " + row.caption : "") + (row.labels.length ? " [" + row.labels.join(", ") + "]" : "") +
      " (click: query with this row in " + stream + ")";
    var val = el("span", {cls: "val", text: R.fmt(row.score, 2)});
    var again = function () { queryRow(row.row, stream); };
    if (mode === "image" && row.thumb) {
      return el("figure", {cls: "thumb live-row", title: tip, "data-row": row.row, onclick: again}, [
        el("img", {src: row.thumb, alt: row.caption || row.row, loading: "lazy"}), val,
        el("figcaption", {text: row.caption || row.row})]);
    }
    return el("div", {cls: "textrow live-row", title: tip, "data-row": row.row, onclick: again}, [val,
      el("span", {cls: "caption", text: row.caption || row.row}),
      row.labels.length ? el("span", {cls: "labels", text: row.labels.join(", ")}) : null]);
  }

  function render(a) {
    var el = R.el, box = R.clear(document.getElementById("query-result"));
    box.appendChild(el("p", {cls: "note", text: "Answered by sparc serve in " + R.fmt(a.seconds, 3) + " s: " + a.query +
      " encoded by " + a.stream + " alone; rows of the " + a.split + " split (" + INFO.n_rows + " rows)."}));
    box.appendChild(el("h3", {text: "Latents fired in " + a.stream + " (" + a.latents.length + ")"}));
    var ul = el("ul", {cls: "query-latents"});
    a.latents.forEach(function (l) {
      var words = R.table.words[l.id] || [];
      ul.appendChild(el("li", null, [el("a", {href: "#latent/" + l.id, text: String(l.id)}), " " + R.fmt(l.value, 3) +
        (l.name ? " — " + l.name : "") + (words.length && !l.name ? " · " + words.slice(0, 3).join(", ") : "")]));
    });
    if (!a.latents.length) { ul.appendChild(el("li", {text: "no latent fires"})); }
    box.appendChild(ul);
    var streams = Object.keys(a.ranked);
    var cols = el("div", {cls: "streams", style: "grid-template-columns: repeat(" + Math.max(1, streams.length) + ", minmax(0, 1fr))"});
    streams.forEach(function (s) {
      var m = modality(s);
      var mode = m === "image" || (m === null && a.ranked[s].some(function (r) { return r.thumb; })) ? "image" : "text";
      var col = el("div", {cls: "stream", "data-stream": s, "data-mode": mode}, [
        el("h3", {text: s + ": rows by cosine of sparse codes"})]);
      var rows = el("div", {cls: "rows " + mode});
      a.ranked[s].forEach(function (r) { rows.appendChild(rowView(r, mode, s)); });
      if (!rows.firstChild) { rows.appendChild(el("p", {cls: "note", text: "no row shares a latent"})); }
      col.appendChild(rows);
      cols.appendChild(col);
    });
    box.appendChild(cols);
  }

  function ask(body, headers, what) {
    var n = ++asked;
    var box = R.clear(document.getElementById("query-result"));
    box.appendChild(R.el("p", {cls: "note", text: "asking the server about " + what + "…"}));
    var init = {method: "POST", body: body};
    if (headers) { init.headers = headers; }
    fetch("api/query", init).then(function (r) {
      return r.json().then(function (j) { return [r.ok, j]; });
    }).then(function (res) {
      if (n !== asked) { return; }
      if (res[0]) { render(res[1]); return; }
      R.clear(box).appendChild(R.el("p", {cls: "note error", text: "error: " + res[1].error}));
    }).catch(function (e) {
      if (n !== asked) { return; }
      R.clear(box).appendChild(R.el("p", {cls: "note error", text: "the server did not answer (" + e + "); is sparc serve still running?"}));
    });
  }

  function queryRow(id, stream) {
    ask(JSON.stringify({row: id, stream: stream}), {"Content-Type": "application/json"}, "row " + id);
  }

  function queryImage(file) {
    if (!file) { return; }
    var form = new FormData();
    form.append("image", file, file.name);
    ask(form, null, "the image " + file.name);
  }

  function goLive() {
    var el = R.el;
    document.body.setAttribute("data-live", "1");
    var input = document.getElementById("query-text");
    input.placeholder = "any text, e.g. a cat with a heart — or drop an image";
    var images = INFO.streams.some(function (s) { return s.modality === "image"; });
    R.clear(document.getElementById("query-help")).appendChild(document.createTextNode(
      "Served by sparc serve: what you type" + (images ? " (or an image you drop here or choose)" : "") +
      " is encoded by the store's own backbone, its latents are listed with their names, and the rows of every other " +
      "stream (all " + INFO.n_rows + " rows of the " + INFO.split + " split) are ranked by the cosine of their sparse codes."));
    if (images) {
      var file = el("input", {id: "query-image", type: "file", accept: "image/*", "aria-label": "query with an image"});
      file.addEventListener("change", function () { queryImage(file.files[0]); file.value = ""; });
      document.getElementById("query-form").appendChild(file);
      var view = document.getElementById("view-query");
      view.addEventListener("dragover", function (ev) { ev.preventDefault(); });
      view.addEventListener("drop", function (ev) {
        ev.preventDefault();
        if (ev.dataTransfer && ev.dataTransfer.files.length) { queryImage(ev.dataTransfer.files[0]); }
      });
    }
    window.sparcLive = {query: function (text, stream) {
      if (!text.trim()) { return; }
      ask(JSON.stringify({text: text, stream: stream || null}), {"Content-Type": "application/json"}, "'" + text + "'");
    }};
    R.route();  // a #query/... opened before the server answered is asked again
  }

  fetch("api/info").then(function (r) { return r.ok ? r.json() : null; }).then(function (info) {
    if (info && info.sparc === "serve") { INFO = info; goLive(); }
  }).catch(function () { /* a static server: the offline box stays */ });
}());
