"""The operator console: hand-written pages at ``/console`` over the gateway's own REST endpoints and live
stream, signed in with a session cookie (``sessions``) that every route accepts in place of the bearer token, so
the console passes the same roles, confirmations and audit trail as any other client. ``routes`` serves the pages,
the log-in and the few console-shaped reads (a chart's data, every risk profile's limits).

Nothing is imported here: ``deps`` imports ``sessions``, and ``routes`` imports ``deps``."""
