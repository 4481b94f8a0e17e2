// Finding records by name, id or unique id prefix (Docker's rules), and name validation.
import { ConflictError, InvalidConfigError, NotFoundError } from '../errors.js';

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function validateName(name: string, what: string): void {
  if (!NAME_RE.test(name)) {
    throw new InvalidConfigError(
      `invalid ${what} name "${name}": use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit`,
    );
  }
}

export function findByRef<T extends { id: string; name: string }>(items: T[], ref: string, what: string): T {
  const byName = items.find((i) => i.name === ref);
  if (byName) return byName;
  const byId = items.find((i) => i.id === ref);
  if (byId) return byId;
  if (/^[0-9a-f]{1,64}$/.test(ref)) {
    const prefixed = items.filter((i) => i.id.startsWith(ref));
    if (prefixed.length === 1) return prefixed[0]!;
    if (prefixed.length > 1) throw new ConflictError(`${what} ${ref} is ambiguous (${prefixed.length} matches found based on ID prefix)`);
  }
  throw new NotFoundError(`${what} ${ref} not found`);
}
