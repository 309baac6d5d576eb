"""Librarian accounts: add, change a password, remove (never the last one)."""
from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from appliance.messages import N_
from appliance.storage import accounts as auth
from appliance.web.context import get_db
from appliance.web.views.admin.access import (
    SESSION_COOKIE,
    _clear_cookie,
    account_message,
    bp,
    client_address,
    limiter,
    too_many_attempts,
)


def _page(error: str | None = None, status: int = 200, username: str = ""):
    return render_template("admin/accounts.html", accounts=auth.list_admins(get_db()), error=error,
                           username=username), status


@bp.get("/accounts")
def accounts():
    return _page()


@bp.post("/accounts")
def add_account():
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    try:
        auth.check_new_password(password, request.form.get("password2", ""))
        admin = auth.create_admin(get_db(), username, password)
    except auth.AccountError as e:
        return _page(account_message(e), 400, username)
    flash(_("The account %(name)s is added.", name=admin.username))
    return redirect(url_for("admin.accounts"), code=303)


def _account(admin_id: int) -> auth.Admin:
    admin = auth.get_admin(get_db(), admin_id)
    if admin is None:
        abort(404)
    return admin


@bp.post("/accounts/<int:admin_id>/password")
def change_password(admin_id: int):
    admin = _account(admin_id)
    password = request.form.get("password", "")
    own = admin.id == g.admin.id
    if own and limiter().wait_seconds(client_address()):
        return too_many_attempts("admin/accounts.html", accounts=auth.list_admins(get_db()), username="")
    try:
        if own and auth.authenticate(get_db(), admin.username, request.form.get("current", "")) is None:
            limiter().failed(client_address())
            raise auth.AccountError(N_("Your current password is not right."))
        auth.check_new_password(password, request.form.get("password2", ""))
        auth.set_password(get_db(), admin.id, password, keep_session=g.admin_token if own else None)
    except auth.AccountError as e:
        return _page(account_message(e), 400)
    flash(_("The password of %(name)s is changed; its other sessions are logged out.", name=admin.username))
    return redirect(url_for("admin.accounts"), code=303)


@bp.route("/accounts/<int:admin_id>/remove", methods=["GET", "POST"])
def remove_account(admin_id: int):
    admin = _account(admin_id)
    if request.method == "GET":
        return render_template("admin/account_remove.html", account=admin,
                               last=auth.admin_count(get_db()) <= 1)
    try:
        auth.delete_admin(get_db(), admin.id)
    except auth.AccountError as e:
        return _page(account_message(e), 400)
    if admin.id == g.admin.id:
        response = redirect(url_for("admin.login"), code=303)
        _clear_cookie(response, SESSION_COOKIE)
        return response
    flash(_("The account %(name)s is removed.", name=admin.username))
    return redirect(url_for("admin.accounts"), code=303)
