// The dashboard keeps itself current: its stream says "changed", the page fetches itself
// again and swaps in the fresh numbers, chart and tables (one refresh at a time).
"use strict";

(function () {
  const live = document.getElementById("bourbon-dashboard-live");
  const state = document.getElementById("bourbon-live-state");
  if (!live || !window.EventSource) {
    return;
  }
  const url = new URL(live.dataset.eventsUrl, window.location.href);
  url.searchParams.set("since", live.dataset.fingerprint);
  const source = new EventSource(url);
  let refreshing = false;
  let again = false;

  async function refresh() {
    const response = await fetch(window.location.href, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      return;
    }
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("bourbon-dashboard-live");
    if (fresh) {
      live.replaceChildren(...fresh.childNodes);
      live.dataset.fingerprint = fresh.dataset.fingerprint;
    }
  }

  function onChanged() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    refresh()
      .catch(() => undefined)
      .finally(() => {
        refreshing = false;
        if (again) {
          again = false;
          onChanged();
        }
      });
  }

  source.addEventListener("changed", onChanged);
  function showLive(on, text) {
    live.dataset.live = on ? "on" : "off";
    if (state) {
      state.textContent = text;
    }
  }

  source.addEventListener("open", () => showLive(true, "Live: the numbers update as jobs change."));
  source.addEventListener("error", () => showLive(false, "Live updates interrupted; reconnecting…"));
})();
