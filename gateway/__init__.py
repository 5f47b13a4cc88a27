"""Streaming API and dashboard for the MOEX result topics.

One Kafka reader per topic fills bounded per-ticker buffers; HTTP clients get recent rows as JSON
and live rows as Server-Sent Events whose ids are Kafka positions, so a reconnect resumes exactly.
"""
