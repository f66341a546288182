import { useEffect, useState } from "preact/hooks";
import { errorText } from "./api";

/** Loads ``fn`` when ``deps`` change, and again every ``everyMs`` when given. */
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[], everyMs = 0) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    fn().then(
      (d) => live && (setData(d), setError(null)),
      (e) => live && setError(errorText(e)),
    );
    let timer: number | undefined;
    if (everyMs > 0) timer = window.setTimeout(() => live && setTick((t) => t + 1), everyMs);
    return () => {
      live = false;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [...deps, tick]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}
