/* Registrar console: the little JavaScript the pages use for their actions. Own code, no library, no build.
 * Every action calls the registry API's own routes (same origin, with the page's CSRF token), after a
 * confirmation step, and shows the outcome without reloading. Text from the server is only ever set with
 * textContent: nothing received is parsed as HTML. */
(function () {
  "use strict";

  var POLL_MS = 1000;
  var POLL_LIMIT_MS = 15 * 60 * 1000;

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function api(method, path, body) {
    var options = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrfToken();
      options.body = JSON.stringify(body || {});
    }
    return fetch(path, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { status: response.status, ok: response.ok, data: data, text: text };
      });
    });
  }

  function errorMessage(result) {
    if (result.data && result.data.error && result.data.error.message) {
      var checks = (result.data.error.checks || []).map(function (c) {
        return (c.passed ? "✓ " : "✗ ") + c.requirement + ": " + c.detail;
      });
      return result.data.error.message + (checks.length ? " [" + checks.join("; ") + "]" : "");
    }
    return "HTTP " + result.status + (result.text ? ": " + result.text.slice(0, 200) : "");
  }

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    return node;
  }

  /* A time as the pages write it (formatting.when): "2026-11-04 08:00 UTC". */
  function when(value) {
    var moment = value ? new Date(value) : null;
    if (!moment || isNaN(moment.getTime())) { return value || "—"; }
    return moment.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function isHttpUrl(value) {
    return typeof value === "string" && /^https?:\/\/\S+$/.test(value);
  }

  function show(outcome, state, parts) {
    outcome.className = "outcome" + (state ? " " + state : "");
    outcome.replaceChildren.apply(outcome, parts.map(function (p) { return typeof p === "string" ? document.createTextNode(p) : p; }));
  }

  /* A confirmation step in the page (no browser dialog): the question, Confirm and Cancel; Escape cancels.
   * `reason` ({label, required}): a text field in the step, its value handed to `onConfirm`. */
  function confirmStep(anchor, question, onConfirm, reason) {
    var existing = document.querySelector(".confirm");
    if (existing) { existing.remove(); }
    var box = el("div", null, { "class": "confirm", "role": "group", "aria-label": "Confirm" });
    var yes = el("button", "Confirm", { "type": "button", "class": "primary confirm-yes" });
    var no = el("button", "Cancel", { "type": "button", "class": "confirm-no" });
    var field = null;
    box.append(el("p", question));
    if (reason) {
      var label = el("label", reason.label + (reason.required ? "" : " (optional)") + " ");
      field = el("input", null, { "type": "text", "class": "confirm-reason", "maxlength": "1000" });
      label.append(field);
      box.append(label, el("br"));
    }
    box.append(yes, no);
    anchor.after(box);
    var opener = document.activeElement;
    function close() { box.remove(); if (opener && opener.focus) { opener.focus(); } }
    yes.addEventListener("click", function () {
      var text = field ? field.value.trim() : "";
      if (field && reason.required && !text) { field.focus(); return; }
      box.remove();
      onConfirm(text);
    });
    no.addEventListener("click", close);
    box.addEventListener("keydown", function (event) { if (event.key === "Escape") { close(); } });
    (field || yes).focus();
  }

  /* GET `path` every POLL_MS until `done(result)` holds, then `onDone(result)`; `onWait(result)` after each other
   * answer; `onTimeout()` after POLL_LIMIT_MS. */
  function pollUntil(path, done, onWait, onDone, onTimeout) {
    var started = Date.now();
    function poll() {
      api("GET", path).then(function (result) {
        if (done(result)) {
          onDone(result);
          return;
        }
        if (Date.now() - started > POLL_LIMIT_MS) {
          onTimeout();
          return;
        }
        onWait(result);
        window.setTimeout(poll, POLL_MS);
      }, function () { window.setTimeout(poll, POLL_MS); });
    }
    window.setTimeout(poll, 200);
  }

  /* Deploy / undeploy / rollback: the 202 gives a request id; its outcome is polled from /deployments/{id}. */
  function followRequest(outcome, accepted, what, onDone) {
    var id = accepted.request_id;
    show(outcome, "", [what + ": request " + id + " accepted; waiting for the outcome…"]);
    pollUntil("/deployments/" + encodeURIComponent(id), function (result) {
      return result.ok && result.data && result.data.status && result.data.status !== "requested";
    }, function (result) {
      if (result.ok || result.status === 404) {
        show(outcome, "", [what + ": request " + id + " is " + ((result.data && result.data.status) || "not recorded yet") + "…"]);
      }
    }, function (result) { onDone(result.data); }, function () {
      show(outcome, "failed", [what + ": no outcome for request " + id + " yet; see GET /deployments/" + id]);
    });
  }

  function deployedParts(doc) {
    var parts = ["Deployed version " + doc.version_id + " on " + (doc.service_id || doc.service_name || "") + " (request " + doc.request_id + "): "];
    if (isHttpUrl(doc.uri)) {
      parts.push(el("a", doc.uri, { "href": doc.uri, "class": "deployed-url", "rel": "noopener noreferrer" }));
    } else {
      parts.push(el("code", doc.uri || "(no URL)", { "class": "deployed-url" }));
    }
    return parts;
  }

  function setupDeploy(form) {
    var outcome = document.getElementById("deploy-outcome");
    var status = document.getElementById("deployment-status");
    var modelId = form.getAttribute("data-model-id");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      if (form.getAttribute("data-action") === "deploy") {
        var version = form.querySelector("#deploy-version").value;
        var preset = form.querySelector("#deploy-preset").value;
        confirmStep(form, "Deploy version " + version + " of " + modelId + " with the " + preset + " preset?", function () {
          request(button, outcome, "Deploy", "/models/" + encodeURIComponent(modelId) + "/versions/" +
                  encodeURIComponent(version) + ":deploy", { preset: preset }, "deployed", function (doc) {
            show(outcome, "succeeded", deployedParts(doc));
            if (status) { show(status, "", deployedParts(doc)); }
          });
        });
      } else {
        confirmStep(form, "Undeploy " + modelId + " (delete its Cloud Run services)?", function () {
          request(button, outcome, "Undeploy", "/models/" + encodeURIComponent(modelId) + ":undeploy", {}, "undeployed",
                  function (doc) {
            var services = doc.services || [];
            show(outcome, "succeeded", ["Undeployed (request " + doc.request_id + "): " + (services.length ? "deleted " + services.join(", ") : "nothing was deployed")]);
            if (status) { show(status, "", ["Not deployed."]); }
          });
        });
      }
    });
  }

  /* A deploy-requests request: POST it (202 with a request id), follow it to its outcome, then `onSuccess(doc)` if
   * it ended in `success`, or say why not. */
  function request(button, outcome, what, path, body, success, onSuccess) {
    button.disabled = true;
    api("POST", path, body).then(function (result) {
      if (result.status !== 202) {
        button.disabled = false;
        show(outcome, "failed", [what + " refused: " + errorMessage(result)]);
        return;
      }
      followRequest(outcome, result.data, what, function (doc) {
        button.disabled = false;
        if (doc.status === success) {
          onSuccess(doc);
        } else {
          show(outcome, "failed", [what + " " + doc.status + " (request " + doc.request_id + "): " + (doc.reason || "no reason given")]);
        }
      });
    }, function (err) { button.disabled = false; show(outcome, "failed", [what + " failed: " + err]); });
  }

  /* Roll back a Cloud Run service: POST /models/{id}:rollback (a deploy request like the others). */
  function onRollback(event) {
    var button = event.currentTarget;
    var modelId = button.getAttribute("data-model-id");
    var service = button.getAttribute("data-service");
    var select = button.parentNode.querySelector("select.rollback-to");
    var to = select ? select.value : "";
    var target = select ? select.options[select.selectedIndex].text : "the previous version";
    var outcome = document.getElementById("deploy-outcome");
    var status = document.getElementById("deployment-status");
    confirmStep(button.parentNode, "Roll back " + service + " (version " + button.getAttribute("data-version-id") + ") to " + target + "?", function () {
      var body = { service_name: service };
      if (to) { body.to_version = to; }
      request(button, outcome, "Rollback", "/models/" + encodeURIComponent(modelId) + ":rollback", body, "deployed", function (doc) {
        var parts = deployedParts(doc);
        parts[0] = "Rolled back " + service + " from version " + ((doc.rollback || {}).from_version || "?") + " to version " + doc.version_id + " (request " + doc.request_id + "): ";
        show(outcome, "succeeded", parts);
        if (status) { show(status, "", deployedParts(doc)); }
        var row = document.querySelector('tr[data-service-id="' + CSS.escape(service) + '"]');
        if (row) {
          row.querySelector(".endpoint-version").textContent = doc.version_id;
          button.remove();
          if (select) { select.remove(); }
        }
      });
    });
  }

  /* Promotions: POST …:promote (201 applied, 202 waiting for an approver), then the registry's alias follows
   * through the audit log, which the page waits for; approve / reject through POST /promotions/{id}:{decision}. */
  function promotionRow(view) {
    var table = document.querySelector("#promotions-table tbody");
    if (!table) { return; }
    var empty = table.querySelector("tr.no-promotions");
    if (empty) { empty.remove(); }
    var row = table.querySelector('tr[data-promotion-id="' + CSS.escape(view.promotion_id) + '"]');
    var cells = [when(view.requested_at), view.alias + (view.protected ? " (protected)" : ""), view.version_id, view.status,
                 view.requested_by, view.reason, view.decided_by || "—", when(view.decided_at),
                 (view.checks || []).map(function (c) { return (c.passed ? "✓ " : "✗ ") + c.requirement + ": " + c.detail; }).join("; ") + (view.failure ? " — " + view.failure : ""),
                 ""];
    var fresh = el("tr", null, { "data-promotion-id": view.promotion_id });
    cells.forEach(function (text, i) {
      var cell = el(i === 1 ? "th" : "td", text, i === 1 ? { "scope": "row" } : {});
      if (i === 3) { cell.className = "promotion-status"; }
      if (i === 9) { cell.className = "buttons"; }
      fresh.append(cell);
    });
    if (view.status === "pending") {
      var label = view.alias + " → version " + view.version_id;
      [["approve", "Approve…"], ["reject", "Reject…"]].forEach(function (a) {
        var b = el("button", a[1], { "type": "button", "class": "promotion-action", "data-action": a[0], "data-promotion-id": view.promotion_id, "data-label": label });
        b.addEventListener("click", onDecision);
        fresh.lastChild.append(b);
      });
    }
    if (row) { row.replaceWith(fresh); } else { table.prepend(fresh); }
  }

  function promotionOutcome(outcome, view, modelId) {
    var what = "Promotion " + view.promotion_id + " of version " + view.version_id + " to " + view.alias;
    if (view.status === "pending") {
      show(outcome, "succeeded", [what + " is pending: an approver other than you decides it."]);
      return;
    }
    if (view.status !== "applied") {
      show(outcome, view.status === "rejected" ? "succeeded" : "failed", [what + " is " + view.status + (view.failure ? ": " + view.failure : "") + "."]);
      return;
    }
    show(outcome, "", [what + " is applied in Vertex AI; waiting for the registry to show it…"]);
    pollUntil("/models/" + encodeURIComponent(modelId), function (result) {
      return result.ok && result.data && (result.data.aliases || {})[view.alias] === view.version_id;
    }, function () {}, function (result) {
      show(outcome, "succeeded", [what + " is applied: the registry shows " + view.alias + " → version " + view.version_id + "."]);
      var aliases = document.getElementById("model-aliases");
      if (aliases) {
        var held = result.data.aliases;
        aliases.replaceChildren.apply(aliases, Object.keys(held).map(function (a) {
          return el("span", a + " → version " + held[a], { "class": "alias" });
        }));
      }
    }, function () {
      show(outcome, "failed", [what + " is applied in Vertex AI, but the registry does not show it yet; see GET /models/" + modelId]);
    });
  }

  function setupPromote(form) {
    var outcome = document.getElementById("promotion-outcome");
    var modelId = form.getAttribute("data-model-id");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      var version = form.querySelector("#promote-version").value;
      var alias = form.querySelector("#promote-alias").value.trim();
      var reason = form.querySelector("#promote-reason").value.trim();
      confirmStep(form, "Promote version " + version + " of " + modelId + " to alias " + alias + "?", function () {
        button.disabled = true;
        api("POST", "/models/" + encodeURIComponent(modelId) + "/versions/" + encodeURIComponent(version) + ":promote",
            { alias: alias, reason: reason }).then(function (result) {
          button.disabled = false;
          if (!result.ok) {
            show(outcome, "failed", ["Promotion refused: " + errorMessage(result)]);
            return;
          }
          promotionRow(result.data);
          promotionOutcome(outcome, result.data, modelId);
        }, function (err) { button.disabled = false; show(outcome, "failed", ["Promotion failed: " + err]); });
      });
    });
  }

  function onDecision(event) {
    var button = event.currentTarget;
    var action = button.getAttribute("data-action");
    var id = button.getAttribute("data-promotion-id");
    var outcome = document.getElementById("promotion-outcome");
    var modelId = document.getElementById("model-id").textContent;
    var question = (action === "approve" ? "Approve" : "Reject") + " promotion " + id + " (" + button.getAttribute("data-label") + ")?";
    confirmStep(button.parentNode, question, function (reason) {
      button.disabled = true;
      api("POST", "/promotions/" + encodeURIComponent(id) + ":" + action, reason ? { reason: reason } : {}).then(function (result) {
        button.disabled = false;
        if (!result.ok) {
          show(outcome, "failed", [action + " refused: " + errorMessage(result)]);
          return;
        }
        promotionRow(result.data);
        promotionOutcome(outcome, result.data, modelId);
      }, function (err) { button.disabled = false; show(outcome, "failed", [action + " failed: " + err]); });
    }, { label: "Reason", required: action === "reject" });
  }

  /* Compare: the two choices become the page's `versions` parameter (the form is a plain GET). */
  function setupCompare(form) {
    var hidden = document.getElementById("compare-versions");
    function update() { hidden.value = form.querySelector("#compare-a").value + "," + form.querySelector("#compare-b").value; }
    form.querySelectorAll("select").forEach(function (s) { s.addEventListener("change", update); });
    form.addEventListener("submit", update);
  }

  /* Schedules: trigger / pause / resume through POST /schedules/{id}:{action}. */
  function scheduleButtons(cell, id, label, status) {
    var actions = status === "active" ? [["trigger", "Trigger now…"], ["pause", "Pause…"]] : status === "paused" ? [["resume", "Resume…"]] : [];
    cell.replaceChildren.apply(cell, actions.map(function (a) {
      var b = el("button", a[1], { "type": "button", "class": "schedule-action", "data-action": a[0], "data-schedule-id": id, "data-label": label });
      b.addEventListener("click", onScheduleAction);
      return b;
    }));
  }

  function onScheduleAction(event) {
    var button = event.currentTarget;
    var action = button.getAttribute("data-action");
    var id = button.getAttribute("data-schedule-id");
    var label = button.getAttribute("data-label");
    var outcome = document.getElementById("schedule-outcome");
    var words = { trigger: "Start a training run of", pause: "Pause", resume: "Resume" };
    confirmStep(button.parentNode, words[action] + " schedule " + label + " (" + id + ") now?", function () {
      button.disabled = true;
      api("POST", "/schedules/" + encodeURIComponent(id) + ":" + action, {}).then(function (result) {
        button.disabled = false;
        if (!result.ok) {
          show(outcome, "failed", [action + " refused: " + errorMessage(result)]);
          return;
        }
        var row = document.querySelector('tr[data-schedule-id="' + CSS.escape(id) + '"]');
        if (action === "trigger") {
          show(outcome, "succeeded", ["Triggered " + label + ": training run ", runLink(result.data.training_run_id), " for slot " + result.data.slot + " (published to " + result.data.topic + ")."]);
          return;
        }
        var status = result.data.status;
        show(outcome, "succeeded", ["Schedule " + label + " is now " + status + "."]);
        if (row) {
          row.querySelector(".schedule-status").textContent = status;
          scheduleButtons(row.querySelector(".buttons"), id, label, status);
        }
      }, function (err) { button.disabled = false; show(outcome, "failed", [action + " failed: " + err]); });
    });
  }

  /* Training runs: cancel through POST /training-runs/{id}:cancel, rerun through POST /training-runs/{id}:rerun
   * with only the config keys the form changed; the new run is linked. */
  function runLink(id) {
    return el("a", id, { "href": "/console/runs/" + encodeURIComponent(id), "class": "run-link" });
  }

  function setupCancelRun(form) {
    var runId = form.getAttribute("data-run-id");
    var outcome = document.getElementById("run-outcome");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      confirmStep(form, "Cancel training run " + runId + "?", function (reason) {
        button.disabled = true;
        api("POST", "/training-runs/" + encodeURIComponent(runId) + ":cancel", reason ? { reason: reason } : {}).then(function (result) {
          if (!result.ok) {
            button.disabled = false;
            show(outcome, "failed", ["Cancel refused: " + errorMessage(result)]);
            return;
          }
          form.remove();
          show(outcome, "succeeded", ["Cancel requested (request " + result.data.request_id + "): the run ends when its pipeline reports it."]);
        }, function (err) { button.disabled = false; show(outcome, "failed", ["Cancel failed: " + err]); });
      }, { label: "Reason", required: false });
    });
  }

  /* A field's value as the config holds it: a number for a numeric field (the text itself when it is not one, for
   * the API to refuse by name), true / false, or the text; an emptied field is null (the runner's default). */
  function fieldValue(kind, text) {
    text = text.trim();
    if (text === "") { return null; }
    if (kind === "integer" || kind === "number") {
      var n = Number(text);
      return isNaN(n) ? text : n;
    }
    if (kind === "boolean") { return text === "true"; }
    return text;
  }

  function setupRerun(form) {
    var runId = form.getAttribute("data-run-id");
    var outcome = document.getElementById("run-outcome");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      var overrides = {};
      form.querySelectorAll(".rerun-field").forEach(function (field) {
        var kind = field.getAttribute("data-type");
        var value = fieldValue(kind, field.value);
        if (value !== fieldValue(kind, field.getAttribute("data-original"))) {
          overrides[field.getAttribute("data-key")] = value;
        }
      });
      var reason = form.querySelector("#rerun-reason").value.trim();
      var changed = Object.keys(overrides).map(function (k) { return k + "=" + (overrides[k] === null ? "(default)" : overrides[k]); });
      confirmStep(form, "Rerun " + runId + (changed.length ? " with " + changed.join(", ") : " with the same config") + "?", function () {
        var body = {};
        if (changed.length) { body.training_config = overrides; }
        if (reason) { body.reason = reason; }
        button.disabled = true;
        api("POST", "/training-runs/" + encodeURIComponent(runId) + ":rerun", body).then(function (result) {
          button.disabled = false;
          if (!result.ok) {
            show(outcome, "failed", ["Rerun refused: " + errorMessage(result)]);
            return;
          }
          show(outcome, "succeeded", ["Rerun requested (request " + result.data.request_id + "): new run ", runLink(result.data.training_run_id), "."]);
        }, function (err) { button.disabled = false; show(outcome, "failed", ["Rerun failed: " + err]); });
      });
    });
  }

  /* Try a served model: the example from the serving signature, then POST …:predict through the registry. */
  function setupPredict(form) {
    var modelId = form.getAttribute("data-model-id");
    var versionId = form.getAttribute("data-version-id");
    var base = "/models/" + encodeURIComponent(modelId) + "/versions/" + encodeURIComponent(versionId);
    var textarea = document.getElementById("predict-instance");
    var note = document.getElementById("signature-note");
    var outcome = document.getElementById("predict-outcome");
    api("GET", base + "/signature").then(function (result) {
      if (result.ok && result.data && result.data.example) {
        textarea.value = JSON.stringify(result.data.example, null, 2);
        var names = Object.keys(result.data.inputs || {}).map(function (n) { return n + " (" + result.data.inputs[n] + ")"; });
        note.textContent = "Features its serving signature expects: " + names.join(", ") + ".";
      } else if (result.data) {
        note.textContent = "The serving signature could not be read (" + errorMessage(result) + "); the example may not fit.";
      }
    }, function () { /* the default example stays */ });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var instance;
      try { instance = JSON.parse(textarea.value); } catch (e) {
        show(outcome, "failed", ["The instance is not valid JSON: " + e.message]);
        return;
      }
      var body = { instances: [instance] };
      var topK = parseInt(document.getElementById("predict-top-k").value, 10);
      if (topK > 0) { body.top_k = topK; }
      var button = document.getElementById("predict-button");
      button.disabled = true;
      show(outcome, "", ["Asking version " + versionId + "…"]);
      api("POST", base + ":predict", body).then(function (result) {
        button.disabled = false;
        if (!result.ok) {
          show(outcome, "failed", ["Prediction failed: " + errorMessage(result)]);
          return;
        }
        var prediction = (result.data.predictions || [])[0] || {};
        var ids = prediction.product_ids || [];
        var scores = prediction.scores || [];
        var table = el("table", null, { "class": "predictions", "id": "predictions-table" });
        table.append(el("caption", "Version " + result.data.version_id + " on " + result.data.service + ": " + ids.length + " products"));
        var head = el("thead");
        var hr = el("tr");
        ["Rank", "Product id", "Score"].forEach(function (h) { hr.append(el("th", h, { "scope": "col" })); });
        head.append(hr);
        var bodyEl = el("tbody");
        ids.forEach(function (id, i) {
          var tr = el("tr");
          tr.append(el("td", i + 1), el("th", id, { "scope": "row" }), el("td", typeof scores[i] === "number" ? scores[i].toFixed(4) : scores[i]));
          bodyEl.append(tr);
        });
        table.append(head, bodyEl);
        show(outcome, "succeeded", [table]);
      }, function (err) { button.disabled = false; show(outcome, "failed", ["Prediction failed: " + err]); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-action=deploy], form[data-action=undeploy]").forEach(setupDeploy);
    document.querySelectorAll("button.schedule-action").forEach(function (b) { b.addEventListener("click", onScheduleAction); });
    document.querySelectorAll("button.rollback-action").forEach(function (b) { b.addEventListener("click", onRollback); });
    document.querySelectorAll("button.promotion-action").forEach(function (b) { b.addEventListener("click", onDecision); });
    var promote = document.getElementById("promote-form");
    if (promote) { setupPromote(promote); }
    var compare = document.getElementById("compare-form");
    if (compare) { setupCompare(compare); }
    var cancelRun = document.getElementById("cancel-form");
    if (cancelRun) { setupCancelRun(cancelRun); }
    var rerun = document.getElementById("rerun-form");
    if (rerun) { setupRerun(rerun); }
    var predict = document.getElementById("predict-form");
    if (predict) { setupPredict(predict); }
  });
}());
