"""The leaderboard service over GraphQL (see schema.graphql and the README)."""
