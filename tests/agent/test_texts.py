"""What the agent says: amounts in sats, an invoice alone on its line, short lines."""

from bot.agent import texts
from storage import Reason


def test_sats() -> None:
    assert texts.sats(0) == "0 sats"
    assert texts.sats(1000) == "1 sat"
    assert texts.sats(21_000) == "21 sats"
    assert texts.sats(5_510) == "5.51 sats"
    assert texts.sats(260) == "0.26 sats"
    assert texts.sats(1_001) == "1.001 sats"


def test_a_quote_puts_the_invoice_alone_on_its_line_and_says_why() -> None:
    terms = texts.QuoteTerms(14_710, 12_000, Reason.ALLOWANCE_SHORT)
    text = texts.quote(terms, 3_000, "lnbcrt30n1xyz", 600, paused=False)
    lines = text.splitlines()
    assert "lnbcrt30n1xyz" in lines
    assert lines[0] == "This answer costs at most 3 sats (the pool pays 12 sats of 14.71 sats)."
    assert "you used today's free allowance" in text and "10 min" in text
    assert "free answers are paused" in texts.quote(terms, 3_000, "ln", 600, paused=True)
    assert all(len(line) <= 80 for line in lines if line != "lnbcrt30n1xyz")


def test_refund_notes_name_what_to_invoice() -> None:
    assert "invoice for 5 sats" in texts.refund_note(5_510, None)
    assert "0.51 sats go to your balance" in texts.refund_note(5_510, None)
    assert "invoice for 5 sats" in texts.refund_note(5_000, None)
    assert "balance" in texts.refund_note(260, None) and "invoice" not in texts.refund_note(
        260, None)
    assert "on its way to me@example.org" in texts.refund_note(5_000, "me@example.org")
