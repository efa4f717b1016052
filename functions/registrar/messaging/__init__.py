"""Messaging: the message bus (a command's handler in one transaction with its ledger entry, history and outbox;
then its follow-up), the outbox relay, and the entry points' consumer (decode → command → bus, or quarantine)."""
