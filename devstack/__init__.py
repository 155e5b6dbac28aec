"""Local stack: start every Passgate process on this machine (make run, end-to-end tests)."""
