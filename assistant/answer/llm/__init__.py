"""The LLM answer path: ``answerer.LLMAnswerer`` asks an OpenAI-compatible endpoint through ``client.LLMClient``
(each call bounded by ``budget``), with the prompt of ``prompt`` and the answer checked by ``grounding``."""
