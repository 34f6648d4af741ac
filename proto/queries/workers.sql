-- trace-pipe preset `workers`: worker utilisation under each root (Recorded / Simulated).
-- busy_ms: the union of what ran on the worker (its `requests` lanes: prefill and decode); span_ms:
-- the root's first request start to last request end; utilisation_pct = 100 * busy_ms / span_ms.
-- Simulated workers also have pass_ms, the summed length of their engine passes (null for recorded
-- workers).
-- In ui.perfetto.dev's Query (SQL) page paste `trace-pipe query --preset workers --show-sql` (this file with
-- the requests block spliced in).
WITH
-- @requests: the requests block (_requests.sql), spliced in by `trace-pipe query`
, span AS (SELECT root, MAX(end_ms) - MIN(start_ms) AS span_ms FROM req_times GROUP BY root),
placed AS (
  SELECT r.name AS root, w.name AS worker, s.ts, s.ts + s.dur AS te,
         EXTRACT_ARG(s.arg_set_id, 'debug.request_id') AS request_id
  FROM slice s
  JOIN track t ON s.track_id = t.id
  JOIN track w ON t.parent_id = w.id
  JOIN track ws ON w.parent_id = ws.id
  JOIN track r ON ws.parent_id = r.id
  WHERE s.category = 'trace_pipe.worker' AND t.name = 'requests' AND ws.name = 'workers'),
-- the union of intervals: a new island wherever a slice starts after every earlier one ended
ordered AS (
  SELECT *, MAX(te) OVER (PARTITION BY root, worker ORDER BY ts, te
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM placed),
islands AS (
  SELECT *, SUM(CASE WHEN prev_end IS NULL OR ts > prev_end THEN 1 ELSE 0 END)
              OVER (PARTITION BY root, worker ORDER BY ts, te ROWS UNBOUNDED PRECEDING) AS island
  FROM ordered),
busy AS (
  SELECT root, worker, SUM(island_ns) / 1e6 AS busy_ms
  FROM (SELECT root, worker, MAX(te) - MIN(ts) AS island_ns FROM islands GROUP BY root, worker, island)
  GROUP BY root, worker),
work AS (SELECT root, worker, COUNT(DISTINCT request_id) AS requests FROM placed GROUP BY root, worker),
passes AS (
  SELECT r.name AS root, w.name AS worker, COUNT(*) AS pass_slices, SUM(s.dur) / 1e6 AS pass_ms
  FROM slice s
  JOIN track t ON s.track_id = t.id
  JOIN track w ON t.parent_id = w.id
  JOIN track ws ON w.parent_id = ws.id
  JOIN track r ON ws.parent_id = r.id
  WHERE t.name = 'engine passes' AND ws.name = 'workers'
  GROUP BY r.name, w.name)
SELECT work.root, work.worker, work.requests, busy.busy_ms, span.span_ms,
       100.0 * busy.busy_ms / NULLIF(span.span_ms, 0) AS utilisation_pct, passes.pass_ms
FROM work
JOIN busy USING (root, worker)
JOIN span USING (root)
LEFT JOIN passes USING (root, worker)
ORDER BY work.root, CAST(substr(work.worker, 8) AS INT), work.worker;
