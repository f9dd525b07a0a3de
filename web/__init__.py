"""The chat page (index.html, app.js and its modules in js/, style.css), shipped inside the package as ``assistant.web``."""
