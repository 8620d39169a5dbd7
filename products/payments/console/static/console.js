// The cashier console's only script: while a QR code waits to be paid, ask the server for the
// payment's status every few hundred milliseconds and show the outcome without reloading the page.
// Plain browser JavaScript, shipped with SceneOS (no CDN: ticket windows may be offline).
(function () {
  "use strict";

  var FINAL = { succeeded: true, failed: true, expired: true, cancelled: true };
  var OUTCOME = {
    succeeded: "Paid.",
    failed: "The payment failed.",
    expired: "The QR code expired unpaid.",
    cancelled: "The QR code was cancelled."
  };
  var MAX_FAILURES = 50; // then stop and ask for a reload, rather than poll forever

  function watch(box) {
    var url = box.getAttribute("data-status-url");
    var every = parseInt(box.getAttribute("data-poll-ms"), 10) || 300;
    var statusEl = document.getElementById("payment-status");
    var failures = 0;

    function show(data) {
      statusEl.textContent = data.status;
      statusEl.className = "status status-" + data.status;
      box.setAttribute("data-status", data.status);
      if (!FINAL[data.status]) {
        return false;
      }
      ["qr", "waiting", "cancel-form"].forEach(function (id) {
        var el = document.getElementById(id);
        if (el) { el.hidden = true; }
      });
      var outcome = document.getElementById("outcome");
      if (outcome) {
        outcome.textContent = OUTCOME[data.status] + (data.failure_code ? " (" + data.failure_code + ")" : "");
        outcome.hidden = false;
      }
      document.querySelectorAll("[data-show-when]").forEach(function (el) {
        el.hidden = el.getAttribute("data-show-when") !== data.status;
      });
      return true;
    }

    function poll() {
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (response.status === 401) {
            window.location.assign(box.getAttribute("data-sign-in-url"));
            return null;
          }
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.json();
        })
        .then(function (data) {
          if (data === null) { return; }
          failures = 0;
          if (!show(data)) { window.setTimeout(poll, every); }
        })
        .catch(function () {
          failures += 1;
          if (failures >= MAX_FAILURES) {
            statusEl.textContent = "connection lost: reload the page";
            return;
          }
          window.setTimeout(poll, every * 2);
        });
    }

    window.setTimeout(poll, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-status-url]");
    if (box) { watch(box); }
  });
})();
