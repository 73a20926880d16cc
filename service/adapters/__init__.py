"""Source adapters: one module per source, each exposing `SOURCE` and `normalize`."""
