"""cas-download: serve content-addressed artifacts through healthy, verified backends."""
