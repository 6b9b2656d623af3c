"""Event-time evidence read from an article's text: the years and weekdays it names.

Two reports of one event name the same day of the week ("on Tuesday", "اليوم الثلاثاء")
and the same current year; two same-topic events years or days apart do not. No dev set
carries publication dates, and scraped archives often lose them, so this evidence is what
lets story clustering tell apart the five Russia-Iran events of ``data/seeds`` (2017 to
2025) or ECB+'s two events per topic. It is weak evidence, used as a penalty on the
clustering logit (``Parameters.story_conflict_weights``), never as a veto: same-story
reports written days apart name other weekdays, and background years differ.

Read (on normalized text, so Arabic-Indic digits and letter variants fold first): day
month year, month day year, ISO and numeric dates, month-year and bare years 1950-2049,
weekday names; English, German, French, Spanish, Polish, Turkish and Arabic, Levantine
month names included. The evidence is a bit mask (:data:`Evidence`): weekdays in bits 0-6
(Monday 0), year ``y`` in bit ``7 + y - 1950``; 0 means none named.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date

from index.text import normalize

Evidence = int

FIRST_YEAR = 1950
LAST_YEAR = 2049
_WEEKDAY_BITS = 7
WEEKDAY_MASK = (1 << _WEEKDAY_BITS) - 1

_MONTH_WORDS = {
    1: "january jan januar jänner janvier enero stycznia styczeń ocak يناير كانون_الثاني",
    2: "february feb februar février fevrier febrero lutego luty şubat subat فبراير شباط",
    3: "march mar märz maerz mars marzo marca marzec mart مارس آذار",
    4: "april apr avril abril kwietnia kwiecień nisan أبريل ابريل إبريل نيسان",
    5: "may mai mayo maja maj mayıs mayis مايو أيار",
    6: "june jun juni juin junio czerwca czerwiec haziran يونيو يونيه حزيران",
    7: "july jul juli juillet julio lipca lipiec temmuz يوليو يوليه تموز",
    8: "august aug août aout agosto sierpnia sierpień ağustos agustos أغسطس اغسطس آب",
    9: "september sep sept septembre septiembre setiembre września wrzesień eylül سبتمبر أيلول",
    10: "october oct oktober octobre octubre października październik ekim أكتوبر اكتوبر "
    "تشرين_الأول",
    11: "november nov novembre noviembre listopada listopad kasım kasim نوفمبر تشرين_الثاني",
    12: "december dec dezember décembre decembre diciembre grudnia grudzień aralık ديسمبر "
    "كانون_الأول",
}
_WEEKDAY_WORDS = {
    0: "monday montag lundi lunes poniedziałek pazartesi الاثنين الإثنين",
    1: "tuesday dienstag mardi martes wtorek salı sali الثلاثاء",
    2: "wednesday mittwoch mercredi miércoles miercoles środa çarşamba الأربعاء",
    3: "thursday donnerstag jeudi jueves czwartek perşembe persembe الخميس",
    4: "friday freitag vendredi viernes piątek cuma الجمعة",
    5: "saturday samstag sonnabend samedi sábado sabado sobota cumartesi السبت",
    6: "sunday sonntag dimanche domingo niedziela pazar الأحد الاحد",
}
_FILLERS = ("de", "del", "of", "the", "عام", "سنة")
_TOKEN_RE = re.compile(r"\d+|[^\W\d_]+")
_EPOCH = date(1970, 1, 1).toordinal()


def _vocabulary(table: dict[int, str]) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Normalized one-word and two-word names (``_`` joins two words) to their number."""
    single: dict[str, int] = {}
    double: dict[tuple[str, str], int] = {}
    for number, words in table.items():
        for word in words.split():
            parts = [normalize(part) for part in word.split("_")]
            if len(parts) == 2:
                double[(parts[0], parts[1])] = number
            else:
                single[parts[0]] = number
    return single, double


@dataclass(frozen=True)
class TextDates:
    """Full dates (days since 1970), years and weekdays (Monday 0) a text names."""

    days: frozenset[int]
    years: frozenset[int]
    weekdays: frozenset[int]


class DateReader:
    """Reads the :data:`Evidence` of a text (see the module docstring for what it reads)."""

    def __init__(self) -> None:
        self.months, self.month_pairs = _vocabulary(_MONTH_WORDS)
        self.weekdays, _pairs = _vocabulary(_WEEKDAY_WORDS)
        self.fillers = {normalize(word) for word in _FILLERS}

    def read(self, text: str) -> Evidence:
        """Weekdays and years named in ``text``, as a bit mask."""
        found = self.read_all(text)
        evidence = 0
        for weekday in found.weekdays:
            evidence |= 1 << weekday
        for year in found.years:
            evidence |= _year_bit(year)
        return evidence

    def read_all(self, text: str) -> TextDates:
        """Full dates, years and weekdays named in ``text``."""
        tokens = _TOKEN_RE.findall(normalize(text))
        days: set[int] = set()
        years: set[int] = set()
        weekdays: set[int] = set()
        i = 0
        while i < len(tokens):
            token = tokens[i]
            weekday = self.weekdays.get(token)
            if weekday is not None:
                weekdays.add(weekday)
                i += 1
                continue
            found = self._date_at(tokens, i)
            if found is not None:
                day, year, used = found
                if day is not None:
                    days.add(day)
                years.add(year)
                i += used
                continue
            bare = _year(token)
            if bare is not None:
                years.add(bare)
            i += 1
        return TextDates(frozenset(days), frozenset(years), frozenset(weekdays))

    def _month_at(self, tokens: list[str], i: int) -> tuple[int, int] | None:
        """(month, tokens used) of a month name at ``i``."""
        if i + 1 < len(tokens) and (tokens[i], tokens[i + 1]) in self.month_pairs:
            month, used = self.month_pairs[(tokens[i], tokens[i + 1])], 2
        elif i < len(tokens) and tokens[i] in self.months:
            month, used = self.months[tokens[i]], 1
        else:
            return None
        following = self._month_at(tokens, i + used)  # "يوليو تموز": two names, one month
        if following is not None and following[0] == month:
            used += following[1]
        return month, used

    def _skip(self, tokens: list[str], i: int) -> int:
        while i < len(tokens) and tokens[i] in self.fillers:
            i += 1
        return i

    def _date_at(self, tokens: list[str], i: int) -> tuple[int | None, int, int] | None:
        """(day or None for month precision, year, tokens used) of a date starting at i."""

        def at(k: int) -> str:
            return tokens[k] if k < len(tokens) else ""

        year = _year(at(i))
        if year is not None and _small(at(i + 1), 12) and _small(at(i + 2), 31):
            return _day(year, int(at(i + 1)), int(at(i + 2))), year, 3  # 2025-03-04
        if _small(at(i), 31):
            following = _year(at(i + 2))
            if _small(at(i + 1), 12) and following is not None:
                return _day(following, int(at(i + 1)), int(at(i))), following, 3  # 04/03/2025
            start = self._skip(tokens, i + 1)
            named = self._month_at(tokens, start)
            if named is not None:
                end = self._skip(tokens, start + named[1])
                year = _year(at(end))
                if year is not None:  # 1 تشرين الثاني 2017
                    return _day(year, named[0], int(at(i))), year, end + 1 - i
            return None
        named = self._month_at(tokens, i)
        if named is None:
            return None
        end = self._skip(tokens, i + named[1])
        year = _year(at(end + 1))
        if _small(at(end), 31) and year is not None:  # January 17, 2025
            return _day(year, named[0], int(at(end))), year, end + 2 - i
        year = _year(at(end))
        if year is not None:
            return None, year, end + 1 - i  # February 2022
        return None


def _year(token: str) -> int | None:
    if len(token) == 4 and token.isdigit() and FIRST_YEAR <= int(token) <= LAST_YEAR:
        return int(token)
    return None


def _small(token: str, limit: int) -> bool:
    return 1 <= len(token) <= 2 and token.isdigit() and 1 <= int(token) <= limit


def _day(year: int, month: int, day: int) -> int | None:
    try:
        return date(year, month, day).toordinal() - _EPOCH
    except ValueError:
        return None


def _year_bit(year: int) -> int:
    return 1 << (_WEEKDAY_BITS + year - FIRST_YEAR)


@functools.cache
def reader() -> DateReader:
    """The shared reader (its vocabulary is normalized once)."""
    return DateReader()


def read_evidence(text: str) -> Evidence:
    """The years and weekdays ``text`` names (:data:`Evidence`)."""
    return reader().read(text)


def evidence_text(raw: str, body: str, title: str | None = None) -> str:
    """What evidence is read from: the title and the raw text down to the end of the
    cleaned body, so the date lines cleaning removed above it count but not the tail
    below it (read-also and related lists carry other stories' dates)."""
    lines = body.rstrip().splitlines()
    last = lines[-1] if lines else ""
    end = raw.rfind(last) if last else -1
    text = raw[: end + len(last)] if end >= 0 else body
    return f"{title}\n{text}" if title else text


def years(evidence: Evidence) -> set[int]:
    """The years of ``evidence``."""
    mask = evidence >> _WEEKDAY_BITS
    return {FIRST_YEAR + bit for bit in range(LAST_YEAR - FIRST_YEAR + 1) if mask >> bit & 1}


def weekdays(evidence: Evidence) -> set[int]:
    """The weekdays of ``evidence`` (Monday 0)."""
    return {day for day in range(_WEEKDAY_BITS) if evidence >> day & 1}


def years_disjoint(a: Evidence, b: Evidence) -> bool:
    """Both name years and share none."""
    a_years, b_years = a >> _WEEKDAY_BITS, b >> _WEEKDAY_BITS
    return bool(a_years and b_years) and not a_years & b_years


def weekdays_disjoint(a: Evidence, b: Evidence) -> bool:
    """Both name weekdays and share none."""
    a_days, b_days = a & WEEKDAY_MASK, b & WEEKDAY_MASK
    return bool(a_days and b_days) and not a_days & b_days


def to_bytes(evidence: Evidence) -> bytes:
    """Storage form (empty for no evidence; a NULL in the store means not computed)."""
    return evidence.to_bytes((evidence.bit_length() + 7) // 8, "little")


def from_bytes(blob: bytes | None) -> Evidence:
    """Inverse of :func:`to_bytes`."""
    return int.from_bytes(blob, "little") if blob else 0
