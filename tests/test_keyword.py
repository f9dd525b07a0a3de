from assistant.search.keyword import KeywordIndex, fold, tokenize


def test_tokenizer_keeps_cyrillic_and_french_letters():
    assert tokenize("Кто финансирует проект «Цифровые основы»?") == ["финансирует", "проект", "цифровые", "основы"]
    assert tokenize("Coopération suisse: développement économique, l’État") == [
        "cooperation",
        "suisse",
        "developpement",
        "economique",
        "etat",
    ]
    assert tokenize("Ёлка и йогурт") == ["елка", "иогурт"]


def test_fold_is_case_and_accent_insensitive():
    assert fold("DÉCENTRALISATION") == fold("décentralisation") == "decentralisation"


def test_numbers_and_acronyms_are_tokens():
    assert tokenize("MSDSP trained 450 officials in 2004") == ["msdsp", "trained", "450", "officials", "2004"]


def test_bm25_ranks_matching_text_and_ignores_unknown_words():
    index = KeywordIndex(["Проект цифровых основ в Таджикистане", "Civil society in Khatlon", "Budget CHF 9’200’000"])
    scores = index.scores("цифровых основ")
    assert scores.argmax() == 0 and scores[1] == scores[2] == 0
    assert index.scores("khatlon").argmax() == 1
    assert not index.scores("unknown words only").any()
    assert index.coverage("khatlon unknown") == 0.5
    assert index.coverage("the of") == 0.0
