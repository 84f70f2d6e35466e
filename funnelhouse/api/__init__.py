"""The admin HTTP APIs: SQL, analyses, people, segments, console data."""
