/* The dashboard's script: charts (uPlot) and the management pages, all through the admin API.
   Every change sends the session's CSRF token; errors are shown in #notice, never thrown. */
(function () {
  "use strict";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.content : "";
  var body = document.body;
  var readOnly = body.dataset.role === "viewer" || body.dataset.role === "team_viewer";

  function notice(text, bad) {
    var el = document.getElementById("notice");
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "notice bad" : "notice";
    el.hidden = !text;
  }

  function api(method, path, payload) {
    var options = { method: method, credentials: "same-origin", headers: { "x-csrf-token": csrf } };
    if (payload !== undefined) {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify(payload);
    }
    return fetch(path, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = { raw: text }; }
        if (!response.ok) {
          var message = data && data.error ? data.error.message : response.status + " " + response.statusText;
          var error = new Error(message);
          error.param = data && data.error ? data.error.param : null;
          error.status = response.status;
          throw error;
        }
        return data;
      });
    });
  }

  function failed(error) { notice(error.message || String(error), true); }

  function list(data) {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data.data)) return data.data;
    return [];
  }

  function cell(value) {
    var td = document.createElement("td");
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value === null || value === undefined ? "" : String(value);
    return td;
  }

  function button(label, onClick, cls) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    if (cls) b.className = cls;
    if (readOnly) b.disabled = true;
    b.addEventListener("click", onClick);
    return b;
  }

  function fill(tableId, rows, columns, empty) {
    var tbody = document.querySelector("#" + tableId + " tbody");
    if (!tbody) return;
    tbody.textContent = "";
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      columns.forEach(function (column) { tr.appendChild(cell(column(row))); });
      tbody.appendChild(tr);
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = cell(empty || "Nothing yet.");
      td.colSpan = columns.length;
      td.className = "empty";
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  }

  function formValues(form) {
    var values = {};
    new FormData(form).forEach(function (value, key) { values[key] = String(value).trim(); });
    return values;
  }

  function number(value) { return value === "" || value === undefined ? undefined : Number(value); }

  /* Times as people read them, always in UTC: "2026-12-06 14:00:00 UTC". */
  function when(value) {
    if (value === null || value === undefined || value === "") return "";
    var at = typeof value === "number" ? value * 1000 : Date.parse(value);
    if (isNaN(at)) return String(value);
    return new Date(at).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  /* A coming moment as "in 3 h 12 min (14:00 UTC)"; the date is added when it is not today. */
  function resetsIn(value) {
    var at = typeof value === "number" ? value * 1000 : Date.parse(value);
    if (isNaN(at)) return String(value);
    var minutes = Math.max(0, Math.ceil((at - Date.now()) / 60000));
    var days = Math.floor(minutes / 1440), hours = Math.floor((minutes % 1440) / 60), rest = minutes % 60;
    var parts = [];
    if (days) parts.push(days + " d");
    if (hours) parts.push(hours + " h");
    if (rest || !parts.length) parts.push(rest + " min");
    var iso = new Date(at).toISOString();
    var sameDay = iso.slice(0, 10) === new Date().toISOString().slice(0, 10);
    return "in " + parts.join(" ") + " (" + (sameDay ? "" : iso.slice(0, 10) + " ") + iso.slice(11, 16) + " UTC)";
  }

  /* Money with four decimals on every page, as the server renders it: "$1,234.5678". */
  function money(value) {
    return "$" + Number(value || 0).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 });
  }

  var LIMITS = { requests_per_day: "requests/day", tokens_per_day: "tokens/day",
                 tokens_per_request: "tokens/request", minutes_per_day: "audio minutes/day" };

  function limitsText(fields) {
    if (!fields || typeof fields !== "object") return fields === undefined || fields === null ? "" : String(fields);
    return Object.keys(fields).filter(function (k) { return fields[k] !== null && fields[k] !== undefined; })
      .map(function (k) { return (LIMITS[k] || k) + ": " + fields[k]; }).join(", ");
  }

  function onSubmit(id, handler) {
    var form = document.getElementById(id);
    if (!form) return;
    if (readOnly && form.classList.contains("admin-only")) {
      Array.prototype.forEach.call(form.elements, function (el) { el.disabled = true; });
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      notice("");
      Promise.resolve(handler(formValues(form), form)).catch(failed);
    });
  }

  /* Charts: requests and errors per bucket, from the page's JSON block. */
  function chart() {
    var holder = document.getElementById("chart");
    var source = document.getElementById("chart-data");
    if (!holder || !source || typeof uPlot === "undefined") return;
    var data = JSON.parse(source.textContent);
    if (!data.labels.length) { holder.textContent = "No requests in this range."; return; }
    var xs = data.labels.map(function (label) {
      var text = label.length === 13 ? label + ":00:00Z" : label + "T00:00:00Z";
      return Date.parse(text) / 1000;
    });
    function width() { return Math.max(240, holder.clientWidth); }
    var plot = new uPlot({
      width: width(), height: 220,
      series: [{}, { label: "requests", stroke: "#2b59c3", width: 2 },
               { label: "errors", stroke: "#c33b2b", width: 2 }],
      axes: [{}, {}],
    }, [xs, data.series.requests, data.series.errors], holder);
    window.addEventListener("resize", function () { plot.setSize({ width: width(), height: 220 }); });
  }

  var pages = {};

  /* The keys page: the operators' (every key) and a team's (its keys, through the team's
     routes of the admin API, which hold a team admin to the team's limits). */
  function keysPage(base) {
    function load() {
      return api("GET", base).then(function (data) {
        fill("keys", list(data), [
          function (k) { return k.id; },
          function (k) { return k.user; },
          function (k) { return k.tier; },
          function (k) { return k.name || ""; },
          function (k) {
            var parts = [];
            if (k.rpm) parts.push(k.rpm + " rpm");
            if (k.tpm) parts.push(k.tpm + " tpm");
            if (k.max_parallel) parts.push(k.max_parallel + " parallel");
            if (k.models && k.models.length) parts.push(k.models.join(","));
            return parts.join(", ");
          },
          function (k) {
            var b = k.budget_usd || {};
            return [b.day ? money(b.day) + "/day" : "", b.month ? money(b.month) + "/month" : ""].filter(Boolean).join(", ");
          },
          function (k) {
            var s = k.spend_usd || {};
            return money(s.day) + " today, " + money(s.month) + " this month";
          },
          function (k) { return when(k.last_used_at); },
          function (k) {
            if (k.expires_at && k.expires_at * 1000 < Date.now()) return "expired";
            return k.expires_at ? "active until " + when(k.expires_at) : "active";
          },
          function (k) {
            var span = document.createElement("span");
            span.appendChild(button("Rotate", function () {
              api("POST", base + "/" + encodeURIComponent(k.id) + "/rotate", { grace_s: 3600 })
                .then(function (made) { showSecret(made); return load(); }).catch(failed);
            }));
            span.appendChild(button("Revoke", function () {
              api("DELETE", base + "/" + encodeURIComponent(k.id))
                .then(function () { notice("Key " + k.id + " revoked."); return load(); }).catch(failed);
            }, "danger"));
            return span;
          },
        ], "No keys yet.");
      });
    }
    function showSecret(made) {
      var secret = made && (made.secret || made.key);
      if (!secret) return;
      document.getElementById("new-secret").textContent = secret;
      document.getElementById("secret-box").hidden = false;
    }
    onSubmit("create-key", function (v) {
      var payload = { user: v.user };
      if (v.tier) payload.tier = v.tier;
      if (v.name) payload.name = v.name;
      if (v.models) payload.models = v.models.split(",").map(function (m) { return m.trim(); }).filter(Boolean);
      ["rpm", "tpm", "max_parallel"].forEach(function (name) { if (v[name]) payload[name] = number(v[name]); });
      if (v.budget_day || v.budget_month) {
        payload.budget_usd = {};
        if (v.budget_day) payload.budget_usd.day = number(v.budget_day);
        if (v.budget_month) payload.budget_usd.month = number(v.budget_month);
      }
      return api("POST", base, payload).then(function (made) {
        showSecret(made);
        notice("Key " + made.id + " created.");
        return load();
      });
    });
    var copy = document.getElementById("copy-secret");
    copy.addEventListener("click", function () {
      var text = document.getElementById("new-secret").textContent;
      var done = function () { notice("Copied."); };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done, function () { selectSecret(); });
      else selectSecret();
    });
    function selectSecret() {
      var range = document.createRange();
      range.selectNodeContents(document.getElementById("new-secret"));
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      notice("Selected: press Ctrl+C to copy.");
    }
    return load();
  }
  pages.keys = function () { return keysPage("/v1/admin/keys"); };
  pages["team-keys"] = function () {
    return keysPage("/v1/admin/teams/" + encodeURIComponent(body.dataset.team) + "/keys");
  };

  pages.users = function () {
    function show(user) {
      var today = new Date().toISOString().slice(0, 10);
      return Promise.all([
        api("GET", "/v1/admin/users/" + encodeURIComponent(user)),
        api("GET", "/v1/admin/analytics?bucket=all&group_by=capability&start=" + today + "&user=" + encodeURIComponent(user)),
      ]).then(function (results) {
        var detail = results[0], usage = list(results[1]);
        document.getElementById("user-detail").hidden = false;
        document.getElementById("user-title").textContent = user;
        fill("user-usage", usage, [
          function (r) { return r.capability; }, function (r) { return r.requests; },
          function (r) { return r.total_tokens; }, function (r) { return money(r.cost_usd); },
        ], "No requests today.");
        var quotas = detail.quotas || {};
        fill("user-quotas", Object.keys(quotas).map(function (c) { return [c, quotas[c]]; }), [
          function (q) { return q[0]; },
          function (q) { return limitsText(q[1]); },
        ], "The tier's quotas apply.");
      });
    }
    var chosen = new URLSearchParams(window.location.search).get("user");
    var current = chosen || "";
    onSubmit("find-user", function (v) { current = v.user; return show(v.user); });
    onSubmit("user-quota", function (v) {
      var payload = {};
      Object.keys(LIMITS).forEach(function (name) { if (v[name]) payload[name] = number(v[name]); });
      return api("PUT", "/v1/admin/users/" + encodeURIComponent(current) + "/quotas/" + v.capability, payload)
        .then(function () { notice("Quota saved."); return show(current); });
    });
    if (chosen) {
      document.getElementById("user-name").value = chosen;
      return show(chosen);
    }
  };

  pages.flags = function () {
    function load() {
      return api("GET", "/v1/admin/flags").then(function (data) {
        var flags = list(data);
        if (!flags.length && data && typeof data === "object" && !Array.isArray(data.data)) {
          flags = Object.keys(data.flags || data).map(function (name) { return Object.assign({ name: name }, (data.flags || data)[name]); });
        }
        fill("flags", flags, [
          function (f) { return f.name; },
          function (f) {
            var box = document.createElement("input");
            box.type = "checkbox"; box.checked = !!f.enabled; box.id = "flag-" + f.name;
            box.disabled = readOnly;
            return box;
          },
          function (f) {
            var input = document.createElement("input");
            input.type = "number"; input.min = "0"; input.max = "100";
            input.value = f.rollout_percent === undefined || f.rollout_percent === null ? 100 : f.rollout_percent;
            input.id = "rollout-" + f.name; input.disabled = readOnly;
            return input;
          },
          function (f) { return f.source || ""; },
          function (f) {
            return button("Save", function () {
              var enabled = document.getElementById("flag-" + f.name).checked;
              var rollout = Number(document.getElementById("rollout-" + f.name).value);
              api("PUT", "/v1/admin/flags/" + encodeURIComponent(f.name), { enabled: enabled, rollout_percent: rollout })
                .then(function () { notice("Flag " + f.name + " saved."); return load(); }).catch(failed);
            });
          },
        ], "No flags declared.");
      });
    }
    return load();
  };

  /* Every limit a tier quota has, one editor each; the API checks the values and its error
     (OpenAI-shaped, with the field in "param") is shown and the field marked. */
  pages.quotas = function () {
    var fields = Object.keys(LIMITS);
    function input(id, name, value) {
      var el = document.createElement("input");
      el.type = "number"; el.min = "0"; el.id = id; el.name = name;
      el.step = name === "minutes_per_day" ? "any" : "1";
      el.value = value === null || value === undefined || value === -1 ? "" : value;
      el.placeholder = "unlimited";
      el.setAttribute("aria-label", LIMITS[name]);
      el.disabled = readOnly;
      return el;
    }
    function load(row) {
      var tier = row.dataset.tier, capability = row.dataset.capability;
      var path = "/v1/admin/tiers/" + encodeURIComponent(tier) + "/quotas/" + encodeURIComponent(capability);
      return api("GET", path).then(function (state) {
        var quota = state.quota || {};
        var cells = row.children;
        fields.forEach(function (name, i) {
          cells[2 + i].textContent = "";
          cells[2 + i].appendChild(input(name + "-" + tier + "-" + capability, name, quota[name]));
        });
        var last = 2 + fields.length;
        cells[last].textContent = state.source || "";
        cells[last + 1].textContent = "";
        var save = button("Save", function () {
          var payload = {};
          Array.prototype.forEach.call(row.querySelectorAll("input"), function (el) {
            el.classList.remove("invalid");
            el.removeAttribute("aria-invalid");
            payload[el.name] = el.value.trim() === "" ? null : Number(el.value);
          });
          api("PUT", path, payload).then(function () {
            notice("Quota " + tier + "/" + capability + " saved.");
            return load(row);
          }).catch(function (error) {
            var bad = error.param && row.querySelector('input[name="' + error.param + '"]');
            if (bad) { bad.classList.add("invalid"); bad.setAttribute("aria-invalid", "true"); bad.focus(); }
            failed(error);
          });
        });
        save.id = "save-" + tier + "-" + capability;
        cells[last + 1].appendChild(save);
      });
    }
    return Promise.all(Array.prototype.map.call(document.querySelectorAll(".quota-row"), load));
  };

  /* Per upstream: which key its requests carry ("no key" when none), its stored system keys
     (fingerprints only), the switch for users' own keys, and a one-step rotation. */
  pages.providers = function () {
    var listings = {};
    function keyState(state) {
      var stored = (state.keys || []).length;
      if (stored) return stored === 1 ? "stored key" : stored + " stored keys";
      if (state.env_key && state.env_key.set) return "env key";
      if (state.env_key && !state.env_key.variable) return "none needed";
      return "no key";
    }
    function keys(row, settings) {
      var name = row.dataset.upstream;
      return api("GET", "/v1/admin/upstreams/" + encodeURIComponent(name) + "/keys").then(function (state) {
        listings[name] = state;
        var cells = row.children;
        cells[1].textContent = keyState(state);
        cells[1].className = keyState(state) === "no key" ? "no-key" : "";
        cells[2].textContent = "";
        (state.keys || []).forEach(function (k) {
          var item = document.createElement("span");
          item.className = "key-item";
          item.textContent = (k.fingerprint || "?") + " · " + (k.state || "") + " ";
          item.appendChild(button("Remove", function () {
            api("DELETE", "/v1/admin/upstreams/" + encodeURIComponent(name) + "/keys/" + encodeURIComponent(k.fingerprint))
              .then(function () { notice("Key " + k.fingerprint + " removed."); return load(); }).catch(failed);
          }, "danger"));
          cells[2].appendChild(item);
        });
        if (!cells[2].children.length) cells[2].textContent = "none stored";
        cells[3].textContent = state.env_key && state.env_key.variable ?
          state.env_key.variable + (state.env_key.set ? " (set)" : " (not set)") : "none";
        cells[4].textContent = "";
        var label = document.createElement("label");
        label.className = "switch";
        var box = document.createElement("input");
        box.type = "checkbox"; box.id = "allow-user-keys-" + name; box.disabled = readOnly;
        box.checked = !!(settings.user_keys_allowed || {})[name];
        var text = document.createElement("span");
        text.textContent = box.checked ? "allowed" : "off";
        box.addEventListener("change", function () {
          var change = {}; change[name] = box.checked;
          api("PUT", "/v1/admin/settings", { allow_user_keys_for: change }).then(function (now) {
            var on = !!(now.user_keys_allowed || {})[name];
            box.checked = on; text.textContent = on ? "allowed" : "off";
            notice("Users' own keys for " + name + ": " + (on ? "allowed." : "off."));
          }).catch(function (error) { box.checked = !box.checked; failed(error); });
        });
        label.appendChild(box); label.appendChild(text);
        cells[4].appendChild(label);
        cells[5].textContent = "";
        var form = document.createElement("form");
        form.className = "inline-form rotate";
        form.id = "rotate-form-" + name;
        var secret = document.createElement("input");
        secret.type = "password"; secret.autocomplete = "off"; secret.required = true;
        secret.name = "key"; secret.id = "rotate-key-" + name; secret.disabled = readOnly;
        secret.placeholder = "new key"; secret.setAttribute("aria-label", "New system key for " + name);
        var go = document.createElement("button");
        go.type = "submit"; go.textContent = "Rotate"; go.id = "rotate-" + name; go.disabled = readOnly;
        form.appendChild(secret); form.appendChild(go);
        form.addEventListener("submit", function (event) {
          event.preventDefault();
          notice("");
          // one step: the new key replaces every stored key, so the old ones stop being used
          api("PUT", "/v1/admin/upstreams/" + encodeURIComponent(name) + "/keys", { keys: [secret.value.trim()] })
            .then(function (after) {
              secret.value = "";
              var now = (after.keys || [])[0] || {};
              notice("System key for " + name + " rotated: now " + (now.fingerprint || "?") + ".");
              return load();
            }).catch(failed);
        });
        cells[5].appendChild(form);
      });
    }
    function load() {
      var rows = document.querySelectorAll(".upstream-row");
      return api("GET", "/v1/admin/settings").then(function (settings) {
        return Promise.all(Array.prototype.map.call(rows, function (row) { return keys(row, settings); }));
      }).then(function () { return api("GET", "/v1/providers"); }).then(function (data) {
        fill("providers", list(data), [
          function (p) { return p.model; },
          function (p) { return p.provider; },
          function (p) {
            var state = listings[p.provider];
            var span = document.createElement("span");
            span.textContent = state ? keyState(state) : "";
            if (span.textContent === "no key") span.className = "no-key";
            return span;
          },
          function (p) { return p.circuit; },
          function (p) { return p.recent_attempts; },
          function (p) { return p.error_rate === null || p.error_rate === undefined ? "" : (100 * p.error_rate).toFixed(1) + "%"; },
          function (p) { return p.latency_p50_ms === null || p.latency_p50_ms === undefined ? "" : p.latency_p50_ms; },
        ], "No models configured.");
      });
    }
    onSubmit("upstream-key", function (v, form) {
      return api("PUT", "/v1/admin/upstreams/" + encodeURIComponent(v.upstream) + "/keys", { key: v.key })
        .then(function () { form.reset(); notice("Key stored for " + v.upstream + "."); return load(); });
    });
    return load();
  };

  pages.requests = function () {
    function load() {
      return api("GET", "/v1/admin/quota-requests").then(function (data) {
        fill("quota-requests", list(data), [
          function (r) { return r.id; }, function (r) { return r.user; },
          function (r) { return r.capability; }, function (r) { return limitsText(r.requested); },
          function (r) { return r.reason || ""; },
          function (r) { return r.state || r.status || ""; },
          function (r) { return when(r.created_at); },
          function (r) {
            var span = document.createElement("span");
            var open = (r.state || r.status || "pending") === "pending";
            ["approve", "deny"].forEach(function (action) {
              var b = button(action === "approve" ? "Approve" : "Deny", function () {
                api("POST", "/v1/admin/quota-requests/" + encodeURIComponent(r.id) + "/" + action, {})
                  .then(function () { notice("Request " + r.id + " " + action + (action === "deny" ? "ed." : "d.")); return load(); }).catch(failed);
              }, action === "deny" ? "danger" : "");
              b.disabled = readOnly || !open;
              b.id = action + "-" + r.id;
              span.appendChild(b);
            });
            return span;
          },
        ], "No quota requests.");
      });
    }
    return load();
  };

  pages.audit = function () {
    var choice = document.getElementById("audit-log");
    function load() {
      var log = choice ? choice.value : "";
      return api("GET", "/v1/admin/audit" + (log ? "?log=" + encodeURIComponent(log) : "")).then(function (data) {
        fill("audit", list(data), [
          function (e) { return when(e.at || e.when || e.time); },
          function (e) { return e.log; },
          function (e) { return e.actor || e.who; },
          function (e) { return e.action; },
          function (e) { return e.kind; },
          function (e) { return e.id; },
          function (e) { return JSON.stringify({ before: e.before, after: e.after }); },
        ], "No changes yet.");
      });
    }
    if (choice) choice.addEventListener("change", function () { load().catch(failed); });
    return load();
  };

  pages.me = function () {
    var bars = document.getElementById("quota-bars");
    if (!bars) return;
    function load() {
      var today = new Date().toISOString().slice(0, 10);
      return Promise.all([api("GET", "/v1/quota"), api("GET", "/v1/usage?from=" + today)]).then(function (results) {
        quotaBars(results[0]);
        var records = list(results[1]);
        var tokens = 0, spend = 0;
        records.forEach(function (r) {
          tokens += r.total_tokens || 0;
          // what was charged: BYOK requests are metered at list price but never charged
          spend += r.charged_usd !== undefined ? r.charged_usd || 0 : (r.byok ? 0 : r.cost_usd || 0);
        });
        document.getElementById("my-requests").textContent = String(records.length);
        document.getElementById("my-tokens").textContent = String(tokens);
        document.getElementById("my-spend").textContent = money(spend);
      });
    }
    function quotaBars(view) {
      bars.textContent = "";
      var capabilities = view.capabilities || view.quotas || {};
      var resets = view.resets_at || {};
      var unlimited = [];
      Object.keys(capabilities).forEach(function (capability) {
        var c = capabilities[capability];
        var limited = false;
        Object.keys(c).forEach(function (measure) {
          var m = c[measure];
          if (!m || typeof m !== "object" || typeof m.limit !== "number" || m.limit < 0) return;
          limited = true;
          var row = document.createElement("div");
          row.className = "bar";
          row.dataset.capability = capability;
          row.dataset.measure = measure;
          row.dataset.used = String(m.used);
          var label = document.createElement("span");
          label.textContent = capability + " · " + measure + ": " + m.used + " of " + m.limit +
            (resets.day ? " · resets " + resetsIn(resets.day) : "");
          var track = document.createElement("div");
          track.className = "track";
          var fillEl = document.createElement("div");
          fillEl.className = "fill";
          fillEl.style.width = (100 * (m.limit > 0 ? Math.min(1, m.used / m.limit) : 1)).toFixed(1) + "%";
          track.appendChild(fillEl);
          row.appendChild(label);
          row.appendChild(track);
          bars.appendChild(row);
        });
        if (!limited) unlimited.push(capability);
      });
      if (unlimited.length) {
        var note = document.createElement("p");
        note.className = "muted";
        note.textContent = "Unlimited: " + unlimited.join(", ") + ".";
        bars.appendChild(note);
      }
    }
    /* The own-key form works only for a provider whose user keys are on; for the others it is
       disabled, with a sentence saying why (removing a stored key always works). */
    var allowedUpstreams = [];
    var saveForm = document.getElementById("my-key");
    function ownKeyState() {
      var chosen = saveForm.elements.upstream.value;
      var on = allowedUpstreams.indexOf(chosen) >= 0;
      var off = document.getElementById("my-key-off");
      saveForm.elements.key.disabled = !on;
      document.getElementById("my-key-save").disabled = !on;
      off.hidden = on;
      off.textContent = on ? "" : allowedUpstreams.length ?
        "Your own keys for " + chosen + " are switched off on this gateway: requests to " + chosen +
        " use the gateway's key. Allowed: " + allowedUpstreams.join(", ") + "." :
        "Storing your own provider keys is switched off on this gateway: your requests use the gateway's keys.";
    }
    function myKeys(data) {
      allowedUpstreams = data.allowed_upstreams || [];
      Array.prototype.forEach.call(saveForm.elements.upstream.options, function (option) {
        option.textContent = option.value + (allowedUpstreams.indexOf(option.value) >= 0 ? "" : " (off)");
      });
      ownKeyState();
      fill("my-keys", list(data), [
        function (k) { return k.upstream; },
        function (k) { return k.fingerprint; },
        function (k) { return when(k.updated_at); },
      ], "No provider keys stored.");
    }
    saveForm.elements.upstream.addEventListener("change", ownKeyState);
    onSubmit("my-key", function (v, form) {
      return api("PUT", "/v1/me/upstream-keys/" + encodeURIComponent(v.upstream), { key: v.key })
        .then(function (data) { form.elements.key.value = ""; myKeys(data); notice("Your " + v.upstream + " key is stored."); });
    });
    onSubmit("my-key-remove", function (v) {
      return api("DELETE", "/v1/me/upstream-keys/" + encodeURIComponent(v.upstream))
        .then(function (data) { myKeys(data); notice("Your " + v.upstream + " key is removed."); });
    });
    var requests = api("GET", "/v1/me/upstream-keys").then(myKeys);
    /* A quota-increase request for any limit: every field filled in is asked for. */
    onSubmit("quota-request", function (v, form) {
      var requested = {};
      Object.keys(LIMITS).forEach(function (name) { if (v[name]) requested[name] = number(v[name]); });
      if (!Object.keys(requested).length) return Promise.reject(new Error("Fill in at least one limit to ask for."));
      var payload = { capability: v.capability, requested: requested };
      if (v.reason) payload.reason = v.reason;
      return api("POST", "/v1/quota/requests", payload).then(function (made) {
        form.reset();
        notice("Request " + (made && made.id ? made.id + " " : "") + "sent.");
        return myRequests();
      });
    });
    function myRequests() {
      return api("GET", "/v1/quota/requests").then(function (data) {
        fill("my-quota-requests", list(data), [
          function (r) { return r.capability; },
          function (r) { return limitsText(r.requested); },
          function (r) { return r.status || ""; },
          function (r) { return when(r.created_at); },
        ], "No quota requests yet.");
      });
    }
    return Promise.all([load(), requests, myRequests()]);
  };

  document.addEventListener("DOMContentLoaded", function () {
    chart();
    if (readOnly) {
      Array.prototype.forEach.call(document.querySelectorAll(".admin-only"), function (el) { el.classList.add("read-only"); });
    }
    var init = pages[body.dataset.page];
    Promise.resolve(init ? init() : null).catch(failed).then(function () { body.dataset.ready = "1"; });
  });
})();
