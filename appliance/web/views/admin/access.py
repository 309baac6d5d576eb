"""The librarian's pages under /admin: login, setup, and the guard every admin page goes through.

Every page except login and setup needs a session: a random token in the ``library_admin`` cookie
(HttpOnly, SameSite=Strict, path /admin, Secure when the request came over https) whose hash is
looked up in ``admin_sessions``. Every form carries a CSRF token: an HMAC, with the app's secret
key, of the session token (or, before login, of a random ``library_admin_form`` cookie); a POST
without the right token gets a 400. Wrong passwords and setup codes are counted per client
address in memory (appliance/web/ratelimit.py): the sixth within a minute gets a 429.

The pages themselves live in admin_books.py, admin_system.py and admin_accounts.py, on this
module's blueprint.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.exceptions import RequestEntityTooLarge

from appliance.search import upkeep as indexing
from appliance.storage import accounts as auth
from appliance.storage import catalog
from appliance.storage.accounts import SESSION_COOKIE
from appliance.web.context import get_db, library_state, services
from appliance.web.i18n import in_page_language
from appliance.web.ratelimit import FailureLimiter

bp = Blueprint("admin", __name__, url_prefix="/admin")

FORM_COOKIE = "library_admin_form"
COOKIE_PATH = "/admin"
PUBLIC_ENDPOINTS = {"admin.login", "admin.setup"}
CSRF_FIELD = "csrf_token"


def limiter() -> FailureLimiter:
    return services().limiter


def client_address() -> str:
    """The address the request came from (the box has no proxy in front; headers are not trusted)."""
    return request.remote_addr or ""


# --- CSRF -------------------------------------------------------------------------------------


def _csrf_for(binding: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode("utf-8")
    return hmac.new(key, b"csrf|" + binding.encode("utf-8"), hashlib.sha256).hexdigest()


def _binding() -> str | None:
    if g.get("admin_token"):
        return "session:" + g.admin_token
    form_cookie = request.cookies.get(FORM_COOKIE) or g.get("new_form_cookie")
    return "form:" + form_cookie if form_cookie else None


def csrf_token() -> str:
    """The token for forms on this page (made, with its cookie, when the browser has none yet)."""
    binding = _binding()
    if binding is None:
        g.new_form_cookie = secrets.token_urlsafe(24)
        binding = "form:" + g.new_form_cookie
    return _csrf_for(binding)


def too_large_message() -> str:
    limit = library_state().settings.upload_max_mb
    return _("This upload is too big: at most %(mb)d MB can be sent at once. Send fewer files at a time, "
             "or copy big books onto the box and use `library import`.", mb=limit)


def check_csrf() -> None:
    try:
        sent = request.form.get(CSRF_FIELD, "")
    except RequestEntityTooLarge:  # a body without a length, found too big while reading it
        abort(413, too_large_message())
    binding = _binding()
    if not sent or binding is None or not hmac.compare_digest(sent, _csrf_for(binding)):
        abort(400, _("This form has expired or did not come from this library's own page. "
                     "Go back, reload the page and send it again."))


def account_message(error: auth.AccountError) -> str:
    """An account error's message in the librarian's language (auth.py keeps it in English for the
    command line)."""
    return in_page_language(error.message)


@bp.app_template_global("admin_csrf_token")
def _template_csrf_token() -> str:
    return csrf_token()


# --- sessions ---------------------------------------------------------------------------------


def _set_cookie(response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure)


def _clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure)


def log_in(admin: auth.Admin, target: str) -> Response:
    token = auth.start_session(get_db(), admin.id)
    response = redirect(target, code=303)
    _set_cookie(response, SESSION_COOKIE, token)
    _clear_cookie(response, FORM_COOKIE)
    return response


def safe_next(raw: str | None) -> str:
    """Where to go after login: only a path under /admin on this box."""
    default = url_for("admin.dashboard")
    if not raw or len(raw) > 500 or "\\" in raw or any(ord(c) < 32 for c in raw):
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin") or raw.startswith("//"):
        return default
    return raw


@bp.before_request
def guard():
    token = request.cookies.get(SESSION_COOKIE)
    g.admin = auth.session_admin(get_db(), token) if token else None
    g.admin_token = token if g.admin else None
    if g.admin is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("admin.login", next=request.full_path.rstrip("?")), code=303)
        abort(403, _("Log in as a librarian first."))
    if request.method == "POST":
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit and (request.content_length or 0) > limit:
            abort(413, too_large_message())
        check_csrf()
    return None


@bp.after_request
def after(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    if g.get("new_form_cookie"):
        _set_cookie(response, FORM_COOKIE, g.new_form_cookie)
    if request.cookies.get(SESSION_COOKIE) and g.get("admin") is None and request.endpoint != "admin.logout":
        _clear_cookie(response, SESSION_COOKIE)  # an ended or expired session
    return response


def too_many_attempts(template: str, **context) -> tuple[str, int, dict]:
    wait = max(1, int(limiter().wait_seconds(client_address()) + 0.999))
    message = ngettext("Too many wrong attempts from this device. Wait %(num)d second and try again.",
                       "Too many wrong attempts from this device. Wait %(num)d seconds and try again.", wait)
    return render_template(template, error=message, **context), 429, {"Retry-After": str(wait)}


def index_state_text() -> str:
    """The search index's state (unknown, current, rebuilding or failed) in the librarian's language."""
    state = services().jobs.index_state()
    words = {"unknown": _("unknown"), "current": _("current"), "rebuilding": _("rebuilding"), "failed": _("failed")}
    return words.get(state, state)


@bp.route("/login", methods=["GET", "POST"])
def login():
    db = get_db()
    target = safe_next(request.values.get("next"))
    if auth.admin_count(db) == 0:
        return redirect(url_for("admin.setup"), code=303)
    if g.admin is not None:
        return redirect(target, code=303)
    username = request.form.get("username", "")
    if request.method == "POST":
        if limiter().wait_seconds(client_address()):
            return too_many_attempts("admin/login.html", username=username, next=target)
        admin = auth.authenticate(db, username, request.form.get("password", ""))
        if admin is None:
            limiter().failed(client_address())
            return render_template("admin/login.html", error=_("Wrong account name or password."),
                                   username=username, next=target), 403
        limiter().succeeded(client_address())
        return log_in(admin, target)
    return render_template("admin/login.html", error=None, username="", next=target)


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Make the first librarian account with the setup code shown on the box's console."""
    db = get_db()
    if auth.admin_count(db):
        return redirect(url_for("admin.login"), code=303)
    active = auth.setup_code_active(db)
    username = request.form.get("username", "")
    if request.method == "POST" and active:
        if limiter().wait_seconds(client_address()):
            return too_many_attempts("admin/setup.html", active=active, username=username)
        password = request.form.get("password", "")
        try:
            auth.check_new_password(password, request.form.get("password2", ""))
            admin = auth.create_first_admin(library_state().settings, db, request.form.get("code", ""),
                                            username, password)
        except auth.SetupCodeWrong as e:
            limiter().failed(client_address())
            return render_template("admin/setup.html", active=active, username=username,
                                   error=account_message(e)), 403
        except auth.SetupClosed:
            return redirect(url_for("admin.login"), code=303)
        except auth.AccountError as e:
            return render_template("admin/setup.html", active=active, username=username,
                                   error=account_message(e)), 400
        limiter().succeeded(client_address())
        flash(_("Welcome, %(name)s. Your librarian account is ready.", name=admin.username))
        return log_in(admin, url_for("admin.dashboard"))
    return render_template("admin/setup.html", active=active, username=username, error=None)


@bp.post("/logout")
def logout():
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        auth.end_session(get_db(), token)
    response = redirect(url_for("admin.login"), code=303)
    _clear_cookie(response, SESSION_COOKIE)
    return response


@bp.get("/")
def dashboard():
    db = get_db()
    counts = db.execute(
        "SELECT count(*), coalesce(sum(hidden), 0) FROM books").fetchone()
    return render_template(
        "admin/dashboard.html",
        books=counts[0], hidden=counts[1],
        quarantined=catalog.count_quarantined(db),
        pending_index=indexing.pending_count(db),
        index_state=index_state_text(),
    )


