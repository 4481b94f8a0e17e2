// The root logger of an entry point: pino, JSON on stderr (stdout carries results),
// at the level its environment variable asks for.
import { createRootLogger, LOG_LEVELS, type LogLevel, type Logger } from '../log.js';

export function entryLogger(name: string, level: string | undefined, fallback: LogLevel): Logger {
  const valid = (LOG_LEVELS as readonly string[]).includes(level ?? '');
  return createRootLogger(valid ? (level as LogLevel) : fallback, name);
}
