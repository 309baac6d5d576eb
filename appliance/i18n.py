"""Interface language: Flask-Babel with catalogs in ui/translations.

The reader's choice (a link, kept in a cookie) wins over the browser's Accept-Language,
which wins over the box's default.
"""
from __future__ import annotations

from flask import Flask, request
from flask_babel import Babel, format_number, get_translations
from jinja2 import pass_context

from .langnames import language_name
from .settings import Settings

LANGUAGES = {"vi": "Tiếng Việt", "en": "English", "fr": "Français", "ar": "العربية"}
RTL = {"ar", "he", "fa", "ur"}
COOKIE = "lang"


def select_locale() -> str:
    from flask import current_app

    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    best = request.accept_languages.best_match(list(LANGUAGES))
    return best or current_app.extensions["library"].settings.default_locale


def init_i18n(app: Flask, settings: Settings) -> None:
    from .app import UI_DIR

    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(UI_DIR / "translations")
    app.config["BABEL_DEFAULT_LOCALE"] = settings.default_locale
    Babel(app, locale_selector=select_locale)
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

    @app.context_processor
    def language_context():
        from flask_babel import get_locale

        locale = str(get_locale() or settings.default_locale)
        return {
            "ui_translations": get_translations(),
            "language_name": language_name,
            "ui_lang": locale,
            "ui_dir": "rtl" if locale in RTL else "ltr",
            "ui_languages": LANGUAGES,
            "box_name": settings.box_name,
        }


def format_count(n: int) -> str:
    """A count as the page's language writes it: 22.603 in Vietnamese, 22 603 in French (digits
    are Latin in every language; below a thousand nothing differs, and search pages print a dozen
    counts)."""
    return str(n) if -1000 < n < 1000 else format_number(n)


def _page_translations(ctx):
    """The translations the page's context holds (templates imported without context have none)."""
    return ctx.get("ui_translations") or get_translations()
