"""What finance staff can do from chat, as plain services: Slack's handler (and later Teams') only translates.

    access      who counts as finance staff (user ids and a user group)
    targets     resolving "INV-1042", "n17", "p5" to a payment; the claim that makes a request happen once
    actions     resend, edit and resend, match an unmatched payment to an invoice
    escalations escalate to on-call, acknowledge, re-escalate what nobody acknowledged
    queries     status, find, unmatched, audit
    activity    what a payment's card looks like after staff acted on it
"""
