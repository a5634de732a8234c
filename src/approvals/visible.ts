/**
 * The one sanitizer for agent-derived text shown to humans (terminal, diff, Slack, Teams).
 * Pure.
 *
 * Characters that can move a terminal's cursor, erase or forge lines, open links or write the
 * clipboard (C0 and C1 controls, ESC, DEL), and Unicode format characters (category Cf: bidi
 * overrides and isolates U+202A–U+202E and U+2066–U+2069, zero-width U+200B–U+200F, U+FEFF,
 * ...) that reorder or hide text, are replaced by a visible `\uXXXX`. So are the line and
 * paragraph separators U+2028/U+2029. Tabs are kept; newlines are kept only when asked.
 */
const HIDDEN = /[\p{Cc}\p{Cf}\u2028\u2029]/gu;

const escapeChar = (c: string) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, "0")}`;

export interface VisibleOptions {
  /** Keep "\n" (multi-line output whose lines are each prefixed by the caller). Default false. */
  newlines?: boolean;
}

export function visible(text: string, opts: VisibleOptions = {}): string {
  return text.replace(HIDDEN, (c) => (c === "\t" || (c === "\n" && opts.newlines) ? c : escapeChar(c)));
}
