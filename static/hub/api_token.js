"use strict";
// The new API token's page: "Copy" puts the token on the clipboard (or selects it, where the browser refuses).
document.addEventListener("DOMContentLoaded", () => {
  const field = document.getElementById("new-api-token");
  const button = document.getElementById("new-api-token-copy");
  const said = document.getElementById("new-api-token-copied");
  if (!field || !button) return;
  field.addEventListener("focus", () => field.select());
  button.addEventListener("click", async () => {
    field.focus();
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      said.textContent = "Copied.";
    } catch {
      said.textContent = document.execCommand("copy") ? "Copied." : "Selected: press Ctrl+C (⌘C on a Mac).";
    }
  });
});
