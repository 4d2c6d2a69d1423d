// On every console page: the autocomplete boxes Django's admin draws with select2 get their
// field's name (name_every_input in toolkit.py puts it on the <select>), which select2 does not
// pass on to the combobox it shows, so screen readers can announce them.
"use strict";

(function () {
  function nameComboboxes(root) {
    const boxes = "select.admin-autocomplete[aria-label] + .select2 :is([role=combobox], [role=textbox])";
    root.querySelectorAll(boxes).forEach((box) => {
      const name = box.closest(".select2").previousElementSibling.getAttribute("aria-label");
      if (box.getAttribute("aria-label") !== name) box.setAttribute("aria-label", name);
    });
  }
  new MutationObserver(() => nameComboboxes(document)).observe(document.documentElement, { childList: true, subtree: true });
})();
