"""Who is calling: registered users and guests, their access tokens (JWTs) and their revocation, and the
API keys game servers write scores with."""
