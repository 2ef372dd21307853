"""paybot: acknowledges every customer payment, at once, on the customer's channels."""
