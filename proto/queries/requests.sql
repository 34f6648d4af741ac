-- trace-pipe preset `requests`: per-request TTFT and E2E under each root (Recorded / Simulated).
-- Times in ms; start_ms from the first request in the trace (a replay's simulated 0).
-- ttft_ms is the request's `ttft_ms` arg where it is possible (0 <= ttft <= e2e + 1 ms), else null;
-- e2e_ms its `total_time_ms` arg (else the slice's length), null for a simulated request that did not
-- complete.
-- In ui.perfetto.dev's Query (SQL) page paste `trace-pipe query --preset requests --show-sql` (this file with
-- the requests block spliced in).
WITH
-- @requests: the requests block (_requests.sql), spliced in by `trace-pipe query`
SELECT root, play, session, request_id, start_ms, ttft_ms, e2e_ms
FROM req_times
ORDER BY root, start_ms, request_id;
