// Follows a running job: appends log lines as the server streams them
// (server-sent events) and updates the facts until the job finishes.
// Every text goes in with textContent, never as HTML.
(function () {
  "use strict";
  var section = document.getElementById("summary");
  if (!section || section.dataset.live !== "1" || !window.EventSource) return;
  var log = document.getElementById("log");
  var live = document.getElementById("livestate");
  var es = new EventSource(section.dataset.stream);

  function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 40; }

  es.onmessage = function (e) {
    if (!log) return;
    var stick = nearBottom();
    log.appendChild(document.createTextNode(e.data + "\n"));
    if (stick) log.scrollTop = log.scrollHeight;
  };

  function apply(s) {
    document.querySelectorAll("[data-field]").forEach(function (el) {
      var v = s[el.dataset.field];
      if (v !== undefined && v !== null) el.textContent = v;
    });
    var badge = document.getElementById("state");
    var label = s.state === "finished" ? s.outcome : s.state;
    badge.textContent = label;
    badge.className = "badge " + label;
    if (s.stats && s.stats.length) {
      var table = document.getElementById("stats");
      table.textContent = "";
      s.stats.forEach(function (p) {
        var tr = table.insertRow(), th = document.createElement("th"), td = document.createElement("td");
        // As the page does: a line may break after each "/" of a key.
        p.Name.split("/").forEach(function (part, i) {
          if (i) { th.appendChild(document.createTextNode("/")); th.appendChild(document.createElement("wbr")); }
          th.appendChild(document.createTextNode(part));
        });
        td.textContent = p.Value;
        if (p.Num) td.className = "num";
        tr.appendChild(th); tr.appendChild(td);
      });
      var none = document.getElementById("nostats");
      if (none) none.remove();
    }
  }

  es.addEventListener("update", function (e) { apply(JSON.parse(e.data)); });
  es.addEventListener("end", function (e) {
    var s = JSON.parse(e.data);
    apply(s);
    es.close();
    live.textContent = "";
    document.querySelectorAll("form.cancel").forEach(function (f) { f.remove(); });
    var out = document.getElementById("outcome");
    out.textContent = "Job " + s.outcome + (s.exit_code ? " (exit code " + s.exit_code + ")" : "") + " at " + s.ended + ".";
  });
})();
