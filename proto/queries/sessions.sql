-- trace-pipe preset `sessions`: per-session makespan under each root (Recorded / Simulated).
-- A session is a chain track (a conversation / sub-agent) inside its play. start_ms / end_ms: its
-- first request's start and last request's end (ms from the first request in the trace);
-- makespan_ms = end_ms - start_ms.
-- In ui.perfetto.dev's Query (SQL) page paste `trace-pipe query --preset sessions --show-sql` (this file with
-- the requests block spliced in).
WITH
-- @requests: the requests block (_requests.sql), spliced in by `trace-pipe query`
SELECT root, play, session, COUNT(*) AS requests, MIN(start_ms) AS start_ms, MAX(end_ms) AS end_ms,
       MAX(end_ms) - MIN(start_ms) AS makespan_ms
FROM req_times
GROUP BY root, play, session
ORDER BY root, start_ms, play, session;
