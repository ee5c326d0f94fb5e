import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { useQuery } from "@connectrpc/connect-query";
import { useEffect, useMemo, useRef, useState } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useLocation, useSearch } from "wouter";
import { UsageOrder, UsageService, type UsagePoint } from "../gen/orrery/api/v1/usage_pb";
import { TeamService } from "../gen/orrery/api/v1/team_pb";
import { Empty, ErrorNote, Field, Loading, Section } from "../ui";
import { TeamHeader } from "./teams";

// ranges offered, with a step that keeps a series within the server's 1440 points.
const ranges: Record<string, { label: string; ms: number; stepMs: number }> = {
  "1h": { label: "Last hour", ms: 3_600_000, stepMs: 60_000 },
  "24h": { label: "Last 24 hours", ms: 86_400_000, stepMs: 900_000 },
  "7d": { label: "Last 7 days", ms: 7 * 86_400_000, stepMs: 3_600_000 },
  "30d": { label: "Last 30 days", ms: 30 * 86_400_000, stepMs: 6 * 3_600_000 },
};

// UsagePage plots a team's tool calls from the usage rollups: calls and errors over time, the slowest tools
// and the busiest members. Team users see only their own calls; the server decides.
export function UsagePage({ teamId }: { teamId: string }) {
  const params = new URLSearchParams(useSearch());
  const [, navigate] = useLocation();
  const key = params.get("range") ?? "24h";
  const range = ranges[key] ?? ranges["24h"];
  // The range ends now, never in the future: the rankings read whole hours from the hourly rollups, which
  // do not yet hold the current hour. It moves on every 30 s, which also refreshes the page.
  const [end, setEnd] = useState(() => Date.now());
  useEffect(() => {
    const tick = setInterval(() => setEnd(Date.now()), 30_000);
    return () => clearInterval(tick);
  }, []);
  const span = { teamId, startTime: timestampFromMs(end - range.ms), endTime: timestampFromMs(end) };
  const series = useQuery(UsageService.method.getUsageSeries, { ...span, step: durationFromMs(range.stepMs) }, { placeholderData: (previous) => previous });
  const tools = useQuery(UsageService.method.listTopTools, { ...span, orderBy: UsageOrder.P95_LATENCY, limit: 20 }, { placeholderData: (previous) => previous });
  const users = useQuery(UsageService.method.listTopUsers, { ...span, orderBy: UsageOrder.CALLS, limit: 10 }, { placeholderData: (previous) => previous });
  const members = useQuery(TeamService.method.listMembers, { teamId }, { retry: false });
  const emailOf = (id: string) => members.data?.members.find((m) => m.user?.id === id)?.user?.email ?? id;
  const slowest = tools.data?.tools ?? [];
  const total = series.data?.total;
  return (
    <>
      <TeamHeader teamId={teamId} page="Usage" />
      <div className="toolbar">
        <Field label="Range">
          <select value={key} onChange={(e) => navigate(`/teams/${teamId}/usage?range=${e.target.value}`, { replace: true })}>
            {Object.entries(ranges).map(([k, r]) => <option key={k} value={k}>{r.label}</option>)}
          </select>
        </Field>
        {total && <p className="muted" role="status">{String(total.calls)} calls, {String(total.errors)} errors</p>}
      </div>
      <Section title="Calls and errors">
        {series.isPending ? <Loading what="usage" /> : series.error ? <ErrorNote error={series.error} /> :
          total?.calls ? <Chart points={series.data.points} /> : <Empty>No tool calls in this range. Connect a client and call a tool.</Empty>}
      </Section>
      <Section title="Slowest tools">
        {tools.isPending ? <Loading what="tools" /> : tools.error ? <ErrorNote error={tools.error} /> : slowest.length === 0 ? <Empty>No tool calls yet.</Empty> : (
          <table className="usage-tools">
            <thead><tr><th>Tool</th><th>Calls</th><th>Errors</th><th>p50</th><th>p95</th></tr></thead>
            <tbody>{slowest.map((t) => (
              <tr key={t.installationId + t.toolName} data-tool={t.toolName}>
                <td><code>{t.toolName}</code></td><td>{String(t.stats?.calls ?? 0)}</td><td>{String(t.stats?.errors ?? 0)}</td>
                <td>{(t.stats?.p50LatencyMs ?? 0).toFixed(1)} ms</td><td>{(t.stats?.p95LatencyMs ?? 0).toFixed(1)} ms</td>
              </tr>
            ))}</tbody>
          </table>
        )}
      </Section>
      <Section title="Top users">
        {users.isPending ? <Loading what="users" /> : users.error ? <ErrorNote error={users.error} /> : (users.data.users.length === 0 ? <Empty>No tool calls yet.</Empty> : (
          <table>
            <thead><tr><th>Member</th><th>Calls</th><th>Errors</th></tr></thead>
            <tbody>{users.data.users.map((u) => (
              <tr key={u.userId}><td>{emailOf(u.userId)}</td><td>{String(u.stats?.calls ?? 0)}</td><td>{String(u.stats?.errors ?? 0)}</td></tr>
            ))}</tbody>
          </table>
        ))}
      </Section>
    </>
  );
}

function Chart({ points }: { points: UsagePoint[] }) {
  const box = useRef<HTMLDivElement>(null);
  const data = useMemo<uPlot.AlignedData>(() => [
    points.map((p) => (p.startTime ? timestampMs(p.startTime) / 1000 : 0)),
    points.map((p) => Number(p.stats?.calls ?? 0)),
    points.map((p) => Number(p.stats?.errors ?? 0)),
  ], [points]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const plot = new uPlot({
      width: el.clientWidth || 600, height: 240,
      series: [{}, { label: "Calls", stroke: "#2957c4", width: 2 }, { label: "Errors", stroke: "#b42318", width: 2 }],
      axes: [{}, { label: "calls per step" }],
    }, data, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: el.clientWidth, height: 240 }));
    resize.observe(el);
    return () => { resize.disconnect(); plot.destroy(); };
  }, [data]);
  return <div ref={box} className="chart" role="img" aria-label="Calls and errors over time" />;
}
