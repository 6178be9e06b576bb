# The database of docker-compose.yml: PostGIS with pg_cron, which refreshes trip_groups and runs the
# store's merges on a schedule (scripts/schedule.sql, run once when the database is first created).
# Built from the repository's root: docker build -f docker/db.Dockerfile .

FROM postgis/postgis:15-3.4
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15-cron \
    && rm -rf /var/lib/apt/lists/*
# Scripts in /docker-entrypoint-initdb.d run in POSTGRES_DB, after PostGIS's own (10_postgis.sh), with the
# server started with the command of docker-compose.yml (pg_cron preloaded, cron.database_name=trips).
COPY scripts/schedule.sql /docker-entrypoint-initdb.d/20_trips_schedule.sql
