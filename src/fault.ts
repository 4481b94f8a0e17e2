// Fault injection for tests of crash safety: TSNET_FAULT=<point>:hang makes the
// process announce "tsnet-fault: hang at <point>" on stderr and stop there (to
// be SIGKILLed); TSNET_FAULT=<point>:fail throws at that point.
import { TsnetError } from './errors.js';

export async function faultPoint(point: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const spec = env.TSNET_FAULT;
  if (!spec) return;
  const [where, what] = spec.split(/:(?=[^:]*$)/);
  if (where !== point) return;
  if (what === 'fail') throw new TsnetError('INTERNAL', `injected failure at ${point}`);
  if (what === 'hang') {
    process.stderr.write(`tsnet-fault: hang at ${point}\n`);
    await new Promise(() => setInterval(() => undefined, 1 << 30));
  }
}
