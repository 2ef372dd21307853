"""Action and callback ids shared by the cards and the handlers that answer them, so the two cannot drift."""

RESEND = "payment_resend"
EDIT = "payment_edit"
ESCALATE = "payment_escalate"
MATCH = "payment_match"
EDIT_MODAL = "payment_edit_modal"
MATCH_MODAL = "payment_match_modal"

STAFF_ACTIONS = (RESEND, EDIT, ESCALATE, MATCH)
