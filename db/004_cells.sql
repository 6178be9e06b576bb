-- 004: the grid that every area question is answered on, and the week.
--
-- Coordinates are stored as integers in units of 1e-7 degree (005_trips.sql). A cell of level 1 is 0.1
-- degree on a side (about 11 km north-south), a cell of level 2 is 0.01 degree (about 1.1 km). A cell is
-- half-open, [x * size, (x + 1) * size) in each direction, so every point is in exactly one cell of each
-- level and the level-2 cells of a level-1 cell are its 10 x 10 children. A cell is named by one integer
-- key, row by row from the south-west corner of the world, so that a row of cells is a range of keys
-- (an index range scan) and the whole world fits an int4 at both levels.
--
-- Week: starts Monday 00:00 (date_trunc('week', ...)). Week 0 is the one of Monday 2000-01-03; the arrays
-- of 006_tallies.sql name weeks by these numbers.
--
-- The bodies are SQL-standard (RETURN ...): the functions they call are bound when they are created, not
-- looked up by search_path when they run. The trips' indexes are on trip_cell(), and autovacuum's ANALYZE
-- and pg_restore evaluate it with an empty search_path, where a body naming trip_cell_key() as text fails.
-- Such bodies are still inlined into the queries that call them.

-- Cell size in 1e-7 degree, and cells per degree.
CREATE FUNCTION trip_cell_size(level integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE level WHEN 1 THEN 1000000 WHEN 2 THEN 100000 END;

CREATE FUNCTION trip_cells_per_degree(level integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE level WHEN 1 THEN 10 WHEN 2 THEN 100 END;

-- The column (or row) of the cell holding a coordinate in 1e-7 degree: floor(v / size). float8 division of
-- these integers is exact enough that floor never errs (the loader does the same with integers).
CREATE FUNCTION trip_cell_index(level integer, v integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN floor(v / trip_cell_size(level)::float8)::integer;

-- The key of cell (x, y), and back.
CREATE FUNCTION trip_cell_key(level integer, x integer, y integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (y + 90 * trip_cells_per_degree(level)) * (360 * trip_cells_per_degree(level) + 1)
       + x + 180 * trip_cells_per_degree(level);

CREATE FUNCTION trip_cell_x(level integer, key integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN key % (360 * trip_cells_per_degree(level) + 1) - 180 * trip_cells_per_degree(level);

CREATE FUNCTION trip_cell_y(level integer, key integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN key / (360 * trip_cells_per_degree(level) + 1) - 90 * trip_cells_per_degree(level);

-- The key of the cell holding the point (lon, lat), in 1e-7 degree. The trip table's indexes are on this
-- expression at level 2, so queries must spell it the same way.
CREATE FUNCTION trip_cell(level integer, lon integer, lat integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN trip_cell_key(level, trip_cell_index(level, lon), trip_cell_index(level, lat));

-- A cell as a polygon in EPSG:4326 (its closed extent; its points are in the half-open one).
CREATE FUNCTION trip_cell_envelope(level integer, key integer) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ST_MakeEnvelope(trip_cell_x(level, key)::bigint * trip_cell_size(level) / 1e7::float8,
                       trip_cell_y(level, key)::bigint * trip_cell_size(level) / 1e7::float8,
                       (trip_cell_x(level, key) + 1)::bigint * trip_cell_size(level) / 1e7::float8,
                       (trip_cell_y(level, key) + 1)::bigint * trip_cell_size(level) / 1e7::float8, 4326);

-- The week of a departure, and the Monday a week starts on.
CREATE FUNCTION trip_week(t timestamp) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN floor((t::date - date '2000-01-03') / 7.0)::integer;

CREATE FUNCTION trip_week_start(week integer) RETURNS timestamp
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (date '2000-01-03' + 7 * week)::timestamp;
