"""Subscriptions and notifications (notifications.md, HL7 Subscriptions R5 Backport on R4): topics,
the Subscription resource's rules, and the notification Bundles. Pure: no I/O; the outbox is in
``app.store.outbox``, delivery in ``app.services.notify``."""
