"""Alert channels besides Telegram (ntfy, Gotify, Discord, a signed webhook), each fed from the durable outbox:
`note` (what they are told), one module per service (the request it documents), `verdict` (what its answer
means), `delivery` (one channel's queue, in order, with backoff), `channels` (which are on, queueing)."""
