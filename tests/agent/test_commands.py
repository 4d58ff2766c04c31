"""DM commands: every command, its bad arguments, and admin commands for admins only."""

import pytest

from bot.agent import commands as c


@pytest.mark.parametrize(("text", "expected"), [
    ("why is the sky blue?", c.Question("why is the sky blue?")),
    ("  help ", c.Help()),
    ("HELP", c.Help()),
    ("/balance", c.Balance()),
    ("pool", c.Pool()),
    ("status", c.Status()),
    ("estimate why is the sky blue?", c.Estimate("why is the sky blue?")),
    ("topup 21", c.Topup(21)),
    ("refund", c.Refund(None)),
    ("refund lnbcrt10n1xyz", c.Refund("lnbcrt10n1xyz")),
    ("helpful robots?", c.Question("helpful robots?")),
    ("admin pause", c.Question("admin pause")),  # not an admin: a question like any other
])
def test_parse(text: str, expected: c.Command) -> None:
    assert c.parse(text) == expected


@pytest.mark.parametrize("text", [
    "", "   ", "help me", "estimate", "topup", "topup 0", "topup -5", "topup 1.5",
    "topup 99999999999", "topup ２１", "refund a b", "refund notaninvoice", "balance now",
])
def test_bad_arguments_are_invalid(text: str) -> None:
    assert isinstance(c.parse(text), c.Invalid)


@pytest.mark.parametrize(("text", "expected"), [
    ("admin pool", c.AdminStatus("pool")),
    ("admin limits", c.AdminStatus("limits")),
    ("admin pause", c.AdminPause(True)),
    ("admin resume", c.AdminPause(False)),
    ("admin limit daily_free_jobs 3", c.AdminLimit("daily_free_jobs", 3)),
    ("admin limit pool_daily_cap_msat none", c.AdminLimit("pool_daily_cap_msat", None)),
    ("admin credit 1000", c.AdminCredit(1000)),
])
def test_admin(text: str, expected: c.Command) -> None:
    assert c.parse(text, is_admin=True) == expected


@pytest.mark.parametrize("text", [
    "admin", "admin nap", "admin limit nope 3", "admin limit daily_free_jobs x",
    "admin limit daily_free_jobs none", "admin credit 0", "admin credit", "admin pool now",
])
def test_admin_bad_arguments(text: str) -> None:
    assert isinstance(c.parse(text, is_admin=True), c.Invalid)
