import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  values: Array<number | null>;
  color: string;
}

/** A small time-series chart (uPlot); ``times`` in seconds since the epoch. */
export function Chart({ title, times, series, unit }: { title: string; times: number[]; series: Series[]; unit: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!box.current) return;
    const width = Math.max(260, Math.min(560, box.current.clientWidth || 360));
    plot.current = new uPlot(
      {
        title,
        width,
        height: 160,
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2 }))],
        // one point alone would be scaled to a range of years: show the minute before it
        scales: { x: { time: true, range: (_u, min, max) => (min === max ? [min - 60, max + 1] : [min, max]) } },
        axes: [{}, { label: unit, size: 56 }],
        legend: { live: false },
      },
      [times, ...series.map((s) => s.values)] as uPlot.AlignedData,
      box.current,
    );
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [title, series.length]);
  useEffect(() => {
    plot.current?.setData([times, ...series.map((s) => s.values)] as uPlot.AlignedData);
  }, [times, series]);
  return <div class="chart" ref={box} role="img" aria-label={`${title} chart`} />;
}
