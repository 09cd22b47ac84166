-- The driver statistics history in PostgreSQL, from the CSV `larder init`
-- generates. Run from the repository directory:
--   psql -d feast -f postgres/load.sql
CREATE TABLE IF NOT EXISTS driver_stats (
    driver_id       BIGINT           NOT NULL,
    event_timestamp TIMESTAMPTZ      NOT NULL,
    conv_rate       REAL,
    acc_rate        REAL,
    avg_daily_trips BIGINT,
    created         TIMESTAMPTZ      NOT NULL
);
CREATE INDEX IF NOT EXISTS driver_stats_driver_ts ON driver_stats (driver_id, event_timestamp);
TRUNCATE driver_stats;
\copy driver_stats (driver_id, event_timestamp, conv_rate, acc_rate, avg_daily_trips, created) FROM 'data/driver_stats.csv' WITH (FORMAT csv, HEADER true)
