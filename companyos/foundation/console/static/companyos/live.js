// The live console (companyos/foundation/console/live.py says what each page asks for):
// an activity feed, status badges that follow events, "N new — show" on lists and a warning
// on a change page whose object changed. Events come over /ws/events/ with the admin session;
// after a reconnect each organization resumes with `since` (docs/realtime.md), and ids already
// shown are dropped. The server's gap repair may hand out an event after a newer live one about
// the same object, so a badge follows only the newest event of its row. Without this script the
// pages are the same, only not live.
"use strict";

(function () {
  const configElement = document.getElementById("cos-live");
  if (!configElement || !("WebSocket" in window)) return;
  const config = JSON.parse(configElement.textContent);
  const FEED_LENGTH = 50;
  const SUMMARY_KEYS = ["title", "project_name", "name", "handle", "url"]; // as in live.py
  const seen = new Set(config.seen || []);
  const since = Object.assign({}, config.since || {}); // organization id -> last event id received
  const newIds = new Set();
  const newestOfSubject = new Map(); // object id -> id of the newest event shown on its badge
  // Events with smaller ids were stamped before the page was rendered: the page already shows them,
  // unless one committed late, which only a badge takes in (the newest-event rule keeps it right).
  const renderedAt = config.renderedAt || "";
  let retryDelay = 500;
  let socket = null;

  function setState(text) {
    const state = document.getElementById("cos-feed-state");
    if (state) state.textContent = text;
  }

  function summary(data) {
    for (const key of SUMMARY_KEYS) {
      if (typeof data[key] === "string" && data[key]) return data[key].slice(0, 80);
    }
    return "";
  }

  function addToFeed(event) {
    const list = document.getElementById("cos-feed");
    if (!list) return;
    const empty = list.querySelector(".cos-feed-empty");
    if (empty) empty.remove();
    const item = document.createElement("li");
    item.dataset.eventId = event.id;
    item.className = "cos-feed-new";
    const time = document.createElement("time");
    time.dateTime = event.occurred_at;
    time.textContent = event.occurred_at.slice(0, 19).replace("T", " ");
    const template = config.adminUrls && config.adminUrls[event.subject.type];
    const label = document.createElement(template && event.subject.id ? "a" : "span");
    if (template && event.subject.id) label.href = template.replace("{id}", event.subject.id);
    label.textContent = event.type;
    const text = document.createElement("span");
    text.className = "cos-feed-summary";
    text.textContent = summary(event.data || {});
    item.append(time, " ", label, " ", text);
    list.prepend(item);
    while (list.children.length > FEED_LENGTH) list.lastElementChild.remove();
  }

  function rowOf(id) {
    const checkbox = document.querySelector(`#result_list input.action-select[value="${CSS.escape(id)}"]`);
    return checkbox ? checkbox.closest("tr") : null;
  }

  function isNewestOfSubject(event) {
    const newest = newestOfSubject.get(event.subject.id);
    if (newest && newest > event.id) return false; // UUIDv7 strings sort as their times
    newestOfSubject.set(event.subject.id, event.id);
    return true;
  }

  function updateBadge(row, value) {
    const holder = row.querySelector(`[data-cos-field="${CSS.escape(config.stateField)}"]`);
    if (!holder) return;
    const pill = holder.querySelector(".cos-badge");
    const className = `cos-badge cos-badge-${config.tones[value] || "neutral"}`;
    const label = config.labels[value] || value;
    if (pill.className === className && pill.textContent === label) return; // e.g. a replay of what is shown
    pill.className = className;
    pill.textContent = label;
    row.classList.remove("cos-row-changed");
    void row.offsetWidth; // restart the highlight
    row.classList.add("cos-row-changed");
  }

  // A line above the page's content, ending in a link that reloads the page.
  function notice(id, text, linkText) {
    let element = document.getElementById(id);
    if (!element) {
      element = document.createElement("p");
      element.id = id;
      element.className = "cos-live-notice";
      element.setAttribute("role", "status");
      const content = document.getElementById("changelist") || document.getElementById("content-main");
      content.parentNode.insertBefore(element, content);
    }
    element.textContent = text;
    const reload = document.createElement("a");
    reload.href = window.location.href;
    reload.textContent = linkText;
    element.append(reload);
  }

  function warnChanged(event) {
    const warning = document.getElementById("cos-live-warning");
    if (!warning) return;
    const state = event.data ? event.data[config.stateField] : undefined;
    warning.textContent =
      `This ${config.verboseName} changed after you opened this page (${event.type}` +
      `${state ? `, now ${config.labels[state] || state}` : ""}). Saving will be refused: reload to see the change.`;
    warning.hidden = false;
  }

  function receive(event) {
    if (seen.has(event.id)) return;
    seen.add(event.id);
    since[event.organization] = event.id;
    if (config.mode === "feed") {
      addToFeed(event);
    } else if (config.mode === "changelist" && event.subject.type === config.model) {
      const row = rowOf(event.subject.id);
      if (row) {
        if (isNewestOfSubject(event)) updateBadge(row, event.data[config.stateField]);
      } else if (event.id > renderedAt && !newIds.has(event.subject.id)) {
        newIds.add(event.subject.id);
        notice("cos-new-rows", `${newIds.size} new — `, "show");
      }
    } else if (config.mode === "change" && event.subject.id === config.objectId && event.id > renderedAt) {
      warnChanged(event);
    }
  }

  function subscribe(organization) {
    const request = { action: "subscribe", organization, topics: config.topics };
    if (since[organization]) request.since = since[organization];
    socket.send(JSON.stringify(request));
  }

  function connect() {
    const watched = config.organizations;
    if (!watched.length) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const current = new WebSocket(`${scheme}//${window.location.host}/ws/events/`);
    const subscribed = new Set();
    let resubscribing = false;
    socket = current;
    current.addEventListener("open", () => {
      retryDelay = 500;
      for (const organization of watched) subscribe(organization);
    });
    current.addEventListener("message", (message) => {
      const frame = JSON.parse(message.data);
      if (frame.type === "event") {
        receive(frame.event);
      } else if (frame.type === "subscribed") {
        subscribed.add(frame.organization);
        setState("live");
      } else if (frame.type === "error" && frame.code === "replay_truncated") {
        // More events were missed than one replay sends: only the page, loaded again, is complete.
        notice("cos-missed", "More changes happened while this page was disconnected than it can catch up on — ", "reload");
      } else if (frame.type === "error" && frame.code === "replay_rate_limited" && !resubscribing) {
        // Subscribes with `since` are limited per minute (docs/realtime.md) and the refused ones
        // were not made: make them again once the server says the limit allows.
        resubscribing = true;
        window.setTimeout(() => {
          resubscribing = false;
          if (socket !== current) return; // reconnected meanwhile: that subscribed afresh
          for (const organization of watched) if (!subscribed.has(organization)) subscribe(organization);
        }, frame.retry_after * 1000);
      }
    });
    current.addEventListener("close", (closing) => {
      setState("reconnecting…");
      if (closing.code === 4401) return setState("signed out"); // the session ended: reconnecting cannot help
      window.setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();
})();
