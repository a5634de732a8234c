/**
 * HTML that escapes by construction. Pure.
 *
 * Everything interpolated into an `html` template is text unless it is itself `Html` (another
 * template, or `raw` for the few constant strings that are markup). Text first goes through
 * `visible` (control, bidi and zero-width characters become a visible `\uXXXX`; newlines are
 * kept), then `& < > " ' \`` become entities, so agent-written names, annotations, reasons and
 * diffs can neither open a tag nor leave a quoted attribute. Attribute values are always quoted.
 */
import { visible } from "../approvals/visible.js";

export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
  "`": "&#96;",
};

/** Text → HTML text (also safe inside a quoted attribute). */
export function esc(text: string): string {
  return visible(text, { newlines: true }).replace(/[&<>"'`]/g, (c) => ENTITIES[c]!);
}

/** Markup written in this code base, never data. */
export const raw = (markup: string): Html => new Html(markup);

export type Part = Html | string | number | boolean | null | undefined | readonly Part[];

function part(v: Part): string {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return (v as readonly Part[]).map(part).join("");
  if (v === null || v === undefined || v === false || v === true) return "";
  return esc(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Part[]): Html {
  let out = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) out += part(values[i]) + (strings[i + 1] ?? "");
  return new Html(out);
}

/** A path with each segment percent-encoded, and a query string from defined values. */
export function url(segments: readonly string[], query: Record<string, string | undefined> = {}): string {
  const path = `/${segments.map(encodeURIComponent).join("/")}`;
  const q = Object.entries(query)
    .filter((e): e is [string, string] => e[1] !== undefined && e[1] !== "")
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join("&");
  return q ? `${path}?${q}` : path;
}
