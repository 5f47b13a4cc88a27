"""The `moex` command: one entry point for every stage of the platform (see moex/cli.py)."""
