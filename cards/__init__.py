"""Pure view layer: domain facts in, Block Kit (Slack) and Adaptive Card (Teams) dicts out. No client calls."""
