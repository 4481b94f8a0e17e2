// The CLI's output streams.

/**
 * stdout and stderr of this process. A reader that goes away (`tsnet network ls |
 * head -1`) ends our output, never the command: the change it makes is finished
 * and the exit code is the command's, with nothing printed about the pipe.
 */
export function processIo(): { out: (s: string) => void; err: (s: string) => void } {
  const closed = { out: false, err: false };
  const guard = (stream: NodeJS.WriteStream, key: 'out' | 'err') => {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') closed[key] = true;
      else throw e;
    });
    return (s: string) => {
      if (closed[key]) return;
      try {
        stream.write(`${s}\n`);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
        closed[key] = true;
      }
    };
  };
  return { out: guard(process.stdout, 'out'), err: guard(process.stderr, 'err') };
}

