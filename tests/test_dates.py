"""Event-time evidence read from text (index.dates), on texts written here."""

from __future__ import annotations

from datetime import date

from index import dates
from index.dates import DateReader, evidence_text, read_evidence


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
        assert reader.read_all(text).days == {day}, text


def test_month_year_bare_years_and_weekdays() -> None:
    reader = DateReader()
    found = reader.read_all("منذ توليه الرئاسة في يوليو/تموز 2024، اليوم الجمعة; since 1991")
    assert found.days == frozenset()
    assert found.years == {2024, 1991}
    assert found.weekdays == {4}
    assert reader.read_all("Tuesday, 17 people, room 2100").years == frozenset()


def test_evidence_mask_holds_years_and_weekdays() -> None:
    evidence = read_evidence("قال الرئيس اليوم الثلاثاء ١ تشرين الثاني ٢٠١٧ إن ... منذ عام 1991")
    assert dates.years(evidence) == {2017, 1991}
    assert dates.weekdays(evidence) == {1}
    assert read_evidence("no time named here") == 0
    assert dates.from_bytes(dates.to_bytes(evidence)) == evidence
    assert dates.to_bytes(0) == b""
    assert dates.from_bytes(None) == 0


def test_conflicts_need_evidence_on_both_sides() -> None:
    tuesday_2025 = read_evidence("on Tuesday, 4 March 2025")
    thursday_2025 = read_evidence("on Thursday, 6 March 2025")
    wednesday_2017 = read_evidence("on Wednesday, 1 November 2017")
    nothing = read_evidence("no time named here")
    assert dates.weekdays_disjoint(tuesday_2025, thursday_2025)
    assert not dates.years_disjoint(tuesday_2025, thursday_2025)
    assert dates.years_disjoint(tuesday_2025, wednesday_2017)
    assert not dates.weekdays_disjoint(tuesday_2025, read_evidence("Tuesday and Friday"))
    for evidence in (tuesday_2025, nothing):
        assert not dates.years_disjoint(evidence, nothing)
        assert not dates.weekdays_disjoint(evidence, nothing)


def test_evidence_text_stops_at_the_body() -> None:
    raw = "2 مايو، 2025\nالخبر الأول\nنص الخبر\nإقرأ أيضاً:\n3 يونيو، 2024"
    assert evidence_text(raw, "الخبر الأول\nنص الخبر") == "2 مايو، 2025\nالخبر الأول\nنص الخبر"
    assert evidence_text(raw, "الخبر الأول\nنص الخبر", "Title") == (
        "Title\n2 مايو، 2025\nالخبر الأول\nنص الخبر"
    )
