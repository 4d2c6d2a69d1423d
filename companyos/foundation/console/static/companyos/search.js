// The header's search box answers as you type (companyos/foundation/console/search.py): the
// results page's groups, fetched and shown under the box. Without this script the box is a plain
// GET form to the same page, so nothing depends on it.
"use strict";

(function () {
  const input = document.getElementById("cos-search-query");
  if (!input) return;
  const form = input.form;
  const panel = document.createElement("div");
  panel.id = "cos-search-panel";
  panel.className = "cos-search-panel";
  panel.hidden = true;
  panel.setAttribute("role", "region");
  panel.setAttribute("aria-label", "Search results");
  panel.setAttribute("aria-live", "polite");
  form.after(panel);

  // Text matches need a whole trigram (SHORTEST_TEXT in companyos/foundation/search.py); shorter ids go by Enter.
  const SHORTEST = 3;
  let timer = null;
  let pending = null;

  async function showResults() {
    const query = input.value.trim();
    if (pending) pending.abort();
    if (query.length < SHORTEST) {
      panel.hidden = true;
      return;
    }
    pending = new AbortController();
    let html;
    try {
      const response = await fetch(`${form.action}?${new URLSearchParams({ q: query })}`, { signal: pending.signal });
      if (!response.ok) return;
      html = await response.text();
    } catch (error) {
      if (error.name === "AbortError") return;
      throw error;
    }
    const results = new DOMParser().parseFromString(html, "text/html").querySelector(".cos-search-results");
    // The page's ids would repeat on the results page itself.
    results.querySelectorAll("[id], [aria-labelledby]").forEach((node) => {
      node.removeAttribute("id");
      node.removeAttribute("aria-labelledby");
    });
    panel.replaceChildren(...results.childNodes);
    panel.hidden = false;
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(showResults, 250);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") panel.hidden = true;
  });
  document.addEventListener("click", (event) => {
    if (!form.parentElement.contains(event.target)) panel.hidden = true;
  });
})();
