/* astcti.js: a plain JavaScript client of the astcti REST API (no build step, no dependency).
 *
 *   const cti = new AstCti("");                 // "" = the server that served the page
 *   await cti.login("agent", "secret");         // keeps the token, opens the event stream
 *   cti.onEvent(e => console.log(e.event, e.callid));
 *   await cti.request("startmonitor", {extension: "101"});
 *
 * Requests go to POST /api/v1/requests/<name>; events come from the Server-Sent Events stream
 * GET /api/v1/events, read with fetch() so the token travels in the Authorization header.
 */
(function (global) {
  "use strict";

  class AstCti {
    constructor(baseUrl) {
      this.baseUrl = (baseUrl || "").replace(/\/$/, "");
      this.token = null;
      this.lastEventId = 0;
      this.listeners = [];
      this.statusListeners = [];
      this.nextId = 1;
      this.abort = null;
    }

    headers() {
      const h = {"Content-Type": "application/json"};
      if (this.token) h.Authorization = "Bearer " + this.token;
      return h;
    }

    /** The declared requests (name, group, doc, fields): what a UI builds its buttons from. */
    async requests() {
      const resp = await fetch(this.baseUrl + "/api/v1/requests");
      return (await resp.json()).requests;
    }

    /** Send one request; resolves with the response envelope (result success or error). */
    async request(name, fields) {
      const body = Object.assign({id: String(this.nextId++)}, fields || {});
      const resp = await fetch(this.baseUrl + "/api/v1/requests/" + encodeURIComponent(name),
        {method: "POST", headers: this.headers(), body: JSON.stringify(body)});
      let reply;
      try {
        reply = await resp.json();
      } catch (err) {
        reply = {msgtype: "response", id: body.id, result: "error",
                 error: "HTTP " + resp.status + " without a JSON body"};
      }
      reply.httpStatus = resp.status;
      return reply;
    }

    async login(username, password) {
      this.stopEvents();
      this.token = null;  // a stale token would make the server refuse this login
      const reply = await this.request("login", {username, password});
      if (reply.result === "success") {
        this.token = reply.token;
        this.startEvents();
      }
      return reply;
    }

    /** Log in, then run the page's `start(reply)`; a refused login or a failed start stops the
     * event stream again and throws, so the page only shows the error. */
    async signIn(username, password, start) {
      const reply = await this.login(username, password);
      if (reply.result !== "success") throw new Error(reply.error);
      try {
        await start(reply);
      } catch (err) {
        this.stopEvents();
        throw err;
      }
      return reply;
    }

    /** A page reload keeps the session: log in again with the token kept in sessionStorage
     * under `key`; resolves with the login reply, or null when there is none or it expired. */
    async resume(key) {
      const token = sessionStorage.getItem(key);
      if (!token) return null;
      const reply = await this.request("login", {token});
      if (reply.result !== "success") {
        sessionStorage.removeItem(key);
        return null;
      }
      this.token = reply.token;
      this.startEvents();
      return reply;
    }

    async logout() {
      const reply = await this.request("logout", {});
      this.stopEvents();
      this.token = null;
      return reply;
    }

    /** Events (and `{msgtype: "lost"}` when some were dropped: ask a snapshot again). */
    onEvent(callback) { this.listeners.push(callback); }
    /** "events connected", "events disconnected: ...", or "unauthorized" (log in again). */
    onStatus(callback) { this.statusListeners.push(callback); }

    status(text) { this.statusListeners.forEach(cb => cb(text)); }

    stopEvents() {
      if (this.abort) this.abort.abort();
      this.abort = null;
    }

    /** Read the SSE stream; reconnect after 3 s (with the last id, so nothing is missed). */
    async startEvents() {
      this.stopEvents();
      const abort = new AbortController();
      this.abort = abort;
      while (!abort.signal.aborted) {
        try {
          const headers = this.headers();
          headers.Accept = "text/event-stream";
          const resp = await fetch(this.baseUrl + "/api/v1/events?after=" + this.lastEventId,
            {headers, signal: abort.signal});
          if (resp.status === 401) {  // the token is gone (logout, expiry, astcti restarted)
            this.token = null;
            this.status("unauthorized");
            return;
          }
          if (!resp.ok) throw new Error("event stream: HTTP " + resp.status);
          this.status("events connected");
          const reader = resp.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          for (;;) {
            const {value, done} = await reader.read();
            if (done) break;
            buffer += decoder.decode(value, {stream: true});
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              this.dispatchBlock(buffer.slice(0, cut));
              buffer = buffer.slice(cut + 2);
            }
          }
        } catch (err) {
          if (abort.signal.aborted) return;
          this.status("events disconnected: " + err.message);
        }
        await new Promise(r => setTimeout(r, 3000));
      }
    }

    dispatchBlock(block) {
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("id:")) this.lastEventId = parseInt(line.slice(3), 10) || this.lastEventId;
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) return;
      let event;
      try { event = JSON.parse(data); } catch (err) { return; }
      this.listeners.forEach(cb => cb(event));
    }
  }

  global.AstCti = AstCti;
})(typeof window !== "undefined" ? window : globalThis);
