"""The chat page (index.html, app.js, style.css), shipped inside the package as ``assistant.web``."""
