// Container mode: a sandbox that shares another sandbox's network namespace
// (`--network container:NAME`). It owns no network objects; what it must enforce
// is that the namespace outlives its users.
import type { SandboxRecord, State } from './model.js';
import { ConflictError, InvalidConfigError } from '../errors.js';

export const CONTAINER_PREFIX = 'container:';

export function isContainerMode(network: string | undefined): network is string {
  return Boolean(network?.startsWith(CONTAINER_PREFIX));
}

/** The namespace a container-mode sandbox joins (following chains to the owner). */
export function planShare(target: SandboxRecord, state: State): { key: string; ownerId: string } {
  let owner = target;
  while (owner.kind === 'container' && owner.containerOf) {
    const next = state.sandboxes[owner.containerOf];
    if (!next) break;
    owner = next;
  }
  if (owner.phase !== 'ready') throw new InvalidConfigError(`sandbox ${target.name} is not ready`);
  return { key: owner.key, ownerId: owner.id };
}

/** Refuses to remove a sandbox whose namespace other sandboxes share. */
export function checkRemovable(sbx: SandboxRecord, state: State): void {
  const users = Object.values(state.sandboxes).filter((s) => s.containerOf === sbx.id);
  if (users.length) {
    throw new ConflictError(`sandbox ${sbx.name} is in use by ${users.map((u) => u.name).join(', ')} (network mode container:${sbx.name}); remove those first`);
  }
}
