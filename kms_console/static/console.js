// The t10k KMS console's only script: the live library, pushed by the server as server-sent events.
// The server draws the library (HTML); this puts it on the page and shows each token alert.
"use strict";
(function () {
  const library = document.getElementById("library");
  if (!library || !window.EventSource) { return; }
  const alerts = document.getElementById("alerts");
  const source = new EventSource(library.dataset.stream);
  source.addEventListener("library", function (event) {
    library.innerHTML = event.data;
    library.dataset.version = String(Number(library.dataset.version || "0") + 1);
  });
  source.addEventListener("alert", function (event) {
    const line = document.createElement("div");
    line.className = "alert";
    line.textContent = "ALERT: " + event.data;
    alerts.prepend(line);
  });
  source.addEventListener("end", function (event) {
    source.close();  // no reconnection: that would keep an idle session alive
    const note = document.createElement("p");
    note.className = "warning";
    note.id = "paused";
    note.textContent = event.data;
    library.prepend(note);
  });
  source.onerror = function () {
    library.classList.add("stale");
  };
  source.onopen = function () {
    library.classList.remove("stale");
  };
}());
