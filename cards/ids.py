"""Action and callback ids shared by the cards and the handlers that answer them, so the two cannot drift."""

RESEND = "payment_resend"
EDIT = "payment_edit"
ESCALATE = "payment_escalate"
MATCH = "payment_match"
EDIT_MODAL = "payment_edit_modal"
MATCH_MODAL = "payment_match_modal"
ACKNOWLEDGE = "escalation_acknowledge"

STAFF_ACTIONS = (RESEND, EDIT, ESCALATE, MATCH)

# Inputs inside the modals: (block_id, action_id) pairs read back from `view.state.values`.
EDIT_TEXT = ("edit_text", "text")
MATCH_PICK = ("match_pick", "invoice")
MATCH_NUMBER = ("match_number", "number")

ACTIVITY_BLOCK = "paybot_activity"  # the context block listing what staff did on a card

CANCEL = "payment_cancel"  # Teams: leave an Edit/Match form card, back to the card as it stands
