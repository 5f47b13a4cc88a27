"""Python functions the SQL in sql/ calls: indicator maths (plain Python) and their Flink adapters."""
