-- trace-pipe: the requests block (every preset that reads requests splices it in at its
-- `-- @requests` line; a preset with more tables after it starts the next one with a comma)
req AS (
  SELECT r.name AS root, g.name AS play, t.name AS session, s.id AS slice_id, s.ts, s.dur,
         EXTRACT_ARG(s.arg_set_id, 'debug.request_id') AS request_id,
         EXTRACT_ARG(s.arg_set_id, 'debug.status') AS status,
         EXTRACT_ARG(s.arg_set_id, 'debug.total_time_ms') AS total_ms,
         EXTRACT_ARG(s.arg_set_id, 'debug.ttft_ms') AS ttft_arg
  FROM slice s
  JOIN track t ON s.track_id = t.id
  JOIN track g ON t.parent_id = g.id
  JOIN track r ON g.parent_id = r.id
  WHERE s.category = 'dynamo.llm' AND r.parent_id IS NULL),
origin AS (SELECT MIN(ts) AS t0 FROM req),
req_e2e AS (
  SELECT req.*, (ts - t0) / 1e6 AS start_ms, (ts + dur - t0) / 1e6 AS end_ms,
         CASE WHEN status IS NULL OR status = 'completed'
              THEN COALESCE(CASE WHEN total_ms >= 0 THEN total_ms END, dur / 1e6) END AS e2e_ms
  FROM req, origin),
req_times AS (
  SELECT root, play, session, request_id, start_ms, end_ms, e2e_ms,
         CASE WHEN ttft_arg >= 0 AND (e2e_ms IS NULL OR ttft_arg <= e2e_ms + 1) THEN ttft_arg END AS ttft_ms
  FROM req_e2e)
-- end of the requests block
