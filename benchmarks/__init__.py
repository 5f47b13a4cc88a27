"""`make bench`: throughput, latency, fan-out and memory of the platform, measured on this machine.

    python -m benchmarks [--only producer,replay,live,fanout,peer,rss] [--quick] [--repeat N]

Each benchmark starts what it needs itself (its own Kafka broker on free ports in a temp folder,
heap capped), stops every process it started and deletes its temp folder. Results are printed as
a table and written to bench-results/<UTC timestamp>.json. Not part of `make test`.
"""
