"""The outbox partitioned by time: `events` becomes `PARTITION BY RANGE (created_at)`, one partition a day.

Why: the relay used to delete published rows one by one (`DELETE ... LIMIT 5000` every 30 s), which
at the planned 2,500 events/s rewrites and vacuums the whole table's worth of rows every day. With
daily partitions, an old partition whose every row is published is dropped whole (a catalog change,
no dead tuples); see `outbox_relay/partitions.py`.

- Partitions are named `events_pYYYYMMDD` and cover one UTC day, [day 00:00+00, next day 00:00+00).
  A day, not an hour: the retention (`RELAY_RETENTION_HOURS`, 24 by default) is in hours but a few
  dozen partitions at most stay attached, so the claim's Merge Append over the per-partition partial
  indexes stays short; hourly partitions would mean 24+ partitions to plan over on every claim.
- `events_default` catches any row outside the created partitions (a clock far off, or a relay down
  for longer than the days created ahead); the relay still deletes its published rows row by row.
- The primary key must hold the partition key: it is `(id, created_at)`. Event ids are random UUIDs
  made by the app (`new_event_id`), never reused, and nothing upserts `events` (no ON CONFLICT on
  it); the relay marks rows by `(id, created_at)`, the exact key.
- `seq` stays an identity column (continuing from the old table's values), the three indexes keep
  their names and predicates (created on the parent, so every partition has them), and the NOTIFY
  trigger is a statement trigger on the parent, which fires for inserts routed to any partition.
- `events_ensure_partitions(from, to)` creates the missing daily partitions of [from, to]; the
  migration calls it for the days of the existing rows (the last 31 at most; older rows go to the
  default partition) through today + 2, and the relay calls it from its housekeeping loop.
- The storage settings of the old table (fillfactor, aggressive autovacuum) move to each partition:
  a partitioned table has no storage of its own.

The existing rows are copied into the new table in the migration's transaction (the outbox is
small: published rows are pruned after a day, and the copy holds an ACCESS EXCLUSIVE lock on the
old table, so run it in a quiet moment). Downgrade copies every row back into a plain table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = "id, seq, aggregate_type, aggregate_id, event_type, version, payload, created_at, published_at"
STORAGE = ("fillfactor = 90, autovacuum_vacuum_scale_factor = 0.01, "
           "autovacuum_vacuum_insert_scale_factor = 0.01")
# Creates (when missing) the daily partitions of [from_day, to_day]. A day whose rows already went to
# the default partition cannot get its partition (PostgreSQL refuses it): it is skipped with a
# notice, and its rows stay in the default partition, which the relay prunes row by row.
ENSURE_PARTITIONS = f"""
CREATE FUNCTION events_ensure_partitions(from_day date, to_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    name text;
    created integer := 0;
BEGIN
    FOR day IN SELECT generate_series(from_day, to_day, interval '1 day')::date LOOP
        name := 'events_p' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(quote_ident(name)) IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L) WITH ({STORAGE})',
                name, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
            created := created + 1;
        EXCEPTION WHEN check_violation THEN
            RAISE NOTICE 'events: rows of % are in the default partition; % not created', day, name;
        END;
    END LOOP;
    RETURN created;
END $$
"""
NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION events_notify_relay() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', '');
    RETURN NULL;
END $$
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER events_notify_relay AFTER INSERT ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_notify_relay()
"""


def _set_aside_old_table() -> None:
    """Rename the old table and its index, key and sequence out of the way of the new ones."""
    op.execute("DROP TRIGGER IF EXISTS events_notify_relay ON events")
    op.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE events RENAME TO events_old")
    op.execute("ALTER TABLE events_old RENAME CONSTRAINT pk_events TO pk_events_old")
    for index in ("ix_events_unpublished", "ix_events_published_at", "ix_events_aggregate"):
        op.execute(f"ALTER INDEX {index} RENAME TO {index.replace('ix_events', 'ix_events_old')}")
    op.execute("ALTER SEQUENCE events_seq_seq RENAME TO events_old_seq_seq")


def _create_indexes_and_trigger() -> None:
    op.execute("CREATE INDEX ix_events_unpublished ON events (created_at, seq) WHERE published_at IS NULL")
    op.execute("CREATE INDEX ix_events_published_at ON events (published_at) WHERE published_at IS NOT NULL")
    op.execute("CREATE INDEX ix_events_aggregate ON events (aggregate_id, created_at)")
    op.execute(NOTIFY_FUNCTION)
    op.execute(NOTIFY_TRIGGER)


def _move_rows_and_drop_old() -> None:
    op.execute(f"INSERT INTO events ({COLUMNS}) SELECT {COLUMNS} FROM events_old")
    # The identity goes on from the old table's last value: `seq` breaks ties in the claim's order.
    op.execute("SELECT setval(pg_get_serial_sequence('events', 'seq'), "
               "greatest((SELECT max(seq) FROM events), (SELECT last_value FROM events_old_seq_seq)))")
    op.execute("DROP TABLE events_old")


def upgrade() -> None:
    _set_aside_old_table()
    op.execute("""
        CREATE TABLE events (
            id uuid NOT NULL,
            seq bigint GENERATED BY DEFAULT AS IDENTITY,
            aggregate_type varchar(32) NOT NULL,
            aggregate_id text NOT NULL,
            event_type varchar(64) NOT NULL,
            version integer NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            published_at timestamptz,
            CONSTRAINT pk_events PRIMARY KEY (id, created_at)
        ) PARTITION BY RANGE (created_at)""")
    op.execute(f"CREATE TABLE events_default PARTITION OF events DEFAULT WITH ({STORAGE})")
    op.execute(ENSURE_PARTITIONS)
    # The days of the rows kept (the last 31 at most) through today + 2, so no insert waits on the relay.
    op.execute("""
        SELECT events_ensure_partitions(
            (greatest(coalesce((SELECT min(created_at) FROM events_old), now()),
                     now() - interval '31 days') AT TIME ZONE 'UTC')::date,
            (now() AT TIME ZONE 'UTC')::date + 2)""")
    _create_indexes_and_trigger()
    _move_rows_and_drop_old()


def downgrade() -> None:
    _set_aside_old_table()
    op.execute("""
        CREATE TABLE events (
            id uuid CONSTRAINT pk_events PRIMARY KEY,
            seq bigint GENERATED BY DEFAULT AS IDENTITY,
            aggregate_type varchar(32) NOT NULL,
            aggregate_id text NOT NULL,
            event_type varchar(64) NOT NULL,
            version integer NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            published_at timestamptz
        )""")
    op.execute(f"ALTER TABLE events SET ({STORAGE})")
    _create_indexes_and_trigger()
    _move_rows_and_drop_old()  # drops the partitions with their parent
    op.execute("DROP FUNCTION IF EXISTS events_ensure_partitions(date, date)")
