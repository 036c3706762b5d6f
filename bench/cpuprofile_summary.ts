/**
 * Summarises a V8 .cpuprofile (from `deno run --cpu-prof`) by self time.
 *
 * Usage: deno run -R bench/cpuprofile_summary.ts FILE.cpuprofile [--top 20] [--json]
 *
 * @module
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** One function's share of the samples. */
export interface SelfTime {
  name: string;
  location: string;
  selfMs: number;
  selfPercent: number;
}

/** Self time per function (idle and program excluded from the share). */
export function summarise(
  profile: Profile,
  top: number,
): { busyMs: number; idleMs: number; rows: SelfTime[] } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<string, { name: string; location: string; us: number }>();
  let idleUs = 0;
  let busyUs = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === "(idle)") {
      idleUs += delta;
      return;
    }
    busyUs += delta;
    const url = frame.url.replace(/^file:\/\/.*?\/(mod|bench|node_modules)\//, "$1/")
      .replace(/^ext:/, "ext:");
    const location = url ? `${url}:${frame.lineNumber + 1}` : "";
    const key = `${frame.functionName}@${location}`;
    const entry = selfUs.get(key) ?? { name: frame.functionName || "(anonymous)", location, us: 0 };
    entry.us += delta;
    selfUs.set(key, entry);
  });
  const rows = [...selfUs.values()].sort((a, b) => b.us - a.us).slice(0, top).map((entry) => ({
    name: entry.name,
    location: entry.location,
    selfMs: entry.us / 1000,
    selfPercent: (100 * entry.us) / busyUs,
  }));
  return { busyMs: busyUs / 1000, idleMs: idleUs / 1000, rows };
}

if (import.meta.main) {
  const file = Deno.args[0]!;
  const topIndex = Deno.args.indexOf("--top");
  const top = topIndex >= 0 ? Number(Deno.args[topIndex + 1]) : 20;
  const summary = summarise(JSON.parse(await Deno.readTextFile(file)), top);
  if (Deno.args.includes("--json")) console.log(JSON.stringify(summary));
  else {
    console.log(`busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms`);
    for (const row of summary.rows) {
      console.log(
        `${row.selfPercent.toFixed(1).padStart(5)}%  ${
          row.selfMs.toFixed(0).padStart(6)
        } ms  ${row.name}  ${row.location}`,
      );
    }
  }
}
