"""The date reader of ``benchmarks/story_experiments.py`` on texts written here."""

from __future__ import annotations

from datetime import date

from benchmarks.story_experiments import DateReader, _evidence_text


def _day(year: int, month: int, day: int) -> int:
    return date(year, month, day).toordinal() - date(1970, 1, 1).toordinal()


def test_reads_dates_in_several_languages_and_forms() -> None:
    reader = DateReader()
    cases = {
        "يناير 17, 2025آخر تحديث": _day(2025, 1, 17),
        "اليوم الأربعاء 1 تشرين الثاني 2017": _day(2017, 11, 1),
        "2025-03-04 17:34:00": _day(2025, 3, 4),
        "LOS ANGELES , May 03 , 2013": _day(2013, 5, 3),
        "am 3. März 2013 in Berlin": _day(2013, 3, 3),
        "el 3 de mayo de 2013": _day(2013, 5, 3),
        "12 Şubat 2014 tarihinde": _day(2014, 2, 12),
        "dnia 5 września 2019": _day(2019, 9, 5),
        "le 04.04.2020": _day(2020, 4, 4),
        "١٧ أيار ٢٠٢٣": _day(2023, 5, 17),
    }
    for text, day in cases.items():
        assert reader.read(text).days == {day}, text


def test_month_year_bare_years_and_weekdays() -> None:
    reader = DateReader()
    evidence = reader.read("منذ توليه الرئاسة في يوليو/تموز 2024، اليوم الجمعة; since 1991")
    assert evidence.days == frozenset()
    assert evidence.years == {2024, 1991}
    assert evidence.weekdays == {4}
    assert reader.read("Tuesday, 17 people, room 2100").years == frozenset()


def test_evidence_text_stops_at_the_body() -> None:
    raw = "2 مايو، 2025\nالخبر الأول\nنص الخبر\nإقرأ أيضاً:\n3 يونيو، 2024"
    assert _evidence_text(raw, "الخبر الأول\nنص الخبر") == "2 مايو، 2025\nالخبر الأول\nنص الخبر"
