"""Interface language: Flask-Babel with catalogs in ui/translations.

The reader's choice (a link, kept in a cookie) wins over the browser's Accept-Language,
which wins over the box's default.
"""
from __future__ import annotations

from flask import Flask, current_app, request
from flask_babel import Babel, format_decimal, format_number, get_translations
from jinja2 import pass_context

from appliance.langnames import language_name
from appliance.settings import Settings
from ui import UI_DIR

LANGUAGES = {"vi": "Tiếng Việt", "en": "English", "fr": "Français", "ar": "العربية"}
RTL = {"ar", "he", "fa", "ur"}
COOKIE = "lang"


def select_locale() -> str:
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    best = request.accept_languages.best_match(list(LANGUAGES))
    return best or current_app.config["BABEL_DEFAULT_LOCALE"]


def init_i18n(app: Flask, settings: Settings) -> None:
    init_translations(app, settings.default_locale, select_locale)

    @app.context_processor
    def language_context():
        return {**_language_context(settings.default_locale), "box_name": settings.box_name}


def init_hub_i18n(app: Flask) -> None:
    """The hub's pages, in the language central staff's browsers ask for (English otherwise)."""
    init_translations(app, "en", lambda: request.accept_languages.best_match(list(LANGUAGES)) or "en")
    app.context_processor(lambda: _language_context("en"))


def init_translations(app: Flask, default_locale: str, locale_selector) -> None:
    """Flask-Babel over ui/translations, and the templates' gettext callables and filters."""

    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(UI_DIR / "translations")
    app.config["BABEL_DEFAULT_LOCALE"] = default_locale
    Babel(app, locale_selector=locale_selector)
    # The templates' _() and ngettext() take the page's translations from its context, looked up
    # once per page: Flask-Babel's own callables look them up again for each string (a tenth of a
    # search page's time went there).
    app.jinja_env.install_gettext_callables(
        gettext=pass_context(lambda ctx, s: _page_translations(ctx).ugettext(s)),
        ngettext=pass_context(lambda ctx, s, p, n: _page_translations(ctx).ungettext(s, p, n)),
        pgettext=pass_context(lambda ctx, c, s: _page_translations(ctx).upgettext(c, s)),
        npgettext=pass_context(lambda ctx, c, s, p, n: _page_translations(ctx).unpgettext(c, s, p, n)),
        newstyle=True,
    )

    app.jinja_env.filters["number"] = format_count
    # A kept message (appliance/messages.py) in the page's language.
    app.jinja_env.filters["said"] = pass_context(
        lambda ctx, m: m.translated(_page_translations(ctx), isolate=ctx.get("ui_dir") == "rtl"))
    app.jinja_env.filters["tenths"] = lambda x: format_decimal(x, format="#,##0.0")


def _language_context(default_locale: str) -> dict:
    from flask_babel import get_locale

    locale = str(get_locale() or default_locale)
    return {
        "ui_translations": get_translations(),
        "language_name": language_name,
        "ui_lang": locale,
        "ui_dir": "rtl" if locale in RTL else "ltr",
        "ui_languages": LANGUAGES,
    }


def in_page_language(message) -> str:
    """A kept message (appliance/messages.py) in the language of the page being made."""
    from flask_babel import get_locale

    return message.translated(get_translations(), isolate=str(get_locale()) in RTL)


def format_count(n: int) -> str:
    """A count as the page's language writes it: 22.603 in Vietnamese, 22 603 in French (digits
    are Latin in every language; below a thousand nothing differs, and search pages print a dozen
    counts)."""
    return str(n) if -1000 < n < 1000 else format_number(n)


def _page_translations(ctx):
    """The translations the page's context holds (templates imported without context have none)."""
    return ctx.get("ui_translations") or get_translations()
