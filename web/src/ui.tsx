// Building blocks every page shares: errors with what to do, waiting, empty states, labelled fields.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { useState, type ReactNode } from "react";
import { explain } from "./api";

export function ErrorNote({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const e = explain(error);
  return (
    <div className="error" role="alert">
      <strong>{title ?? "That did not work"}:</strong> {e.message}
      <div className="hint">{e.hint}</div>
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="loading" role="status" aria-live="polite">
      <span className="spinner" aria-hidden="true" /> Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="empty">{children}</div>;
}

export function Field({ label, hint, children }: { label: string; hint?: ReactNode; children: ReactNode }) {
  return (
    <label className="field">
      <span className="label">{label}</span>
      {children}
      {hint && <span className="field-hint">{hint}</span>}
    </label>
  );
}

export function Section({ title, actions, children }: { title: string; actions?: ReactNode; children: ReactNode }) {
  return (
    <section className="card" aria-label={title}>
      <header className="card-head">
        <h2>{title}</h2>
        {actions}
      </header>
      {children}
    </section>
  );
}

// CopyBox shows a value with a button that copies it; used for tokens shown once and client configuration.
export function CopyBox({ value, label }: { value: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="copy">
      <pre aria-label={label} tabIndex={0}>{value}</pre>
      <button
        type="button"
        onClick={() => {
          void navigator.clipboard?.writeText(value).then(() => setCopied(true));
        }}
      >
        {copied ? "Copied" : `Copy ${label}`}
      </button>
    </div>
  );
}

export function When({ at }: { at?: Timestamp }) {
  if (!at) return <span className="muted">—</span>;
  const d = timestampDate(at);
  return <time dateTime={d.toISOString()}>{d.toLocaleString()}</time>;
}

export function Busy({ pending, children }: { pending: boolean; children: ReactNode }) {
  return (
    <button type="submit" disabled={pending} aria-busy={pending}>
      {pending ? "Working…" : children}
    </button>
  );
}
