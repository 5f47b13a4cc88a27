"""The job runner: validates sql/, then runs every output as one Flink job (live or replay)."""
