/* sparc report — plain JavaScript, no library, no network: everything comes from the
   JSON inlined in index.html and the data/*.js files beside it (loaded by <script>
   tags, which browsers allow from file://). Text from the data is always inserted as
   text (textContent), never as HTML. */
(function () {
  "use strict";

  var META = JSON.parse(document.getElementById("sparc-meta").textContent);
  var TABLE = JSON.parse(document.getElementById("sparc-table").textContent);
  var ROWS = null;              // data/rows.js
  var CHUNKS = {};              // data/latents-NNNN.js, by index
  var WAITING = {};             // chunk index -> callbacks
  var PAGE_SIZE = 50;
  var STOP = {"a": 1, "an": 1, "the": 1, "and": 1, "of": 1, "with": 1, "in": 1, "on": 1, "at": 1, "to": 1,
              "for": 1, "is": 1, "are": 1, "its": 1, "it": 1, "by": 1, "or": 1, "from": 1};
  var L = META.n_latents;
  var STREAMS = META.streams;

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) { return; }
        if (k === "text") { node.textContent = v; }
        else if (k === "cls") { node.className = v; }
        else if (k.slice(0, 2) === "on") { node.addEventListener(k.slice(2), v); }
        else { node.setAttribute(k, v === true ? "" : v); }
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) { return; }
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }

  function fmt(x, digits) {
    if (x === null || x === undefined || (typeof x === "number" && isNaN(x))) { return "–"; }
    return Number(x).toFixed(digits === undefined ? 3 : digits);
  }

  function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(2) + "%"; }

  function tokens(text) {
    return String(text || "").toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(function (t) { return t.length > 0; });
  }

  function modalityOf(i) { return STREAMS[i].modality; }

  // ------------------------------------------------------------------ data loading

  window.sparcLoaded = function (kind, index, data) {
    if (kind === "rows") {
      ROWS = data;
      ROWS.queryPos = {};
      ROWS.query.forEach(function (r, p) { ROWS.queryPos[r] = p; });
      route();
      return;
    }
    CHUNKS[index] = data;
    (WAITING[index] || []).forEach(function (cb) { cb(data); });
    delete WAITING[index];
  };

  function withLatent(id, cb) {
    var c = Math.floor(id / META.chunk_latents);
    if (CHUNKS[c]) { cb(CHUNKS[c][id - c * META.chunk_latents]); return; }
    var first = !WAITING[c];
    WAITING[c] = WAITING[c] || [];
    WAITING[c].push(function (data) { cb(data[id - c * META.chunk_latents]); });
    if (first) {
      var name = "0000" + c;
      document.body.appendChild(el("script", {src: "data/latents-" + name.slice(name.length - 4) + ".js"}));
    }
  }

  // ------------------------------------------------------------------ rows

  var ROW_OF_ID = null;
  function rowOfId(id) {
    if (ROW_OF_ID === null) {
      ROW_OF_ID = {};
      ROWS.id.forEach(function (x, i) { ROW_OF_ID[x] = i; });
    }
    return ROW_OF_ID.hasOwnProperty(id) ? ROW_OF_ID[id] : null;
  }

  function rowView(i, value, mode, marks) {
    // mode: "image" (thumbnail + caption tooltip) or "text" (caption, words shaded)
    var caption = ROWS.caption[i];
    var labels = ROWS.labels[i].map(function (c) { return ROWS.label_names[c]; }).join(", ");
    var tip = ROWS.id[i] + (caption ? " — " + caption : "") + (labels ? " [" + labels + "]" : "");
    var val = value === null || value === undefined ? null : el("span", {cls: "val", text: fmt(value, 2)});
    if (mode === "image" && ROWS.thumb[i]) {
      return el("figure", {cls: "thumb", title: tip}, [
        el("img", {src: "thumbs/" + i + ".webp", alt: caption || ROWS.id[i], loading: "lazy"}), val,
        el("figcaption", {text: caption || ROWS.id[i]})]);
    }
    var text = el("span", {cls: "caption"});
    String(caption || ROWS.id[i]).split(/([^\p{L}\p{N}]+)/u).forEach(function (part) {
      if (marks && marks[part.toLowerCase()]) { text.appendChild(el("mark", {text: part})); }
      else { text.appendChild(document.createTextNode(part)); }
    });
    return el("div", {cls: "textrow", title: tip}, [val, text,
      labels ? el("span", {cls: "labels", text: labels}) : null]);
  }

  function rowMode(streamIndex) {
    var m = modalityOf(streamIndex);
    if (m === "image") { return "image"; }
    if (m === "text") { return "text"; }
    return ROWS.thumb.some(function (x) { return x; }) ? "image" : "text";
  }

  // ------------------------------------------------------------------ overview

  function html(markup) {
    // Markdown rendered when the report was built (markdown-it-py; raw HTML escaped)
    var box = el("div", {cls: "md"});
    box.innerHTML = markup;
    return box;
  }

  function kv(obj) {
    var table = el("table", {cls: "kv"});
    Object.keys(obj || {}).forEach(function (k) {
      var v = obj[k];
      table.appendChild(el("tr", null, [el("th", {text: k}),
        el("td", {text: typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)})]));
    });
    return table;
  }

  function renderOverview() {
    var ov = META.overview;
    var box = clear(document.getElementById("overview"));
    // The figures first, the settings folded away at the end.
    var lead = ov.evaluations.length ? ov.evaluations[0] : null;
    if (lead && lead.headline.length) {
      box.appendChild(el("h3", {text: "Headline figures (" + lead.name + ")"}));
      box.appendChild(el("ul", {cls: "headline"}, lead.headline.map(function (line) { return el("li", {text: line}); })));
    }
    if (!ov.evaluations.length) {
      box.appendChild(el("p", {cls: "note", text: "No evaluation in the run yet: run 'sparc eval RUN' and rebuild."}));
    }
    META.notes.forEach(function (n) { box.appendChild(el("p", {cls: "note", text: n})); });
    ov.evaluations.forEach(function (ev) {
      box.appendChild(el("details", {open: ev === lead ? "" : null}, [
        el("summary", {cls: "section", text: "Evaluation (" + ev.name + ")"}), html(ev.html),
        ev.plots.length ? el("div", {cls: "plots"}, ev.plots.map(function (p) {
          return el("a", {href: p, target: "_blank"}, [el("img", {src: p, alt: p})]); })) : null]));
    });
    ov.localisation.forEach(function (loc) {
      box.appendChild(el("details", {open: ""}, [el("summary", {cls: "section", text: "Localisation (" + loc.name + ")"}),
        html(loc.html)]));
    });
    if (ov.naming && (ov.naming.evaluation || (ov.naming.notes || []).length)) {
      var names = [el("summary", {cls: "section", text: "Names"})];
      if (ov.naming.evaluation) { names.push(html(ov.naming.evaluation)); }
      (ov.naming.notes || []).forEach(function (n) { names.push(el("p", {cls: "note", text: n})); });
      box.appendChild(el("details", {open: ""}, names));
    }
    var settings = [el("summary", {cls: "section", text: "Settings: model, streams, store, statistics, names, training"}),
      el("h4", {text: "Model" + (ov.model && ov.model.method ? " · method " + ov.model.method : "")}), kv(ov.model), el("h4", {text: "Streams"})];
    var st = el("table", {cls: "grid"}, [el("tr", null, ["stream", "width", "modality", "backbone"].map(function (c) {
      return el("th", {text: c}); }))]);
    ov.streams.forEach(function (s) {
      var src = s.source || {};
      st.appendChild(el("tr", null, [el("td", {text: s.name}), el("td", {text: String(s.dim)}),
        el("td", {text: s.modality || "–"}),
        el("td", null, [el("details", null, [el("summary", {text: (src.family || "not recorded") +
          (src.model ? " · " + src.model : "")}), el("pre", {text: JSON.stringify(src, null, 2)})])])]));
    });
    settings.push(st, el("h4", {text: "Store"}), kv(ov.store), el("h4", {text: "Latent statistics"}), kv(ov.stats));
    if (ov.naming) { settings.push(el("h4", {text: "Names"}), kv(ov.naming.settings)); }
    if (ov.training) { settings.push(el("h4", {text: "Training (train_config.json)"}),
      el("pre", {text: JSON.stringify(ov.training, null, 2)})); }
    box.appendChild(el("details", null, settings));
  }


  // ------------------------------------------------------------------ latent table

  var COLUMNS = [
    {key: "id", label: "latent", num: true, get: function (l) { return l; }},
    {key: "name", label: "name", get: function (l) { return TABLE.name[l]; }},
    {key: "aligned", label: "aligned", num: true, get: function (l) { return TABLE.aligned[l]; }},
    {key: "words", label: "words", get: function (l) { return TABLE.words[l].slice(0, 3).join(" · "); }}
  ];
  STREAMS.forEach(function (s, i) {
    COLUMNS.push({key: "freq:" + s.name, label: "freq " + s.name, num: true,
                  get: function (l) { return TABLE.freq[i][l]; }});
  });
  COLUMNS.push({key: "agreement", label: "agreement", num: true, get: function (l) { return TABLE.agreement[l]; }});
  COLUMNS.push({key: "purity", label: "purity", num: true, get: function (l) { return TABLE.purity[l]; }});
  if (TABLE.concept_j) {
    COLUMNS.push({key: "concept_j", label: "concept J", num: true, get: function (l) { return TABLE.concept_j[l]; }});
  }
  if (TABLE.presence) {
    COLUMNS.push({key: "presence", label: "presence", get: function (l) { return TABLE.presence[l]; }});
  }

  var tableState = {sort: "id", desc: false, page: 0, filter: "", aligned: false, alive: true};
  var SEARCH = [];
  for (var l0 = 0; l0 < L; l0++) {
    SEARCH.push((String(l0) + " " + (TABLE.name[l0] || "") + " " + TABLE.words[l0].join(" ") + " " +
                 (TABLE.presence ? TABLE.presence[l0] : "")).toLowerCase());
  }

  function alive(l) { for (var s = 0; s < STREAMS.length; s++) { if (TABLE.fires[s][l] > 0) { return true; } } return false; }

  function filtered() {
    var q = tableState.filter.trim().toLowerCase();
    var terms = q ? q.split(/\s+/) : [];
    var ids = [];
    for (var l = 0; l < L; l++) {
      if (tableState.aligned && !TABLE.aligned[l]) { continue; }
      if (tableState.alive && !alive(l)) { continue; }
      if (terms.length) {
        if (/^\d+$/.test(q)) { if (String(l) !== q) { continue; } }
        else if (!terms.every(function (t) { return SEARCH[l].indexOf(t) >= 0; })) { continue; }
      }
      ids.push(l);
    }
    var col = COLUMNS.filter(function (c) { return c.key === tableState.sort; })[0];
    var dir = tableState.desc ? -1 : 1;
    ids.sort(function (a, b) {
      var x = col.get(a), y = col.get(b);
      var xn = x === null || x === undefined || x === "", yn = y === null || y === undefined || y === "";
      if (xn || yn) { return xn && yn ? a - b : (xn ? 1 : -1); }   // missing values last
      if (x < y) { return -dir; }
      if (x > y) { return dir; }
      return a - b;
    });
    return ids;
  }

  function renderHead() {
    var head = clear(document.getElementById("latent-head"));
    COLUMNS.forEach(function (c) {
      var mark = tableState.sort === c.key ? (tableState.desc ? " ▼" : " ▲") : "";
      head.appendChild(el("th", {"data-key": c.key, cls: c.num ? "num sortable" : "sortable", text: c.label + mark,
        onclick: function () {
          if (tableState.sort === c.key) { tableState.desc = !tableState.desc; }
          else { tableState.sort = c.key; tableState.desc = !!c.num && c.key !== "id"; }
          tableState.page = 0;
          renderTable();
        }}));
    });
  }

  function renderTable() {
    renderHead();
    var ids = filtered();
    var pages = Math.max(1, Math.ceil(ids.length / PAGE_SIZE));
    tableState.page = Math.min(tableState.page, pages - 1);
    var body = clear(document.getElementById("latent-body"));
    ids.slice(tableState.page * PAGE_SIZE, (tableState.page + 1) * PAGE_SIZE).forEach(function (l) {
      var cells = COLUMNS.map(function (c) {
        var v = c.get(l);
        if (c.key === "id") { return el("td", {cls: "num"}, [el("a", {href: "#latent/" + l, text: String(l)})]); }
        if (c.key === "aligned") { return el("td", {cls: "num", text: v ? "✓" : ""}); }
        if (c.key.slice(0, 5) === "freq:") { return el("td", {cls: "num", text: pct(v)}); }
        if (c.num) { return el("td", {cls: "num", text: fmt(v, 2)}); }
        return el("td", {text: v || ""});
      });
      body.appendChild(el("tr", {"data-latent": l, onclick: function (ev) {
        if (ev.target.tagName !== "A") { location.hash = "#latent/" + l; } }}, cells));
    });
    document.getElementById("count").textContent = ids.length + " of " + L + " latents";
    document.getElementById("page").textContent = "page " + (tableState.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = tableState.page === 0;
    document.getElementById("next").disabled = tableState.page >= pages - 1;
  }

  function wireTable() {
    var f = document.getElementById("filter");
    f.addEventListener("input", function () { tableState.filter = f.value; tableState.page = 0; renderTable(); });
    document.getElementById("only-aligned").addEventListener("change", function (e) {
      tableState.aligned = e.target.checked; tableState.page = 0; renderTable(); });
    document.getElementById("only-alive").addEventListener("change", function (e) {
      tableState.alive = e.target.checked; tableState.page = 0; renderTable(); });
    document.getElementById("prev").addEventListener("click", function () { tableState.page--; renderTable(); });
    document.getElementById("next").addEventListener("click", function () { tableState.page++; renderTable(); });
  }

  // ------------------------------------------------------------------ latent page

  function histogram(counts, width, height) {
    // Only the bins from the first to the last that hold rows (one empty bin either side):
    // the axis follows the latent's activations, not the whole 0.001–100 range.
    var lo = counts.findIndex(function (c) { return c > 0; });
    var hi = counts.length - 1 - counts.slice().reverse().findIndex(function (c) { return c > 0; });
    if (lo < 0) { lo = 0; hi = counts.length - 1; }
    lo = Math.max(0, lo - 1);
    hi = Math.min(counts.length - 1, hi + 1);
    var shown = counts.slice(lo, hi + 1);
    var edge = function (i) { return META.hist_edges[lo + i]; };
    var max = Math.max.apply(null, shown.concat([1]));
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("class", "hist");
    var w = width / shown.length;
    shown.forEach(function (c, i) {
      if (!c) { return; }
      var h = Math.max(1, (height - 14) * c / max);
      var r = document.createElementNS(ns, "rect");
      r.setAttribute("x", (i * w + 0.5).toFixed(1));
      r.setAttribute("y", (height - 12 - h).toFixed(1));
      r.setAttribute("width", Math.max(1, w - 1).toFixed(1));
      r.setAttribute("height", h.toFixed(1));
      var t = document.createElementNS(ns, "title");
      t.textContent = c + " rows with activation " + fmt(edge(i), 3) + "–" + fmt(edge(i + 1), 3);
      r.appendChild(t);
      svg.appendChild(r);
    });
    [0, Math.floor(shown.length / 2), shown.length].forEach(function (i) {
      var t = document.createElementNS(ns, "text");
      t.setAttribute("x", Math.min(width - 24, i * w).toFixed(1));
      t.setAttribute("y", String(height - 1));
      t.textContent = fmt(edge(i), 3);
      svg.appendChild(t);
    });
    svg.appendChild(document.createElementNS(ns, "title")).textContent = "activation histogram (log scale)";
    return svg;
  }

  function mergedRows(list, mode, marks) {
    // Text rows that repeat a caption shown once, with how many rows carry it (and the highest value).
    var box = el("div", {cls: "rows " + mode});
    if (mode !== "text") {
      list.forEach(function (rv) { box.appendChild(rowView(rv[0], rv[1], mode, marks)); });
      return box;
    }
    var seen = {};
    list.forEach(function (rv) {
      var key = ROWS.caption[rv[0]] || ROWS.id[rv[0]];
      if (seen[key]) {
        seen[key].n += 1;
        seen[key].count.textContent = " ×" + seen[key].n;
        return;
      }
      var row = rowView(rv[0], rv[1], mode, marks);
      var count = el("span", {cls: "repeat"});
      var caption = row.querySelector(".caption");
      row.insertBefore(count, caption ? caption.nextSibling : null);
      seen[key] = {n: 1, count: count};
      box.appendChild(row);
    });
    return box;
  }

  function marksOf(l, detail) {
    var marks = {};
    var names = [TABLE.name[l] || ""];
    detail.streams.forEach(function (s) { if (s.label) { names.push(s.label.label); } });
    detail.words.forEach(function (w) { names.push(w[0]); });
    names.forEach(function (n) { tokens(n).forEach(function (t) { if (!STOP[t]) { marks[t] = 1; } }); });
    return marks;
  }

  function renderLatent(l) {
    var box = clear(document.getElementById("latent"));
    if (!(l >= 0 && l < L)) { box.appendChild(el("p", {cls: "note", text: "No latent " + l + "."})); return; }
    box.appendChild(el("p", {cls: "nav2"}, [
      l > 0 ? el("a", {href: "#latent/" + (l - 1), text: "‹ latent " + (l - 1)}) : null, " ",
      el("a", {href: "#latents", text: "all latents"}), " ",
      l < L - 1 ? el("a", {href: "#latent/" + (l + 1), text: "latent " + (l + 1) + " ›"}) : null]));
    box.appendChild(el("h2", null, ["Latent " + l + " ", el("span", {cls: "name", text: TABLE.name[l] || "(no name)"}),
      TABLE.aligned[l] ? el("span", {cls: "badge", text: "aligned"}) : null,
      TABLE.presence ? el("span", {cls: "badge presence", title: "stream presence (" + META.presence.eval + ")",
                                   text: TABLE.presence[l]}) : null]));
    box.appendChild(el("p", {cls: "loading", text: "loading…"}));
    withLatent(l, function (d) {
      if (location.hash !== "#latent/" + l) { return; }
      box.removeChild(box.lastChild);
      var marks = marksOf(l, d);
      var facts = [
        "agreement " + fmt(TABLE.agreement[l], 2) + " (fires in every stream / in at least one)",
        TABLE.concept_j ? "concept Jaccard " + fmt(TABLE.concept_j[l], 2) : null,
        TABLE.presence ? presenceFact(l, d) : null,
        d.words.length ? "words (through " + META.text_stream + "): " + d.words.map(function (w) {
          return w[0] + " (" + fmt(w[1], 2) + ")"; }).join(", ") : null].filter(function (x) { return x; });
      facts.forEach(function (f) { box.appendChild(el("p", {cls: "facts", text: f})); });
      var cols = el("div", {cls: "streams", style: "grid-template-columns: repeat(" + STREAMS.length + ", minmax(0, 1fr))"});
      STREAMS.forEach(function (s, i) {
        var ds = d.streams[i];
        var mode = rowMode(i);
        var col = el("div", {cls: "stream", "data-stream": s.name, "data-mode": mode});
        col.appendChild(el("h3", {text: s.name + (s.modality ? " (" + s.modality + ")" : "")}));
        col.appendChild(el("p", {cls: "facts", text: "fires on " + TABLE.fires[i][l] + " rows (" + pct(TABLE.freq[i][l]) +
          "), mean " + fmt(ds.mean, 3) + ", max " + fmt(ds.max, 3)}));
        if (ds.presence) {
          col.appendChild(el("p", {cls: "facts presence-share", text: "encoded alone: fires on " + ds.presence.fires +
            " rows — " + pct(ds.presence.fire_share) + " of the latent's firings, " + pct(ds.presence.act_share) +
            " of its activation"}));
        }
        if (ds.label) {
          col.appendChild(el("p", {cls: ds.label.accepted ? "label ok" : "label", text: "majority label: " + ds.label.label +
            " (" + ds.label.count + "/" + ds.label.n + (ds.label.accepted ? "" : ", below the purity threshold") + ")"}));
        }
        col.appendChild(histogram(ds.hist, 300, 70));
        col.appendChild(el("h4", {text: "Top activations"}));
        var top = mergedRows(ds.top, mode, marks);
        if (!ds.top.length) { top.appendChild(el("p", {cls: "note", text: "never fires"})); }
        col.appendChild(top);
        if (ds.bins.length && ds.top.length) {
          col.appendChild(el("h4", {text: "Across the activation range (quantile bins, high to low)"}));
          col.appendChild(mergedRows([].concat.apply([], ds.bins), mode, marks));
        }
        if (ds.heatmaps.length) {
          col.appendChild(el("h4", {text: mode === "text" ? "Heatmaps: words shaded by their attribution (white none, red most)"
            : "Heatmaps: where the latent reads each image (jet: blue lowest, red highest of each map)"}));
          // image streams: maps over the top images; text streams: top captions, words shaded
          var words = mode === "text";
          var hm = el("div", {cls: words ? "rows heat-words" : "rows image"});
          ds.heatmaps.forEach(function (h) {
            var r = rowOfId(h[0]);
            var label = r === null ? h[0] : (ROWS.caption[r] || h[0]);
            hm.appendChild(el("figure", {cls: words ? "words" : "thumb", title: h[0] + " — " + label}, [
              el("a", {href: h[1], target: "_blank"}, [el("img", {src: h[1], alt: "heatmap of " + label})]),
              el("figcaption", {text: label})])); });
          col.appendChild(hm);
        }
        col.appendChild(el("h4", {text: "Nearest latents (decoder cosine in " + s.name + ")"}));
        col.appendChild(nearList(ds.near));
        cols.appendChild(col);
      });
      box.appendChild(cols);
      box.appendChild(el("h4", {text: "Nearest latents over all streams (mean decoder cosine)"}));
      box.appendChild(nearList(d.near_all));
    });
  }

  // The latent's class and shares per stream, from the run's evaluation (docs/method.md §5.9).
  function presenceFact(l, d) {
    var P = META.presence;
    var basis = P.basis === "firing" ? "firings" : "activation";
    return "stream presence: " + TABLE.presence[l] + " — share of its " + basis + " per stream " +
      STREAMS.map(function (s, i) {
        var ds = d.streams[i].presence;
        return s.name + " " + pct(P.basis === "firing" ? ds.fire_share : ds.act_share);
      }).join(", ") + " (independent encoding, " + P.eval + "; one stream only ≥ " + P.only +
      ", mostly one stream ≥ " + P.mostly + ")";
  }

  function nearList(items) {
    var ul = el("ul", {cls: "near"});
    items.forEach(function (n) {
      ul.appendChild(el("li", null, [el("a", {href: "#latent/" + n[0], text: String(n[0])}),
        " " + fmt(n[1], 2) + (TABLE.name[n[0]] ? " — " + TABLE.name[n[0]] : "")]));
    });
    return ul;
  }

  // ------------------------------------------------------------------ query

  function streamIndex(name) { for (var i = 0; i < STREAMS.length; i++) { if (STREAMS[i].name === name) { return i; } } return -1; }

  function codeOf(stream, pos) {
    var c = ROWS.codes[stream], k = ROWS.k, out = {};
    for (var j = 0; j < k; j++) { var v = c.val[pos * k + j]; if (v > 0) { out[c.idx[pos * k + j]] = v; } }
    return out;
  }

  function norms(stream) {
    ROWS.norms = ROWS.norms || {};
    if (!ROWS.norms[stream]) {
      var c = ROWS.codes[stream], k = ROWS.k, n = ROWS.query.length, out = new Float64Array(n);
      for (var p = 0; p < n; p++) { var s = 0; for (var j = 0; j < k; j++) { var v = c.val[p * k + j]; s += v * v; } out[p] = Math.sqrt(s); }
      ROWS.norms[stream] = out;
    }
    return ROWS.norms[stream];
  }

  function rankRows(q, stream, top) {
    var qn = 0;
    Object.keys(q).forEach(function (l) { qn += q[l] * q[l]; });
    qn = Math.sqrt(qn);
    if (!qn) { return []; }
    var c = ROWS.codes[stream], k = ROWS.k, nr = norms(stream), scores = [];
    for (var p = 0; p < ROWS.query.length; p++) {
      if (!nr[p]) { continue; }
      var s = 0;
      for (var j = 0; j < k; j++) { var qv = q[c.idx[p * k + j]]; if (qv) { s += qv * c.val[p * k + j]; } }
      if (s > 0) { scores.push([p, s / (qn * nr[p])]); }
    }
    scores.sort(function (a, b) { return b[1] - a[1] || ROWS.query[a[0]] - ROWS.query[b[0]]; });
    return scores.slice(0, top);
  }

  function matches(text) {
    var t = tokens(text);
    var q = text.trim().toLowerCase();
    if (!t.length) { return []; }
    var found = [];
    ROWS.query.forEach(function (r, p) {
      var cap = ROWS.caption[r].toLowerCase();
      var labels = ROWS.labels[r].map(function (c) { return ROWS.label_names[c].toLowerCase(); });
      var capTokens = {};
      tokens(cap).forEach(function (x) { capTokens[x] = 1; });
      var score = null;
      if (cap === q) { score = 0; }
      else if (labels.indexOf(q) >= 0) { score = 1; }
      else if (t.every(function (x) { return capTokens[x]; })) { score = 2; }
      if (score !== null) { found.push([score, cap.length, r, p]); }
    });
    found.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1] || a[2] - b[2]; });
    return found;
  }

  function runQuery(text, stream, chosen) {
    // Served by `sparc serve` (assets/live.js found its API): the server encodes the text.
    if (window.sparcLive) { window.sparcLive.query(text, stream); return; }
    var box = clear(document.getElementById("query-result"));
    if (!ROWS) { box.appendChild(el("p", {cls: "note", text: "loading rows…"})); return; }
    var found = matches(text);
    if (!found.length) {
      box.appendChild(el("p", {cls: "note", text: "No row of this report has a caption or label containing every word of '" +
        text + "'. Opened from disk the box matches stored captions only; sparc serve RUN encodes any text or image."}));
      return;
    }
    var pick = chosen === undefined ? 0 : chosen;
    var list = el("div", {cls: "matches"}, [el("span", {text: found.length + " matching rows; query with: "})]);
    found.slice(0, 8).forEach(function (f, i) {
      list.appendChild(el("button", {type: "button", cls: i === pick ? "match on" : "match",
        text: ROWS.caption[f[2]] || ROWS.id[f[2]], onclick: function () { runQuery(text, stream, i); }}));
    });
    box.appendChild(list);
    var row = found[pick][2], pos = found[pick][3];
    var q = codeOf(stream, pos);
    var lat = Object.keys(q).map(Number).sort(function (a, b) { return q[b] - q[a] || a - b; });
    box.appendChild(el("h3", {text: "Latents of row " + ROWS.id[row] + " in " + stream + " (" + lat.length + ")"}));
    var ul = el("ul", {cls: "query-latents"});
    lat.forEach(function (l) {
      ul.appendChild(el("li", null, [el("a", {href: "#latent/" + l, text: String(l)}), " " + fmt(q[l], 3) +
        (TABLE.name[l] ? " — " + TABLE.name[l] : "") + (TABLE.words[l].length ? " · " + TABLE.words[l].slice(0, 3).join(", ") : "")]));
    });
    box.appendChild(ul);
    var cols = el("div", {cls: "streams", style: "grid-template-columns: repeat(" + Math.max(1, STREAMS.length - 1) + ", minmax(0, 1fr))"});
    STREAMS.forEach(function (s, i) {
      if (s.name === stream) { return; }
      var mode = rowMode(i);
      var col = el("div", {cls: "stream", "data-stream": s.name, "data-mode": mode}, [
        el("h3", {text: s.name + ": rows by cosine of sparse codes"})]);
      var rows = el("div", {cls: "rows " + mode});
      rankRows(q, s.name, 10).forEach(function (ps) { rows.appendChild(rowView(ROWS.query[ps[0]], ps[1], mode, null)); });
      if (!rows.firstChild) { rows.appendChild(el("p", {cls: "note", text: "no row shares a latent"})); }
      col.appendChild(rows);
      cols.appendChild(col);
    });
    box.appendChild(cols);
  }

  function wireQuery() {
    var select = document.getElementById("query-stream");
    var texts = STREAMS.filter(function (s) { return s.modality === "text"; });
    (texts.length ? texts : STREAMS).forEach(function (s) {
      select.appendChild(el("option", {value: s.name, text: "through " + s.name}));
    });
    if (META.text_stream) { select.value = META.text_stream; }
    document.getElementById("query-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = document.getElementById("query-text").value;
      location.hash = "#query/" + encodeURIComponent(text);
    });
  }

  // ------------------------------------------------------------------ routing

  function show(view) {
    ["overview", "latents", "latent", "query"].forEach(function (v) {
      document.getElementById("view-" + v).hidden = v !== view;
      var nav = document.getElementById("nav-" + v);
      if (nav) { nav.className = v === view || (view === "latent" && v === "latents") ? "on" : ""; }
    });
  }

  function route() {
    var h = location.hash || "#latents";
    var m;
    if ((m = /^#latent\/(\d+)$/.exec(h))) { show("latent"); if (ROWS) { renderLatent(Number(m[1])); } }
    else if ((m = /^#query(?:\/(.*))?$/.exec(h))) {
      show("query");
      if (m[1] !== undefined && ROWS) {
        var text;
        // A hash typed or pasted by hand may not be valid percent-encoding: take it as written.
        try { text = decodeURIComponent(m[1]); } catch (e) { text = m[1]; }
        document.getElementById("query-text").value = text;
        runQuery(text, document.getElementById("query-stream").value);
      }
    }
    else if (h === "#overview") { show("overview"); }
    else { show("latents"); }
  }

  // What assets/live.js (the served page's live query box) shares with this file.
  window.sparcReport = {el: el, clear: clear, fmt: fmt, table: TABLE, route: route};

  renderOverview();
  wireTable();
  wireQuery();
  renderTable();
  window.addEventListener("hashchange", route);
  route();
}());
