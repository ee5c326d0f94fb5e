// useFollow keeps a server stream open for a live view: it resumes from the last cursor after a dropped
// connection, so a reconnect loses nothing, and backs off while the control plane is away.
import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useRef, useState } from "react";

export type FollowState = "connecting" | "live" | "reconnecting" | "stopped";

export function useFollow<T extends { cursor: bigint }>(
  key: string,
  open: (after: bigint, options: { signal: AbortSignal; onHeader: () => void }) => AsyncIterable<T>,
  onMessage: (m: T) => void,
): { state: FollowState; error: unknown } {
  const [state, setState] = useState<FollowState>("connecting");
  const [error, setError] = useState<unknown>(null);
  const handler = useRef(onMessage);
  handler.current = onMessage;
  const opener = useRef(open);
  opener.current = open;
  useEffect(() => {
    const abort = new AbortController();
    let cursor = 0n;
    void (async () => {
      for (let attempt = 0; !abort.signal.aborted; attempt++) {
        try {
          // A stream with nothing to say yet sends no message: its response headers mean it is live.
          const live = () => {
            setState("live");
            setError(null);
          };
          for await (const m of opener.current(cursor, { signal: abort.signal, onHeader: live })) {
            attempt = 0;
            setState("live");
            setError(null);
            if (m.cursor > cursor) cursor = m.cursor;
            handler.current(m);
          }
        } catch (err) {
          if (abort.signal.aborted) return;
          const code = ConnectError.from(err).code;
          // The server refused: retrying would be refused again.
          if (code === Code.PermissionDenied || code === Code.NotFound || code === Code.Unauthenticated ||
              code === Code.InvalidArgument) {
            setError(err);
            setState("stopped");
            return;
          }
          setError(err);
        }
        if (abort.signal.aborted) return;
        setState("reconnecting");
        await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 10_000)));
      }
    })();
    return () => abort.abort();
  }, [key]);
  return { state, error };
}
