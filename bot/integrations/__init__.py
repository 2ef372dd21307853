"""Outside systems: payment sources (webhooks in) and channels (messages out), one module each."""
