-- trace-pipe preset `sessions`: per-session makespan under each root (Recorded / Simulated).
-- A session is a chain track (a conversation / sub-agent) inside its play. start_ms / end_ms: its
-- first request's start and last request's end (ms from the first request in the trace);
-- makespan_ms = end_ms - start_ms. Paste into ui.perfetto.dev's Query (SQL) page as is.
WITH
-- trace-pipe: requests (the same block in every preset that reads requests)
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
SELECT root, play, session, COUNT(*) AS requests, MIN(start_ms) AS start_ms, MAX(end_ms) AS end_ms,
       MAX(end_ms) - MIN(start_ms) AS makespan_ms
FROM req_times
GROUP BY root, play, session
ORDER BY root, start_ms, play, session;
