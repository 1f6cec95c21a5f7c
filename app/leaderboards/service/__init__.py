"""The leaderboard service's use cases, one transaction each: boards, their periods, score writes
(every path), their group commit, a player's boards and actions."""
