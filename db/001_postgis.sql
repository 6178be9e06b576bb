-- 001: PostGIS. Every later file uses geometry types and functions, and the `trips` view hands out
-- geometry(Point,4326) columns, so the extension comes first.
CREATE EXTENSION IF NOT EXISTS postgis;
