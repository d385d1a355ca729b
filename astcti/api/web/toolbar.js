/* The web agent toolbar: log in, monitor an extension, see its calls and events live, and send
 * any request. The request buttons are built from GET /api/v1/requests, so a request declared on
 * the server appears here without editing this page. */
(function () {
  "use strict";
  const cti = new AstCti("");
  const $ = id => document.getElementById(id);
  const calls = new Map();  // callid -> call
  let selectedCall = "";
  let current = null;  // the request whose form is shown

  cti.onStatus(text => { $("events-status").textContent = text; });

  function show(reply) {
    $("last-response").textContent = JSON.stringify(reply, null, 1);
  }

  function log(event) {
    const li = document.createElement("li");
    li.textContent = [event.timestamp || "", event.event, event.extension || "",
                      event.callid || "", event.state || "", event.calling || "",
                      event.called || ""].join(" ");
    li.dataset.event = event.event;
    $("log").prepend(li);
  }

  function renderCalls() {
    const body = $("calls").querySelector("tbody");
    body.innerHTML = "";
    for (const call of calls.values()) {
      const tr = document.createElement("tr");
      tr.dataset.callid = call.callid;
      tr.dataset.state = call.state;
      tr.dataset.called = call.called || "";
      if (call.callid === selectedCall) tr.className = "selected";
      for (const key of ["callid", "state", "direction", "calling", "called"]) {
        const td = document.createElement("td");
        td.textContent = call[key] || "";
        tr.appendChild(td);
      }
      tr.addEventListener("click", () => { selectedCall = call.callid; renderCalls(); fillCallId(); });
      body.appendChild(tr);
    }
  }

  // events -> the CSTA local connection states that `snapshot` reports (astcti/cti/model.py)
  const STATE_OF = {serviceinitiated: "initiated", originated: "initiated", delivered: "alerting",
                    established: "connected", held: "held", retrieved: "connected",
                    conferenced: "connected", transferred: "connected", queued: "queued",
                    failed: "failed"};

  cti.onEvent(event => {
    log(event);
    if (!event.callid || event.extension !== $("extension").value.trim()) return;
    if (["connectioncleared", "callcleared", "diverted"].includes(event.event)) {
      calls.delete(event.callid);
    } else if (STATE_OF[event.event]) {
      const call = calls.get(event.callid) || {callid: event.callid,
        // a call this extension starts begins with serviceinitiated/originated
        direction: ["serviceinitiated", "originated"].includes(event.event) ? "outgoing"
                                                                             : "incoming"};
      call.state = STATE_OF[event.event];
      for (const key of ["direction", "calling", "called"]) if (event[key]) call[key] = event[key];
      calls.set(event.callid, call);
      if (!selectedCall) selectedCall = event.callid;
    }
    renderCalls();
  });

  function fillCallId() {
    const input = document.querySelector('#request-fields [name="callid"]');
    if (input && selectedCall) input.value = selectedCall;
  }

  function openForm(spec) {
    current = spec;
    $("request-name").textContent = spec.name;
    $("request-doc").textContent = spec.doc;
    const box = $("request-fields");
    box.innerHTML = "";
    for (const f of spec.fields) {
      const label = document.createElement("label");
      const name = document.createElement("span");
      name.textContent = f.name + (f.required ? " *" : "");
      let input;
      if (f.choices && f.choices.length) {
        input = document.createElement("select");
        if (!f.required) input.appendChild(new Option("", ""));
        for (const c of f.choices) input.appendChild(new Option(c, c));
      } else {
        input = document.createElement("input");
        input.placeholder = f.doc || f.type;
      }
      input.name = f.name;
      input.id = "field-" + f.name;
      input.dataset.type = f.type;
      if (f.name === "extension") input.value = $("extension").value.trim();
      if (f.name === "callid" && selectedCall) input.value = selectedCall;
      label.append(name, input);
      box.appendChild(label);
    }
    $("request-form").hidden = false;
  }

  async function buildButtons() {
    const box = $("requests");
    box.innerHTML = "";
    const groups = new Map();
    for (const spec of await cti.requests()) {
      if (spec.name === "login" || spec.name === "logout") continue;
      if (!groups.has(spec.group)) {
        const set = document.createElement("fieldset");
        const legend = document.createElement("legend");
        legend.textContent = spec.group;
        set.appendChild(legend);
        groups.set(spec.group, set);
        box.appendChild(set);
      }
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = spec.name;
      button.dataset.request = spec.name;
      button.title = spec.doc;
      button.addEventListener("click", () => openForm(spec));
      groups.get(spec.group).appendChild(button);
    }
  }

  $("request-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const fields = {};
    for (const input of $("request-fields").querySelectorAll("input, select")) {
      const value = input.value.trim();
      if (value === "") continue;
      if (input.dataset.type === "object") {
        try { fields[input.name] = JSON.parse(value); } catch (err) { fields[input.name] = value; }
      } else {
        fields[input.name] = value;
      }
    }
    show(await cti.request(current.name, fields));
  });

  $("login-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const reply = await cti.login($("username").value, $("password").value);
    show(reply);
    if (reply.result === "success") {
      $("status").textContent = "logged in as " + reply.user;
      $("monitor").disabled = false;
      $("logout").disabled = false;
    } else {
      $("status").textContent = reply.error;
    }
  });

  $("logout").addEventListener("click", async () => {
    show(await cti.logout());
    $("status").textContent = "not logged in";
    $("monitor").disabled = true;
    $("logout").disabled = true;
  });

  $("monitor-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const extension = $("extension").value.trim();
    const reply = await cti.request("startmonitor", {extension});
    show(reply);
    if (reply.result !== "success") return;
    $("status").textContent = "monitoring " + extension;
    const snap = await cti.request("snapshot", {extension});
    calls.clear();
    for (const call of snap.calls || []) calls.set(call.callid, call);
    renderCalls();
  });

  buildButtons().catch(err => { $("status").textContent = "cannot read the requests: " + err; });
})();
