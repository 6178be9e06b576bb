-- How circles-turin.tsv was made: circles of 0.03 degree around central Turin with 32, 256, 1,024 and 4,096
-- vertices (ST_Buffer's quad_segs 8, 64, 256, 1024), asked by origin.
SELECT 'origin' || chr(9) || ST_AsText(ST_Buffer(ST_Point(7.68, 45.07, 4326), 0.03, q)) FROM unnest(ARRAY[8, 64, 256, 1024]) AS q;
