/* The agent desktop: one extension's calls, the agent's queue state, a directory with live line
 * states. Everything goes through the public request API (astcti.js); events drive the screen.
 */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const cti = new AstCti("");
  const HISTORY_KEY = "astcti.agent.history";
  const STATE_WORDS = {alerting: "Ringing", connected: "Connected", held: "On hold",
                       initiated: "Dialling", queued: "Queued", failed: "Failed"};
  const LINE_WORDS = {idle: "Idle", ringing: "Ringing", busy: "Busy", onhold: "On hold",
                      away: "Away", unavailable: "Offline"};
  const AGENT_WORDS = {ready: "Ready", notready: "Not ready", acw: "After-call work"};

  const desk = {
    user: "", role: "", extension: "", agentid: "",
    settings: {screenpopurl: "", screenpopmode: "tab", reasoncodes: [], acwtimeout: 30},
    calls: new Map(),          // callid -> call as the desktop shows it
    agent: null,               // {state, reasoncode, since, acwuntil, groups} or null
    directory: new Map(),      // extension -> {extension, state, agentid, agentstate}
    history: [],
    popped: new Set(),
  };

  // -- small helpers ------------------------------------------------------------------------
  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
  }
  function since(iso) { const t = Date.parse(iso); return isNaN(t) ? Date.now() : t; }
  let toastTimer = null;
  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.classList.remove("show"), 4000);
  }
  function showError(where, text) { $(where).textContent = text || ""; }

  async function send(name, fields) {
    const reply = await cti.request(name, Object.assign({extension: desk.extension}, fields || {}));
    if (reply.result !== "success") {
      showError("call-error", reply.error || ("request " + name + " failed"));
      toast(reply.error || ("request " + name + " failed"));
    } else {
      showError("call-error", "");
    }
    return reply;
  }

  // -- calls ------------------------------------------------------------------------------------
  function upsertCall(e) {
    let call = desk.calls.get(e.callid);
    if (!call) {
      call = {callid: e.callid, state: "initiated", direction: "", calling: "", callingname: "",
              called: "", since: Date.now(), answeredAt: null, userdata: {}, queue: ""};
      desk.calls.set(e.callid, call);
    }
    for (const k of ["calling", "called", "callingname", "direction"]) if (e[k]) call[k] = e[k];
    if (e.lastredirection) call.queue = e.lastredirection;
    if (e.userdata && Object.keys(e.userdata).length) call.userdata = Object.assign({}, call.userdata, e.userdata);
    return call;
  }

  /** The call on the agent's ear (or ringing), and the other one (held) if any. */
  function currentCalls() {
    const calls = [...desk.calls.values()];
    const rank = {connected: 0, alerting: 1, initiated: 2, queued: 3, held: 4};
    calls.sort((a, b) => (rank[a.state] ?? 9) - (rank[b.state] ?? 9) || a.since - b.since);
    const active = calls[0] || null;
    const other = calls.find((c) => c !== active && c.state === "held") ||
                  calls.find((c) => c !== active) || null;
    return {active, other};
  }

  function partyOf(call) {
    if (!call) return {number: "", name: ""};
    const number = call.direction === "outgoing" ? call.called : call.calling;
    return {number: number || "unknown",
            name: call.callingname && call.direction !== "outgoing" ? call.callingname : ""};
  }

  function onCallEvent(e) {
    if (e.extension !== desk.extension || !e.callid) return;
    const name = e.event;
    if (name === "connectioncleared" || name === "callcleared") {
      const call = desk.calls.get(e.callid);
      if (call && name === "connectioncleared") {
        if (e.userdata && Object.keys(e.userdata).length) call.userdata = e.userdata;
        remember(call, e.cause || "normal");
        desk.calls.delete(e.callid);
      }
      render();
      return;
    }
    if (name === "queued") return;  // a caller waiting in one of our queues, not our call yet
    if (name === "idle") return;  // no call left: the last connectioncleared removed it
    if (name === "partycleared") {  // another party left; the call goes on
      const call = desk.calls.get(e.callid);
      if (call && call.conference) {
        call.conference = call.conference.split(", ").filter((p) => p !== e.releasing).join(", ");
      }
      render();
      return;
    }
    const call = upsertCall(e);
    if (name === "serviceinitiated" || name === "originated") {
      call.direction = call.direction || "outgoing";
      call.state = call.state === "connected" ? call.state : "initiated";
    } else if (name === "delivered") {
      if (e.alerting === desk.extension) { call.direction = "incoming"; call.state = "alerting"; call.since = Date.now(); }
      else { call.direction = call.direction || "outgoing"; call.state = "alerting"; }
      if (call.direction === "incoming") incoming(call);
    } else if (name === "established") {
      call.state = "connected";
      if (!call.answeredAt) call.answeredAt = Date.now();
    } else if (name === "held") {
      call.state = "held";
    } else if (name === "retrieved") {
      call.state = "connected";
    } else if (name === "failed") {
      call.state = "failed";
      call.outcome = e.cause;
    } else if (name === "transferred") {
      call.outcome = "transferred";
    } else if (name === "conferenced") {
      call.conference = (e.parties || []).join(", ");
    }
    render();
  }

  function remember(call, cause) {
    const party = partyOf(call);
    let outcome = call.outcome === "transferred" ? "Transferred"
      : call.answeredAt ? "Answered" : call.direction === "incoming" ? "Missed" : "Not answered";
    if (!call.answeredAt && call.outcome && call.outcome !== "transferred") outcome = call.outcome;
    if (cause === "transferred") outcome = "Transferred";
    desk.history.unshift({at: new Date().toISOString(), number: party.number, name: party.name,
                          direction: call.direction || "", outcome,
                          seconds: call.answeredAt ? Math.round((Date.now() - call.answeredAt) / 1000) : 0});
    desk.history = desk.history.slice(0, 50);
    try { sessionStorage.setItem(HISTORY_KEY, JSON.stringify(desk.history)); } catch (err) { /* full */ }
    renderHistory();
  }

  // -- incoming: screen pop and notification -------------------------------------------------
  function fillTemplate(template, call) {
    const data = {calling: call.calling, callingname: call.callingname, called: call.called,
                  callid: call.callid, extension: desk.extension, queue: call.queue,
                  agentid: desk.agentid};
    return template.replace(/\{([A-Za-z0-9_.-]+)\}/g, (_, key) => {
      let value = key.startsWith("userdata.") ? (call.userdata || {})[key.slice(9)] : data[key];
      return encodeURIComponent(value === undefined || value === null ? "" : String(value));
    });
  }

  function popUrl(call) {
    const template = desk.settings.screenpopurl;
    if (!template) return "";
    const url = fillTemplate(template, call);
    return /^https?:\/\//i.test(url) ? url : "";
  }

  function incoming(call) {
    if (desk.popped.has(call.callid)) return;
    desk.popped.add(call.callid);
    const url = popUrl(call);
    if (url) {
      if (desk.settings.screenpopmode === "iframe") {
        $("pop").hidden = false;
        $("pop-frame").src = url;
      } else {
        const win = window.open(url, "astcti-screenpop", "noopener");
        if (!win) toast("Pop-ups are blocked: use “Open the caller's record”");
      }
    }
    if (document.hidden && "Notification" in window && Notification.permission === "granted") {
      const party = partyOf(call);
      const note = new Notification("Incoming call", {
        body: (party.name ? party.name + " " : "") + party.number + (call.queue ? " · " + call.queue : ""),
        tag: "astcti-" + call.callid, requireInteraction: true});
      note.onclick = () => { window.focus(); $("call").focus(); note.close(); };
    }
  }

  // -- agent state ------------------------------------------------------------------------------
  function onAgentEvent(e) {
    if (e.extension !== desk.extension) return;
    if (e.event === "agentloggedoff") {
      if (desk.agent) desk.agent.groups = desk.agent.groups.filter((g) => !(e.groups || []).includes(g));
      if (!desk.agent || !desk.agent.groups.length) desk.agent = null;
    } else {
      desk.agent = desk.agent || {groups: []};
      desk.agent.groups = e.groups || desk.agent.groups;
      desk.agentid = e.agentid || desk.agentid;
      if (e.event === "agentready") Object.assign(desk.agent, {state: "ready", reasoncode: "", since: e.timestamp, acwuntil: ""});
      if (e.event === "agentnotready") Object.assign(desk.agent, {state: "notready", reasoncode: e.reasoncode || "", since: e.timestamp, acwuntil: ""});
      if (e.event === "agentworknotready") Object.assign(desk.agent, {state: "acw", reasoncode: "", since: e.timestamp, acwuntil: e.until || ""});
    }
    renderAgent();
  }

  /** With reason codes, N first moves to their list (arrows pick, Enter confirms). */
  function notReady() {
    const reasons = $("reason");
    if (!reasons.hidden && document.activeElement !== reasons) {
      reasons.focus();
      toast("Pick a reason with the arrow keys, then press Enter");
      return;
    }
    setState("notready");
  }

  async function setState(state) {
    if (!desk.agent) { toast("Join your queues first (Q)"); return; }
    const fields = {agentid: desk.agentid, state};
    if (state === "notready" && $("reason").value) fields.reasoncode = $("reason").value;
    const reply = await send("acdsetstate", fields);
    if (reply.result === "success") applyAgentView(reply);
  }

  function applyAgentView(view) {
    desk.agent = {state: view.state, reasoncode: view.reasoncode || "", since: view.since,
                  acwuntil: view.acwuntil || "", groups: view.groups || []};
    desk.agentid = view.agentid || desk.agentid;
    renderAgent();
  }

  async function toggleQueues() {
    if (desk.agent) {
      const reply = await send("acdlogout", {agentid: desk.agentid});
      if (reply.result === "success") { desk.agent = null; renderAgent(); }
    } else {
      const reply = await send("acdlogin", {agentid: desk.agentid});
      if (reply.result === "success") applyAgentView(reply);
    }
  }

  // -- call actions -----------------------------------------------------------------------------
  function target() { return $("number").value.trim(); }
  function needTarget() {
    const number = target();
    if (!number) { toast("Type a number or pick someone in the directory"); $("number").focus(); }
    return number;
  }

  const ACTIONS = {
    answer: ({active}) => send("answer", {callid: active.callid}),
    hangup: ({active}) => send("hangup", {callid: active.callid}),
    hold: ({active}) => send("hold", {callid: active.callid}),
    retrieve: ({active}) => send("retrieve", {callid: active.callid}),
    consult: ({active}) => { const n = needTarget(); return n && send("consultation", {callid: active.callid, destination: n}); },
    transfer: ({active, other}) => other
      ? send("transfer", {activecallid: active.callid, heldcallid: other.callid})
      : (() => { const n = needTarget(); return n && send("transfer", {callid: active.callid, destination: n}); })(),
    conference: ({active, other}) => other
      ? send("conference", {activecallid: active.callid, heldcallid: other.callid})
      : (() => { const n = needTarget(); return n && send("conference", {callid: active.callid, destination: n}); })(),
    alternate: ({active, other}) => send("alternate", {activecallid: active.callid, heldcallid: other.callid}),
    reconnect: ({active, other}) => send("reconnect", {activecallid: active.callid, heldcallid: other.callid}),
  };

  /** Which actions make sense now (the buttons shown and the shortcuts that work). */
  function allowed() {
    const {active, other} = currentCalls();
    const ok = new Set();
    if (!active) return ok;
    const st = active.state;
    if (st === "alerting" && active.direction === "incoming") { ok.add("answer"); ok.add("hangup"); }
    else if (st === "alerting" || st === "initiated" || st === "failed") ok.add("hangup");
    else if (st === "connected" && other) ["transfer", "conference", "alternate", "reconnect", "hangup"].forEach((a) => ok.add(a));
    else if (st === "connected") ["hold", "consult", "transfer", "conference", "hangup"].forEach((a) => ok.add(a));
    else if (st === "held") { ok.add("retrieve"); ok.add("hangup"); }
    return ok;
  }

  async function act(name) {
    if (!allowed().has(name)) return;
    const calls = currentCalls();
    if (name === "retrieve") calls.active = calls.active.state === "held" ? calls.active : calls.other;
    await ACTIONS[name](calls);
  }

  async function dial(event) {
    if (event) event.preventDefault();
    const number = target();
    if (!number) { $("number").focus(); return; }
    const {active} = currentCalls();
    if (active && active.state === "connected") { await act("consult"); return; }
    const reply = await send("makecall", {destination: number});
    if (reply.result === "success") toast("Calling " + number);
  }

  async function tone(digit) {
    const {active} = currentCalls();
    if (!active || active.state !== "connected") {
      $("number").value += digit;
      return;
    }
    const reply = await send("dtmf", {callid: active.callid, digits: digit});
    if (reply.result === "success") $("dtmf-sent").textContent = "Tone sent: " + digit;
  }

  // -- rendering --------------------------------------------------------------------------------
  let announced = "";
  /** Screen readers hear each change of the current call once. */
  function announce(active) {
    let text = "";
    if (active) {
      const party = partyOf(active);
      const who = (party.name ? party.name + ", " : "") + party.number;
      text = active.state === "alerting" && active.direction === "incoming"
        ? "Incoming call from " + who + (active.queue ? ", queue " + active.queue : "")
        : (STATE_WORDS[active.state] || active.state) + ": " + who;
    } else if (announced) {
      text = "Call ended";
    }
    if (text !== announced) {
      announced = text;
      $("call-announce").textContent = text;
    }
  }

  function render() {
    const {active, other} = currentCalls();
    announce(active);
    $("call-empty").hidden = !!active;
    $("call-card").hidden = !active;
    if (active) {
      const party = partyOf(active);
      $("call-card").dataset.state = active.state;
      $("call-card").dataset.callid = active.callid;
      const badge = $("call-state");
      badge.dataset.state = active.state;
      badge.textContent = STATE_WORDS[active.state] || active.state;
      $("call-direction").textContent = active.direction === "incoming" ? "↓ Incoming" : active.direction === "outgoing" ? "↑ Outgoing" : "";
      $("call-via").textContent = active.queue ? "via queue " + active.queue : "";
      $("caller-name").textContent = party.name || party.number;
      $("caller-number").textContent = party.name ? party.number : "";
      const data = $("userdata");
      data.replaceChildren();
      for (const [k, v] of Object.entries(active.userdata || {})) {
        const dt = document.createElement("dt"); dt.textContent = k;
        const dd = document.createElement("dd"); dd.textContent = String(v);
        data.append(dt, dd);
      }
      const url = popUrl(active);
      $("popline").hidden = !url;
      if (url) $("pop-link").href = url;
    }
    $("other-call").hidden = !other;
    if (other) {
      const party = partyOf(other);
      $("other-state").dataset.state = other.state;
      $("other-state").textContent = STATE_WORDS[other.state] || other.state;
      $("other-party").textContent = (party.name ? party.name + " · " : "") + party.number;
    }
    const ok = allowed();
    for (const btn of $("actions").querySelectorAll("button")) btn.hidden = !ok.has(btn.dataset.action);
    $("dial-call").textContent = active && active.state === "connected" ? "Consult" : "Call";
    renderDirectory();
    tick();
  }

  function renderAgent() {
    const a = desk.agent;
    const badge = $("agent-state");
    badge.dataset.state = a ? a.state : "off";
    badge.textContent = a ? (AGENT_WORDS[a.state] || a.state) + (a.state === "notready" && a.reasoncode ? " · " + a.reasoncode : "") : "Not in queues";
    $("btn-ready").hidden = !a || a.state === "ready";
    $("btn-notready").hidden = !a || (a.state === "notready");
    $("reason").hidden = !a || !desk.settings.reasoncodes.length || a.state === "notready";
    $("btn-acw").hidden = !a || a.state === "acw";
    const q = $("btn-queues");
    q.innerHTML = "";
    q.append(a ? "Leave queues " : "Join queues ");
    const k = document.createElement("kbd"); k.textContent = "Q"; q.append(k);
    q.title = a ? "Leave " + a.groups.join(", ") : "Join your queues";
    $("who").textContent = desk.user + " · ext " + desk.extension + (a && a.groups.length ? " · " + a.groups.join(", ") : "");
    tick();
  }

  function renderDirectory() {
    const list = $("dir-list");
    const filter = $("dir-search").value.trim().toLowerCase();
    const {active, other} = currentCalls();
    const talking = active && active.state === "connected";
    list.replaceChildren();
    for (const entry of desk.directory.values()) {
      const text = (entry.extension + " " + (entry.agentid || "") + " " + (LINE_WORDS[entry.state] || "")).toLowerCase();
      if (filter && !text.includes(filter)) continue;
      const li = document.createElement("li");
      li.dataset.extension = entry.extension;
      li.dataset.state = entry.state;
      const self = entry.extension === desk.extension;
      li.dataset.self = String(self);
      const ext = document.createElement("span"); ext.className = "dir-ext"; ext.textContent = entry.extension;
      const badge = document.createElement("span"); badge.className = "badge"; badge.dataset.state = entry.state;
      badge.textContent = LINE_WORDS[entry.state] || entry.state;
      const who = document.createElement("span"); who.className = "dir-agent";
      who.textContent = self ? "you" : entry.agentid ? "agent " + entry.agentid : "";
      li.append(ext, badge, who);
      if (!self) {
        const buttons = talking && !other ? [["Consult", "consult"], ["Transfer", "transfer"]] : !active ? [["Call", "call"]] : [];
        for (const [label, what] of buttons) {
          const b = document.createElement("button");
          b.type = "button"; b.className = "btn"; b.textContent = label;
          b.dataset.dirAction = what;
          b.setAttribute("aria-label", label + " " + entry.extension + " (" + (LINE_WORDS[entry.state] || entry.state) + ")");
          b.addEventListener("click", () => {
            $("number").value = entry.extension;
            if (what === "call") dial(); else act(what);
          });
          li.append(b);
        }
      }
      list.append(li);
    }
  }

  function renderHistory() {
    const body = $("history").querySelector("tbody");
    body.replaceChildren();
    for (const h of desk.history) {
      const tr = document.createElement("tr");
      const cells = [new Date(h.at).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"}),
                     (h.name ? h.name + " " : "") + h.number,
                     h.direction === "incoming" ? "In" : h.direction === "outgoing" ? "Out" : "",
                     h.seconds ? duration(h.seconds * 1000) : "—", h.outcome];
      cells.forEach((text, i) => {
        const td = document.createElement("td"); td.textContent = text;
        if (i === 1) td.className = "num";
        tr.append(td);
      });
      body.append(tr);
    }
    $("history").hidden = !desk.history.length;
    $("hist-empty").hidden = !!desk.history.length;
  }

  /** Once a second: the running timers and the after-call work countdown. */
  function tick() {
    const {active, other} = currentCalls();
    if (active) $("call-timer").textContent = duration(Date.now() - (active.answeredAt && active.state !== "alerting" ? active.answeredAt : active.since));
    if (other) $("other-timer").textContent = duration(Date.now() - (other.answeredAt || other.since));
    const a = desk.agent;
    if (a && a.state === "acw" && a.acwuntil) {
      $("agent-since").textContent = "ends in " + duration(since(a.acwuntil) - Date.now());
    } else if (a && a.since) {
      $("agent-since").textContent = "for " + duration(Date.now() - since(a.since));
    } else {
      $("agent-since").textContent = "";
    }
  }

  // -- session ----------------------------------------------------------------------------------
  /** The user's record first (a typed one only if the record allows it), then the seat this
   *  computer has (`myextension`, the ipextnmap), then what was typed or used last time. */
  async function chooseExtension(loginReply) {
    const listed = loginReply.extensions || [];
    const typed = $("extension").value.trim();
    if (listed.length) return typed && listed.includes(typed) ? typed : listed[0];
    if (typed) return typed;
    const seat = await cti.request("myextension", {});
    if (seat.result === "success" && seat.extension) return seat.extension;
    return localStorage.getItem("astcti.agent.extension") || "";
  }

  async function start(loginReply) {
    desk.user = loginReply.user || $("username").value;
    const settings = await cti.request("desktopsettings", {});
    if (settings.result === "success") Object.assign(desk.settings, settings);
    desk.role = settings.role || "";
    desk.extension = await chooseExtension(loginReply);
    if (!desk.extension) throw new Error("no extension: type yours (your user has none)");
    desk.agentid = loginReply.agentid || (/^[0-9A-Za-z_.-]{1,32}$/.test(desk.user) ? desk.user : desk.extension);
    const mon = await cti.request("startmonitor", {extension: desk.extension});
    if (mon.result !== "success" && mon.httpStatus !== 409) throw new Error(mon.error);
    localStorage.setItem("astcti.agent.extension", desk.extension);
    sessionStorage.setItem("astcti.agent.token", cti.token);
    await refresh();
    const reasons = $("reason");
    reasons.replaceChildren();
    for (const code of desk.settings.reasoncodes) {
      const opt = document.createElement("option"); opt.value = code; opt.textContent = code;
      reasons.append(opt);
    }
    try { desk.history = JSON.parse(sessionStorage.getItem(HISTORY_KEY) || "[]"); } catch (err) { desk.history = []; }
    $("login-view").hidden = true;
    $("desk").hidden = false;
    $("logout").hidden = false;
    renderAgent();
    renderHistory();
    render();
    $("call").focus();
  }

  /** Calls, agent state and directory as astcti has them now (after sign-in or lost events). */
  async function refresh() {
    const snap = await cti.request("snapshot", {extension: desk.extension});
    desk.calls.clear();
    for (const c of snap.calls || []) {
      const call = upsertCall(Object.assign({}, c, {event: "snapshot"}));
      call.state = c.state; call.since = since(c.since);
      if (c.state === "connected" || c.state === "held") call.answeredAt = since(c.since);
      if (c.lastredirection) call.queue = c.lastredirection;
    }
    const agent = await cti.request("acdgetstate", {extension: desk.extension});
    desk.agent = null;
    if (agent.result === "success") applyAgentView(agent);
    const dir = await cti.request("directory", {monitor: true});
    desk.directory.clear();
    for (const entry of dir.extensions || []) desk.directory.set(entry.extension, entry);
    renderAgent();
    render();
  }

  async function login(event) {
    event.preventDefault();
    showError("login-error", "");
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
    $("login").disabled = true;
    try {
      await cti.signIn($("username").value, $("password").value, start);
      $("password").value = "";
    } catch (err) {
      showError("login-error", err.message);
    } finally {
      $("login").disabled = false;
    }
  }

  async function resumeSession() {
    const reply = await cti.resume("astcti.agent.token");
    if (!reply) return;
    try { await start(reply); } catch (err) { showError("login-error", err.message); }
  }

  async function logout() {
    sessionStorage.removeItem("astcti.agent.token");
    await cti.logout();
    location.reload();
  }

  // -- events and keys --------------------------------------------------------------------------
  cti.onEvent((e) => {
    if (e.msgtype === "lost") {
      refresh();
    } else if (e.event === "extensionstate") {
      desk.directory.set(e.extension, {extension: e.extension, state: e.state, devicestate: e.devicestate,
                                       agentid: e.agentid, agentstate: e.agentstate});
      renderDirectory();
    } else if (e.event && e.event.startsWith("agent")) {
      onAgentEvent(e);
    } else if (e.event === "linkdown") {
      toast("The phone system is unreachable: call control waits until it is back");
    } else if (e.event) {
      onCallEvent(e);
    }
  });
  let wasDown = false;
  cti.onStatus((text) => {
    if (text === "unauthorized") { sessionEnded(); return; }
    const up = text === "events connected";
    $("conn").dataset.up = String(up);
    $("conn").textContent = up ? "online" : "reconnecting…";
    if (up && wasDown && !$("desk").hidden) refresh();  // events may have been missed
    wasDown = !up;
  });

  /** The token no longer works (astcti restarted, or signed out elsewhere): sign in again. */
  function sessionEnded() {
    sessionStorage.removeItem("astcti.agent.token");
    $("desk").hidden = true;
    $("logout").hidden = true;
    $("login-view").hidden = false;
    $("conn").dataset.up = "false";
    $("conn").textContent = "offline";
    showError("login-error", "Your session ended (astcti restarted or you signed out elsewhere): sign in again.");
    $("username").focus();
  }

  const KEYS = {a: "answer", x: "hangup", c: "consult", t: "transfer", f: "conference",
                l: "alternate", k: "reconnect"};
  document.addEventListener("keydown", (ev) => {
    if ($("desk").hidden || ev.ctrlKey || ev.metaKey) return;
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(ev.target.tagName);
    if (typing && !ev.altKey) {
      if (ev.key === "Escape") ev.target.blur();
      return;
    }
    if ($("help").open) return;
    const key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    const altKey = ev.altKey && ev.code.startsWith("Key") ? ev.code.slice(3).toLowerCase() : key;
    const k = ev.altKey ? altKey : key;
    let handled = true;
    if (KEYS[k]) act(KEYS[k]);
    else if (k === "h") act(allowed().has("retrieve") ? "retrieve" : "hold");
    else if (k === "r") setState("ready");
    else if (k === "n") notReady();
    else if (k === "w") setState("acw");
    else if (k === "q") toggleQueues();
    else if (k === "d") $("number").focus();
    else if (k === "/") $("dir-search").focus();
    else if (k === "?") $("help").showModal();
    else if (/^[0-9*#]$/.test(k) && !ev.altKey) tone(k);
    else handled = false;
    if (handled) ev.preventDefault();
  });

  $("login-view").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("dial-form").addEventListener("submit", dial);
  $("dir-search").addEventListener("input", renderDirectory);
  $("help-open").addEventListener("click", () => $("help").showModal());
  $("btn-ready").addEventListener("click", () => setState("ready"));
  $("btn-notready").addEventListener("click", () => setState("notready"));
  $("reason").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); setState("notready"); }
  });
  $("btn-acw").addEventListener("click", () => setState("acw"));
  $("btn-queues").addEventListener("click", toggleQueues);
  for (const btn of $("actions").querySelectorAll("button")) btn.addEventListener("click", () => act(btn.dataset.action));
  for (const btn of $("keypad").querySelectorAll("button")) btn.addEventListener("click", () => tone(btn.dataset.digit));
  $("extension").value = localStorage.getItem("astcti.agent.extension") || "";
  setInterval(tick, 1000);
  resumeSession();
})();
