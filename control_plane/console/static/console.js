// The console's only script: live regions over Server-Sent Events, and confirmed actions.
// Plain JavaScript with no dependencies; the page works (without live updates or actions) without it.
"use strict";

(function () {
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // Replace each region named in a patch with its new HTML (rendered and escaped by the server).
  function applyPatch(regions) {
    for (const [id, html] of Object.entries(regions)) {
      const element = document.getElementById(id);
      if (element) {
        element.innerHTML = html;
      }
    }
    const count = Number(document.body.dataset.patches || "0") + 1;
    document.body.dataset.patches = String(count);
    // A process that ended takes no more actions: the stylesheet hides their buttons.
    if (document.querySelector("[data-final=true]")) {
      document.body.dataset.final = "true";
    }
  }

  function startLive() {
    const url = document.body.dataset.live;
    if (!url || !window.EventSource) {
      return;
    }
    const source = new EventSource(url);
    source.addEventListener("patch", function (event) {
      applyPatch(JSON.parse(event.data));
      document.body.dataset.liveState = "open";
    });
    // The server has nothing more to send (the process ended): do not reconnect.
    source.addEventListener("end", function () {
      source.close();
      document.body.dataset.liveState = "ended";
    });
    source.addEventListener("error", function () {
      if (source.readyState !== EventSource.CLOSED) {
        document.body.dataset.liveState = "reconnecting";
      }
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  }

  function describe(event) {
    if (!event) {
      return "";
    }
    const when = new Date(event.time * 1000).toISOString().replace("T", " ").slice(0, 19);
    const parts = ["#" + event.sequence, event.type];
    if (event.step_id) {
      parts.push(event.step_id);
    }
    parts.push("at " + when + " UTC");
    if (event.summary) {
      parts.push("(" + event.summary + ")");
    }
    return parts.join(" ");
  }

  function show(output, ok, text) {
    output.textContent = text;
    output.classList.toggle("ok", ok);
    output.classList.toggle("bad", !ok);
  }

  // Forms marked data-confirm ask first, then post in the background and show the resulting event.
  function bindActions() {
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", async function (submitted) {
        submitted.preventDefault();
        const output = form.querySelector("output.result");
        const payload = form.querySelector("textarea[name=payload]");
        if (payload) {
          try {
            const value = JSON.parse(payload.value.trim() || "{}");
            if (value === null || typeof value !== "object" || Array.isArray(value)) {
              throw new Error("not an object");
            }
          } catch (problem) {
            show(output, false, "The payload must be a JSON object: " + problem.message);
            return;
          }
        }
        if (!window.confirm(form.dataset.confirm)) {
          show(output, false, "Not sent.");
          return;
        }
        const button = form.querySelector("button[type=submit]");
        button.disabled = true;
        try {
          const response = await fetch(form.action, {
            method: "POST",
            body: new URLSearchParams(new FormData(form)),
            headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" },
            credentials: "same-origin",
          });
          const answer = await response.json();
          if (answer.ok) {
            const event = describe(answer.event);
            show(output, true, event ? answer.message + ": " + event : answer.message);
          } else {
            show(output, false, answer.error);
          }
        } catch (problem) {
          show(output, false, "The control plane did not answer: " + problem.message);
        } finally {
          button.disabled = false;
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    bindActions();
    startLive();
  });
})();
