/**
 * Structured JSON logs through winston: one root logger, one child per component.
 * Callers add the admission uid / object key to every line through child loggers
 * or per-line metadata. Nothing here ever logs object contents.
 */
import winston from "winston";

export type Logger = winston.Logger;

const level = process.env.COUNTERSIGN_LOG_LEVEL ?? (process.env.VITEST ? "error" : "info");

export const rootLogger: Logger = winston.createLogger({
  level,
  format: winston.format.combine(
    winston.format.timestamp(),
    winston.format.errors({ stack: false }),
    winston.format.json(),
  ),
  defaultMeta: { app: "countersign" },
  transports: [new winston.transports.Console({ stderrLevels: ["error", "warn", "info", "debug"] })],
});

/** A child logger for one component (admission, gate, policy-cache, controller, ...). */
export function componentLogger(component: string, meta: Record<string, unknown> = {}): Logger {
  return rootLogger.child({ component, ...meta });
}
