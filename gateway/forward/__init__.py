"""Forwarding the audit log to the security team's SIEM (docs/operations.md, "Forwarding the
audit log to a SIEM"), at least once and in order.

Each ``[[forward]]`` destination has a cursor in the ledger — the last entry its receiver
confirmed, per node, since each node forwards its own log — and a thread of its own in
the daemon that reads the log on from there, checking the chain as it reads, and sends
what the destination wants in bounded batches. The cursor moves only after a batch is
confirmed; any failure resends from the cursor. So a receiver may see an entry twice
(it de-duplicates by ``seq`` and ``hash``), never miss one.

- :mod:`.records`: what is sent — RFC 5424 messages, octet-counted frames, the webhook's
  signed JSON body (pure functions).
- :mod:`.reader`: the log read on from a cursor, chain checked, filtered, bounded.
- :mod:`.senders`: syslog over TLS, TCP or UDP and the HTTPS webhook; what "confirmed"
  means for each.
- :mod:`.runner`: the threads, their leases, back-off, metrics and audit events.
"""
