"""Telling a text's language from its writing, and judging a declared tag against it."""
from __future__ import annotations

import pytest

from appliance.books.language import detect_language, language_of_text, primary_language

SAMPLES = {
    "vi": "Con đường lên bản quanh co giữa những nương ngô. Mẹ đứng chờ ở đầu dốc, tiếng khèn vọng lại từ xa.",
    "fr": "Le matin, les enfants de la vallée vont à l'école avec leurs livres et ils chantent sur le chemin.",
    "en": "In the morning the children of the valley walk to the school with their books and they sing on the way.",
    "ar": "ذهب الأطفال إلى المكتبة في الصباح وقرأوا القصص مع المعلم حتى المساء",
    "fa": "بچه‌ها صبح به کتابخانه رفتند و با معلم کتاب خواندند و چیزهای تازه یاد گرفتند",
    "ru": "Утром дети из долины идут в школу со своими книгами и поют песни по дороге домой.",
    "uk": "Вранці діти з долини йдуть до школи зі своїми книжками і співають пісні по дорозі.",
    "ja": "朝になると、谷の子どもたちは本を持って学校へ行きます。道でうたをうたいながら歩きます。",
    "zh": "早上山谷里的孩子们带着书去学校，他们在路上一边走一边唱歌，老师在门口等着他们。",
    "ko": "아침이 되면 골짜기의 아이들은 책을 들고 학교에 갑니다. 길에서 노래를 부르며 걸어갑니다.",
    "th": "ในตอนเช้าเด็กๆ ในหุบเขาเดินไปโรงเรียนพร้อมกับหนังสือของพวกเขาและร้องเพลงไปตามทาง",
    "he": "בבוקר הילדים מהעמק הולכים לבית הספר עם הספרים שלהם ושרים שירים בדרך הביתה",
    "el": "Το πρωί τα παιδιά από την κοιλάδα πηγαίνουν στο σχολείο με τα βιβλία τους και τραγουδούν.",
    "hi": "सुबह घाटी के बच्चे अपनी किताबों के साथ स्कूल जाते हैं और रास्ते में गीत गाते हैं।",
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_the_writing_tells_the_language(language):
    assert detect_language(SAMPLES[language] * 2) == language


def test_too_little_or_too_mixed_text_is_no_answer():
    assert detect_language("OK 123") is None
    assert detect_language("") is None
    # Half Latin, half Cyrillic: no script has a clear majority... nor is this plainly one language.
    assert detect_language(SAMPLES["en"][:60] + SAMPLES["ru"][:60] + SAMPLES["ar"][:60]) is None
    # Characters beyond the Basic Multilingual Plane (emoji, historic scripts) count for nothing.
    assert detect_language("😀𓀀" * 200 + SAMPLES["vi"]) == "vi"


def test_a_declared_language_is_overruled_only_by_plain_evidence():
    assert language_of_text("en", SAMPLES["vi"] * 3) == "vi"
    assert language_of_text("vi", SAMPLES["ar"] * 3) == "ar"
    assert language_of_text("ar", SAMPLES["ar"]) is None
    assert language_of_text("zh", SAMPLES["ja"] * 3) is None  # the same script: not contradicted
    # A declared script with a tenth of the letters or more stands (a bilingual book).
    assert language_of_text("vi", SAMPLES["ar"] * 3 + SAMPLES["vi"]) is None
    assert language_of_text("hmn", SAMPLES["ru"] * 3) == "ru"


def test_declared_tags_and_names():
    assert primary_language("en-US") == "en"
    assert primary_language("Vietnamese") == "vi"
    assert primary_language("vie") == "vi"
    assert primary_language("und") == ""
