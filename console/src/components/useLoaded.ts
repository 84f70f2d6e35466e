// A value a view loads once on mount: `initial` until the promise settles, then its value or its
// error; an answer that arrives after the view is gone is dropped.
import { useEffect, useState } from 'preact/hooks';

export function useLoaded<T>(load: () => Promise<T>, initial: T): { value: T; error: unknown } {
  const [value, setValue] = useState<T>(initial);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    load().then(
      (v) => live && setValue(v),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, []);
  return { value, error };
}
