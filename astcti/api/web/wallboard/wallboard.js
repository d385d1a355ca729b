/* The supervisor wallboard: queue figures and agents' lines, kept current by the `queuestatus`
 * and `agentstatus` events astcti pushes (the page never polls); only the clocks tick here.
 */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const cti = new AstCti("");
  const AGENT_WORDS = {ready: "Ready", notready: "Not ready", acw: "After-call work",
                       oncall: "On a call", ringing: "Ringing", loggedoff: "Logged off"};
  const AGENT_ORDER = {ringing: 0, oncall: 1, ready: 2, acw: 3, notready: 4};
  const board = {queues: new Map(), agents: new Map(), level: 20, filter: ""};

  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
  }
  function at(iso) { const t = Date.parse(iso); return isNaN(t) ? null : t; }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- queues -----------------------------------------------------------------------------------
  function figure(label, value, key) {
    const box = el("div", "figure");
    box.dataset.figure = key;
    box.append(el("div", "value", value), el("div", "label", label));
    return box;
  }

  function renderQueues() {
    const host = $("queues");
    host.replaceChildren();
    const names = [...board.queues.keys()].sort();
    const select = $("queue-filter");
    if (select.dataset.names !== names.join(",")) {  // rebuilt only when queues come or go
      const chosen = select.value;
      select.replaceChildren(new Option("All queues", ""));
      for (const name of names) select.append(new Option(name, name, false, name === chosen));
      select.dataset.names = names.join(",");
    }
    for (const name of names) {
      if (board.filter && name !== board.filter) continue;
      const q = board.queues.get(name);
      const card = el("article", "panel queue");
      card.dataset.queue = name;
      card.setAttribute("aria-label", "Queue " + name);
      const head = el("div", "queue-head");
      head.append(el("h3", "", name), el("span", "hint", q.loggedin + " agent" + (q.loggedin === 1 ? "" : "s") + " logged in"));
      const figures = el("div", "figures");
      const waiting = figure("Waiting", String(q.waiting), "waiting");
      waiting.dataset.alert = String(q.waiting > 0 && q.ready === 0);
      const longest = figure("Longest wait", q.longestsince ? "0:00" : "—", "longest");
      longest.querySelector(".value").dataset.since = q.longestsince || "";
      const sl = figure("Service level", q.servicelevel < 0 ? "—" : Math.round(q.servicelevel) + "%", "servicelevel");
      sl.title = "answered within " + q.servicelevelseconds + " s";
      if (q.servicelevel >= 0) sl.dataset.good = String(q.servicelevel >= 80);
      if (q.servicelevel >= 0) sl.dataset.alert = String(q.servicelevel < 60);
      figures.append(waiting, longest, sl);
      const staff = el("div", "staff");
      staff.setAttribute("aria-label", "Agents by state");
      for (const [key, label] of [["ready", "Ready"], ["oncall", "On a call"], ["acw", "ACW"], ["notready", "Not ready"]]) {
        const b = el("span", "badge", q[key] + " " + label);
        b.dataset.state = key;
        b.dataset.count = key;
        staff.append(b);
      }
      const today = el("div", "today");
      for (const [label, value, key] of [["Answered", q.answered, "answered"], ["Abandoned", q.abandoned, "abandoned"],
                                          ["Avg wait", duration(q.averagewait * 1000), "averagewait"]]) {
        const span = el("span", "", label + " ");
        const b = el("b", "", String(value)); b.dataset.figure = key;
        span.append(b);
        today.append(span);
      }
      card.append(head, figures, staff, today);
      if (q.callers && q.callers.length) {
        const list = el("ul", "callers");
        list.setAttribute("aria-label", "Callers waiting");
        for (const c of q.callers) {
          const li = el("li");
          li.dataset.callid = c.callid;
          const who = el("span", "", c.position + ". " + (c.callingname ? c.callingname + " " : "") + (c.calling || "unknown"));
          const wait = el("span", "wait", "0:00"); wait.dataset.since = c.since;
          li.append(who, wait);
          list.append(li);
        }
        card.append(list);
      }
      host.append(card);
    }
    $("no-queues").hidden = names.length > 0;
    tick();
  }

  // -- agents -----------------------------------------------------------------------------------
  function renderAgents() {
    const body = $("agent-table").querySelector("tbody");
    body.replaceChildren();
    const agents = [...board.agents.values()]
      .filter((a) => !board.filter || (a.groups || []).includes(board.filter))
      .sort((a, b) => (AGENT_ORDER[a.state] ?? 9) - (AGENT_ORDER[b.state] ?? 9) || a.agentid.localeCompare(b.agentid));
    for (const a of agents) {
      const tr = el("tr");
      tr.dataset.agent = a.agentid;
      tr.dataset.state = a.state;
      const name = el("td");
      name.dataset.label = "Agent";
      name.append(el("span", "agent-name", a.agentid), " ", el("span", "agent-ext", a.extension));
      const state = el("td"); state.dataset.label = "State";
      const badge = el("span", "badge", (AGENT_WORDS[a.state] || a.state) + (a.reasoncode ? " · " + a.reasoncode : ""));
      badge.dataset.state = a.state;
      state.append(badge);
      const since = el("td", "for", "0:00"); since.dataset.label = "For";
      since.dataset.since = a.state === "acw" && a.acwuntil ? "" : a.since;
      if (a.state === "acw" && a.acwuntil) since.dataset.until = a.acwuntil;
      const call = el("td", "", a.calling ? (a.direction === "outgoing" ? "↑ " : "↓ ") + a.calling : "—");
      call.dataset.label = "Current call";
      const handled = el("td", "num", String(a.handled)); handled.dataset.label = "Handled today";
      const queues = el("td", "", (a.groups || []).join(", ")); queues.dataset.label = "Queues";
      tr.append(name, state, since, call, handled, queues);
      body.append(tr);
    }
    $("agent-table").hidden = !agents.length;
    $("no-agents").hidden = !!agents.length;
    tick();
  }

  /** Once a second: waits and "for how long" count up locally from the times astcti sent. */
  function tick() {
    const now = Date.now();
    $("clock").textContent = new Date().toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    for (const node of document.querySelectorAll("[data-since]")) {
      const t = at(node.dataset.since);
      if (t !== null) node.textContent = duration(now - t);
    }
    for (const node of document.querySelectorAll("[data-until]")) {
      const t = at(node.dataset.until);
      if (t !== null) node.textContent = "ACW " + duration(t - now);
    }
  }

  function slNote() {
    $("sl-note").textContent = "Service level: answered within " + board.level + " s, of answered and abandoned calls today.";
  }

  function onQueue(q) {
    if (q.servicelevelseconds !== board.level) { board.level = q.servicelevelseconds; slNote(); }
    const before = board.queues.get(q.queue);
    board.queues.set(q.queue, q);
    if (before && before.waiting !== q.waiting) {
      $("announce").textContent = "Queue " + q.queue + ": " + q.waiting + " waiting";
    }
    renderQueues();
  }

  function onAgent(a) {
    if (a.state === "loggedoff") board.agents.delete(a.agentid);
    else board.agents.set(a.agentid, a);
    renderAgents();
  }

  // -- session ----------------------------------------------------------------------------------
  /** Everything as astcti has it now (after sign-in, a reconnect or lost events). */
  async function refresh() {
    const snap = await cti.request("queuestats", {monitor: true});
    if (snap.result !== "success") throw new Error(snap.error);
    board.level = snap.servicelevelseconds;
    board.queues.clear();
    board.agents.clear();
    for (const q of snap.queues) board.queues.set(q.queue, q);
    for (const a of snap.agents) board.agents.set(a.agentid, a);
    renderQueues();
    renderAgents();
  }

  async function start(loginReply) {
    await refresh();
    sessionStorage.setItem("astcti.wallboard.token", cti.token);
    $("who").textContent = loginReply.user || "";
    slNote();
    $("login-view").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    renderQueues();
    renderAgents();
    $("queue-filter").focus();
  }

  async function login(event) {
    event.preventDefault();
    $("login-error").textContent = "";
    $("login").disabled = true;
    try {
      await cti.signIn($("username").value, $("password").value, start);
      $("password").value = "";
    } catch (err) {
      $("login-error").textContent = err.message;
    } finally {
      $("login").disabled = false;
    }
  }

  async function resumeSession() {
    const reply = await cti.resume("astcti.wallboard.token");
    if (!reply) return;
    try { await start(reply); } catch (err) { $("login-error").textContent = err.message; }
  }

  cti.onEvent((e) => {
    if (e.msgtype === "lost") refresh();
    else if (e.event === "queuestatus") onQueue(e);
    else if (e.event === "agentstatus") onAgent(e);
  });
  let wasDown = false;
  cti.onStatus((text) => {
    if (text === "unauthorized") {  // astcti restarted or the token expired: sign in again
      sessionStorage.removeItem("astcti.wallboard.token");
      $("board").hidden = true;
      $("logout").hidden = true;
      $("login-view").hidden = false;
      $("login-error").textContent = "Your session ended (astcti restarted?): sign in again.";
      return;
    }
    const up = text === "events connected";
    $("conn").dataset.up = String(up);
    $("conn").textContent = up ? "live" : "reconnecting…";
    if (up && wasDown && !$("board").hidden) refresh().catch(() => {});
    wasDown = !up;
  });
  $("login-view").addEventListener("submit", login);
  $("logout").addEventListener("click", async () => {
    sessionStorage.removeItem("astcti.wallboard.token");
    await cti.logout();
    location.reload();
  });
  $("queue-filter").addEventListener("change", () => {
    board.filter = $("queue-filter").value;
    renderQueues();
    renderAgents();
  });
  setInterval(tick, 1000);
  resumeSession();
})();
