"""Cleaning and normalization (index/text.py).

The seed tests read the five scraped articles beside the repository and skip when they are
absent; every other test builds its own text.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index import text as textlib
from index.text import (
    CleanText,
    clean,
    extract_html,
    is_spaceless,
    learnable_lines,
    line_key,
    looks_like_html,
    normalize,
    words,
)

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "seeds"


def _seed(prefix: str) -> str:
    if not SEEDS.is_dir():
        pytest.skip(f"{SEEDS} is absent: the seed articles live beside the repository")
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


def _kept(result: CleanText, fragment: str) -> bool:
    return any(fragment in line for line in result.lines)


def _gone(result: CleanText, fragment: str) -> bool:
    return not _kept(result, fragment)


def _assert_consistent(source: str, result: CleanText) -> None:
    assert result.body == "\n".join(result.lines)
    non_empty = [line.strip() for line in source.splitlines() if line.strip()]
    assert sorted(result.lines + result.removed) == sorted(non_empty)


# --- seeds ------------------------------------------------------------------------------


def test_seed_000_is_kept_whole() -> None:
    source = _seed("000")
    result = clean(source)
    _assert_consistent(source, result)
    assert result.removed == ()
    assert result.lines[0].startswith("الكرملين: بوتين بحث مع طهران")
    for fragment in ("التسوية الدبلوماسية", "البرنامج النووي الإيراني", "وهدد ترامب إيران"):
        assert _kept(result, fragment)
    assert result.lines[-1].endswith('المرأة، الحياة، الحرية".')


def test_seed_001_loses_source_tags_read_also_and_related_list() -> None:
    source = _seed("001")
    result = clean(source)
    _assert_consistent(source, result)
    assert result.lines[0].startswith("التقى الرئيس الروسي فلاديمير بوتين")
    assert _kept(result, "وتتّهم دول غربية إيران بتخصيب")
    assert result.lines[-1].startswith("ورفض الكرملين التعليق")
    for fragment in (
        "المصدر: عربي21",
        "كلمات دلالية",
        "إقرأ أيضاً",
        "مفاوضات نووية جديدة بين إيران ودول الترويكا",
        "مقالات مشابهة",
        "ثقب واحد أنقذنا",
        "•",
    ):
        assert _gone(result, fragment), fragment


def test_seed_002_loses_the_second_article_and_its_furniture() -> None:
    source = _seed("002")
    result = clean(source)
    _assert_consistent(source, result)
    assert result.lines[0].startswith("المستقلة/-أجرى الرئيس الروسي")
    assert result.lines[-1].startswith("وتستخدم روسيا طائرات مسيرة إيرانية بصورة مكثفة")
    for fragment in (
        "آخر تحديث",
        "المصدر: وكالة الصحافة المستقلة",
        "كلمات دلالية",
        "لا لقاء بين الإيرانيين والأوروبيين",
        "2 مايو",
        "بارو",
        "المسلة – متابعة – وكالات",
        "لايعبّر بالضرورة",
        "About Post Author",
        "See author's posts",
        "مقالات مشابهة",
        "•",
    ):
        assert _gone(result, fragment), fragment


def test_seed_002_second_article_goes_even_without_the_tag_line() -> None:
    # The read-also teaser (headline, date line, article) is cut by itself in the tail.
    source = "\n".join(
        line
        for line in _seed("002").splitlines()
        if not line.startswith(("كلمات دلالية", "المصدر"))
    )
    result = clean(source)
    assert _gone(result, "بارو")
    assert _gone(result, "لا لقاء بين الإيرانيين")
    assert result.lines[-1].startswith("وتستخدم روسيا طائرات مسيرة إيرانية")


def test_seed_003_keeps_subheadings_and_loses_navigation() -> None:
    source = _seed("003")
    result = clean(source)
    _assert_consistent(source, result)
    assert result.lines[0].startswith("روسيا تعرض الوساطة بين إيران والولايات المتحدة")
    for fragment in (
        "تقرير: محادثات بين الولايات المتحدة وروسيا",
        "اتصالات بين ترامب وبوتين",
        "دعوات للحوار",
        "تحولات ديناميكية",
        "علاقات إيرانية-روسية",
        "الخلاصة",
        "تكشف هذه التطورات عن تحول",
    ):
        assert _kept(result, fragment), fragment
    assert set(result.removed) == {
        "Skip to content",
        "2025-03-04 17:34:00",
        next(line for line in source.splitlines() if line.startswith("الوسوم:")),
        "Scroll to Top",
    }


def test_seed_004_loses_tags_related_header_and_comment_form() -> None:
    source = _seed("004")
    result = clean(source)
    _assert_consistent(source, result)
    assert _kept(result, "بوتين يتجاهل تهديدات ترامب ويبحث مع روحاني")
    assert "بوتين في إيران" in result.lines
    assert "بوتين في ايران" in result.lines
    assert result.lines[-1].startswith("وتجدر الإشارة إلى أن موسكو داعم")
    for fragment in ("الوسوم", "العطار التركي", "مقالات ذات صلة", "اترك تعليقاً", "لن يتم نشر"):
        assert _gone(result, fragment), fragment


def test_seed_004_site_name_goes_once_learned() -> None:
    source = _seed("004")
    assert "مرآة العالم" in clean(source).lines
    assert "مرآة العالم" in learnable_lines(source)
    learned = clean(source, learned={line_key("مرآة العالم")})
    assert "مرآة العالم" in learned.removed
    assert learned.lines[0].startswith("بوتين يتجاهل تهديدات ترامب")


# --- synthetic articles -------------------------------------------------------------------

ARABIC_PARAGRAPHS = (
    "أعلنت وزارة الزراعة اليوم الأحد عن خطة جديدة لدعم صغار المزارعين في المناطق الريفية، "
    "تشمل قروضا ميسرة وبذورا محسنة وتدريبا على أساليب الري الحديثة.",
    "وقال الوزير في مؤتمر صحفي إن الخطة تستهدف أكثر من عشرين ألف أسرة خلال العامين المقبلين، "
    "وإن تمويلها سيأتي من الموازنة العامة ومن شركاء دوليين.",
    "وأضاف أن الوزارة ستفتح مكاتب في كل محافظة لاستقبال الطلبات ومتابعة التنفيذ، "
    "على أن تنشر تقارير دورية عن مستوى الإنجاز.",
    "ويرى خبراء أن نجاح الخطة يتوقف على سرعة صرف القروض وعلى تحسين طرق نقل المحاصيل "
    "إلى الأسواق الكبرى قبل تلفها.",
)


def test_arabic_article_with_boilerplate_is_reduced_to_its_body() -> None:
    source = "\n".join(
        (
            "تخطى إلى المحتوى",
            "الرئيسية",
            "خطة حكومية لدعم صغار المزارعين",
            "الرياض 26 شوال 1436 هـ الموافق 11 أغسطس 2015 م واس",
            ARABIC_PARAGRAPHS[0],
            "اقرأ أيضا: ارتفاع أسعار القمح في الأسواق العالمية",
            ARABIC_PARAGRAPHS[1],
            "دعم المزارعين",
            ARABIC_PARAGRAPHS[2],
            ARABIC_PARAGRAPHS[3],
            "// انتهى //",
            "12:47 ت م",
            "شارك على فيسبوك",
            "الكلمات المفتاحية: زراعة، قروض، ري",
            "أخبار ذات صلة",
            "• وزير المالية يعرض الموازنة الجديدة",
            "• أمطار غزيرة تضرب المناطق الشمالية",
        )
    )
    result = clean(source)
    _assert_consistent(source, result)
    assert result.lines == (
        "خطة حكومية لدعم صغار المزارعين",
        ARABIC_PARAGRAPHS[0],
        ARABIC_PARAGRAPHS[1],
        "دعم المزارعين",
        ARABIC_PARAGRAPHS[2],
        ARABIC_PARAGRAPHS[3],
    )


def test_read_also_list_in_the_middle_goes_but_the_article_goes_on() -> None:
    # BBC Arabic's habit: a read-also list between two parts of the same article.
    source = "\n".join(
        (
            ARABIC_PARAGRAPHS[0],
            ARABIC_PARAGRAPHS[1],
            "اقرأ أيضاً:",
            "انخفاض إنتاج الأرز للعام الثالث",
            "الجفاف يهدد المحاصيل في الجنوب",
            ARABIC_PARAGRAPHS[2],
            ARABIC_PARAGRAPHS[3],
            "قصص ذات صلة:",
            "مزارعون يحتجون على أسعار الأسمدة",
            ARABIC_PARAGRAPHS[0].replace("الأحد", "الاثنين"),
        )
    )
    result = clean(source)
    assert _gone(result, "انخفاض إنتاج الأرز")
    assert _gone(result, "الجفاف يهدد المحاصيل")
    assert _gone(result, "مزارعون يحتجون")
    assert result.lines == (
        ARABIC_PARAGRAPHS[0],
        ARABIC_PARAGRAPHS[1],
        ARABIC_PARAGRAPHS[2],
        ARABIC_PARAGRAPHS[3],
        ARABIC_PARAGRAPHS[0].replace("الأحد", "الاثنين"),
    )


def test_marker_near_the_top_drops_only_its_own_line() -> None:
    source = "\n".join(("الوسوم: زراعة، اقتصاد", *ARABIC_PARAGRAPHS))
    result = clean(source)
    assert result.lines == ARABIC_PARAGRAPHS
    assert result.removed == ("الوسوم: زراعة، اقتصاد",)


def test_disclaimer_credit_and_contact_lines_go_anywhere() -> None:
    source = "\n".join(
        (
            "هذا المقال بقلم كاتب ضيف، والآراء الواردة أدناه تعبر عن رأي الكاتب ولا تعكس "
            "بالضرورة وجهة نظر الموقع.",
            ARABIC_PARAGRAPHS[0],
            "*نقلاً عن صحيفة الأيام",
            ARABIC_PARAGRAPHS[1],
            "writer@example.com",
            "جميع الحقوق محفوظة © 2025",
            "فرانس24/ أ ف ب",
        )
    )
    assert clean(source).lines == ARABIC_PARAGRAPHS[:2]


ENGLISH_PARAGRAPHS = (
    "The city council approved a new budget on Tuesday that doubles spending on public "
    "transport and adds three bus lines to the eastern districts.",
    "Council members said the plan would be paid for by a small increase in parking fees "
    "and by a grant from the regional government.",
    "Critics argued that the fee increase would hurt small shops in the city centre, "
    "where most customers still arrive by car.",
)


def test_english_article_with_boilerplate_is_reduced_to_its_body() -> None:
    source = "\n".join(
        (
            "Skip to main content",
            "Menu",
            "Council doubles transport budget",
            "Updated: March 4, 2025 5:34 PM",
            "Share on Facebook",
            "Facebook Twitter WhatsApp Email",
            ENGLISH_PARAGRAPHS[0],
            "Advertisement",
            "Read more: Bus fares to rise next year",
            ENGLISH_PARAGRAPHS[1],
            "Eastern districts",
            ENGLISH_PARAGRAPHS[2],
            "Reporting by Jane Doe; Editing by John Roe",
            "Tags: transport, budget, council",
            "Related articles",
            "Mayor opens new bridge",
            "Leave a Reply",
            "Your email address will not be published. Required fields are marked *",
            "© 2025 Example News. All rights reserved.",
        )
    )
    result = clean(source)
    _assert_consistent(source, result)
    assert result.lines == (
        "Council doubles transport budget",
        ENGLISH_PARAGRAPHS[0],
        ENGLISH_PARAGRAPHS[1],
        "Eastern districts",
        ENGLISH_PARAGRAPHS[2],
    )


@pytest.mark.parametrize(
    "source",
    [
        "",
        "   \n\t\n",
        "Skip to content\nMenu\nShare this\nScroll to Top",
        "الرئيسية\nاترك تعليقاً\nلن يتم نشر عنوان بريدك الإلكتروني.\n-----\n***",
        "كلمات دلالية: سياسة اقتصاد\nمقالات مشابهة\n• عنوان خبر آخر\n• عنوان خبر ثالث",
    ],
)
def test_text_that_is_only_boilerplate_leaves_an_empty_body(source: str) -> None:
    result = clean(source)
    assert result.body == ""
    assert result.lines == ()


BLOCKED_PAGES = (
    # The page a Polish site served the SemEval crawler (four lines; the IP changed).
    "Przykro nam, ale z adresu IP z którego się łączysz odnotowaliśmy ogromną liczbę "
    "połączeń.\nPodejrzewamy, że ktoś nadużył adresu IP, z którego korzystasz.\nJeśli "
    'chcesz połączyć się z nami zaznacz "NIE JESTEM ROBOTEM".\nTwój adres IP: 192.0.2.7',
    "Just a moment...\nChecking your browser before accessing example.com.\nThis process is "
    "automatic. Your browser will redirect to your requested content shortly.",
    "Access denied\nYou don't have permission to access this page on this server.",
    "Please enable JavaScript and cookies to continue",
    "Are you a robot?\nWe have detected unusual traffic from your computer network.",
    "عذرا\nيرجى تفعيل جافا سكريبت في متصفحك لعرض هذه الصفحة",
    # Ad-blocker walls: all that the SemEval crawler got of some pages (an English and a
    # Polish one as served, the headline above the first included), and their kind in
    # other languages.
    "Winning numbers drawn in ‘Pick 4 Midday’ game\nWe noticed you’re blocking ads!\n\n"
    "Keep supporting great journalism by turning off your ad blocker. Or purchase a "
    "subscription for unlimited access to real news you can count on.",
    "Wyborcza.pl Wyłącz Adblock / Ublockaaby Przeczytaj nasze artykuły Wyłącz AdBlock / "
    "UBLOCK lub dodaj wyjątek dla naszej domeny.Dodanie wyjątku nie wyłączy blokowania "
    "reklamy.",
    "Sie verwenden einen Werbeblocker.\nBitte deaktivieren Sie Ihren Werbeblocker, um "
    "weiterzulesen.",
    "Vous utilisez un bloqueur de publicité. Désactivez votre bloqueur pour lire la suite.",
    "Estás usando un bloqueador de anuncios.",
    "Reklam engelleyici kullanıyorsunuz. Lütfen reklam engelleyicinizi kapatın.",
    "يبدو أنك تستخدم مانع الإعلانات\nيرجى تعطيل مانع الإعلانات لمتابعة القراءة",
)


# All that the SemEval crawler got of some ahewar.org (الحوار المتمدن) pages: the site's
# header (name, donation appeal, foundation, motto, an award), in two wordings.
AHEWAR_HEADERS = (
    "الحوار المتمدن\nالتبرع للموقع - ادعمونا\n\n\nالموقع الرئيسي لمؤسسة الحوار المتمدن\n"
    "يسارية , علمانية , ديمقراطية\n"
    '"من أجل مجتمع مدني علماني ديمقراطي حديث يضمن الحرية والعدالة الاجتماعية للجميع"\n'
    "حاز الحوار المتمدن على جائزة ابن رشد للفكر الحر والتى نالها أعلام في الفكر والثقافة",
    "الحوار المتمدن تبرع للموقع - ادعمنا\n رئيس مؤسسة الحوار الحضاري\n"
    "يساري ، علماني ، ديمقراطي\n"
    "من أجل مجتمع مدني علماني وديمقراطي حديث يضمن الحرية والعدالة الاجتماعية للجميع.\n"
    "وفاز الحوار الحضاري بجائزة ابن رشد للفكر الحر ، التي مُنحت لشخصيات بارزة في الفكر",
)


@pytest.mark.parametrize("source", [*BLOCKED_PAGES, *AHEWAR_HEADERS])
def test_a_blocked_crawlers_page_or_a_bare_site_header_is_all_boilerplate(source: str) -> None:
    result = clean(source)
    assert result.body == ""
    assert len(result.removed) == len([line for line in source.splitlines() if line.strip()])


def test_a_site_header_with_a_few_other_words_is_still_no_article() -> None:
    # Less than BLOCKED_PAGE_REST_CHARS besides the header: what a failed crawl got.
    result = clean(AHEWAR_HEADERS[0] + "\nاختر القسم الذي تريد تصفحه")
    assert result.body == ""


def test_a_site_header_above_an_article_goes_and_the_article_stays() -> None:
    source = AHEWAR_HEADERS[0] + "\n" + "\n".join(ARABIC_PARAGRAPHS)
    assert clean(source).lines == ARABIC_PARAGRAPHS


def test_a_plea_for_support_in_a_report_is_kept() -> None:
    # Protesters chanting "support us": not a site asking for donations.
    line = 'وتفرق المحتجون الذين كانوا يهتفون "ادعمونا أيها الإيرانيون" عندما اقتربت الشرطة.'
    source = "\n".join((ARABIC_PARAGRAPHS[0], line, ARABIC_PARAGRAPHS[1]))
    assert clean(source).lines == (ARABIC_PARAGRAPHS[0], line, ARABIC_PARAGRAPHS[1])


def test_an_article_loses_only_its_script_wall_line() -> None:
    source = "\n".join(
        (
            "Council doubles transport budget",
            ENGLISH_PARAGRAPHS[0],
            "Please enable JavaScript to view the comments powered by Disqus.",
            ENGLISH_PARAGRAPHS[1],
        )
    )
    assert clean(source).lines == (
        "Council doubles transport budget",
        ENGLISH_PARAGRAPHS[0],
        ENGLISH_PARAGRAPHS[1],
    )


def test_an_article_loses_only_its_ad_blocker_line() -> None:
    # With at least BLOCKED_PAGE_REST_CHARS of article besides it (else: no article).
    wall = "We noticed you're using an ad blocker. Please whitelist us to support our work."
    source = "\n".join((ENGLISH_PARAGRAPHS[0], wall, *ENGLISH_PARAGRAPHS[1:]))
    result = clean(source)
    assert result.lines == ENGLISH_PARAGRAPHS
    assert result.removed == (wall,)
    assert clean("\n".join(ENGLISH_PARAGRAPHS[:2]) + "\n" + wall).body == ""


@pytest.mark.parametrize(
    "line",
    [
        # A comment form's consent box and a consent dialog's sentences after an article
        # (German ones from the SemEval crawl, a Turkish cookie notice from it too).
        "Kommentar-Profil anlegen Ich habe die NETIQUETTE und die DATENSCHUTZERKLÄRUNG "
        "gelesen und akzeptiere diese.* *Pflichtfelder",
        "Indem Sie „Akzeptieren und schließen“ anklicken, stimmen Sie ausdrücklich der "
        "Verarbeitung Ihrer persönlichen Daten zu, damit das beschriebene Ziel erreicht wird.",
        "Ihre Zustimmung können Sie auf die Weise widerrufen, wie in den "
        "Datenschutzrichtlinien beschrieben.",
        "Sizlere daha iyi bir hizmet sunabilmek için sitemizde çerezlerden faydalanıyoruz. "
        "Sitemizi kullanmaya devam ederek çerezleri kabul etmiş sayılırsınız.",
        "I have read and agree to the privacy policy and the community guidelines.",
        # A newsletter box (SemEval's crawl has it after a headline).
        "We'll send breaking news and news alerts to you as as they happen!",
        "By continuing to browse this site you agree to our use of cookies.",
        "En poursuivant votre navigation, vous acceptez l'utilisation de cookies.",
        "Si continúa navegando, consideramos que acepta su uso.",
    ],
)
def test_consent_and_promo_lines_after_an_article_go(line: str) -> None:
    source = "\n".join((ENGLISH_PARAGRAPHS[0], ENGLISH_PARAGRAPHS[1], line))
    result = clean(source)
    assert result.lines == ENGLISH_PARAGRAPHS[:2]
    assert result.removed == (line,)


@pytest.mark.parametrize(
    "source",
    [
        # The phrases of a blocked page inside prose, and no bot check line: an article.
        "Hackers took the ministry's website down on Monday.\n"
        "Visitors saw an Access denied message and a notice in Polish that asked them to "
        "wait; the ministry said the site would be back within a day.",
        # Ad blockers named in prose, not a site asking its reader to turn one off.
        "Google said Chrome will disable ad blockers on some sites next year.\n"
        "Publishers say readers using an ad blocker cost them a fifth of their revenue.\n"
        "Laut einer Studie nutzen viele Leser einen Werbeblocker auf dem Smartphone.\n"
        "Viele Leser sagen, sie nutzen einen Werbeblocker, weil Anzeigen sie stören.\n"
        "Redakcja sprawdziła, czy użytkownik wyłączył AdBlocka przed wejściem na stronę.\n"
        "قامت الشركة بتعطيل مانع الإعلانات في النسخة الجديدة من متصفحها.\n"
        "El usuario está usando un bloqueador de anuncios, según el estudio.\n"
        "Google desactiva el bloqueador de anuncios en la nueva versión de Chrome.\n"
        '"I have read and accepted the terms of the deal," the defendant told the court.\n'
        "Chrome désactive le bloqueur de pub sur certains sites, selon Google.\n"
        "Tarayıcının reklam engelleyici kapatıldı, dedi şirket.\n"
        '"Ich habe die Vereinbarung gelesen und stimme ihr nicht zu", sagte der Minister.',
    ],
)
def test_a_short_report_about_blocked_sites_or_ad_blockers_is_kept(source: str) -> None:
    assert clean(source).lines == tuple(source.splitlines())


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        # Consent walls glued to the headline (the SemEval crawl has these in several
        # languages), a paywall, a login prompt.
        (
            "Media: Negocjacje handlowe USA i Wielkiej Brytanii przełożone Aby poprawić swoją "
            "witrynę, wyświetlać istotne materiały informacyjne i dedykowane reklamy, zbieramy "
            "anonimowe informacje techniczne.",
            "Media: Negocjacje handlowe USA i Wielkiej Brytanii przełożone",
        ),
        (
            "Schweiz schränkt Export von Schutzausrüstung ein Um die Funktion unserer Website "
            "zu verbessern und die relevantesten Nachrichten anzuzeigen, sammeln wir Daten.",
            "Schweiz schränkt Export von Schutzausrüstung ein",
        ),
        (
            "Oil to outperform TAKE A FREE TRIAL Registered users can read up to 3 reports.",
            "Oil to outperform",
        ),
        (
            "Clippers hammer Kings Are you sure you want to log out? X Login Sign up now!",
            "Clippers hammer Kings",
        ),
        ("This site uses cookies to improve your experience. Accept", None),
        ("نستخدم ملفات تعريف الارتباط لتحسين تجربتك على موقعنا", None),
    ],
)
def test_a_wall_goes_from_where_it_starts_to_the_end_of_its_line(
    line: str, kept: str | None
) -> None:
    source = "\n".join((ENGLISH_PARAGRAPHS[0], line, ENGLISH_PARAGRAPHS[1]))
    result = clean(source)
    middle = () if kept is None else (kept,)
    assert result.lines == (ENGLISH_PARAGRAPHS[0], *middle, ENGLISH_PARAGRAPHS[1])
    assert result.removed == ((line,) if kept is None else (line[len(kept) :].lstrip(),))


def test_an_inline_promo_goes_and_the_text_on_both_sides_stays() -> None:
    headline = "«بصيرة للبحوث» يجري مسحا عن احتياطات الوقاية في 25 «سوبر ماركت»"
    lead = "أجرى المركز المصري لبحوث الرأي العام «بصيرة» مسحا داخل 25 فرعا للمتاجر الكبيرة."
    source = f"{headline} اشترك لتصلك أهم الأخبار {lead}\n{ARABIC_PARAGRAPHS[0]}"
    result = clean(source)
    assert result.lines == (f"{headline} {lead}", ARABIC_PARAGRAPHS[0])
    assert result.removed == ("اشترك لتصلك أهم الأخبار",)
    assert clean(f"{headline} اشترك لك أهم الأخبار، {lead}").lines == (f"{headline} ، {lead}",)
    liked = f"{headline} أنا معجب بشروك بالفعل، هذه الرسالة لا تظهر مرة أخرى. {lead}"
    assert clean(liked).lines == (f"{headline} {lead}",)


def test_a_syndicators_no_warranty_notice_goes() -> None:
    notice = (
        'تعمل شركة "شبكة الشرق الأوسط وشمال أفريقيا للخدمات المالية" على توفير المعلومات '
        '"كما هي" دون أي تعهدات أو ضمانات... سواء صريحة أو ضمنية.'
    )
    source = "\n".join((ARABIC_PARAGRAPHS[0], notice, ARABIC_PARAGRAPHS[1]))
    assert clean(source).lines == ARABIC_PARAGRAPHS[:2]


def test_cookies_in_prose_are_not_a_wall() -> None:
    source = "\n".join(
        (
            "The bakery's owner said: we use cookies from a family recipe, and sell out daily.",
            "Ein Bäcker sagte, die Cookies seien seit Jahren das beliebteste Gebäck der Stadt.",
            "Registered users of the library rose by a third, the council said on Monday.",
        )
    )
    assert clean(source).lines == tuple(source.splitlines())


# --- HTML -----------------------------------------------------------------------------------

PAGE = "\n".join(
    (
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Council doubles transport budget | City News</title></head>",
        "<body>",
        '<nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>',
        "<article>",
        "<h1>Council doubles transport budget</h1>",
        *(f"<p>{paragraph}</p>" for paragraph in ENGLISH_PARAGRAPHS),
        "</article>",
        "<footer><p>© 2025 City News. All rights reserved.</p></footer>",
        "</body></html>",
    )
)


def test_looks_like_html() -> None:
    assert looks_like_html(PAGE)
    assert looks_like_html("<div><p>One</p><p>Two</p></div>")
    assert not looks_like_html("\n".join(ENGLISH_PARAGRAPHS))
    assert not looks_like_html("if a < b and c > d then <b> is bold")
    assert not looks_like_html("")


def test_extract_html_returns_main_text_and_title() -> None:
    body, title = extract_html(PAGE)
    assert title is not None
    assert "Council doubles transport budget" in title
    for paragraph in ENGLISH_PARAGRAPHS:
        assert paragraph in body.splitlines()
    assert "Sport" not in body


def test_extract_html_falls_back_on_short_fragments() -> None:
    body, title = extract_html(
        "<html><head><title>Tiny</title><script>var x = 1;</script></head>"
        "<body><p>Short text.</p></body></html>"
    )
    assert body == "Short text."
    assert title == "Tiny"


def test_clean_accepts_html() -> None:
    result = clean(PAGE)
    for paragraph in ENGLISH_PARAGRAPHS:
        assert paragraph in result.lines
    assert all("<" not in line for line in result.lines)


# --- learning --------------------------------------------------------------------------------


def test_learned_keys_remove_the_site_name_line() -> None:
    source = "\n".join(("أخبار الوادي", *ARABIC_PARAGRAPHS))
    assert clean(source).lines[0] == "أخبار الوادي"
    # Keys match spelling variants of the line too.
    result = clean(source, learned=[line_key("اخبار الوادى")])
    assert result.lines == ARABIC_PARAGRAPHS
    assert result.removed == ("أخبار الوادي",)


def test_learnable_lines_are_short_distinct_and_trimmed() -> None:
    long_line = " ".join(ARABIC_PARAGRAPHS[:2])
    assert len(long_line) > textlib.LEARNABLE_MAX_CHARS
    source = "\n".join(("  أخبار الوادي  ", "", "أخبار الوادى", long_line, "---", "القسم الثقافي"))
    assert learnable_lines(source) == ["أخبار الوادي", "القسم الثقافي"]


def test_line_key_is_short_stable_and_variant_blind() -> None:
    key = line_key("أخبار الوادي")
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert line_key("  اخبار الوادى!  ") == key
    assert line_key("أَخْبَارُ الوادي") == key
    assert line_key("أخبار الوديان") != key


# --- normalization ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("أ", "ا"),
        ("إ", "ا"),
        ("آ", "ا"),
        ("ٱ", "ا"),
        ("ى", "ي"),
        ("ة", "ه"),
        ("ؤ", "و"),
        ("ئ", "ي"),
        ("ک", "ك"),
        ("ی", "ي"),
        ("ې", "ي"),
        ("ە", "ه"),
        ("ۀ", "ه"),
        ("شراکة إستراتیجیة", "شراكه استراتيجيه"),
        ("مُحَمَّدٌ", "محمد"),
        ("الرَّحْمٰنِ", "الرحمن"),
        # The superscript (dagger) alef is a mark and goes like the harakat.
        ("ذَٰلِكَ ٱلْكِتَٰبُ", "ذلك الكتب"),
        ("قــــــال", "قال"),
        ("٠١٢٣٤٥٦٧٨٩", "0123456789"),
        ("۰۱۲۳۴۵۶۷۸۹", "0123456789"),
        ("عام ٢٠٢٥م", "عام 2025م"),
        ("می\u200cخواهم", "ميخواهم"),
        ("\ufeffA\u200fB\u200eC\u200dD", "abcd"),
        ("ﻻ", "لا"),
        ("Ｆｕｌｌｗｉｄｔｈ １２", "fullwidth 12"),
        ("Straße", "strasse"),
        ("«مرحباً»، يا عالم؟!", "مرحبا يا عالم"),
        ("Hello,   World!\n\tNew—line", "hello world new line"),
        ("  $100 + 5% = ✓  ", "100 5"),
        ("", ""),
    ],
)
def test_normalize_folds(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_orthographic_variants_normalize_alike() -> None:
    variants = (
        "أعلنت الحكومة الإيرانية يوم الأحد عن مبادرة جديدة.",
        "اعلنت الحكومه الايرانيه يوم الاحد عن مبادره جديده",
        "أَعْلَنَتِ الحُكُومَةُ الإِيرَانِيَّةُ يَوْمَ الأَحَدِ عَنْ مُبَادَرَةٍ جَدِيدَةٍ.",
        "أعلنـــت الحکومة الإیرانیة یوم الأحد عن مبادرة جدیدة.",
    )
    assert len({normalize(variant) for variant in variants}) == 1


def test_words_splits_normalized_text() -> None:
    assert words(normalize("Hello, World! مرحباً بالعالم")) == ["hello", "world", "مرحبا", "بالعالم"]
    assert words("") == []


TRICKY = (
    "أإآٱىةؤئکیېەۀ\u0640\u064b\u064e\u0651\u0652\u0654\u0655\u0670\u06d6\u06ed"
    "\u200b\u200c\u200d\u200e\u200f\ufeff\u00ad\u0301\u0323\u0307\u0345\u1100\u1161\u11a8"
    "İıΣσςΐǰẞßﬀﷺﻻ٠۹①²½ ,.;:!?-_«»\n\t\u00a0\u3000\ud800aAzZ"
)
_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()) | st.sampled_from(TRICKY))


@pytest.mark.parametrize(
    "raw",
    [
        "ΐ",  # case folds to three code points that NFKC composes back
        "a\u200d\u0301",  # the deleted joiner lets a and the accent compose
        "a\u065c\u0323",  # the deleted Arabic mark no longer blocks the dot below
        "\u1100\u200b\u1161",  # Hangul jamo compose once the zero-width space is gone
        "ℌİǰ",
    ],
)
def test_normalize_is_idempotent_on_composition_edge_cases(raw: str) -> None:
    once = normalize(raw)
    assert normalize(once) == once


@settings(max_examples=400, deadline=None)
@given(_text)
def test_normalize_is_idempotent(raw: str) -> None:
    once = normalize(raw)
    assert normalize(once) == once


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(TRICKY), min_size=300, max_size=600))
def test_normalize_is_idempotent_on_long_texts(raw: str) -> None:
    once = normalize(raw)
    assert normalize(once) == once


@settings(max_examples=200, deadline=None)
@given(_text)
def test_long_and_short_translation_paths_agree(raw: str) -> None:
    # Texts from 256 characters on take the numpy lookup table; it must equal str.translate.
    long = (raw + " ") * (1 + 256 // (len(raw) + 1))
    table = textlib._NORMALIZE.table
    assert textlib._NORMALIZE(long) == " ".join(long.translate(table).split())


@settings(max_examples=200, deadline=None)
@given(_text)
def test_normalize_output_has_single_ascii_spaces_only(raw: str) -> None:
    result = normalize(raw)
    assert result == result.strip()
    assert "  " not in result
    assert not any(char.isspace() and char != " " for char in result)


def _composing_seconds_everywhere() -> set[int]:
    return textlib._composing_seconds(((0, sys.maxunicode),))


def test_fast_tables_only_cover_characters_that_map_alone() -> None:
    # The fast path maps code point by code point; that is only right for characters
    # that never compose with a neighbour (checked against all of Unicode here, the
    # tables themselves look at their own blocks only) and are not reordered past a kept
    # mark. Each covered character must also map, in context, as the general way does.
    seconds = _composing_seconds_everywhere()
    slow = textlib._SLOW
    for lut, general in (
        (textlib._FAST_NORMALIZE, textlib._normalize_general),
        (textlib._FAST_MATCH, textlib._match_form_general),
    ):
        covered = np.flatnonzero(lut != slow)
        assert covered.size > 1000
        for code in covered.tolist():
            char = chr(code)
            forms = {
                char,
                unicodedata.normalize("NFKC", char),
                unicodedata.normalize("NFKC", char).casefold(),
                unicodedata.normalize("NFKD", char)[0],
            }
            assert not any(ord(form) in seconds for form in forms if len(form) == 1), hex(code)
            image = int(lut[code])
            if image != textlib._DELETED:
                assert not any(unicodedata.combining(form) for form in forms), hex(code)
            fast = textlib._fast_fold(f"b{char}c", lut)
            assert fast == general(f"b{char}c"), hex(code)
    for code in seconds:
        assert textlib._FAST_NORMALIZE[code] == slow
        assert textlib._FAST_MATCH[code] == slow


_FAST_CHARS = "".join(
    chr(code) for code in np.flatnonzero(textlib._FAST_NORMALIZE != textlib._SLOW)[:3000]
)
_mixed_text = st.text(alphabet=st.sampled_from(_FAST_CHARS) | st.sampled_from(TRICKY))


@settings(max_examples=400, deadline=None)
@given(_mixed_text)
def test_fast_path_equals_the_general_way(raw: str) -> None:
    fast = textlib._fast_fold(raw, textlib._FAST_NORMALIZE)
    assert fast is None or fast == textlib._normalize_general(raw)
    fast = textlib._fast_fold(raw, textlib._FAST_MATCH)
    assert fast is None or fast == textlib._match_form_general(raw)
    assert normalize(raw) == textlib._normalize_general(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "أَعْلَنَتِ الحُكُومَةُ",  # deleted marks (tashkeel) stay on the fast path
        "ﻻ ﷲ ﺑ",  # presentation forms: ligatures take the general way
        "Straße İstanbul ΣΑΣ",  # multi-character case folds take the general way
        "ا\u0654 و\u0654",  # hamza above composes with its letter
        "x\u00a0\u200by\u3000z",
        # Spaces and deleted marks at the edges and between words (the kernel keeps a
        # space only after a kept image that is not one, and takes a trailing one back).
        " ",
        "\u064b",
        "  a  ",
        " \u064b a \u064b ",
        "a\u064b \u064b  \u064bb",
        "a b ﻻ",
        "ﻻ a b",
    ],
)
def test_fast_and_general_ways_agree_on_edge_cases(raw: str) -> None:
    assert normalize(raw) == textlib._normalize_general(raw)
    assert textlib._match_form(raw) == textlib._match_form_general(raw)
    for lut in (textlib._FAST_NORMALIZE, textlib._FAST_MATCH):
        texts = [raw, "x y", raw, " ", raw]
        assert textlib._fast_fold_many(texts, lut) == [textlib._fast_fold(t, lut) for t in texts]


@settings(max_examples=200, deadline=None)
@given(st.lists(_mixed_text | st.sampled_from(["", " ", "\t", "ﻻ", "x\u00a0y"]), max_size=8))
def test_folding_many_texts_at_once_equals_one_at_a_time(texts: list[str]) -> None:
    # The batched kernel must reset its state between texts and skip only the slow ones.
    for lut in (textlib._FAST_NORMALIZE, textlib._FAST_MATCH):
        assert textlib._fast_fold_many(texts, lut) == [textlib._fast_fold(t, lut) for t in texts]
    assert textlib.normalize_many(texts) == [normalize(text) for text in texts]
    assert textlib._match_forms_and_masks(texts)[0] == [textlib._match_form(t) for t in texts]


_SPACELESS_SAMPLES = [
    "北京市政府周二宣布新的交通计划",
    "ｱｲｳｴｵ ｶｷｸｹｺ",  # halfwidth katakana: NFKC makes them katakana
    "รัฐบาลประกาศแผน",
    "أعلنت الحكومة",
    "",
    " ",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(_mixed_text | st.sampled_from(_SPACELESS_SAMPLES), max_size=8))
def test_normalizing_with_the_spaceless_flags_equals_asking_each_text(texts: list[str]) -> None:
    normalized, spaceless = textlib.normalize_many_spaceless(texts)
    assert normalized == textlib.normalize_many(texts)
    assert spaceless == [textlib.is_spaceless(text) for text in normalized]


# Every character str.splitlines splits at, runs of spaces and tabs, and text around them.
_LINE_BREAKS = [
    "\n",
    "\r",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
]
_LINE_PIECES = st.sampled_from([*_LINE_BREAKS, " ", "\t", "\u3000", "\xa0", "أعلنت", "ab", "Z"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_LINE_PIECES, max_size=12).map("".join))
def test_stripped_lines_are_those_of_splitlines(text: str) -> None:
    expected = [line for line in (raw.strip() for raw in text.splitlines()) if line]
    assert textlib._stripped_lines(text) == expected


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x700)) | _mixed_text)
def test_has_ascii_letter_is_the_regular_expression(text: str) -> None:
    assert textlib._has_ascii_letter(text) == (re.search("[A-Za-z]", text) is not None)


def test_the_line_breaks_beside_newline_are_those_of_splitlines() -> None:
    # Every code point that splitlines splits at but "\n" is in the list, and no other.
    breaks = {
        chr(code) for code in range(sys.maxunicode + 1) if len(f"a{chr(code)}b".splitlines()) == 2
    }
    assert breaks - {"\n"} == set(textlib._OTHER_LINE_BREAKS)


def test_the_spaceless_flags_are_read_for_fast_and_general_texts() -> None:
    # "々〆" take the fast way to code points above the first spaceless script, whose
    # ranges they are not in: they are scanned, and found not spaceless.
    texts = ["北京市政府周二宣布新的交通计划", "ｱｲｳｴｵｶｷｸｹｺ", "", "أعلنت الحكومة", "々〆 ab"]
    assert textlib._fast_fold(texts[-1], textlib._FAST_NORMALIZE) is not None
    assert textlib.normalize_many_spaceless(texts)[1] == [True, True, False, False, False]


def test_the_anchored_rules_prefilter_matches_where_any_of_its_rules_does() -> None:
    rules = [re.compile(r"^[\W_]*(?:read also|see also)"), re.compile(r"^[\W_]*tags\s*:")]
    any_rule = textlib._any_of(rules)
    for line in ("-- read also: x", "tags: a, b", "see also", "nothing here", "x tags:"):
        assert bool(any_rule(line)) == any(rule.match(line) for rule in rules)
    with pytest.raises(ValueError, match="group references"):
        textlib._any_of([re.compile(r"^(a)\1")])
    # Rules that do not all allow the same leading run are joined as they are.
    mixed = [re.compile(r"^tags\b"), re.compile(r"^[\W_]*see also")]
    for line in ("tags", "-- tags", "-- see also", "see also"):
        assert bool(textlib._any_of(mixed)(line)) == any(rule.match(line) for rule in mixed)


_MARKER_WORDS = ["read also", "tags", ":", "اقرا ايضا", "الوسوم", "©", "source", "المصدر", "x"]


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=" -—*|:.«»()_/#•", max_size=4),
    st.lists(st.sampled_from(_MARKER_WORDS), max_size=3),
    st.sampled_from(["", " ", ": ", "a b"]),
)
def test_the_classify_prefilter_matches_where_a_marker_or_anchored_rule_does(
    lead: str, words: list[str], tail: str
) -> None:
    # One call stands for three alternations in _classify, their leading run of non-word
    # characters matched once: it must match wherever one of the rules does.
    line = textlib._match_form(lead + " ".join(words) + tail)
    rules = [
        *(pattern for _name, pattern in textlib._TAIL_RULES),
        *(pattern for _name, pattern in textlib._LIST_RULES),
        *textlib._ANCHORED_LINE_RULES,
    ]
    any_rule = textlib._ANY_MARKER_OR_ANCHORED_RULE
    assert bool(any_rule(line)) == any(rule.match(line) for rule in rules)


def test_learnable_line_keys_are_the_keys_of_the_learnable_lines() -> None:
    text = "Skip to content\nالرياض - واس\n\n  الرياض - واس  \nﻻ ﷲ\n" + "كلمة " * 40
    lines = textlib.learnable_lines(text)
    assert lines == ["Skip to content", "الرياض - واس", "ﻻ ﷲ"]
    assert textlib.learnable_line_keys(text) == [textlib.line_key(line) for line in lines]


# --- scripts without spaces ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ("北京市政府周二宣布新的交通计划，预计明年完成。", True),
        ("東京都は火曜日に新しい交通計画を発表した。", True),
        ("รัฐบาลประกาศแผนการขนส่งใหม่ในวันอังคาร", True),
        ("苹果公司CEO Tim Cook周二在北京发表讲话，谈到了中国市场的重要性。", True),
        ("أعلنت الحكومة عن خطة جديدة للنقل العام", False),
        ("The government announced a new transport plan", False),
        ("정부는 화요일에 새로운 교통 계획을 발표했다", False),
        ("2025 — 100%", False),
        ("", False),
    ],
)
def test_is_spaceless(sample: str, expected: bool) -> None:
    assert is_spaceless(sample) is expected
    assert is_spaceless(normalize(sample)) is expected


# --- cleaning rules compiled without IGNORECASE ----------------------------------------------

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _rule_pairs() -> list[tuple[re.Pattern[str], re.Pattern[str]]]:
    """Each cleaning rule the old way (IGNORECASE over the folded pattern) and as compiled."""
    patterns = [
        *(pattern for _name, pattern in textlib.TAIL_MARKERS),
        *(pattern for _name, pattern in textlib.LIST_MARKERS),
        *(pattern for _name, _chars, pattern in textlib.LINE_RULES),
    ]
    return [
        (
            re.compile(pattern.translate(textlib._MATCH.table), re.IGNORECASE),
            textlib._fold_pattern(pattern),
        )
        for pattern in patterns
    ]


_RULE_PAIRS = _rule_pairs()


def _assert_rules_agree(line: str) -> None:
    folded = textlib._match_form(line)
    for ignoring_case, compiled in _RULE_PAIRS:
        old, new = ignoring_case.match(folded), compiled.match(folded)
        assert (old and old.span()) == (new and new.span()), (compiled.pattern, line)
        old, new = ignoring_case.search(folded), compiled.search(folded)
        assert (old and old.span()) == (new and new.span()), (compiled.pattern, line)
    # The literal prefilter never skips a rule that matches.
    probe = folded.replace("ı", "i")
    for _name, _chars, matches, literals in textlib._LINE_RULES:
        if literals is not None and matches(folded):
            assert any(literal in probe for literal in literals), (literals, line)
    _assert_masks_agree([folded])


def _assert_masks_agree(folded: list[str]) -> None:
    """The automaton's rule bits are those of a substring search for every literal."""
    expected = [
        sum(
            1 << bit
            for bit, (_name, _chars, _matches, literals) in enumerate(textlib._LINE_RULES)
            if literals is not None
            and any(literal in form.replace("ı", "i") for literal in literals)
        )
        for form in folded
    ]
    assert textlib._literal_masks(folded) == expected, folded


def test_most_unanchored_line_rules_have_a_literal_prefilter() -> None:
    unanchored = [rule for rule in textlib.LINE_RULES if not rule[2].startswith("^")]
    with_literals = [rule for rule in textlib._LINE_RULES if rule[3] is not None]
    assert len(with_literals) >= len(unanchored) - 1
    # Every rule is tried through its literals, its anchor, or on every line.
    for bit, ((_name, _chars, pattern), rule) in enumerate(
        zip(textlib.LINE_RULES, textlib._LINE_RULES, strict=True)
    ):
        anchored = bool(textlib._ANCHORED_BITS >> bit & 1)
        always = bool(textlib._ALWAYS_BITS >> bit & 1)
        assert anchored == pattern.startswith("^")
        assert always == (rule[3] is None and not anchored)
    assert textlib._required_literals("(?:do|does) not (?:a|b)") == (" not ",)
    assert textlib._required_literals("ab|c(?:de|fg)h") == ("ab", "de", "fg")
    assert textlib._required_literals("(?:x|)y") == ("y",)
    assert textlib._required_literals(r"\d+") is None


def _case_variants(word: str) -> list[str]:
    """``word`` with every letter that IGNORECASE matches in other forms put in them."""
    variants = {word, word.upper(), word.title()}
    for plain, others in (("i", "Iİı"), ("s", "Sſ"), ("k", "KK")):
        variants |= {word.replace(plain, other) for other in others}
    return sorted(variants)


_RULE_WORDS = sorted(
    {
        variant
        for _old, compiled in _RULE_PAIRS
        for word in re.findall(r"[^\W\d_]+", compiled.pattern.replace("[iı]", "i"))
        for variant in _case_variants(word)
    }
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(_RULE_WORDS) | st.sampled_from([" ", ": ", "© ", "*", "@", "12345"]),
        max_size=12,
    ).map(" ".join)
)
def test_rules_without_ignorecase_agree_on_case_variants(line: str) -> None:
    _assert_rules_agree(line)


@pytest.mark.parametrize("name", ["saudinewsnet", "ant_multisource"])
def test_rules_without_ignorecase_agree_on_real_lines(name: str) -> None:
    import gzip
    import json

    path = DATA / name / "articles.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the data sets live beside the repository")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, record_line in enumerate(lines):
            if number >= 1500:
                break
            record = json.loads(record_line)
            text = record.get("content") or record.get("text") or ""
            for line in text.splitlines():
                if line.strip():
                    _assert_rules_agree(line.strip()[:600])


_LITERALS = sorted(
    {literal for _n, _c, _m, literals in textlib._LINE_RULES for literal in literals or ()}
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from(_LITERALS)
            | st.sampled_from([literal[1:] for literal in _LITERALS if len(literal) > 1])
            | st.sampled_from([literal[:-1] for literal in _LITERALS if len(literal) > 1])
            | st.text(alphabet="ıi aب\u0301\U0001f600", max_size=3),
            max_size=6,
        ).map("".join),
        max_size=5,
    )
)
def test_the_literal_automaton_finds_what_substring_search_finds(folded: list[str]) -> None:
    # Literals, their prefixes and suffixes run together (overlaps, a literal inside
    # another), ı for i, characters outside the automaton's table and past it.
    _assert_masks_agree(folded)


def test_a_line_the_fast_fold_cannot_take_gets_its_rules_too() -> None:
    # U+0301 composes with the letter before it: such a line takes the general way.
    lines = ["Cafe\u0301 - all rights reserved", "للتواصل مع الكاتب", "All rights reserved"]
    assert textlib._fold_many_units(lines, textlib._FAST_MATCH)[0][0] is None
    folded, masks, _letters = textlib._match_forms_and_masks(lines)
    assert folded == [textlib._match_form(line) for line in lines]
    assert masks == textlib._literal_masks(folded)
    assert masks[0] == masks[2] != 0


def test_the_scan_of_match_forms_sees_every_ascii_letter() -> None:
    arabic = "قال المتحدث الرسمي"
    assert textlib._match_forms_and_masks([arabic, "١٢ - ٣"])[2] == [False, False]
    # A letter that composition folds into another, on the general way.
    assert textlib._match_forms_and_masks([arabic, "e\u0301"])[2] == [False, True]
    assert textlib._match_forms_and_masks([arabic, "BBC"])[2] == [False, True]
    # A line past the longest rule is scanned only in its probe; cleaning looks further.
    wall = "We use cookies to improve your experience."
    long_line = f"{arabic} " * 50 + wall
    assert textlib._match_forms_and_masks([textlib._probe(long_line)])[2] == [False]
    assert clean(f"{arabic}.\n{long_line}").removed == (wall,)


def test_latin_and_arabic_rules_apply_in_one_text() -> None:
    prose = "قال المتحدث الرسمي إن الأمطار الغزيرة أغرقت المحافظة الشمالية يوم الثلاثاء."
    contact = "للتواصل مع الكاتب عبر البريد"
    assert clean(f"{prose}\n{contact}").removed == (contact,)
    rights = "© 2015 All rights reserved"
    assert clean(f"{prose}\n{contact}\n{rights}").removed == (contact, rights)


def test_every_digit_character_passes_the_date_line_prefilter() -> None:
    # The prefilter may pass more than digits, never fewer: a token that str.isdigit
    # accepts is what makes a date line.
    missed = [
        hex(point)
        for point in range(sys.maxunicode + 1)
        if chr(point).isdigit() and not textlib._MAYBE_DIGIT_RE.search(chr(point))
    ]
    assert missed == []
    assert not textlib._MAYBE_DIGIT_RE.search("الاثنين ابريل")
    assert textlib._is_date_line("الاثنين 12 ابريل 2015", "الاثنين 12 ابريل 2015")


def test_the_date_line_prefilter_is_the_alternation_it_replaced() -> None:
    # One character class with the decimal digits of Latin and Arabic written out, equal
    # to "a decimal digit, a superscript 1-3, or anything outside Latin and Arabic".
    replaced = re.compile(r"[\d\u00b2\u00b3\u00b9]|[^\u0000-\u024f\u0600-\u06ff]")
    differ = [
        hex(point)
        for point in range(sys.maxunicode + 1)
        if bool(replaced.search(chr(point))) != bool(textlib._MAYBE_DIGIT_RE.search(chr(point)))
    ]
    assert differ == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?؟…:؛\"'”’»)]\n(")), max_size=12))
def test_a_sentence_end_is_read_as_the_regex_read_it(line: str) -> None:
    regex = re.compile(r"[.!?؟…:؛][\"'”’»)\]]*$")
    assert textlib._ends_a_sentence(line) == bool(regex.search(line))


def test_a_line_of_two_or_more_share_words_is_navigation() -> None:
    def reason(line: str) -> str | None:
        return textlib._line_reason(line, textlib._match_form(line), ())

    assert reason("Facebook  Twitter WhatsApp") == "navigation"
    assert reason("Facebook Email") == "navigation"
    assert reason("Facebook") is None  # one word alone
    assert reason("Facebook قال المتحدث") is None  # the first word only
    assert reason("قال Facebook Twitter") is None


def test_a_dotless_i_still_matches_the_rules_i() -> None:
    # IGNORECASE let "ı" match "i"; the rules keep doing so, prefilter included.
    line = "Clıck here for the full story"
    assert textlib._line_reason(line, textlib._match_form(line), ()) == "navigation"
    sms = "SMS 123456 Zaın"
    assert textlib._line_reason(sms, textlib._match_form(sms), ()) == "contact"
    prose = "Heavy rain flooded the northern province on Tuesday, officials said."
    assert clean(f"{prose}\n{line}").removed == (line,)


@pytest.mark.parametrize(
    "text",
    [
        "Skip to content\n\nالرياض – واس\n\nA first paragraph of the story, long enough to be "
        "prose and to be kept by every rule.\n\nShare on Facebook\n\nالرياض – واس\n\n"
        "Related articles:\nOne headline\nAnother headline",
        "<html><body><h1>Title</h1><p>Short line</p><p>Short line</p>"
        "<p>A paragraph of the story that is long enough to be prose.</p></body></html>",
        "   \n\n  ",
        "x" * 300 + "\n" + "Follow us on Twitter\n" + "y" * 90,
    ],
)
def test_split_lines_serves_clean_and_learnable_keys_alike(text: str) -> None:
    # The engine splits a text once for its learnable keys and for cleaning.
    lines = textlib.split_lines(text)
    assert textlib.learnable_keys_of(lines) == textlib.learnable_line_keys(text)
    keys = textlib.learnable_line_keys(text)
    for learned in ((), keys[:1], keys):
        assert textlib.clean_lines(lines, learned=learned) == textlib.clean(text, learned=learned)


def test_the_cached_tables_are_the_built_ones(tmp_path: Path) -> None:
    built = textlib._build_tables()
    # What this import of the module holds (loaded from the cache, or built and cached).
    held = (
        textlib._NORMALIZE.lut,
        textlib._MATCH.lut,
        textlib._FAST_NORMALIZE,
        textlib._FAST_MATCH,
    )
    for table, expected in zip(held, built, strict=True):
        assert np.array_equal(table, expected)
    normalize, match = textlib._build_translations()
    assert list(textlib._NORMALIZE.table.items()) == list(normalize.table.items())
    assert list(textlib._MATCH.table.items()) == list(match.table.items())
    # A round trip through a cache file.
    path = tmp_path / "__pycache__" / "text-tables.test.npz"
    stale = tmp_path / "__pycache__" / "text-tables.older.npz"
    stale.parent.mkdir()
    stale.write_bytes(b"an earlier version's tables")
    textlib._save_tables(path, built)
    assert not stale.exists()
    loaded = textlib._load_tables(path)
    assert loaded is not None
    for table, expected in zip(loaded, built, strict=True):
        assert table.dtype == np.uint32 and np.array_equal(table, expected)
    # A file cut short or not a cache is not used; a place that cannot be written is
    # left alone.
    path.write_bytes(path.read_bytes()[:1000])
    assert textlib._load_tables(path) is None
    path.write_bytes(b"not a table")
    assert textlib._load_tables(path) is None
    assert textlib._load_tables(tmp_path / "missing.npz") is None
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    textlib._save_tables(blocker / "text-tables.x.npz", built)  # its parent is a file
    assert blocker.read_text() == ""


def test_translations_equal_a_scan_of_every_code_point() -> None:
    # The build looks only at some code points (see _SCANNED_RANGES and _candidates);
    # the same build over all of Unicode must give the same tables, in the same order.
    scanned = textlib._build_translations(range(sys.maxunicode + 1))
    built = textlib._build_translations()
    for full, filtered in zip(scanned, built, strict=True):
        assert list(filtered.table.items()) == list(full.table.items())
        assert np.array_equal(filtered.lut, full.lut)
    for translation in built:
        expected = np.arange(sys.maxunicode + 1, dtype=np.uint32)
        for code, replacement in translation.table.items():
            expected[code] = textlib._DELETED if replacement is None else ord(replacement)
        assert np.array_equal(translation.lut, expected)
    # Sanity: the tables map something of every kind (a fold, a deletion, a digit, a space).
    normalize = built[0].table
    assert normalize[ord("أ")] == "ا" and normalize[0x064B] is None
    assert normalize[ord("٣")] == "3" and normalize[0x00A0] == " "


def test_a_batch_is_cleaned_as_each_text_alone() -> None:
    texts = [
        "Heavy rain flooded the northern province on Tuesday, officials said.\nShare\nTweet",
        "قال المتحدث الرسمي إن الأمطار الغزيرة أغرقت المحافظة الشمالية.\nللتواصل مع الكاتب",
        "<html><body><p>An HTML page with one paragraph of news about the floods.</p>"
        "<p>All rights reserved</p></body></html>",
        "   \n\n  ",
        "Cafe\u0301 owners said the storm was the worst in years.\nRead more: other story",
        "One line only",
    ]
    learned = [set(), {textlib.line_key("للتواصل مع الكاتب")}, (), frozenset(), [], set()]
    splits = textlib.split_lines_many(texts)
    assert splits == [textlib.split_lines(text) for text in texts]
    assert textlib.clean_lines_many(splits, learned) == [
        textlib.clean_lines(split, learned=keys)
        for split, keys in zip(splits, learned, strict=True)
    ]
    assert textlib.clean_lines_many([], []) == []
    with pytest.raises(ValueError, match="learned key sets"):
        textlib.clean_lines_many(splits, [])
    assert textlib.normalize_many(texts) == [normalize(text) for text in texts]


_RULE_LITERALS = sorted(
    {
        literal
        for _name, _chars, _matches, literals in textlib._LINE_RULES
        if literals is not None
        for literal in literals
    }
)
_line_with_literals = st.lists(
    st.sampled_from(_RULE_LITERALS) | _mixed_text | st.sampled_from(["", "ﻻ", "BBC", "x"]),
    max_size=4,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line_with_literals, max_size=12))
def test_scanning_many_lines_at_once_equals_one_at_a_time(lines: list[str]) -> None:
    # The kernel steps two lanes of lines together and finishes the longer alone; lines
    # the fast fold cannot take (-1 ends) take no room. Each line's bits and letter flag
    # must be those it gets on its own, and the bits those of a substring search.
    folded, masks, letters = textlib._match_forms_and_masks(lines)
    alone = [textlib._match_forms_and_masks([line]) for line in lines]
    assert folded == [one[0][0] for one in alone]
    assert masks == [one[1][0] for one in alone]
    assert letters == [one[2][0] for one in alone]
    assert textlib._literal_masks(folded) == masks
    _assert_masks_agree(folded)
