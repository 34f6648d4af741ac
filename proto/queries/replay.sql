-- trace-pipe preset `replay`: recorded vs simulated per request (the two roots of a replay).
-- From a `trace-pipe replay --perfetto` trace, requests paired by request_id. Times in ms from the first
-- recorded request; diff_* = simulated - recorded (null where either side is). The same numbers as
-- `--compare-json`.
-- In ui.perfetto.dev's Query (SQL) page paste `trace-pipe query --preset replay --show-sql` (this file with
-- the requests block spliced in).
WITH
-- @requests: the requests block (_requests.sql), spliced in by `trace-pipe query`
SELECT rec.play, rec.session, rec.request_id,
       rec.start_ms AS recorded_start_ms, sim.start_ms AS simulated_start_ms, sim.start_ms - rec.start_ms AS diff_start_ms,
       rec.ttft_ms AS recorded_ttft_ms, sim.ttft_ms AS simulated_ttft_ms, sim.ttft_ms - rec.ttft_ms AS diff_ttft_ms,
       rec.e2e_ms AS recorded_e2e_ms, sim.e2e_ms AS simulated_e2e_ms, sim.e2e_ms - rec.e2e_ms AS diff_e2e_ms
FROM req_times rec
JOIN req_times sim ON sim.request_id = rec.request_id AND sim.root = 'Simulated'
WHERE rec.root = 'Recorded'
ORDER BY rec.start_ms, rec.request_id;
