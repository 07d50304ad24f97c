// The course's page behaviour on top of sphinx-book-theme 1.3 / pydata-sphinx-theme 0.17.
//
// Sidebar buttons. pydata-sphinx-theme 0.17 binds its sidebar drawer (a <dialog>) to the FIRST
// element of class .primary-toggle / .secondary-toggle, which is its own navbar button; the
// book theme renders a second pair in the article header, and that pair is the one a reader sees
// and taps. Nothing listened to it (pydata-sphinx-theme issue #2451), so the menu and contents
// buttons did nothing on a phone. Here every visible button opens the drawer through the bound
// one; on a wide screen the primary button collapses and restores the left sidebar instead.
(function () {
  "use strict";
  const WIDE = "(min-width: 960px)";

  function wire(kind) {
    const toggles = Array.from(document.querySelectorAll("." + kind + "-toggle"));
    if (toggles.length < 2) return;
    const bound = toggles[0];
    toggles.slice(1).forEach((button) => {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        if (kind === "primary" && window.matchMedia(WIDE).matches) {
          document.body.classList.toggle("course-primary-collapsed");
          button.setAttribute("aria-expanded",
            String(!document.body.classList.contains("course-primary-collapsed")));
          return;
        }
        bound.click();
      });
    });
  }

  function start() {
    wire("primary");
    wire("secondary");
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
