import { layout } from "../dag";

const W = 140;
const H = 36;
const GX = 60;
const GY = 20;

/** The pipeline as a layered drawing (SVG): the inputs on the left, each node one layer right of
 * the deepest node it reads from. */
export function PipelineDag({ pipeline }: { pipeline: any }) {
  const dag = layout(pipeline);
  const pos = new Map(dag.nodes.map((n) => [n.name, { x: n.layer * (W + GX), y: n.row * (H + GY) }]));
  const width = dag.layers * (W + GX);
  const height = (Math.max(0, ...dag.nodes.map((n) => n.row)) + 1) * (H + GY);
  return (
    <svg class="dag" role="img" aria-label="pipeline graph" width={width} height={height} viewBox={`0 0 ${width} ${height}`}>
      {dag.edges.map(([a, b]) => {
        const p = pos.get(a)!;
        const q = pos.get(b)!;
        return <line key={`${a}->${b}`} data-edge={`${a}->${b}`} x1={p.x + W} y1={p.y + H / 2} x2={q.x} y2={q.y + H / 2} stroke="currentColor" />;
      })}
      {dag.nodes.map((n) => {
        const p = pos.get(n.name)!;
        return (
          <g key={n.name} data-node={n.name} data-layer={n.layer} transform={`translate(${p.x},${p.y})`}>
            <rect width={W} height={H} rx={4} fill="none" stroke="currentColor" />
            <text x={8} y={H / 2 + 4}>
              {n.name} · {n.kind}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
