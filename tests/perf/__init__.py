"""Performance tools for `make bench`: a profiled daemon and profile summaries."""
