"""The HTTP routes, one module per concern; ``assistant.server.app.create_app`` includes them.

``state`` is the typed app state the routes get through ``Depends(app_state)``; ``ask`` is
``/ask`` and ``/ask/stream``, ``health`` is ``/health``, ``documents`` the corpus lookups. The
OpenAI-compatible ``/v1`` routes are ``assistant.server.openai_api``, the uploads
``assistant.server.uploads``.
"""
