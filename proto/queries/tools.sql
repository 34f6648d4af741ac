-- trace-pipe preset `tools`: tool time vs LLM time per session under each root (Recorded / Simulated).
-- llm_ms: the time at least one of the session's requests ran (the union of its request slices);
-- tool_ms: the time at least one of its tool slices ran (its `<session> tools` track: tool calls,
-- think time, inferred calls, sub-agent spans); tool_share_pct = 100 * tool_ms / (tool_ms + llm_ms).
-- In ui.perfetto.dev's Query (SQL) page paste `trace-pipe query --preset tools --show-sql` (this file with
-- the requests block spliced in).
WITH
-- @requests: the requests block (_requests.sql), spliced in by `trace-pipe query`
, tool AS (
  SELECT r.name AS root, g.name AS play, substr(t.name, 1, length(t.name) - 6) AS session, s.ts, s.ts + s.dur AS te
  FROM slice s
  JOIN track t ON s.track_id = t.id
  JOIN track g ON t.parent_id = g.id
  JOIN track r ON g.parent_id = r.id
  WHERE s.category = 'dynamo.agent.tool' AND t.name GLOB '* tools' AND r.parent_id IS NULL),
work AS (
  SELECT root, play, session, 1 AS llm, ts, ts + dur AS te FROM req
  UNION ALL
  SELECT root, play, session, 0 AS llm, ts, te FROM tool),
-- the union of intervals per kind: a new island wherever a slice starts after every earlier one ended
ordered AS (
  SELECT *, MAX(te) OVER (PARTITION BY root, play, session, llm ORDER BY ts, te
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM work),
islands AS (
  SELECT *, SUM(CASE WHEN prev_end IS NULL OR ts > prev_end THEN 1 ELSE 0 END)
              OVER (PARTITION BY root, play, session, llm ORDER BY ts, te ROWS UNBOUNDED PRECEDING) AS island
  FROM ordered),
per_island AS (
  SELECT root, play, session, llm, COUNT(*) AS n, MAX(te) - MIN(ts) AS ns
  FROM islands GROUP BY root, play, session, llm, island),
totals AS (
  SELECT root, play, session,
         SUM(CASE WHEN llm = 1 THEN n ELSE 0 END) AS requests, SUM(CASE WHEN llm = 0 THEN n ELSE 0 END) AS tool_calls,
         SUM(CASE WHEN llm = 1 THEN ns ELSE 0 END) / 1e6 AS llm_ms, SUM(CASE WHEN llm = 0 THEN ns ELSE 0 END) / 1e6 AS tool_ms
  FROM per_island GROUP BY root, play, session)
SELECT root, play, session, requests, tool_calls, llm_ms, tool_ms,
       100.0 * tool_ms / NULLIF(tool_ms + llm_ms, 0) AS tool_share_pct
FROM totals
ORDER BY root, play, session;
