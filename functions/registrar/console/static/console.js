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
      return result.data.error.message;
    }
    return "HTTP " + result.status + (result.text ? ": " + result.text.slice(0, 200) : "");
  }

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    return node;
  }

  function isHttpUrl(value) {
    return typeof value === "string" && /^https?:\/\/\S+$/.test(value);
  }

  function show(outcome, state, parts) {
    outcome.className = "outcome" + (state ? " " + state : "");
    outcome.replaceChildren.apply(outcome, parts.map(function (p) { return typeof p === "string" ? document.createTextNode(p) : p; }));
  }

  /* A confirmation step in the page (no browser dialog): the question, Confirm and Cancel; Escape cancels. */
  function confirmStep(anchor, question, onConfirm) {
    var existing = document.querySelector(".confirm");
    if (existing) { existing.remove(); }
    var box = el("div", null, { "class": "confirm", "role": "group", "aria-label": "Confirm" });
    var yes = el("button", "Confirm", { "type": "button", "class": "primary confirm-yes" });
    var no = el("button", "Cancel", { "type": "button", "class": "confirm-no" });
    box.append(el("p", question), yes, no);
    anchor.after(box);
    var opener = document.activeElement;
    function close() { box.remove(); if (opener && opener.focus) { opener.focus(); } }
    yes.addEventListener("click", function () { box.remove(); onConfirm(); });
    no.addEventListener("click", close);
    box.addEventListener("keydown", function (event) { if (event.key === "Escape") { close(); } });
    yes.focus();
  }

  /* Deploy / undeploy: the 202 gives a request id; its outcome is polled from /deployments/{id}. */
  function followRequest(outcome, accepted, what, onDone) {
    var started = Date.now();
    var id = accepted.request_id;
    show(outcome, "", [what + ": request " + id + " accepted; waiting for the outcome…"]);
    function poll() {
      api("GET", "/deployments/" + encodeURIComponent(id)).then(function (result) {
        var doc = result.data;
        if (result.ok && doc && doc.status && doc.status !== "requested") {
          onDone(doc);
          return;
        }
        if (Date.now() - started > POLL_LIMIT_MS) {
          show(outcome, "failed", [what + ": no outcome for request " + id + " yet; see GET /deployments/" + id]);
          return;
        }
        if (result.ok || result.status === 404) {
          show(outcome, "", [what + ": request " + id + " is " + ((doc && doc.status) || "not recorded yet") + "…"]);
        }
        window.setTimeout(poll, POLL_MS);
      }, function () { window.setTimeout(poll, POLL_MS); });
    }
    window.setTimeout(poll, 200);
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
          show(outcome, "succeeded", ["Triggered " + label + ": training run " + result.data.training_run_id + " for slot " + result.data.slot + " (published to " + result.data.topic + ")."]);
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
    var predict = document.getElementById("predict-form");
    if (predict) { setupPredict(predict); }
  });
}());
