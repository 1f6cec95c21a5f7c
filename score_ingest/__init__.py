"""The score ingest: game servers' scores from Kafka into the leaderboard service (ingest.py)."""
