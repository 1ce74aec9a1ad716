// The console's own script (served from /console/static; the CSP allows no inline script).
// Copy buttons, and a confirmation on forms marked data-confirm.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy-target]");
  if (!button) return;
  const code = button.parentElement.querySelector("[data-copy]");
  if (!code) return;
  const text = code.textContent.trim();
  const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => {});
  } else {
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
    done();
  }
});
document.addEventListener("submit", (event) => {
  const message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) event.preventDefault();
});
