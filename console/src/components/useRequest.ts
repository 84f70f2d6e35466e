// Runs one request at a time for a view: loading and error state, and an older answer never
// overwrites a newer one (the previous request is aborted).
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export interface RequestState<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
  run: (fn: (signal: AbortSignal) => Promise<T>) => Promise<T | null>;
  setData: (data: T | null) => void;
}

export function useRequest<T>(): RequestState<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(false);
  const current = useRef<AbortController | null>(null);

  useEffect(() => () => current.current?.abort(), []);

  const run = useCallback(async (fn: (signal: AbortSignal) => Promise<T>) => {
    current.current?.abort();
    const controller = new AbortController();
    current.current = controller;
    setLoading(true);
    setError(null);
    try {
      const result = await fn(controller.signal);
      if (controller.signal.aborted) return null;
      setData(result);
      return result;
    } catch (err) {
      if (controller.signal.aborted || (err as Error).name === 'AbortError') return null;
      setError(err);
      return null;
    } finally {
      if (current.current === controller) setLoading(false);
    }
  }, []);

  return { data, error, loading, run, setData };
}
