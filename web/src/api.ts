// The console talks to the control plane only through the clients generated from proto/: connect-query
// hooks for unary calls, and plain clients (made where used) for the server streams that live views follow.
import { Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

// Same origin, so the browser sends the session cookie (HttpOnly, SameSite=Strict) with every call.
export const transport = createConnectTransport({ baseUrl: window.location.origin, useBinaryFormat: true });

// hints say what to do about an error, by its code; the server's own message says what went wrong.
const hints: Partial<Record<Code, string>> = {
  [Code.Unauthenticated]: "Sign in again.",
  [Code.PermissionDenied]: "Ask an admin of the team (or a global admin) for the access you need.",
  [Code.NotFound]: "It may have been deleted, or it belongs to a team you are not in. Check the link.",
  [Code.InvalidArgument]: "Correct the input and try again.",
  [Code.AlreadyExists]: "Choose another name or slug.",
  [Code.ResourceExhausted]: "Too many attempts: wait a minute, then try again.",
  [Code.FailedPrecondition]: "Resolve what the message says first, then try again.",
  [Code.Unavailable]: "The control plane did not answer. Check your connection; the page retries on its own.",
  [Code.DeadlineExceeded]: "The control plane took too long to answer. Try again.",
  [Code.Internal]: "Something failed on the server. Try again; if it keeps failing, tell your operator.",
};

export interface Explained {
  code: Code;
  message: string;
  hint: string;
}

// explain turns any error into the server's message and a hint.
export function explain(err: unknown): Explained {
  const e = ConnectError.from(err);
  return { code: e.code, message: e.rawMessage || Code[e.code], hint: hints[e.code] ?? "Try again." };
}

export function isCode(err: unknown, code: Code): boolean {
  return err != null && ConnectError.from(err).code === code;
}
