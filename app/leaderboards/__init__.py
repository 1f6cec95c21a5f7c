"""The leaderboard service: boards of every kind (sort order, update mode, reset period, size), fed by
game servers, read by anyone.

PostgreSQL is the truth: a score write decides the entry's new state (the mode's math) in SQL, inside
the transaction that writes its event; the worker stores each entry's state in Redis if its version
is newer than the one held, so any order of delivery leaves the same board, and Redis can be rebuilt
from PostgreSQL at any time.
"""
